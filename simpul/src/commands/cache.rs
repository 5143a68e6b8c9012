//! `simpul cache purge`: drop a contract's cached answers on a running gateway, through its
//! admin listener.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use contracts::MemberId;
use gateway::client::PeerClient;
use gateway::config::Config;

use crate::error::CliError;

#[derive(Subcommand)]
pub enum CacheCommand {
    /// Drop every cached answer of one contract.
    Purge {
        /// The member whose gateway to purge.
        #[arg(long)]
        member: MemberId,
        /// Contract id.
        #[arg(long)]
        contract: String,
        /// Version (default: every version).
        #[arg(long)]
        version: Option<String>,
        /// The admin identity to present (default: the first of the gateway's admin clients).
        #[arg(long = "as")]
        as_admin: Option<MemberId>,
    },
}

pub async fn run(config: &Config, command: CacheCommand) -> Result<ExitCode, CliError> {
    let CacheCommand::Purge {
        member,
        contract,
        version,
        as_admin,
    } = command;
    let mc = config.member(&member).ok_or_else(|| {
        CliError::Usage(format!(
            "--member {member}: not a member in {}",
            config.source
        ))
    })?;
    let admin = mc.admin.as_ref().ok_or_else(|| {
        CliError::Usage(format!(
            "{member} has no admin listener in {} (members.admin)",
            config.source
        ))
    })?;
    let identity = as_admin
        .or_else(|| admin.clients.first().cloned())
        .ok_or_else(|| CliError::Usage(format!("{member}'s admin.clients is empty: pass --as")))?;
    let layout = &config.federation.pki;
    let ca = gateway::tls::load_certs(&layout.ca_cert())?;
    let client = PeerClient::from_files(
        &ca,
        &layout.client_cert(&identity),
        &layout.client_key(&identity),
        member.clone(),
        1 << 20,
    )?;
    let body = serde_json::to_vec(&serde_json::json!({"contract": contract, "version": version}))
        .map_err(|e| CliError::Process(format!("purge request: {e}")))?;
    let url = format!(
        "https://localhost:{}/admin/cache/purge",
        admin.listen.port()
    );
    let reply = super::post_json(&client, url, body, Duration::from_secs(10)).await?;
    println!("{}", String::from_utf8_lossy(&reply.body));
    Ok(super::exit_code(&reply))
}
