//! One module per `simpul` command.

pub mod audit;
pub mod cache;
pub mod cleanse;
pub mod completions;
pub mod console;
pub mod counts;
pub mod demo_data;
pub mod doctor;
pub mod events;
pub mod join;
pub mod man;
pub mod manifest;
pub mod openapi;
pub mod pki;
pub mod query;
pub mod rotate;
pub mod serve;
pub mod up;
pub mod webhook_receiver;

use std::process::ExitCode;
use std::time::Duration;

use contracts::{ContractRef, Manifest, MemberId, StaffId};
use gateway::assemble::load_authority_key;
use gateway::client::{PeerClient, Reply};
use gateway::config::{AdminConfig, Config, LocalConfig, Member, Subsystem};

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

/// A subsystem asking its own gateway's local face, as `config` describes it.
struct LocalCaller<'a> {
    subsystem: &'a MemberId,
    /// Its member.
    member: &'a Member,
    /// Its table (`[[members.subsystems]]`), with its grants.
    own: &'a Subsystem,
    /// The member's local listener.
    local: &'a LocalConfig,
}

/// `subsystem` (an `--as` flag) as a caller of its member's local face: a subsystem id, of a
/// member of `config`, configured under it, whose member has a local listener.
fn local_caller<'a>(
    config: &'a Config,
    subsystem: &'a MemberId,
) -> Result<LocalCaller<'a>, CliError> {
    if !subsystem.is_subsystem() {
        return Err(CliError::Usage(format!(
            "--as {subsystem}: must be a subsystem id (four parts)"
        )));
    }
    let member = subsystem.member();
    let mc = config.member(&member).ok_or_else(|| {
        CliError::Usage(format!(
            "--as {subsystem}: {member} is not a member in {}",
            config.source
        ))
    })?;
    let Some(own) = mc.subsystems.iter().find(|s| &s.id == subsystem) else {
        let known: Vec<String> = mc.subsystems.iter().map(|s| s.id.to_string()).collect();
        return Err(CliError::Usage(format!(
            "--as {subsystem}: {member} has no such subsystem in {} ({}): add a [[members.subsystems]] table, or ask as one of its own",
            config.source,
            if known.is_empty() {
                "it has none".to_owned()
            } else {
                format!("its subsystems: {}", known.join(", "))
            }
        )));
    };
    let local = mc.local.as_ref().ok_or_else(|| {
        CliError::Usage(format!(
            "{}: {member} has no local listener: add [members.local] with listen and member_ca",
            config.source
        ))
    })?;
    Ok(LocalCaller {
        subsystem,
        member: mc,
        own,
        local,
    })
}

impl LocalCaller<'_> {
    /// The purpose to ask `contract` for: `given`, else a federated contract's own, else the
    /// one purpose the subsystem is granted for it.
    fn purpose(
        &self,
        config: &Config,
        contract: &ContractRef,
        given: Option<String>,
    ) -> Result<String, CliError> {
        if let Some(p) = given {
            return Ok(p);
        }
        if let Some(f) = self
            .member
            .federated
            .iter()
            .find(|f| &f.reference == contract)
        {
            return Ok(f.purpose.clone());
        }
        // The subsystem's own grant, as the gateway will check it.
        let granted = self
            .own
            .grants
            .iter()
            .find(|g| &g.contract == contract)
            .map(|g| g.purposes.as_slice())
            .unwrap_or_default();
        match granted {
            [one] => Ok(one.clone()),
            [] => Err(CliError::Usage(format!(
                "{}: {} is not granted {contract} (members.subsystems.grants)",
                config.source, self.subsystem
            ))),
            many => Err(CliError::Usage(format!(
                "--purpose: choose one of {}",
                many.join(", ")
            ))),
        }
    }

    /// A client of the local face presenting the subsystem's own certificate from the PKI
    /// directory, checking the gateway's against `manifest`'s CAs and the federation CRL,
    /// reading answers of at most `max_answer` bytes.
    fn client(
        &self,
        config: &Config,
        manifest: &Manifest,
        max_answer: usize,
    ) -> Result<PeerClient, CliError> {
        let trust =
            gateway::tls::FederationTrust::load(&manifest.doc().ca, &config.federation.crl)?;
        let layout = &config.federation.pki;
        Ok(PeerClient::from_files(
            &trust,
            &layout.client_cert(self.subsystem),
            &layout.client_key(self.subsystem),
            self.member.id.clone(),
            max_answer,
        )?)
    }
}

/// The manifest `config` names, verified against the authority's key.
fn verified_manifest(config: &Config) -> Result<Manifest, CliError> {
    let key = load_authority_key(&config.federation.authority_key)?;
    let manifest_path = config.federation.manifest.as_path();
    let text = std::fs::read_to_string(manifest_path).map_err(CliError::file(manifest_path))?;
    Manifest::verify(&text, &key, contracts::unix_now()).map_err(CliError::file(manifest_path))
}
