//! The audit record of PROTOCOL.md §5, what a caller hands the log to append, and the
//! evidence kept beside it.

use serde::{Deserialize, Serialize};

/// One audit record (PROTOCOL.md §5): a leaf of the log's Merkle tree, whose leaf hash is
/// `SHA-256(0x00 ‖ JCS(record))` ([`crate::merkle::leaf_hash`]). Every field is always
/// present in its JSON form (`null` for an absent option) but the later ones (`lookup_id`,
/// `peer`, `subsystem`, `user`, `aggregate`), which are left out when absent, so the
/// canonical bytes are fixed by the values alone and records written before a field existed
/// hash as they did.
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
}

impl NewRecord {
    /// The record this becomes at `seq`, appended at `ts`.
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
