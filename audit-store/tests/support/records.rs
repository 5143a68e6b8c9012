//! Records of made-up exchanges, for the audit log's tests and the `simpul audit` command
//! tests (which include this file by path).

use audit::{NewRecord, Role};
use contracts::MemberId;
use contracts::canonical::sha256_b64url;

pub const KEMLU: &str = "ID:GOV:KEMLU";
pub const DUKCAPIL: &str = "ID:GOV:DUKCAPIL";

pub fn id(s: &str) -> MemberId {
    MemberId::parse(s).unwrap()
}

/// The id of exchange `n`.
pub fn exchange_id(n: u64) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A record of exchange `n` as `member` sees it when it asks `other` (consumer) or answers
/// it (provider).
pub fn exchange(n: u64, role: Role, member: &str, other: &str) -> NewRecord {
    let (consumer, provider) = match role {
        Role::Consumer => (member, other),
        Role::Provider => (other, member),
    };
    NewRecord {
        exchange_id: exchange_id(n),
        role,
        consumer: consumer.into(),
        provider: provider.into(),
        contract: "citizenship.status".into(),
        version: "1".into(),
        purpose: "consular-protection".into(),
        request_hash: Some(sha256_b64url(format!("request {n}").as_bytes())),
        response_hash: Some(sha256_b64url(format!("answer {n}").as_bytes())),
        outcome: "ok".into(),
        latency_us: 1_000 + n,
        subject: None,
        lookup_id: None,
        peer: None,
        subsystem: None,
        user: None,
        aggregate: None,
        subjects: None,
        overlap: None,
    }
}
