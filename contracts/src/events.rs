//! Change notifications (PROTOCOL.md §2.8): an event contract's terms, the event its provider
//! signs once, and the delivery exchange that carries events to a subscriber with its receipt.
//!
//! An event is signed once, when it is emitted, and never changes. A delivery is an ordinary
//! exchange (§3) in which the event contract's provider asks and the subscriber answers: its
//! signed request names the subscriber as `aud` and carries events in `query`, and the
//! subscriber's signed answer is the receipt. So a delivery has its own exchange id, freshness
//! and replay window, and a record at both ends, like any exchange.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::sha256_b64url;
use crate::manifest::Manifest;
use crate::member::MemberId;
use crate::{Contract, ParsedJws};

/// `typ` of a signed event.
pub const EVENT_TYP: &str = "simpul-event+jws";

/// The most events one delivery carries.
pub const MAX_EVENTS_PER_DELIVERY: usize = 64;

/// The most expiry notices one delivery carries.
pub const MAX_NOTICES_PER_DELIVERY: usize = 256;

/// The longest an event contract may keep an undelivered event: 30 days.
pub const MAX_RETENTION_HOURS: u32 = 30 * 24;

/// The most bytes of one signed event: several fit in one delivery under the protocol's
/// 64 KiB request limit.
pub const MAX_EVENT_BYTES: usize = 8 * 1024;

/// What makes a contract an event contract (PROTOCOL.md §2.8): its `request` schema is the
/// schema of an event's `data`, and these terms say what orders its events and how long an
/// undelivered one is kept. Absent, not `null`, in any other contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventTerms {
    /// JSON pointer into `data` of the event's subject (an opaque reference to a person or a
    /// record, never an identifier in clear unless `personal_data` names it): the events of
    /// one subject reach each subscriber in the order they were emitted.
    pub subject: String,
    /// Hours an event is kept for a subscriber that has not received it; after that it is
    /// recorded as expired on both sides. Default 168 (7 days), at most 720.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_hours: Option<u32>,
}

impl EventTerms {
    /// How long an event is kept, in seconds.
    pub fn retention_s(&self) -> i64 {
        i64::from(self.retention_hours.unwrap_or(168)) * 3600
    }
}

/// What is wrong with a contract's `event` terms.
pub(crate) fn check(terms: &EventTerms, data: &Value) -> Result<(), String> {
    let Some(path) = terms.subject.strip_prefix('/') else {
        return Err("`subject` must be a JSON pointer into `data`, starting with `/`".into());
    };
    if path.is_empty() || path.split('/').any(|s| s.is_empty() || s.contains('~')) {
        return Err("`subject` must name object properties of `data`, plainly".into());
    }
    if let Some(hours) = terms.retention_hours
        && !(1..=MAX_RETENTION_HOURS).contains(&hours)
    {
        return Err(format!(
            "`retention_hours` must be from 1 to {MAX_RETENTION_HOURS}"
        ));
    }
    // The subject is required by the data schema, as a string: every event has one.
    let mut schema = data;
    let mut required = true;
    for segment in path.split('/') {
        required &= schema
            .get("required")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|v| v == segment));
        schema = schema
            .get("properties")
            .and_then(|p| p.get(segment))
            .ok_or("the request schema (the events' data) has no property at `subject`")?;
    }
    if !required || schema.get("type").and_then(Value::as_str) != Some("string") {
        return Err(
            "the request schema must make the property at `subject` a required string".into(),
        );
    }
    Ok(())
}

/// The payload of a signed event (`typ` [`EVENT_TYP`]), signed once by the contract's
/// provider when it is emitted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Format version, 1.
    pub v: u32,
    /// Event id, a UUID in its one spelling ([`crate::ExchangeId`]).
    pub id: String,
    /// The provider that emitted it.
    pub iss: MemberId,
    /// Contract id.
    pub contract: String,
    /// Contract version.
    pub version: String,
    /// Emitted at, unix seconds.
    pub iat: i64,
    /// Kept for undelivered subscribers until, unix seconds: `iat` plus the contract's
    /// retention. A subscriber refuses an event past it.
    pub exp: i64,
    /// The change, valid against the contract's request schema.
    pub data: Value,
}

impl Event {
    /// The subject at the contract's pointer, when `data` has a string there.
    pub fn subject<'a>(&'a self, terms: &EventTerms) -> Option<&'a str> {
        self.data.pointer(&terms.subject).and_then(Value::as_str)
    }
}

/// One expiry notice: an event this subscriber was owed and that expired undelivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expired {
    /// The event's id.
    pub id: String,
    /// base64url SHA-256 of the signed event's bytes: what both records of its expiry name.
    pub hash: String,
}

/// The `query` of a delivery: events in the order they were emitted, and notices of those
/// that expired before they could be delivered.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// Signed events (compact JWS), at most [`MAX_EVENTS_PER_DELIVERY`].
    pub events: Vec<String>,
    /// Expiry notices, at most [`MAX_NOTICES_PER_DELIVERY`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expired: Vec<Expired>,
}

/// What the subscriber's gateway did with one event of a delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Kept, and handed to the member system.
    Accepted,
    /// Already held: not handed to the member system again.
    Duplicate,
}

/// One event's line of a receipt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Received {
    /// The event's id.
    pub id: String,
    /// What was done with it.
    pub status: Status,
}

/// The `result` of a delivery's answer: the subscriber's receipt, one line per event in the
/// delivery's order, and how many expiry notices it recorded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    /// One line per event delivered.
    pub events: Vec<Received>,
    /// The notices recorded (those already known are not counted again).
    pub expired: u64,
}

/// Why an event of a delivery is refused (the delivery is refused with 400 `bad-event`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventRefused {
    /// Not a JWS of type [`EVENT_TYP`], too large, or its payload not an event.
    #[error("event {index}: {reason}")]
    Malformed {
        /// Its place in the delivery.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// Its signature does not verify under a key of the manifest.
    #[error("event {index} ({id}): signature: {reason}")]
    Signature {
        /// Its place in the delivery.
        index: usize,
        /// Its id, as it claims.
        id: String,
        /// What failed.
        reason: String,
    },
    /// It is not the delivery's: another issuer or contract.
    #[error("event {id}: {reason}")]
    Foreign {
        /// Its id.
        id: String,
        /// What differs.
        reason: String,
    },
    /// Past its `exp`: an old event sent again.
    #[error("event {id} expired at {exp}, it is now {now}")]
    Expired {
        /// Its id.
        id: String,
        /// Its `exp`.
        exp: i64,
        /// The receiver's clock.
        now: i64,
    },
    /// Its data does not match the contract's request schema.
    #[error("event {id}: data violates the contract's schema: {violations}")]
    Schema {
        /// Its id.
        id: String,
        /// The violations, joined.
        violations: String,
    },
}

/// A signed event read and checked by a subscriber: its text, its hash and its payload.
#[derive(Clone, Debug)]
pub struct CheckedEvent {
    /// The compact JWS as received.
    pub jws: String,
    /// base64url SHA-256 of the JWS bytes.
    pub hash: String,
    /// Its payload.
    pub event: Event,
}

/// Checks the `index`th event of a delivery from `issuer` for `contract` at `now`: a JWS of
/// type [`EVENT_TYP`] at most [`MAX_EVENT_BYTES`], signed by a key the manifest lists for
/// `issuer` inside the key's window at the event's `iat`, naming `issuer` and the contract,
/// not past its `exp`, with `data` valid against the contract's request schema.
///
/// # Errors
/// [`EventRefused`], naming the event and what failed.
pub fn check_event(
    manifest: &Manifest,
    issuer: &MemberId,
    contract: &Contract,
    index: usize,
    jws: &str,
    now: i64,
) -> Result<CheckedEvent, EventRefused> {
    let malformed = |reason: String| EventRefused::Malformed { index, reason };
    if jws.len() > MAX_EVENT_BYTES {
        return Err(malformed(format!(
            "{} bytes, over the {MAX_EVENT_BYTES} an event may have",
            jws.len()
        )));
    }
    let parsed = ParsedJws::parse(jws, EVENT_TYP).map_err(|e| malformed(e.to_string()))?;
    let event: Event =
        crate::json::from_slice(&parsed.payload).map_err(|e| malformed(e.to_string()))?;
    let signature = |reason: String| EventRefused::Signature {
        index,
        id: event.id.clone(),
        reason,
    };
    let kid = parsed.header.kid.as_deref().unwrap_or_default();
    let (owner, key) = manifest
        .key_at(kid, event.iat)
        .map_err(|e| signature(e.to_string()))?;
    if owner != issuer {
        return Err(signature(format!(
            "signed by {owner}, the delivery is {issuer}'s"
        )));
    }
    key.verify(&parsed).map_err(|e| signature(e.to_string()))?;
    let doc = contract.doc();
    let foreign = |reason: &str| EventRefused::Foreign {
        id: event.id.clone(),
        reason: reason.to_owned(),
    };
    if crate::ExchangeId::parse(&event.id).is_err() {
        return Err(foreign("its id is not a UUID in its one spelling"));
    }
    if event.v != 1 {
        return Err(foreign("v is not 1"));
    }
    if &event.iss != issuer {
        return Err(foreign("its iss is not the delivery's issuer"));
    }
    if event.contract != doc.id || event.version != doc.version {
        return Err(foreign("it is of another contract"));
    }
    if event.exp <= now {
        return Err(EventRefused::Expired {
            id: event.id.clone(),
            exp: event.exp,
            now,
        });
    }
    if let Some(terms) = contract.event()
        && event.exp - event.iat > terms.retention_s()
    {
        return Err(foreign("its exp is further than the contract's retention"));
    }
    contract
        .check_request(&event.data, "/data")
        .map_err(|errors| EventRefused::Schema {
            id: event.id.clone(),
            violations: errors
                .iter()
                .map(|e| format!("{}: {}", e.pointer, e.message))
                .collect::<Vec<_>>()
                .join("; "),
        })?;
    Ok(CheckedEvent {
        hash: sha256_b64url(jws.as_bytes()),
        jws: jws.to_owned(),
        event,
    })
}

/// Checks a delivery's shape beyond its JSON: at least one event or notice, and at most
/// [`MAX_EVENTS_PER_DELIVERY`] and [`MAX_NOTICES_PER_DELIVERY`].
///
/// # Errors
/// What is out of bounds.
pub fn check_delivery(delivery: &Delivery) -> Result<(), String> {
    if delivery.events.is_empty() && delivery.expired.is_empty() {
        return Err("a delivery carries at least one event or expiry notice".into());
    }
    if delivery.events.len() > MAX_EVENTS_PER_DELIVERY {
        return Err(format!(
            "{} events, more than the {MAX_EVENTS_PER_DELIVERY} a delivery may carry",
            delivery.events.len()
        ));
    }
    if delivery.expired.len() > MAX_NOTICES_PER_DELIVERY {
        return Err(format!(
            "{} expiry notices, more than the {MAX_NOTICES_PER_DELIVERY} a delivery may carry",
            delivery.expired.len()
        ));
    }
    for notice in &delivery.expired {
        if crate::ExchangeId::parse(&notice.id).is_err() || notice.hash.len() != 43 {
            return Err(format!(
                "expiry notice `{}` needs an event id and the base64url SHA-256 of its event",
                notice.id.chars().take(40).collect::<String>()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data_schema() -> Value {
        json!({
            "type": "object",
            "properties": { "placement": { "type": "string" }, "change": { "type": "string" } },
            "required": ["placement", "change"]
        })
    }

    #[test]
    fn the_subject_must_be_a_required_string_of_the_data() {
        let terms = |s: &str| EventTerms {
            subject: s.into(),
            retention_hours: None,
        };
        assert!(check(&terms("/placement"), &data_schema()).is_ok());
        for bad in ["placement", "/", "/missing", "/a~1b"] {
            assert!(check(&terms(bad), &data_schema()).is_err(), "{bad}");
        }
        let optional = json!({"type": "object", "properties": {"placement": {"type": "string"}}});
        assert!(check(&terms("/placement"), &optional).is_err());
        let number = json!({"type": "object", "properties": {"placement": {"type": "integer"}}, "required": ["placement"]});
        assert!(check(&terms("/placement"), &number).is_err());
    }

    #[test]
    fn retention_is_bounded_and_defaults_to_seven_days() {
        let mut terms = EventTerms {
            subject: "/placement".into(),
            retention_hours: None,
        };
        assert_eq!(terms.retention_s(), 7 * 24 * 3600);
        for (hours, ok) in [(0, false), (1, true), (720, true), (721, false)] {
            terms.retention_hours = Some(hours);
            assert_eq!(check(&terms, &data_schema()).is_ok(), ok, "{hours}");
        }
    }

    #[test]
    fn a_delivery_carries_something_and_not_too_much() {
        assert!(check_delivery(&Delivery::default()).is_err());
        let one = Delivery {
            events: vec!["x".into()],
            expired: vec![],
        };
        assert!(check_delivery(&one).is_ok());
        let many = Delivery {
            events: vec!["x".into(); MAX_EVENTS_PER_DELIVERY + 1],
            expired: vec![],
        };
        assert!(check_delivery(&many).is_err());
        let bad_notice = Delivery {
            events: vec![],
            expired: vec![Expired {
                id: "not-a-uuid".into(),
                hash: "A".repeat(43),
            }],
        };
        assert!(check_delivery(&bad_notice).is_err());
        let notice = Delivery {
            events: vec![],
            expired: vec![Expired {
                id: crate::ExchangeId::new().to_string(),
                hash: "A".repeat(43),
            }],
        };
        assert!(check_delivery(&notice).is_ok());
    }
}
