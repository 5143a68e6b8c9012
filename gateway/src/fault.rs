//! Fault injection for proving the conformance suite can fail: a build with the `faults`
//! feature reads `SIMPUL_FAULT=<check>` once and lets that one check pass everything. Without
//! the feature (every release build, every normal build) `off` is a constant `false`.

#[cfg(all(feature = "faults", not(debug_assertions)))]
compile_error!(
    "the `faults` feature switches security checks off: it is for debug test builds only"
);

use contracts::checks::{CHECKS, CheckSpec};

/// A check that can be switched off in a `faults` build, in the order of [`CHECKS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// TLS: a client certificate is required.
    ClientCertificate,
    /// TLS: a client certificate its CA's CRL lists is refused.
    Revocation,
    /// The 64 KiB body limit.
    BodyLimit,
    /// `Content-Type: application/jose`.
    MediaType,
    /// `alg`, `typ`, `kid` and the signature.
    Signature,
    /// The payload is strict JSON: no member name twice, I-JSON numbers.
    StrictJson,
    /// `iss` equals the certificate's and the key's member.
    Identity,
    /// The consumer's tree head, when it sends one, is its own and valid.
    TreeHead,
    /// `aud` is this gateway's member.
    Audience,
    /// The path's contract equals the payload's.
    PathMatch,
    /// `iat`, `exp` and validity.
    Freshness,
    /// The exchange id has not been seen.
    Replay,
    /// The contract is provided here.
    Contract,
    /// The manifest grants the consumer and purpose; a delivery's sender provides the event
    /// contract, and this member is granted it.
    Authorization,
    /// The consumer's rate is not exceeded.
    RateLimit,
    /// The query is valid against the request schema; a delivery's is a delivery.
    QuerySchema,
    /// Every event of a delivery is signed by its provider, its own, current and valid.
    Event,
    /// A statistics answer's table is protected by the contract's disclosure rules.
    Disclosure,
    /// The federation listener refuses the local face.
    LocalFaceApart,
}

impl Check {
    /// Every check, in the order of the table of checks ([`CHECKS`]).
    #[cfg_attr(not(feature = "faults"), allow(dead_code))]
    const ALL: [Check; 19] = [
        Check::ClientCertificate,
        Check::Revocation,
        Check::BodyLimit,
        Check::MediaType,
        Check::Signature,
        Check::StrictJson,
        Check::Identity,
        Check::TreeHead,
        Check::Audience,
        Check::PathMatch,
        Check::Freshness,
        Check::Replay,
        Check::Contract,
        Check::Authorization,
        Check::RateLimit,
        Check::QuerySchema,
        Check::Event,
        Check::Disclosure,
        Check::LocalFaceApart,
    ];

    /// Its entry in the table of checks the conformance suite shares: its `SIMPUL_FAULT`
    /// name, problem code and PROTOCOL rows.
    #[cfg_attr(not(feature = "faults"), allow(dead_code))]
    fn spec(self) -> &'static CheckSpec {
        &CHECKS[self as usize]
    }
}

/// `result`, or `Ok` when it is a refusal by a check that is switched off.
pub fn unless_off<E>(check: Check, result: Result<(), E>) -> Result<(), E> {
    match result {
        Err(_) if off(check) => Ok(()),
        other => other,
    }
}

/// True when `check` is switched off in this (faults) build.
#[cfg(feature = "faults")]
pub fn off(check: Check) -> bool {
    static CHOSEN: std::sync::OnceLock<Option<Check>> = std::sync::OnceLock::new();
    let chosen = CHOSEN.get_or_init(|| {
        let name = std::env::var("SIMPUL_FAULT").ok()?;
        let found = Check::ALL.into_iter().find(|c| c.spec().name == name);
        match found {
            Some(_) => tracing::warn!(check = %name, "FAULT INJECTION: this check is switched off"),
            None => tracing::error!(check = %name, "SIMPUL_FAULT names no check"),
        }
        found
    });
    *chosen == Some(check)
}

/// True when `check` is switched off: never, in a build without the `faults` feature.
#[cfg(not(feature = "faults"))]
#[inline(always)]
pub fn off(_check: Check) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::ProblemCode;

    #[test]
    fn each_check_is_its_row_of_the_shared_table() {
        assert_eq!(Check::ALL.len(), CHECKS.len());
        for (i, c) in Check::ALL.into_iter().enumerate() {
            assert_eq!(c as usize, i, "{c:?}");
        }
        let named = |c: Check| (c.spec().name, c.spec().code);
        assert_eq!(
            named(Check::ClientCertificate),
            ("client-certificate", None)
        );
        assert_eq!(named(Check::Replay), ("replay", Some(ProblemCode::Replay)));
        assert_eq!(
            named(Check::QuerySchema),
            ("query-schema", Some(ProblemCode::InvalidQuery))
        );
        assert_eq!(named(Check::Event), ("event", Some(ProblemCode::BadEvent)));
        assert_eq!(named(Check::Disclosure), ("disclosure", None));
        assert_eq!(
            named(Check::RateLimit),
            ("rate-limit", Some(ProblemCode::RateLimited))
        );
    }
}
