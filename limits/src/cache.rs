//! The provider's response cache, for contracts whose document sets `cache.ttl_s`.
//!
//! Keyed by contract, version and the RFC 8785 form of the query (hashed, so two spellings
//! of one query share an entry), it holds results only: every hit is still signed afresh and
//! bound to its own request. It sits after authorisation, rate limits and schema checks, so
//! a cached answer never reaches a consumer that could not have asked for it.
//!
//! Bounded twice: by total bytes of results, and by entries — each entry weighs at least
//! `max_bytes / max_entries`, so neither bound can be exceeded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::ContractRef;
use contracts::canonical::{sha256, write_canonical_json};
use moka::notification::RemovalCause;
use serde_json::Value;

/// The length of `value` as compact JSON, counted without writing it anywhere.
fn json_len(value: &Value) -> u32 {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => u32::try_from(count.0).unwrap_or(u32::MAX),
        Err(_) => 0,
    }
}

/// A cached result.
#[derive(Clone, Debug)]
pub struct CachedResult {
    /// The contract it answers.
    pub contract: Arc<ContractRef>,
    /// The result.
    pub result: Arc<Value>,
    bytes: u32,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<[u8; 32], CachedResult> for PerEntryTtl {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &CachedResult,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// The response cache of one gateway.
pub struct ResponseCache {
    cache: moka::sync::Cache<[u8; 32], CachedResult>,
}

impl ResponseCache {
    /// A cache of at most `max_entries` entries and `max_bytes` of results; `evictions`
    /// counts the entries it drops for room.
    pub fn new(max_entries: u64, max_bytes: u64, evictions: metrics::Counter) -> Self {
        let floor = (max_bytes / max_entries.max(1)).clamp(1, u64::from(u32::MAX)) as u32;
        let cache = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(move |_k, v: &CachedResult| v.bytes.max(floor))
            .expire_after(PerEntryTtl)
            .support_invalidation_closures()
            .eviction_listener(move |_k, _v, cause| {
                if cause == RemovalCause::Size {
                    evictions.increment(1);
                }
            })
            .build();
        ResponseCache { cache }
    }

    /// The key of a query to a contract.
    pub fn key(contract: &ContractRef, query: &Value) -> Option<[u8; 32]> {
        let mut material = Vec::with_capacity(128);
        material.extend_from_slice(contract.id.as_bytes());
        material.push(0);
        material.extend_from_slice(contract.version.as_bytes());
        material.push(0);
        write_canonical_json(&mut material, query).ok()?;
        Some(sha256(&material))
    }

    /// The cached result for `key`.
    pub fn get(&self, key: &[u8; 32]) -> Option<Arc<Value>> {
        self.cache.get(key).map(|hit| hit.result)
    }

    /// Keeps `result` for `ttl`.
    pub fn insert(
        &self,
        key: [u8; 32],
        contract: Arc<ContractRef>,
        result: Arc<Value>,
        ttl: Duration,
    ) {
        let bytes = json_len(&result);
        self.cache.insert(
            key,
            CachedResult {
                contract,
                result,
                bytes,
                ttl,
            },
        );
    }

    /// Drops every entry of one contract (all versions when `version` is `None`) and says
    /// how many it dropped. An answer cached while the purge runs may stay.
    pub fn purge(&self, id: &str, version: Option<&str>) -> usize {
        let doomed: Vec<Arc<[u8; 32]>> = self
            .cache
            .iter()
            .filter(|(_, v)| {
                v.contract.id == id && version.is_none_or(|ver| v.contract.version == ver)
            })
            .map(|(k, _)| k)
            .collect();
        let dropped = doomed
            .iter()
            .filter(|k| self.cache.remove(k.as_ref()).is_some())
            .count();
        self.cache.run_pending_tasks();
        dropped
    }

    /// Entries held now (after pending maintenance).
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Bytes held now (after pending maintenance), counting each entry's floor.
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels() -> metrics::Counter {
        metrics::Counter::noop()
    }

    fn c(id: &str) -> Arc<ContractRef> {
        Arc::new(ContractRef::new(id, "1"))
    }

    #[test]
    fn the_key_is_the_canonical_query() {
        let r = ContractRef::new("a.b", "1");
        let one: Value = serde_json::from_str(r#"{"nik":"1","x":2.0}"#).unwrap();
        let two: Value = serde_json::from_str(r#"{ "x": 2, "nik": "1" }"#).unwrap();
        assert_eq!(ResponseCache::key(&r, &one), ResponseCache::key(&r, &two));
        assert_ne!(
            ResponseCache::key(&r, &one),
            ResponseCache::key(&ContractRef::new("a.b", "2"), &one)
        );
    }

    #[test]
    fn a_result_weighs_its_compact_json() {
        for v in [
            json!(null),
            json!({"registered": true, "names": ["\u{20ac}", "a\"b"]}),
        ] {
            assert_eq!(json_len(&v) as usize, serde_json::to_vec(&v).unwrap().len());
        }
    }

    #[test]
    fn hit_miss_and_purge_by_contract() {
        let cache = ResponseCache::new(100, 1 << 20, labels());
        let (a, b) = (
            ResponseCache::key(&c("a"), &json!(1)).unwrap(),
            ResponseCache::key(&c("b"), &json!(1)).unwrap(),
        );
        assert!(cache.get(&a).is_none());
        cache.insert(
            a,
            c("a"),
            Arc::new(json!({"ok": true})),
            Duration::from_secs(60),
        );
        cache.insert(
            b,
            c("b"),
            Arc::new(json!({"ok": true})),
            Duration::from_secs(60),
        );
        assert_eq!(cache.get(&a).as_deref(), Some(&json!({"ok": true})));
        assert_eq!(cache.purge("a", Some("2")), 0, "no entry of a/2");
        assert_eq!(cache.purge("a", None), 1);
        assert!(cache.get(&a).is_none());
        assert!(cache.get(&b).is_some());
        assert_eq!(cache.purge("a", None), 0, "purged already");
    }

    #[test]
    fn entries_expire_after_their_contracts_ttl() {
        let cache = ResponseCache::new(100, 1 << 20, labels());
        let k = ResponseCache::key(&c("a"), &json!(1)).unwrap();
        cache.insert(k, c("a"), Arc::new(json!(1)), Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(120));
        assert!(cache.get(&k).is_none());
    }

    #[test]
    fn bounded_by_entries_and_by_bytes() {
        // 10 entries or 10 KiB, whichever is reached first.
        let cache = ResponseCache::new(10, 10 * 1024, labels());
        for i in 0..100 {
            let k = ResponseCache::key(&c("a"), &json!(i)).unwrap();
            cache.insert(k, c("a"), Arc::new(json!(i)), Duration::from_secs(60));
        }
        assert!(cache.entry_count() <= 10, "{}", cache.entry_count());
        let big = Arc::new(json!("x".repeat(4000)));
        for i in 0..100 {
            let k = ResponseCache::key(&c("b"), &json!(i)).unwrap();
            cache.insert(k, c("b"), big.clone(), Duration::from_secs(60));
        }
        assert!(
            cache.weighted_size() <= 10 * 1024,
            "{}",
            cache.weighted_size()
        );
    }
}
