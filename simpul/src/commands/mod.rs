//! One module per `simpul` command.

pub mod audit;
pub mod cache;
pub mod completions;
pub mod console;
pub mod demo_data;
pub mod doctor;
pub mod join;
pub mod man;
pub mod manifest;
pub mod openapi;
pub mod pki;
pub mod query;
pub mod rotate;
pub mod serve;
pub mod up;

use std::process::ExitCode;
use std::time::Duration;

use contracts::{MemberId, StaffId};
use gateway::client::{PeerClient, Reply};
use gateway::config::{AdminConfig, Config};

use crate::error::CliError;

/// POSTs the JSON `body` to `url` through `client`, within `timeout`.
async fn post_json(
    client: &PeerClient,
    url: String,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Reply, CliError> {
    client
        .call(
            http::Method::POST,
            &url,
            "application/json",
            body.into(),
            timeout,
        )
        .await
        .map_err(|source| CliError::Call { url, source })
}

/// Success when the gateway answered 2xx.
fn exit_code(reply: &Reply) -> ExitCode {
    if reply.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// `member`'s admin listener, as `config` describes it.
fn admin_listener<'a>(config: &'a Config, member: &MemberId) -> Result<&'a AdminConfig, CliError> {
    let mc = config.member(member).ok_or_else(|| {
        CliError::Usage(format!(
            "--member {member}: not a member in {}",
            config.source
        ))
    })?;
    mc.admin.as_ref().ok_or_else(|| {
        CliError::Usage(format!(
            "{member} has no admin listener in {} (members.admin)",
            config.source
        ))
    })
}

/// A client of `member`'s admin listener presenting `identity`'s certificate from the PKI
/// directory, checking the gateway's against the federation CA and its CRL, reading answers
/// of at most `max_answer` bytes.
fn staff_client(
    config: &Config,
    member: &MemberId,
    identity: &StaffId,
    max_answer: usize,
) -> Result<PeerClient, CliError> {
    let layout = &config.federation.pki;
    let trust =
        gateway::tls::FederationTrust::from_files(&layout.ca_cert(), &config.federation.crl)?;
    Ok(PeerClient::from_files(
        &trust,
        &layout.staff_cert(identity),
        &layout.staff_key(identity),
        member.clone(),
        max_answer,
    )?)
}
