//! The exchange envelopes: the signed request a consumer sends and the signed answer a
//! provider returns (PROTOCOL.md §3), and the local-face documents (§4).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::member::MemberId;

/// An exchange id: a UUID spelled one way only — lower-case and hyphenated — so the replay
/// window and both sides' audit logs can compare ids as they are given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExchangeId(uuid::Uuid);

/// An exchange id that is not a UUID in its canonical form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the exchange id is not a UUID in lower-case hyphenated form")]
pub struct NotCanonical;

impl ExchangeId {
    /// A fresh random (version 4) id.
    pub fn new() -> Self {
        ExchangeId(uuid::Uuid::new_v4())
    }

    /// Reads an id, refusing any spelling but the canonical one
    /// (`3f75eb24-c6c1-4532-88f6-bab00be95419`).
    ///
    /// # Errors
    /// [`NotCanonical`] for anything else, upper case and braces included.
    pub fn parse(s: &str) -> Result<Self, NotCanonical> {
        let id = uuid::Uuid::parse_str(s).map_err(|_| NotCanonical)?;
        let mut buf = uuid::Uuid::encode_buffer();
        if id.hyphenated().encode_lower(&mut buf) == s {
            Ok(ExchangeId(id))
        } else {
            Err(NotCanonical)
        }
    }

    /// The id as a number, for compact keys.
    pub fn as_u128(self) -> u128 {
        self.0.as_u128()
    }
}

impl Default for ExchangeId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ExchangeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// `typ` of an exchange request JWS.
pub const REQUEST_TYP: &str = "simpul-request+jws";
/// `typ` of an exchange answer JWS.
pub const ANSWER_TYP: &str = "simpul-response+jws";
/// Media type of a JWS body.
pub const JOSE_MEDIA_TYPE: &str = "application/jose";
/// `typ` of a signed tree head (PROTOCOL.md §5.2).
pub const TREE_HEAD_TYP: &str = "simpul-tree-head+jws";
/// The header in which requests and answers carry their sender's newest signed tree head
/// (PROTOCOL.md §5.4).
pub const TREE_HEAD_HEADER: &str = "simpul-tree-head";
/// The header in which a gateway states the serial of the manifest it holds, on every
/// exchange request and answer and on `GET /v1/manifest` (PROTOCOL.md §1.8): a peer that
/// holds an older one fetches the newer one from it.
pub const MANIFEST_SERIAL_HEADER: &str = "simpul-manifest-serial";
/// Media type of a problem.
pub const PROBLEM_MEDIA_TYPE: &str = "application/problem+json";

/// Largest exchange request body, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
/// Largest answer body a consumer reads, in bytes.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How far `iat` may be from the provider's clock, in seconds.
pub const CLOCK_SKEW_S: i64 = 60;
/// The longest validity `exp - iat` a request may claim, in seconds.
pub const MAX_VALIDITY_S: i64 = 300;

/// When a signed envelope says it was signed: the `iat` of a payload that is a JSON object
/// with an integer `iat`, read strictly (Encodings); `None` for any other payload, which
/// the reading of the whole payload then refuses. Read only after the signature verified,
/// to choose the key's window (PROTOCOL.md §1.5).
pub fn signed_at(payload: &[u8]) -> Option<i64> {
    #[derive(Deserialize)]
    struct Iat {
        iat: i64,
    }
    crate::json::from_slice::<Iat>(payload).ok().map(|p| p.iat)
}

/// The payload of an exchange request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeRequest {
    /// Format version, 1.
    pub v: u32,
    /// Exchange id, a UUID.
    pub id: String,
    /// Consumer member.
    pub iss: MemberId,
    /// Consumer subsystem that asked, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<MemberId>,
    /// Provider member.
    pub aud: MemberId,
    /// Contract id.
    pub contract: String,
    /// Contract version.
    pub version: String,
    /// Purpose code.
    pub purpose: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// Expires at, unix seconds.
    pub exp: i64,
    /// The question, valid against the contract's request schema.
    pub query: Value,
}

/// The payload of a signed answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeAnswer {
    /// Format version, 1.
    pub v: u32,
    /// The request's exchange id.
    pub id: String,
    /// Provider member.
    pub iss: MemberId,
    /// Consumer member.
    pub aud: MemberId,
    /// Contract id.
    pub contract: String,
    /// Contract version.
    pub version: String,
    /// base64url SHA-256 of the exact request JWS bytes.
    pub request_hash: String,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// The answer, valid against the contract's response schema.
    pub result: Value,
}

/// The payload of a signed answer as a provider writes it: an [`ExchangeAnswer`] that
/// borrows what it repeats from the request and the result instead of copying them, and
/// is serialised to exactly the same bytes (a test holds the two together).
#[derive(Clone, Copy, Debug, Serialize)]
pub struct AnswerPayload<'a> {
    /// Format version, 1.
    pub v: u32,
    /// The request's exchange id.
    pub id: &'a str,
    /// Provider member.
    pub iss: &'a MemberId,
    /// Consumer member.
    pub aud: &'a MemberId,
    /// Contract id.
    pub contract: &'a str,
    /// Contract version.
    pub version: &'a str,
    /// base64url SHA-256 of the exact request JWS bytes.
    pub request_hash: &'a str,
    /// Issued at, unix seconds.
    pub iat: i64,
    /// The answer, valid against the contract's response schema.
    pub result: &'a Value,
}

/// A local-face query: what a member's own system sends its gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalQuery {
    /// Purpose code.
    pub purpose: String,
    /// The question.
    pub query: Value,
}

/// The signed envelopes of one exchange, kept as evidence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The request JWS as sent.
    pub request: String,
    /// The answer JWS as received.
    pub response: String,
}

/// A local-face answer for a single contract.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalAnswer {
    /// Exchange id.
    pub exchange_id: String,
    /// Provider member.
    pub provider: MemberId,
    /// The verified result.
    pub result: Value,
    /// The signed envelopes.
    pub evidence: Evidence,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exchange_id_has_one_spelling() {
        let id = ExchangeId::new();
        assert_eq!(ExchangeId::parse(&id.to_string()), Ok(id));
        let s = "3f75eb24-c6c1-4532-88f6-bab00be95419";
        assert_eq!(ExchangeId::parse(s).unwrap().to_string(), s);
        for other in [
            "3F75EB24-C6C1-4532-88F6-BAB00BE95419",
            "3f75eb24c6c1453288f6bab00be95419",
            "{3f75eb24-c6c1-4532-88f6-bab00be95419}",
            "urn:uuid:3f75eb24-c6c1-4532-88f6-bab00be95419",
            "",
        ] {
            assert_eq!(ExchangeId::parse(other), Err(NotCanonical), "{other}");
        }
    }

    #[test]
    fn an_answer_payload_is_written_as_the_exchange_answer_it_stands_for() {
        let owned = ExchangeAnswer {
            v: 1,
            id: "3f75eb24-c6c1-4532-88f6-bab00be95419".into(),
            iss: MemberId::parse("ID:GOV:DUKCAPIL").unwrap(),
            aud: MemberId::parse("ID:GOV:KEMLU").unwrap(),
            contract: "citizenship.status".into(),
            version: "1".into(),
            request_hash: "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg".into(),
            iat: 1_796_000_000,
            result: serde_json::json!({"registered": true, "names": ["a", "\u{20ac}"]}),
        };
        let borrowed = AnswerPayload {
            v: owned.v,
            id: &owned.id,
            iss: &owned.iss,
            aud: &owned.aud,
            contract: &owned.contract,
            version: &owned.version,
            request_hash: &owned.request_hash,
            iat: owned.iat,
            result: &owned.result,
        };
        let bytes = serde_json::to_vec(&borrowed).unwrap();
        assert_eq!(bytes, serde_json::to_vec(&owned).unwrap());
        assert_eq!(
            serde_json::from_slice::<ExchangeAnswer>(&bytes).unwrap(),
            owned
        );
    }
}
