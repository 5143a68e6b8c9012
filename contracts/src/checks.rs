//! The table of the checks a gateway makes on its federation listener, by the names both the gateway's
//! `faults` build (which can switch one off) and the conformance catalogue (whose cases say
//! which checks they guard) use, with the problem code each refuses with and the rows of
//! PROTOCOL.md §3.3 it covers. One table, so the two cannot drift apart.

use crate::problem::ProblemCode;

/// One check of the provider's pipeline (or of a subscriber's, for a delivery of events).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckSpec {
    /// Its name, as `SIMPUL_FAULT` and a conformance case's `guards` spell it.
    pub name: &'static str,
    /// The problem code of its refusal; `None` when the refusal is the TLS handshake's, or
    /// when the check refuses nothing but protects what is answered (`disclosure`).
    pub code: Option<ProblemCode>,
    /// The rows of PROTOCOL.md §3.3 it covers (`§2` for the TLS layer, `§1.3` for the
    /// revocation check of client certificates, `§2.6` for the disclosure rules a statistics
    /// answer is protected by, `§2.8 E…` for the rows a delivery of events is checked by in
    /// place of 27–37, `§4.1` for the local face kept off the federation listener).
    pub rows: &'static str,
}

/// Every check a `faults` build can switch off, in the pipeline's order.
pub const CHECKS: [CheckSpec; 19] = [
    CheckSpec {
        name: "client-certificate",
        code: None,
        rows: "§2",
    },
    CheckSpec {
        name: "revocation",
        code: None,
        rows: "§1.3",
    },
    CheckSpec {
        name: "body-limit",
        code: Some(ProblemCode::PayloadTooLarge),
        rows: "1, 3",
    },
    CheckSpec {
        name: "media-type",
        code: Some(ProblemCode::UnsupportedMediaType),
        rows: "5",
    },
    CheckSpec {
        name: "signature",
        code: Some(ProblemCode::BadSignature),
        rows: "8-12",
    },
    CheckSpec {
        name: "strict-json",
        code: Some(ProblemCode::Malformed),
        rows: "13a-13b",
    },
    CheckSpec {
        name: "identity",
        code: Some(ProblemCode::IdentityMismatch),
        rows: "16-18",
    },
    CheckSpec {
        name: "tree-head",
        code: Some(ProblemCode::BadTreeHead),
        rows: "18a",
    },
    CheckSpec {
        name: "audience",
        code: Some(ProblemCode::WrongAudience),
        rows: "19",
    },
    CheckSpec {
        name: "path-match",
        code: Some(ProblemCode::Malformed),
        rows: "20",
    },
    CheckSpec {
        name: "freshness",
        code: Some(ProblemCode::Stale),
        rows: "21-24",
    },
    CheckSpec {
        name: "replay",
        code: Some(ProblemCode::Replay),
        rows: "25",
    },
    CheckSpec {
        name: "contract",
        code: Some(ProblemCode::UnknownContract),
        rows: "27",
    },
    CheckSpec {
        name: "authorization",
        code: Some(ProblemCode::Forbidden),
        rows: "28-29, §2.8 E2-E3",
    },
    CheckSpec {
        name: "rate-limit",
        code: Some(ProblemCode::RateLimited),
        rows: "30",
    },
    CheckSpec {
        name: "query-schema",
        code: Some(ProblemCode::InvalidQuery),
        rows: "31, §2.8 E4",
    },
    CheckSpec {
        name: "event",
        code: Some(ProblemCode::BadEvent),
        rows: "§2.8 E5",
    },
    CheckSpec {
        name: "disclosure",
        code: None,
        rows: "§2.6",
    },
    CheckSpec {
        name: "local-face-apart",
        code: Some(ProblemCode::WrongListener),
        rows: "§4.1",
    },
];

/// The check named `name`.
pub fn check(name: &str) -> Option<&'static CheckSpec> {
    CHECKS.iter().find(|c| c.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_found() {
        for c in &CHECKS {
            assert_eq!(check(c.name), Some(c));
        }
        assert_eq!(check("nope"), None);
    }
}
