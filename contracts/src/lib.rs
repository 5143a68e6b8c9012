//! The Simpul protocol model, shared by the gateway and the conformance suite.
//!
//! This crate knows the documents and envelopes of `docs/PROTOCOL.md` — member ids,
//! contract documents, the federation manifest, exchange requests and answers, problem
//! details — and how to sign, verify, canonicalise and digest them. It knows nothing of
//! sockets, databases or configuration files.

pub mod canonical;
pub mod catalog;
pub mod checks;
pub mod contract;
pub mod envelope;
pub mod json;
pub mod jws;
pub mod keyfile;
pub mod manifest;
pub mod manifest_diff;
pub mod member;
pub mod problem;

pub use catalog::{CatalogError, embedded_catalog, load_catalog};
pub use contract::{Contract, ContractDoc, ContractError, ContractRef, SchemaViolation};
pub use envelope::{ExchangeAnswer, ExchangeId, ExchangeRequest};
pub use jws::{Algorithm, ExternalSigner, JwsError, ParsedJws, SigningKey, VerifyingKey};
pub use manifest::{KeyRefused, KeyWindow, Manifest, ManifestError};
pub use member::{Identity, MemberId, MemberIdError, StaffId, StaffRole};
pub use problem::{Problem, ProblemCode};

/// Seconds since the Unix epoch, the unit of every timestamp on the wire.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
