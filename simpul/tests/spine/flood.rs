//! What a certified peer can make a provider keep without authenticating anything (issue
//! #10, item 4): refusals before the signature verifies are counted into one aggregate
//! record per peer, contract reference, outcome and minute — appended when the minute
//! closes or the gateway stops — not one record per request; no path text and no body is
//! kept; a per-peer admission limit refuses a flood with 429 before reading it; and the
//! store's size is a metric with an alarm.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use contracts::envelope::{JOSE_MEDIA_TYPE, REQUEST_TYP};
use contracts::{Algorithm, SigningKey};
use gateway::client::{PeerClient, Reply};
use http::Method;
use serde_json::Value;

use crate::common::*;

const GARBAGE: usize = 150;
const UNKNOWN_PATHS: usize = 100;
const WRONG_TYPE: usize = 50;
const UNKNOWN_KEY: usize = 50;
const LEGITIMATE: usize = 10;
const GARBAGE_BYTES: usize = 2_000;

async fn post(client: &PeerClient, url: &str, content_type: &str, body: impl Into<Bytes>) -> Reply {
    client
        .call(
            Method::POST,
            url,
            content_type,
            body.into(),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
}

/// Dukcapil's records from `from` on that are aggregates of `consumer`'s refusals, summed
/// by (contract, outcome): (count, body bytes, records).
fn aggregates(records: &[Value], consumer: &str) -> BTreeMap<(String, String), (u64, u64, usize)> {
    let mut sums = BTreeMap::new();
    for r in records.iter().filter(|r| r["consumer"] == consumer) {
        let a = &r["aggregate"];
        assert!(a.is_object(), "a record per request: {r}");
        assert_eq!(r["exchange_id"], "", "{r}");
        assert_eq!(r["request_hash"], Value::Null, "{r}");
        assert_eq!(r["role"], "provider", "{r}");
        assert_eq!(a["minute"].as_i64().unwrap() % 60_000, 0, "{r}");
        let key = (
            r["contract"].as_str().unwrap().to_owned(),
            r["outcome"].as_str().unwrap().to_owned(),
        );
        let entry = sums.entry(key).or_insert((0, 0, 0));
        entry.0 += a["count"].as_u64().unwrap();
        entry.1 += a["body_bytes"].as_u64().unwrap();
        entry.2 += 1;
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_unauthenticated_requests_adds_bounded_aggregates_and_others_still_exchange() {
    let mut f = Federation::start().await;
    let before = f.all_records(DUKCAPIL).await.len();
    let flooder = f.as_gateway(BP2MI, DUKCAPIL);
    let base = f.url(DUKCAPIL);
    let known = format!("{base}/v1/exchange/citizenship.status/1");
    let unknown = format!(
        "{base}/v1/exchange/no.such.contract-{}/{}",
        "z".repeat(200),
        "9".repeat(100)
    );
    let garbage = "x".repeat(GARBAGE_BYTES);
    // Signed well, by a key no manifest lists.
    let stranger = SigningKey::generate(Algorithm::ES256, BP2MI).unwrap();
    let unknown_key = {
        let request = f.nik_request(
            BP2MI,
            DUKCAPIL,
            "citizenship.status",
            "placement-verification",
        );
        stranger
            .sign(REQUEST_TYP, &serde_json::to_vec(&request).unwrap())
            .unwrap()
    };
    let flood = async {
        for _ in 0..GARBAGE {
            let r = post(&flooder, &known, JOSE_MEDIA_TYPE, garbage.clone()).await;
            assert_problem(&r, 400, "malformed");
        }
        for _ in 0..UNKNOWN_PATHS {
            let r = post(&flooder, &unknown, JOSE_MEDIA_TYPE, garbage.clone()).await;
            assert_problem(&r, 400, "malformed");
        }
        for _ in 0..WRONG_TYPE {
            let r = post(&flooder, &known, "application/json", garbage.clone()).await;
            assert_problem(&r, 415, "unsupported-media-type");
        }
        for _ in 0..UNKNOWN_KEY {
            let r = post(&flooder, &known, JOSE_MEDIA_TYPE, unknown_key.clone()).await;
            assert_problem(&r, 401, "bad-signature");
        }
    };
    let legitimate = async {
        let mut ids = Vec::new();
        for _ in 0..LEGITIMATE {
            let request = f.citizenship_request();
            assert_ok(&f.send_signed(KEMLU, &request).await);
            ids.push(request.id);
        }
        ids
    };
    let ((), exchanged) = tokio::join!(flood, legitimate);

    // Until a minute closes, nothing of the flood is in the log (a minute may have closed
    // during the test: then at most one aggregate per contract and outcome so far).
    let records = f.all_records(DUKCAPIL).await;
    let so_far = records[before..]
        .iter()
        .filter(|r| r["consumer"] == BP2MI)
        .count();
    assert!(
        so_far <= 4,
        "{so_far} records of the flood before the minute closed"
    );

    // Stopping appends what was counted; the restarted gateway serves the log.
    f.stop(DUKCAPIL).await;
    f.restart(DUKCAPIL).await;
    let records = f.all_records(DUKCAPIL).await;
    let new = &records[before..];
    let sums = aggregates(new, BP2MI);
    let key = |contract: &str, outcome: &str| (contract.to_owned(), outcome.to_owned());
    let garbage_bytes = GARBAGE_BYTES as u64;
    assert_eq!(
        sums.iter()
            .map(|(k, (count, bytes, _))| (k.clone(), (*count, *bytes)))
            .collect::<BTreeMap<_, _>>(),
        BTreeMap::from([
            (
                key("citizenship.status", "malformed"),
                (GARBAGE as u64, GARBAGE as u64 * garbage_bytes)
            ),
            // The unknown path's text is never recorded.
            (
                key("", "malformed"),
                (UNKNOWN_PATHS as u64, UNKNOWN_PATHS as u64 * garbage_bytes)
            ),
            (
                key("citizenship.status", "unsupported-media-type"),
                (WRONG_TYPE as u64, WRONG_TYPE as u64 * garbage_bytes)
            ),
            (
                key("citizenship.status", "bad-signature"),
                (
                    UNKNOWN_KEY as u64,
                    UNKNOWN_KEY as u64 * unknown_key.len() as u64
                )
            ),
        ]),
        "{new:#?}"
    );
    // Bounded by outcomes × contracts × minutes: at most two minutes in this test.
    let flood_records: usize = sums.values().map(|(_, _, n)| n).sum();
    assert!(flood_records <= 2 * sums.len(), "{flood_records} records");
    for r in new {
        assert!(
            !r.to_string().contains("no.such.contract"),
            "the path text is in the record: {r}"
        );
    }
    // The other member's exchanges were all answered and recorded one by one.
    for id in &exchanged {
        let mine = f.records(DUKCAPIL, id).await;
        assert_eq!(mine.len(), 1, "{id}");
        assert_eq!(mine[0]["outcome"], "ok");
        assert!(mine[0].get("aggregate").is_none(), "{}", mine[0]);
    }
    // Nothing unauthenticated is kept as evidence.
    let evidence = f.audit_get(DUKCAPIL, "/audit/evidence?exchange_id=").await;
    assert_eq!(
        evidence.status, 404,
        "no evidence of unauthenticated requests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_admission_limit_is_refused_with_429_before_its_body_is_read() {
    let mut f = Federation::start_with(Options {
        edits: vec![{
            let (old, new) = dukcapil_limits(
                "admission_per_peer = { per_second = 1, burst = 3 }, admission_per_address = { per_second = 1, burst = 5 }",
            );
            (old, format!("{new}\naudit = {{ size_alarm_bytes = 1 }}"))
        }],
        ..Options::default()
    })
    .await;
    let before = f.all_records(DUKCAPIL).await.len();
    let url = format!("{}/v1/exchange/citizenship.status/1", f.url(DUKCAPIL));
    let kemlu = f.as_gateway(KEMLU, DUKCAPIL);
    let bp2mi = f.as_gateway(BP2MI, DUKCAPIL);
    // Unsigned bodies: quick to refuse, so the whole burst falls within one second.
    for _ in 0..3 {
        assert_problem(
            &post(&kemlu, &url, JOSE_MEDIA_TYPE, "x").await,
            400,
            "malformed",
        );
    }
    let over = post(&kemlu, &url, JOSE_MEDIA_TYPE, "x").await;
    let p = assert_problem(&over, 429, "rate-limited");
    assert!(
        p.detail.contains("limits.admission_per_peer"),
        "{}",
        p.detail
    );
    assert_eq!(p.exchange_id, None);
    assert_eq!(p.retry_after, Some(1));
    assert_eq!(
        over.headers
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        Some("1")
    );
    // Another identity has its own quota, but the address is shared: 3 of its 5 are spent.
    for _ in 0..2 {
        assert_problem(
            &post(&bp2mi, &url, JOSE_MEDIA_TYPE, "x").await,
            400,
            "malformed",
        );
    }
    let p = assert_problem(
        &post(&bp2mi, &url, JOSE_MEDIA_TYPE, "x").await,
        429,
        "rate-limited",
    );
    assert!(
        p.detail.contains("limits.admission_per_address"),
        "{}",
        p.detail
    );
    let refused = |limit: &'static str| {
        let f = &f;
        async move {
            f.counter(
                DUKCAPIL,
                "simpul_admission_refused_total",
                &[&format!("limit=\"{limit}\"")],
            )
            .await
        }
    };
    assert_eq!(refused("admission_per_peer").await, 1.0);
    assert_eq!(refused("admission_per_address").await, 1.0);
    // Any store is over a one-byte alarm; the scrape measures it.
    assert!(f.counter(DUKCAPIL, "simpul_audit_store_bytes", &[]).await > 0.0);
    assert_eq!(
        f.counter(DUKCAPIL, "simpul_audit_size_alarm", &[]).await,
        1.0
    );
    assert_eq!(f.counter(BP2MI, "simpul_audit_size_alarm", &[]).await, 0.0);
    // The admission refusals are counted with the others before authentication.
    f.stop(DUKCAPIL).await;
    f.restart(DUKCAPIL).await;
    let records = f.all_records(DUKCAPIL).await;
    let new = &records[before..];
    for (consumer, malformed) in [(KEMLU, 3), (BP2MI, 2)] {
        let sums = aggregates(new, consumer);
        let count = |outcome: &str| {
            sums.get(&("citizenship.status".to_owned(), outcome.to_owned()))
                .map_or(0, |s| s.0)
        };
        assert_eq!(
            (count("malformed"), count("rate-limited")),
            (malformed, 1),
            "{new:#?}"
        );
    }
}
