//! RFC 9457 problem details and the protocol's error codes.

use serde::{Deserialize, Serialize};

use crate::contract::SchemaViolation;

/// The prefix of every problem `type`.
pub const PROBLEM_TYPE_PREFIX: &str = "urn:simpul:error:";

macro_rules! problem_codes {
    ($($variant:ident => $code:literal, $status:literal, $title:literal;)*) => {
        /// Every refusal the protocol names, with its HTTP status.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ProblemCode { $(#[doc = $title] $variant,)* }

        impl ProblemCode {
            /// All codes, in table order.
            pub const ALL: &'static [ProblemCode] = &[$(ProblemCode::$variant,)*];

            /// The code as it appears after `urn:simpul:error:`.
            pub fn code(self) -> &'static str { match self { $(ProblemCode::$variant => $code,)* } }

            /// The HTTP status that carries it.
            pub fn status(self) -> u16 { match self { $(ProblemCode::$variant => $status,)* } }

            /// The fixed title.
            pub fn title(self) -> &'static str { match self { $(ProblemCode::$variant => $title,)* } }
        }
    };
}

problem_codes! {
    PayloadTooLarge => "payload-too-large", 413, "Request body too large";
    Malformed => "malformed", 400, "Malformed request";
    RequestTimeout => "request-timeout", 408, "Request body not received in time";
    UnsupportedMediaType => "unsupported-media-type", 415, "Unsupported media type";
    BadSignature => "bad-signature", 401, "Bad signature";
    IdentityMismatch => "identity-mismatch", 401, "Identity mismatch";
    WrongAudience => "wrong-audience", 400, "Wrong audience";
    Stale => "stale", 401, "Stale or premature request";
    Replay => "replay", 409, "Replayed exchange id";
    UnknownContract => "unknown-contract", 404, "Unknown contract";
    Forbidden => "forbidden", 403, "Forbidden";
    NotGranted => "not-granted", 403, "Subsystem not granted";
    IdentityKind => "identity-kind", 403, "Identity not served on this listener";
    WrongListener => "wrong-listener", 404, "Not served on this listener";
    RateLimited => "rate-limited", 429, "Rate limit exceeded";
    SubsystemRateLimited => "subsystem-rate-limited", 429, "Subsystem rate limit exceeded";
    InvalidQuery => "invalid-query", 400, "Query does not match the contract";
    PopulationTooSmall => "population-too-small", 422, "The question selects too few people to answer";
    TableTooLarge => "table-too-large", 422, "The table asked for has too many cells";
    SetTooSmall => "set-too-small", 422, "A list of the overlap run is below the contract's minimum";
    RunsExhausted => "runs-exhausted", 429, "No overlap runs left today";
    BadFrames => "bad-frames", 400, "The lists after the envelope are not the ones it announces";
    RunMismatch => "run-mismatch", 422, "The report does not match a run this provider answered";
    BadEvent => "bad-event", 400, "An event of the delivery failed its checks";
    EventExpired => "event-expired", 410, "The event expired before it was delivered";
    ProviderTimeout => "provider-timeout", 504, "Provider timed out";
    ProviderUnavailable => "provider-unavailable", 503, "Provider unavailable";
    ProviderError => "provider-error", 502, "Provider error";
    BadAnswer => "bad-answer", 502, "Provider's answer failed verification";
    NotFound => "not-found", 404, "No such resource";
    MethodNotAllowed => "method-not-allowed", 405, "Method not allowed";
    Internal => "internal", 500, "Internal error";
    BadTreeHead => "bad-tree-head", 400, "Tree head not valid";
    LogForked => "log-forked", 409, "Audit log forked";
    ManifestExpired => "manifest-expired", 503, "The gateway's manifest has expired";
    NotReady => "not-ready", 503, "The gateway is not ready";
}

impl ProblemCode {
    /// The full `type` URI.
    pub fn type_uri(self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.code())
    }

    /// Reads a code back from a `type` URI.
    pub fn from_type_uri(uri: &str) -> Option<ProblemCode> {
        let code = uri.strip_prefix(PROBLEM_TYPE_PREFIX)?;
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }
}

/// An RFC 9457 problem document, `application/problem+json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:simpul:error:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short fixed title of the code.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// What exactly was wrong, for a person.
    pub detail: String,
    /// The exchange id, where one was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exchange_id: Option<String>,
    /// Schema violations, for `invalid-query` and `provider-error`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<SchemaViolation>,
    /// The provider that answered with this problem, on the local face.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Seconds after which a retry may succeed (mirrors `Retry-After`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem of `code` with `detail`.
    pub fn new(code: ProblemCode, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: code.type_uri(),
            title: code.title().to_owned(),
            status: code.status(),
            detail: detail.into(),
            exchange_id: None,
            errors: Vec::new(),
            provider: None,
            retry_after: None,
        }
    }

    /// The code, if `type` is one of the protocol's.
    pub fn code(&self) -> Option<ProblemCode> {
        ProblemCode::from_type_uri(&self.type_uri)
    }

    /// Sets the exchange id.
    pub fn with_exchange_id(mut self, id: Option<&str>) -> Self {
        self.exchange_id = id.map(str::to_owned);
        self
    }

    /// 400 `invalid-query` for schema violations, each named with its pointer in `detail`.
    pub fn invalid_query(errors: Vec<SchemaViolation>) -> Self {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.pointer, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        Problem::new(ProblemCode::InvalidQuery, detail).with_errors(errors)
    }

    /// Sets the schema violations.
    pub fn with_errors(mut self, errors: Vec<SchemaViolation>) -> Self {
        self.errors = errors;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_type_uri() {
        for &c in ProblemCode::ALL {
            assert_eq!(ProblemCode::from_type_uri(&c.type_uri()), Some(c));
        }
        assert_eq!(ProblemCode::from_type_uri("urn:simpul:error:nope"), None);
        assert_eq!(ProblemCode::Replay.status(), 409);
    }
}
