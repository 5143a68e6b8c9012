//! What a command can fail with, each with its context: the file, the flag or the member at
//! fault. `main` prints it on one line and exits 1.

use std::path::{Path, PathBuf};

use audit_store::AuditError;
use demo::PrepareError;
use demo::pki::PkiError;
use gateway::assemble::StartError;
use gateway::authority::AuthorityError;
use gateway::client::CallError;
use gateway::config::ConfigError;
use gateway::tls::TlsError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A gateway cannot start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The listeners' connection bounds do not fit in the open-file limit.
    #[error(transparent)]
    Descriptors(#[from] gateway::descriptors::Shortfall),
    /// The demo cannot be prepared.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
    /// The dev PKI cannot be made.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// A join request cannot be made, or is refused.
    #[error(transparent)]
    Request(#[from] demo::request::RequestError),
    /// A signing key in a PKCS#11 token cannot be used or made.
    #[error("signing key: {0}")]
    Hsm(#[from] gateway::hsm::HsmError),
    /// The manifest cannot be made.
    #[error(transparent)]
    Authority(#[from] AuthorityError),
    /// TLS material cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The audit log cannot be read or written.
    #[error("audit log: {0}")]
    Audit(#[from] AuditError),
    /// A call to a gateway failed.
    #[error("{url}: {source}")]
    Call {
        /// Where the call went.
        url: String,
        /// Why it failed.
        source: CallError,
    },
    /// A file cannot be read, written or understood.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A listener cannot be bound.
    #[error("{member}: cannot listen on {addr}{what}: {source}")]
    Bind {
        /// The member whose listener it is.
        member: String,
        /// The address.
        addr: std::net::SocketAddr,
        /// ` (admin)` or ` (local)` for those listeners, else empty.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// No OpenAPI document can be made for the member and face asked.
    #[error(transparent)]
    OpenApi(#[from] gateway::openapi::OpenApiError),
    /// A cleanse cannot go on (`simpul cleanse`).
    #[error(transparent)]
    Cleanse(#[from] crate::commands::cleanse::CleanseError),
    /// An argument is wrong; the message names it and says what to do.
    #[error("{0}")]
    Usage(String),
    /// The process could not do its own work (runtime, standard output).
    #[error("{0}")]
    Process(String),
}

impl CliError {
    /// A file error, for `map_err`: `.map_err(CliError::file(path))`.
    pub fn file<E: std::fmt::Display>(path: &Path) -> impl FnOnce(E) -> CliError + '_ {
        move |e| CliError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        }
    }
}
