//! The one place where a refusal by a rule of the provider pipeline becomes the protocol's
//! problem document (PROTOCOL.md §3.4): its code and status, its `Retry-After`, and the
//! exchange id once one was read. Each variant is what a rule found, with its evidence; its
//! `Display` is the problem's `detail`.

use std::time::Duration;

use contracts::manifest::NotGranted;
use contracts::statistics::StatisticsError;
use contracts::{ContractRef, MemberId, Problem, ProblemCode, SchemaViolation};
use limits::rate::RateDecision;

use crate::admission::OverAdmission;

/// Why the provider pipeline refused an exchange.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The peer is over an admission limit: refused before its body is read.
    #[error("{0}; retry after the wait in Retry-After")]
    OverAdmission(OverAdmission),
    /// The body could not be read as the HTTP layer requires (size, time, media type): the
    /// problem the body reader made, passed on as it is.
    #[error("{}", .0.detail)]
    Body(Problem),
    /// The body is not text.
    #[error("the body is not a compact JWS (not UTF-8)")]
    NotText,
    /// The JWS is not well-formed.
    #[error("{0}")]
    MalformedJws(String),
    /// `alg`, `typ` or the signature is wrong.
    #[error("{0}")]
    BadSignature(String),
    /// `kid` names no key of the manifest.
    #[error("kid `{kid}` names no key of a manifest member")]
    UnknownKey {
        /// The `kid` presented.
        kid: String,
    },
    /// The signed payload is not an exchange request.
    #[error("the payload is not an exchange request: {0}")]
    NotARequest(String),
    /// The signed payload names a member twice or holds a number outside I-JSON.
    #[error("the payload is not strict JSON: {0}")]
    NotStrictJson(contracts::json::JsonError),
    /// The payload's `v` is not 1.
    #[error("payload version {0} is not supported (1)")]
    UnsupportedVersion(u32),
    /// The exchange id is not spelled the one way the protocol allows.
    #[error("the exchange id is not a UUID in lower-case hyphenated form")]
    NonCanonicalId,
    /// The client certificate names no Simpul identity.
    #[error("the client certificate names no Simpul identity")]
    NoPeerIdentity,
    /// `iss`, the certificate's member and the key's member differ.
    #[error(
        "iss is {iss}, the client certificate names {peer}, the signing key belongs to {signer}: all three must be the same member"
    )]
    IdentityMismatch {
        /// The payload's `iss`.
        iss: MemberId,
        /// The member the client certificate names.
        peer: MemberId,
        /// The member whose key signed.
        signer: MemberId,
    },
    /// `sub` is not a subsystem of `iss`.
    #[error("sub {sub} is not a subsystem of iss {iss}")]
    ForeignSubsystem {
        /// The payload's `sub`.
        sub: MemberId,
        /// The payload's `iss`.
        iss: MemberId,
    },
    /// `aud` is another member.
    #[error("aud is {aud}, this gateway is {me}")]
    WrongAudience {
        /// The payload's `aud`.
        aud: MemberId,
        /// This gateway's member.
        me: MemberId,
    },
    /// The path names another contract than the payload.
    #[error("the path names {path}, the payload {payload}")]
    PathMismatch {
        /// The contract of the URL path.
        path: ContractRef,
        /// The contract of the payload.
        payload: ContractRef,
    },
    /// `iat`/`exp` outside the window.
    #[error("{0}")]
    Stale(String),
    /// The exchange id was seen within the window.
    #[error("exchange id {id} was already presented")]
    Replayed {
        /// The id.
        id: String,
    },
    /// The consumer's replay window is at its bound (fail closed).
    #[error(
        "{consumer} has {held} exchange ids in the replay window, its bound; retry when they age out"
    )]
    ReplayWindowFull {
        /// The consumer.
        consumer: MemberId,
        /// Ids it holds in the window.
        held: usize,
        /// When the oldest ages out.
        retry_after: Duration,
    },
    /// A list of an overlap run below the contract's minimum: one of the consumer's groups
    /// as its envelope announces it, or the provider's own list (whose size is not said).
    #[error("{list} holds fewer than the {min} distinct identifiers {contract} requires")]
    SetTooSmall {
        /// Which list, in words ("group 3", "the provider's list").
        list: String,
        /// The contract's minimum.
        min: usize,
        /// The contract.
        contract: ContractRef,
    },
    /// This gateway is answering another overlap run (one at a time).
    #[error("{me} is answering another overlap run; retry when it is done")]
    RunInProgress {
        /// This gateway's member.
        me: MemberId,
    },
    /// The consumer has made its overlap runs for this purpose today.
    #[error(
        "{consumer} has made the {runs} runs of {contract} a day allows for purpose {purpose}; the count starts again at 00:00 UTC"
    )]
    RunsExhausted {
        /// The consumer.
        consumer: MemberId,
        /// The contract.
        contract: ContractRef,
        /// The purpose.
        purpose: String,
        /// The runs a day allows.
        runs: u32,
        /// Until the next 00:00 UTC.
        retry_after: Duration,
    },
    /// The lists after an overlap run's envelope are not the ones it announces, or are not
    /// lists of points.
    #[error("{0}")]
    BadFrames(String),
    /// A report that does not match a run this provider answered for its consumer.
    #[error("{0}")]
    RunMismatch(String),
    /// A delivery of an event contract from a member that does not emit it (PROTOCOL.md
    /// §2.8): only the contract's provider delivers its events.
    #[error(
        "{contract} is an event contract emitted by {provider}; {sender} cannot deliver its events"
    )]
    NotEmitter {
        /// The event contract.
        contract: ContractRef,
        /// Who sent the delivery.
        sender: MemberId,
        /// The contract's provider in the manifest.
        provider: MemberId,
    },
    /// A delivery's query is not the protocol's `{events, expired}`, or is out of bounds.
    #[error("the delivery is not one the protocol allows: {0}")]
    BadDelivery(String),
    /// An event of a delivery fails its checks: the whole delivery is refused.
    #[error(transparent)]
    BadEvent(contracts::events::EventRefused),
    /// The event store cannot keep what was delivered: refused, so the sender retries.
    #[error("the events cannot be kept now; retry")]
    EventStoreUnavailable,
    /// The contract is not provided here.
    #[error("{contract} is not provided by {me}")]
    NotProvided {
        /// The contract asked.
        contract: ContractRef,
        /// This gateway's member.
        me: MemberId,
    },
    /// The manifest does not grant the consumer this contract for this purpose.
    #[error(transparent)]
    NotGranted(#[from] NotGranted),
    /// The consumer is over its rate.
    #[error("{consumer} is over its rate for {contract}")]
    RateLimited {
        /// The consumer.
        consumer: MemberId,
        /// The contract.
        contract: ContractRef,
        /// The limiter's own wait.
        wait: Duration,
    },
    /// The query violates the request schema.
    #[error("the query violates the contract's request schema")]
    InvalidQuery(Vec<SchemaViolation>),
    /// A statistics question whose filters select fewer people than the contract's minimum
    /// (the population itself is not told).
    #[error(transparent)]
    PopulationTooSmall(contracts::disclosure::PopulationTooSmall),
    /// A statistics question whose table would have more cells than the contract allows.
    #[error(
        "the table asked for has {cells} cells, the contract allows {limit}: name fewer dimensions or filter"
    )]
    TableTooLarge {
        /// Cells of the table asked for.
        cells: u64,
        /// The contract's `max_cells`.
        limit: usize,
    },
    /// The contract's adapter is at its concurrency limit.
    #[error("{contract} is at its concurrency limit")]
    AtCapacity {
        /// The contract.
        contract: ContractRef,
    },
    /// The adapter did not answer within its deadline.
    #[error("{0}")]
    AdapterTimeout(String),
    /// The shared replay window (Redis) cannot be asked: the id cannot be checked, so the
    /// request is refused (fail closed). The reason is in the provider's log.
    #[error("the provider cannot check exchange ids for replay now")]
    ReplayUnavailable,
    /// The backend cannot be reached. Its own message stays in the provider's log: it may
    /// name tables, files or hosts that are nobody else's business.
    #[error("the provider's backend is unavailable")]
    BackendUnavailable,
    /// The backend failed (its message stays in the provider's log).
    #[error("the provider's backend failed to answer")]
    BackendFailed,
    /// The adapter's answer violates the response schema: never signed, never cached.
    #[error("the provider's answer does not match the contract's response schema")]
    AnswerViolatesSchema,
    /// The adapter's answer holds a number outside I-JSON: never signed, never cached.
    #[error(
        "the provider's answer holds a number outside I-JSON (a whole number beyond ±(2^53 − 1))"
    )]
    AnswerNotIJson,
    /// The answer could not be encoded or signed.
    #[error("{0}")]
    CannotSign(String),
    /// The consumer's tree head is not valid, its log was caught forked, or what was
    /// witnessed could not be kept (PROTOCOL.md §5.4).
    #[error("{0}")]
    Witness(crate::witness::WitnessError),
    /// The manifest this gateway holds has expired (row 0).
    #[error(
        "this gateway's manifest (serial {serial}) expired at {expires_at} (Unix time): no exchange until the authority's next manifest is adopted"
    )]
    ManifestExpired {
        /// Its serial.
        serial: u64,
        /// When it expired.
        expires_at: i64,
    },
}

impl From<StatisticsError> for Refusal {
    /// A statistics question the contract does not allow is `invalid-query`; one selecting too
    /// few people or too many cells is refused with its own code; an aggregate that cannot
    /// answer is the backend's failure, its reason kept in the provider's log.
    fn from(e: StatisticsError) -> Self {
        match e {
            StatisticsError::Query { pointer, reason } => {
                Refusal::InvalidQuery(vec![SchemaViolation {
                    pointer,
                    message: reason,
                }])
            }
            StatisticsError::PopulationTooSmall(p) => Refusal::PopulationTooSmall(p),
            StatisticsError::TooManyCells { cells, limit } => {
                Refusal::TableTooLarge { cells, limit }
            }
            StatisticsError::Aggregate(why) => {
                tracing::warn!(error = %why, "the binding's aggregate cannot answer the contract");
                Refusal::BackendFailed
            }
        }
    }
}

impl Refusal {
    /// The problem code on the wire.
    fn code(&self) -> ProblemCode {
        match self {
            Refusal::Body(p) => p.code().unwrap_or(ProblemCode::Malformed),
            Refusal::NotText
            | Refusal::MalformedJws(_)
            | Refusal::NotARequest(_)
            | Refusal::NotStrictJson(_)
            | Refusal::UnsupportedVersion(_)
            | Refusal::NonCanonicalId
            | Refusal::PathMismatch { .. } => ProblemCode::Malformed,
            Refusal::BadSignature(_) | Refusal::UnknownKey { .. } => ProblemCode::BadSignature,
            Refusal::NoPeerIdentity
            | Refusal::IdentityMismatch { .. }
            | Refusal::ForeignSubsystem { .. } => ProblemCode::IdentityMismatch,
            Refusal::WrongAudience { .. } => ProblemCode::WrongAudience,
            Refusal::Stale(_) => ProblemCode::Stale,
            Refusal::Replayed { .. } => ProblemCode::Replay,
            Refusal::ReplayWindowFull { .. }
            | Refusal::ReplayUnavailable
            | Refusal::AtCapacity { .. }
            | Refusal::RunInProgress { .. }
            | Refusal::EventStoreUnavailable
            | Refusal::BackendUnavailable => ProblemCode::ProviderUnavailable,
            Refusal::NotProvided { .. } => ProblemCode::UnknownContract,
            Refusal::NotGranted(_) | Refusal::NotEmitter { .. } => ProblemCode::Forbidden,
            Refusal::BadDelivery(_) => ProblemCode::InvalidQuery,
            Refusal::BadEvent(_) => ProblemCode::BadEvent,
            Refusal::RateLimited { .. } | Refusal::OverAdmission(_) => ProblemCode::RateLimited,
            Refusal::InvalidQuery(_) => ProblemCode::InvalidQuery,
            Refusal::PopulationTooSmall(_) => ProblemCode::PopulationTooSmall,
            Refusal::TableTooLarge { .. } => ProblemCode::TableTooLarge,
            Refusal::SetTooSmall { .. } => ProblemCode::SetTooSmall,
            Refusal::RunsExhausted { .. } => ProblemCode::RunsExhausted,
            Refusal::BadFrames(_) => ProblemCode::BadFrames,
            Refusal::RunMismatch(_) => ProblemCode::RunMismatch,
            Refusal::AdapterTimeout(_) => ProblemCode::ProviderTimeout,
            Refusal::BackendFailed | Refusal::AnswerViolatesSchema | Refusal::AnswerNotIJson => {
                ProblemCode::ProviderError
            }
            Refusal::CannotSign(_) => ProblemCode::Internal,
            Refusal::Witness(e) => e.code(),
            Refusal::ManifestExpired { .. } => ProblemCode::ManifestExpired,
        }
    }

    /// Seconds after which a retry may succeed, where the refusal knows.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Refusal::Body(p) => p.retry_after,
            Refusal::ReplayWindowFull { retry_after, .. } => {
                Some(RateDecision::retry_after_s(*retry_after))
            }
            Refusal::RateLimited { wait, .. } => Some(RateDecision::retry_after_s(*wait)),
            Refusal::RunsExhausted { retry_after, .. } => {
                Some(RateDecision::retry_after_s(*retry_after))
            }
            Refusal::OverAdmission(over) => Some(RateDecision::retry_after_s(over.wait())),
            Refusal::AtCapacity { .. }
            | Refusal::RunInProgress { .. }
            | Refusal::EventStoreUnavailable
            | Refusal::ReplayUnavailable
            | Refusal::BackendUnavailable
            | Refusal::Witness(crate::witness::WitnessError::Store(_)) => Some(1),
            _ => None,
        }
    }

    /// The problem document of this refusal, for the exchange `exchange_id` when one was
    /// read.
    pub(crate) fn into_problem(self, exchange_id: Option<&str>) -> Problem {
        let problem = match self {
            Refusal::Body(p) => p,
            Refusal::InvalidQuery(errors) => Problem::invalid_query(errors),
            other => {
                let mut p = Problem::new(other.code(), other.to_string());
                p.retry_after = other.retry_after();
                p
            }
        };
        problem.with_exchange_id(exchange_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    #[test]
    fn a_refusal_becomes_its_code_status_detail_and_exchange_id() {
        let p = Refusal::WrongAudience {
            aud: id("ID:GOV:A"),
            me: id("ID:GOV:B"),
        }
        .into_problem(Some("x"));
        assert_eq!(p.code(), Some(ProblemCode::WrongAudience));
        assert_eq!(p.status, 400);
        assert_eq!(p.detail, "aud is ID:GOV:A, this gateway is ID:GOV:B");
        assert_eq!(p.exchange_id.as_deref(), Some("x"));
    }

    #[test]
    fn a_rate_refusal_carries_retry_after_from_the_limiters_wait() {
        let p = Refusal::RateLimited {
            consumer: id("ID:GOV:A"),
            contract: ContractRef::new("c", "1"),
            wait: Duration::from_millis(1500),
        }
        .into_problem(None);
        assert_eq!((p.status, p.retry_after), (429, Some(2)));
        assert_eq!(p.exchange_id, None);
    }

    #[test]
    fn an_admission_refusal_is_429_rate_limited_with_the_limiters_wait() {
        let p = Refusal::OverAdmission(OverAdmission::Address {
            wait: Duration::from_millis(200),
        })
        .into_problem(None);
        assert_eq!(p.code(), Some(ProblemCode::RateLimited));
        assert_eq!((p.status, p.retry_after), (429, Some(1)));
        assert!(
            p.detail.contains("limits.admission_per_address"),
            "{}",
            p.detail
        );
    }

    #[test]
    fn a_too_narrow_statistics_question_is_422_with_the_minimum_and_not_the_population() {
        let p =
            Refusal::PopulationTooSmall(contracts::disclosure::PopulationTooSmall { minimum: 100 })
                .into_problem(Some("x"));
        assert_eq!(p.code(), Some(ProblemCode::PopulationTooSmall));
        assert_eq!(p.status, 422);
        assert_eq!(
            p.detail,
            "the population the filters select is below the contract's minimum of 100"
        );
    }

    #[test]
    fn a_backend_refusal_never_carries_the_backends_message() {
        let p = Refusal::BackendUnavailable.into_problem(None);
        assert_eq!((p.status, p.retry_after), (503, Some(1)));
        assert_eq!(p.detail, "the provider's backend is unavailable");
    }
}
