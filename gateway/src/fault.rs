//! Fault injection for proving the conformance suite can fail: a build with the `faults`
//! feature reads `SIMPUL_FAULT=<check>` once and lets that one check pass everything. Without
//! the feature (every release build, every normal build) `off` is a constant `false`.

#[cfg(all(feature = "faults", not(debug_assertions)))]
compile_error!(
    "the `faults` feature switches security checks off: it is for debug test builds only"
);

/// A check that can be switched off in a `faults` build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// TLS: a client certificate is required.
    ClientCertificate,
    /// The 64 KiB body limit.
    BodyLimit,
    /// `Content-Type: application/jose`.
    MediaType,
    /// `alg`, `typ`, `kid` and the signature.
    Signature,
    /// `iss` equals the certificate's and the key's member.
    Identity,
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
    /// The manifest grants the consumer and purpose.
    Authorization,
    /// The query is valid against the request schema.
    QuerySchema,
    /// The consumer's rate is not exceeded.
    RateLimit,
}

impl Check {
    /// Every check, with the name `SIMPUL_FAULT` takes.
    pub const ALL: [(Check, &'static str); 13] = [
        (Check::ClientCertificate, "client-certificate"),
        (Check::BodyLimit, "body-limit"),
        (Check::MediaType, "media-type"),
        (Check::Signature, "signature"),
        (Check::Identity, "identity"),
        (Check::Audience, "audience"),
        (Check::PathMatch, "path-match"),
        (Check::Freshness, "freshness"),
        (Check::Replay, "replay"),
        (Check::Contract, "contract"),
        (Check::Authorization, "authorization"),
        (Check::QuerySchema, "query-schema"),
        (Check::RateLimit, "rate-limit"),
    ];
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
        let found = Check::ALL.iter().find(|(_, n)| *n == name).map(|(c, _)| *c);
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
