//! The audit record of PROTOCOL.md §5, what a caller hands the log to append, and the
//! evidence kept beside it.

use std::fmt;

use serde::de::{Error as _, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

/// Most item subjects one record holds ([`AuditRecord::subjects`]): the most items a batch
/// contract may carry in one exchange. A record with that many is about 460 KB of JSON,
/// within an export line ([`crate::export::MAX_LINE`]).
pub const MAX_SUBJECTS: usize = contracts::contract::MAX_BATCH_ITEMS as usize;

/// Most groups a record's overlap figures name ([`OverlapFigures::groups`], and as many
/// `overlaps`): the most an overlap run may have (an overlap contract's `max_groups` is at
/// most 256, PROTOCOL.md §2.7). A record read with more — from an export, a journal frame or
/// a store's row — is refused as it is read, and the log refuses to append one.
pub const MAX_OVERLAP_GROUPS: usize = 256;

/// One audit record (PROTOCOL.md §5): a leaf of the log's Merkle tree, whose leaf hash is
/// `SHA-256(0x00 ‖ JCS(record))` ([`crate::merkle::leaf_hash`]). Every field is always
/// present in its JSON form (`null` for an absent option) but the later ones (`lookup_id`,
/// `peer`, `subsystem`, `user`, `aggregate`, `subjects`, `overlap`), which are left out when
/// absent, so
/// the canonical bytes are fixed by the values alone and records written before a field
/// existed hash as they did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// 0-based leaf index in this gateway's log.
    pub seq: u64,
    /// Unix milliseconds when it was appended.
    pub ts: i64,
    /// The exchange id; `""` when a refusal happened before an id was read.
    pub exchange_id: String,
    /// Which side of the exchange this gateway was.
    pub role: Role,
    /// The consumer member id (`""` if unknown at refusal time).
    pub consumer: String,
    /// The provider member id.
    pub provider: String,
    /// Contract id.
    pub contract: String,
    /// Contract version.
    pub version: String,
    /// Purpose code.
    pub purpose: String,
    /// base64url SHA-256 of the request JWS bytes.
    pub request_hash: Option<String>,
    /// base64url SHA-256 of the answer JWS bytes (`None` on refusal).
    pub response_hash: Option<String>,
    /// `ok`, or the problem code of the refusal (`replay`, `forbidden`, …).
    pub outcome: String,
    /// How long the exchange took on this gateway, in microseconds.
    pub latency_us: u64,
    /// base64url HMAC-SHA256, under the gateway's audit secret, of the JCS array of the
    /// values at the contract's `personal_data` pointers; `None` when there are none.
    pub subject: Option<String>,
    /// The id of the federated lookup this exchange is a part of, so an auditor can group
    /// the parts of one lookup. Absent (not `null`) when the exchange is not a part: a
    /// record without it has the same canonical bytes as before the field existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lookup_id: Option<String>,
    /// The identity the other side authenticated with over TLS (PROTOCOL.md §1.1): on the
    /// provider, the consumer gateway's client certificate, whatever the request claims; on
    /// the consumer, the provider gateway's server certificate, once it answered. Absent when
    /// no connection was authenticated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// On the consumer, the member system that asked through the local face. Absent on the
    /// provider and on refusals before the caller was known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    /// On the consumer, the end user the member system named (PROTOCOL.md §4.2), as a
    /// base64url HMAC-SHA256 under the log's secret — never in clear. Absent when none was
    /// named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// On a record that stands for many refusals made before a request was authenticated
    /// (PROTOCOL.md §5.1): how many, in which minute, with how many body bytes. Absent (not
    /// `null`) on the record of one exchange, so such records hash as before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Aggregate>,
    /// On the record of an exchange of a batch contract (one whose document has `batch`:
    /// many people in one exchange): the subject of every item, each computed as `subject`
    /// is for one person, sorted and without duplicates — the items' order is not kept, as
    /// it would say which row of the exchange was whom. `subject` is then `None`. Absent
    /// (not `null`) on every other record, and when no item had personal data, so such
    /// records hash as before it existed. At most [`MAX_SUBJECTS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subjects: Option<Vec<String>>,
    /// On the record of an overlap run or of its report (PROTOCOL.md §2.7): the run's
    /// figures, never its points. Absent (not `null`) on every other record, so such records
    /// hash as before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlap: Option<OverlapFigures>,
}

/// The figures of an overlap run (PROTOCOL.md §2.7), never its points: on a run's record, the
/// sizes its envelopes announced (and, at the consumer, the overlaps it counted); on a
/// report's record, what the report says. Each list holds at most [`MAX_OVERLAP_GROUPS`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlapFigures {
    /// Distinct identifiers in each of the consumer's groups, in the run's order.
    #[serde(deserialize_with = "counts")]
    pub groups: Vec<u64>,
    /// Distinct identifiers in the provider's list, once its answer announced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theirs: Option<u64>,
    /// Per group, how many are on the provider's list, where this side knows it.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "some_counts"
    )]
    pub overlaps: Option<Vec<u64>>,
}

impl OverlapFigures {
    /// Whether a reader of the log takes them: at most [`MAX_OVERLAP_GROUPS`] groups and as
    /// many overlaps (every reader), and every count below 2^53 (I-JSON, as `simpul audit
    /// verify` reads an export). The log refuses to append figures that fail this.
    ///
    /// # Errors
    /// What is out of bounds.
    pub fn check(&self) -> Result<(), String> {
        let overlaps = self.overlaps.as_deref().unwrap_or_default();
        for (what, list) in [("groups", self.groups.as_slice()), ("overlaps", overlaps)] {
            if list.len() > MAX_OVERLAP_GROUPS {
                return Err(format!(
                    "{} {what}, more than {MAX_OVERLAP_GROUPS}",
                    list.len()
                ));
            }
        }
        let counts = self.groups.iter().chain(overlaps).chain(&self.theirs);
        match counts.max() {
            Some(&n) if n > contracts::json::MAX_SAFE_INTEGER => {
                Err(format!("a count of {n}, beyond 2^53 - 1"))
            }
            _ => Ok(()),
        }
    }
}

/// Reads an array of at most [`MAX_OVERLAP_GROUPS`] counts, refusing a longer one as soon as
/// its next element arrives.
fn counts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u64>, D::Error> {
    struct Counts;
    impl<'de> Visitor<'de> for Counts {
        type Value = Vec<u64>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an array of at most {MAX_OVERLAP_GROUPS} counts")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u64>, A::Error> {
            let hint = seq.size_hint().unwrap_or(0).min(MAX_OVERLAP_GROUPS);
            let mut out = Vec::with_capacity(hint);
            while let Some(n) = seq.next_element()? {
                if out.len() == MAX_OVERLAP_GROUPS {
                    return Err(A::Error::custom(format_args!(
                        "more than {MAX_OVERLAP_GROUPS} groups"
                    )));
                }
                out.push(n);
            }
            Ok(out)
        }
    }
    d.deserialize_seq(Counts)
}

/// [`counts`], for an optional array.
fn some_counts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u64>>, D::Error> {
    struct Counts(Vec<u64>);
    impl<'de> Deserialize<'de> for Counts {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            counts(d).map(Counts)
        }
    }
    Ok(Option::<Counts>::deserialize(d)?.map(|c| c.0))
}

/// What one aggregate record of refusals before authentication counts: every refusal of
/// one consumer (the TLS peer's identity), contract reference and outcome in one minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// The minute the refusals fell in: Unix milliseconds of its start (a multiple of
    /// 60,000).
    pub minute: i64,
    /// How many refusals (at least 1).
    pub count: u64,
    /// The request body bytes read in full among them, summed; a body refused while it was
    /// being read counts 0.
    pub body_bytes: u64,
}

/// The side of an exchange a record was written by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The gateway answered.
    Provider,
    /// The gateway asked.
    Consumer,
}

impl Role {
    /// `provider` or `consumer`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Consumer => "consumer",
        }
    }

    /// The stored text back; `None` for anything else.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "provider" => Some(Role::Provider),
            "consumer" => Some(Role::Consumer),
            _ => None,
        }
    }
}

/// Everything of a record but `seq` and `ts`, which the log assigns when it commits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRecord {
    /// See [`AuditRecord::exchange_id`].
    pub exchange_id: String,
    /// See [`AuditRecord::role`].
    pub role: Role,
    /// See [`AuditRecord::consumer`].
    pub consumer: String,
    /// See [`AuditRecord::provider`].
    pub provider: String,
    /// See [`AuditRecord::contract`].
    pub contract: String,
    /// See [`AuditRecord::version`].
    pub version: String,
    /// See [`AuditRecord::purpose`].
    pub purpose: String,
    /// See [`AuditRecord::request_hash`].
    pub request_hash: Option<String>,
    /// See [`AuditRecord::response_hash`].
    pub response_hash: Option<String>,
    /// See [`AuditRecord::outcome`].
    pub outcome: String,
    /// See [`AuditRecord::latency_us`].
    pub latency_us: u64,
    /// See [`AuditRecord::subject`].
    pub subject: Option<String>,
    /// See [`AuditRecord::lookup_id`].
    pub lookup_id: Option<String>,
    /// See [`AuditRecord::peer`].
    pub peer: Option<String>,
    /// See [`AuditRecord::subsystem`].
    pub subsystem: Option<String>,
    /// See [`AuditRecord::user`].
    pub user: Option<String>,
    /// See [`AuditRecord::aggregate`].
    pub aggregate: Option<Aggregate>,
    /// See [`AuditRecord::subjects`]: sorted and stripped of duplicates when the record is
    /// made ([`NewRecord::into_record`]), and left out when empty.
    pub subjects: Option<Vec<String>>,
    /// See [`AuditRecord::overlap`]: figures that fail [`OverlapFigures::check`] (more than
    /// [`MAX_OVERLAP_GROUPS`] groups) are refused by the log.
    pub overlap: Option<OverlapFigures>,
}

impl NewRecord {
    /// The record this becomes at `seq`, appended at `ts`; its `subjects` sorted, without
    /// duplicates, and `None` when there are none.
    pub fn into_record(self, seq: u64, ts: i64) -> AuditRecord {
        AuditRecord {
            seq,
            ts,
            exchange_id: self.exchange_id,
            role: self.role,
            consumer: self.consumer,
            provider: self.provider,
            contract: self.contract,
            version: self.version,
            purpose: self.purpose,
            request_hash: self.request_hash,
            response_hash: self.response_hash,
            outcome: self.outcome,
            latency_us: self.latency_us,
            subject: self.subject,
            lookup_id: self.lookup_id,
            peer: self.peer,
            subsystem: self.subsystem,
            user: self.user,
            aggregate: self.aggregate,
            subjects: self.subjects.and_then(|mut subjects| {
                subjects.sort_unstable();
                subjects.dedup();
                (!subjects.is_empty()).then_some(subjects)
            }),
            overlap: self.overlap,
        }
    }
}

/// The signed envelopes of one exchange, kept as evidence for a dispute; their SHA-256
/// hashes are the record's `request_hash` and `response_hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredEvidence {
    /// The exchange id.
    pub exchange_id: String,
    /// The request JWS, as received or sent.
    pub request: String,
    /// The answer JWS, if there was one.
    pub response: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{ExportLine, ExportedRecord, MAX_LINE, read_line, write_line};
    use crate::merkle::leaf_hash;
    use contracts::canonical::canonical_json;

    /// A provider's record of one `citizenship.status` exchange, as a gateway wrote it before
    /// `subjects` existed.
    fn single() -> AuditRecord {
        AuditRecord {
            seq: 7,
            ts: 1_796_236_012_331,
            exchange_id: "0193a6f2-5b7c-4d2e-9f10-6a8b3c4d5e6f".into(),
            role: Role::Provider,
            consumer: "ID:GOV:KEMLU".into(),
            provider: "ID:GOV:DUKCAPIL".into(),
            contract: "citizenship.status".into(),
            version: "1".into(),
            purpose: "citizen-protection".into(),
            request_hash: Some("q0xxIhF0V1WrOFaMIZmjTUdGykz3YWvr0DjGbbOMhlI".into()),
            response_hash: None,
            outcome: "ok".into(),
            latency_us: 1840,
            subject: Some("hXr5ZJzq9lU2lMYs4m5oF9RzKX1mNQFQb7d9v6o7A5E".into()),
            lookup_id: None,
            peer: Some("ID:GOV:KEMLU".into()),
            subsystem: None,
            user: None,
            aggregate: None,
            subjects: None,
            overlap: None,
        }
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A subject-like value: 43 characters of base64url.
    fn subject(n: usize) -> String {
        format!("{n:0>43}")
    }

    fn new_record(subjects: Option<Vec<String>>) -> NewRecord {
        let r = single();
        NewRecord {
            exchange_id: r.exchange_id,
            role: r.role,
            consumer: r.consumer,
            provider: r.provider,
            contract: "identity.verify".into(),
            version: r.version,
            purpose: r.purpose,
            request_hash: r.request_hash,
            response_hash: r.response_hash,
            outcome: r.outcome,
            latency_us: r.latency_us,
            subject: None,
            lookup_id: None,
            peer: r.peer,
            subsystem: None,
            user: None,
            aggregate: None,
            subjects,
            overlap: None,
        }
    }

    #[test]
    fn a_record_without_subjects_keeps_its_canonical_bytes_and_leaf_hash() {
        let record = single();
        let bytes = canonical_json(&record).unwrap();
        // Both fixed independently of this code (Python's sorted, compact JSON and SHA-256).
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"consumer":"ID:GOV:KEMLU","contract":"citizenship.status","exchange_id":"0193a6f2-5b7c-4d2e-9f10-6a8b3c4d5e6f","latency_us":1840,"outcome":"ok","peer":"ID:GOV:KEMLU","provider":"ID:GOV:DUKCAPIL","purpose":"citizen-protection","request_hash":"q0xxIhF0V1WrOFaMIZmjTUdGykz3YWvr0DjGbbOMhlI","response_hash":null,"role":"provider","seq":7,"subject":"hXr5ZJzq9lU2lMYs4m5oF9RzKX1mNQFQb7d9v6o7A5E","ts":1796236012331,"version":"1"}"#
        );
        assert_eq!(
            hex(&leaf_hash(&record).unwrap()),
            "cc097ac39a89ee0d6b9f4fc4eb31c626d04e19fb2c6f6ca7f9a6ec7d0c2b9370"
        );
        // Read back from JSON written before the field existed, it is the same record.
        let text = serde_json::to_string(&record).unwrap();
        assert!(!text.contains("subjects"), "{text}");
        let read: AuditRecord = serde_json::from_str(&text).unwrap();
        assert_eq!(read, record);
    }

    #[test]
    fn a_new_records_item_subjects_are_sorted_and_distinct_and_absent_when_there_are_none() {
        let asked = vec![subject(3), subject(1), subject(2), subject(1), subject(3)];
        let record = new_record(Some(asked)).into_record(0, 1);
        assert_eq!(
            record.subjects,
            Some(vec![subject(1), subject(2), subject(3)])
        );
        assert_eq!(
            new_record(Some(Vec::new())).into_record(0, 1).subjects,
            None
        );
        assert_eq!(new_record(None).into_record(0, 1).subjects, None);
        // They are hashed: a record that names other people is another leaf.
        let other = new_record(Some(vec![subject(1), subject(2)])).into_record(0, 1);
        assert_ne!(leaf_hash(&record).unwrap(), leaf_hash(&other).unwrap());
        let text = String::from_utf8(canonical_json(&record).unwrap()).unwrap();
        assert!(
            text.contains(&format!(
                r#""subjects":["{}","{}","{}"]"#,
                subject(1),
                subject(2),
                subject(3)
            )),
            "{text}"
        );
    }

    /// The provider's record of a run of `placement.overlap` with two groups, as BP2MI
    /// would write it: the sizes the envelopes announced, not the overlaps it cannot know.
    fn run() -> AuditRecord {
        AuditRecord {
            provider: "ID:GOV:BP2MI".into(),
            contract: "placement.overlap".into(),
            purpose: "statistics".into(),
            response_hash: Some("hXr5ZJzq9lU2lMYs4m5oF9RzKX1mNQFQb7d9v6o7A5E".into()),
            subject: None,
            overlap: Some(OverlapFigures {
                groups: vec![2474, 1079],
                theirs: Some(3933),
                overlaps: None,
            }),
            ..single()
        }
    }

    #[test]
    fn a_runs_overlap_figures_are_hashed_with_its_record_and_read_back() {
        let provider = run();
        let mut consumer = run();
        consumer.role = Role::Consumer;
        consumer.peer = Some("ID:GOV:BP2MI".into());
        consumer.overlap.as_mut().unwrap().overlaps = Some(vec![847, 491]);
        // Fixed independently of this code (Python's sorted, compact JSON and SHA-256).
        for (record, bytes, hash) in [
            (
                &provider,
                r#"{"consumer":"ID:GOV:KEMLU","contract":"placement.overlap","exchange_id":"0193a6f2-5b7c-4d2e-9f10-6a8b3c4d5e6f","latency_us":1840,"outcome":"ok","overlap":{"groups":[2474,1079],"theirs":3933},"peer":"ID:GOV:KEMLU","provider":"ID:GOV:BP2MI","purpose":"statistics","request_hash":"q0xxIhF0V1WrOFaMIZmjTUdGykz3YWvr0DjGbbOMhlI","response_hash":"hXr5ZJzq9lU2lMYs4m5oF9RzKX1mNQFQb7d9v6o7A5E","role":"provider","seq":7,"subject":null,"ts":1796236012331,"version":"1"}"#,
                "cf0b8b54cb6de8c201c3abc58191f02ae8bffde4c4bfca29fdad0178d7439c18",
            ),
            (
                &consumer,
                r#"{"consumer":"ID:GOV:KEMLU","contract":"placement.overlap","exchange_id":"0193a6f2-5b7c-4d2e-9f10-6a8b3c4d5e6f","latency_us":1840,"outcome":"ok","overlap":{"groups":[2474,1079],"overlaps":[847,491],"theirs":3933},"peer":"ID:GOV:BP2MI","provider":"ID:GOV:BP2MI","purpose":"statistics","request_hash":"q0xxIhF0V1WrOFaMIZmjTUdGykz3YWvr0DjGbbOMhlI","response_hash":"hXr5ZJzq9lU2lMYs4m5oF9RzKX1mNQFQb7d9v6o7A5E","role":"consumer","seq":7,"subject":null,"ts":1796236012331,"version":"1"}"#,
                "7115143759aa23d9aa49932799320e0d890e383cb55138f20faefa7887368f37",
            ),
        ] {
            assert_eq!(
                String::from_utf8(canonical_json(record).unwrap()).unwrap(),
                bytes
            );
            assert_eq!(hex(&leaf_hash(record).unwrap()), hash);
            let text = serde_json::to_string(record).unwrap();
            let read: AuditRecord = serde_json::from_str(&text).unwrap();
            assert_eq!(&read, record);
        }
        // Other figures are another leaf.
        let mut other = run();
        other.overlap.as_mut().unwrap().groups = vec![2474, 1080];
        assert_ne!(leaf_hash(&other).unwrap(), leaf_hash(&provider).unwrap());
        // A new record carries them as they are.
        let mut new = new_record(None);
        new.overlap = consumer.overlap.clone();
        assert_eq!(new.into_record(0, 1).overlap, consumer.overlap);
    }

    /// `run()`'s JSON with its figures replaced by `figures`.
    fn with_figures(figures: &str) -> String {
        let text = serde_json::to_string(&run()).unwrap();
        let at = text.find(r#""overlap":"#).unwrap();
        let end = at + text[at..].find('}').unwrap() + 1;
        format!("{}\"overlap\":{figures}{}", &text[..at], &text[end..])
    }

    #[test]
    fn overlap_figures_of_more_groups_than_a_run_has_are_refused_as_they_are_read() {
        assert_eq!(
            MAX_OVERLAP_GROUPS,
            contracts::psi::Limits::default().max_groups,
            "the most groups an overlap contract allows"
        );
        let counts = |n: usize| {
            let list: Vec<String> = (0..n).map(|i| (1_000 + i).to_string()).collect();
            format!("[{}]", list.join(","))
        };
        let most = counts(MAX_OVERLAP_GROUPS);
        let over = counts(MAX_OVERLAP_GROUPS + 1);
        let read = |figures: &str| serde_json::from_str::<AuditRecord>(&with_figures(figures));
        let full = read(&format!(r#"{{"groups":{most},"overlaps":{most}}}"#)).unwrap();
        let figures = full.overlap.unwrap();
        assert_eq!(figures.groups.len(), MAX_OVERLAP_GROUPS);
        assert_eq!(figures.check(), Ok(()));
        for refused in [
            format!(r#"{{"groups":{over}}}"#),
            format!(r#"{{"groups":[1],"overlaps":{over}}}"#),
        ] {
            let e = read(&refused).unwrap_err().to_string();
            assert!(e.contains("more than 256 groups"), "{e}");
        }
        // As an export line, whose record is read through its tagged line.
        let line = |figures: &str| {
            format!(
                r#"{{"type":"record","record":{},"leaf_hash":null}}"#,
                with_figures(figures)
            )
        };
        let exported = line(&format!(r#"{{"groups":{most},"theirs":5}}"#));
        assert!(serde_json::from_str::<ExportLine>(&exported).is_ok());
        let e = serde_json::from_str::<ExportLine>(&line(&format!(r#"{{"groups":{over}}}"#)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("more than 256 groups"), "{e}");
        // Nothing but the three figures; groups are required, counts are whole numbers.
        for refused in [
            r#"{"groups":[1],"points":["AAAA"]}"#,
            r#"{"theirs":1}"#,
            r#"{"groups":[-1]}"#,
            r#"{"groups":[1.5]}"#,
            r#"{"groups":"1"}"#,
        ] {
            assert!(read(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn overlap_figures_a_reader_would_refuse_fail_their_check() {
        let figures = |groups: usize, overlaps: Option<usize>, theirs: u64| OverlapFigures {
            groups: vec![1_000; groups],
            theirs: Some(theirs),
            overlaps: overlaps.map(|n| vec![10; n]),
        };
        let most = MAX_OVERLAP_GROUPS;
        assert_eq!(figures(most, Some(most), 1 << 52).check(), Ok(()));
        assert_eq!(figures(1, None, 1).check(), Ok(()));
        assert_eq!(
            figures(most + 1, None, 1).check(),
            Err("257 groups, more than 256".into())
        );
        assert_eq!(
            figures(1, Some(most + 1), 1).check(),
            Err("257 overlaps, more than 256".into())
        );
        assert_eq!(
            figures(1, None, 1 << 53).check(),
            Err("a count of 9007199254740992, beyond 2^53 - 1".into())
        );
    }

    #[test]
    fn a_record_of_the_most_item_subjects_fits_an_export_line_and_reads_back() {
        let subjects = (0..MAX_SUBJECTS).map(subject).collect();
        let record = new_record(Some(subjects)).into_record(9, 1);
        let line = ExportLine::Record(ExportedRecord {
            record: record.clone(),
            leaf_hash: None,
        });
        let mut out = Vec::new();
        write_line(&mut out, &line).unwrap();
        assert!(out.len() < MAX_LINE, "{} bytes", out.len());
        let mut buf = Vec::new();
        assert!(read_line(&mut out.as_slice(), &mut buf).unwrap());
        let read: ExportLine = serde_json::from_slice(&buf).unwrap();
        assert_eq!(read, line);
    }
}
