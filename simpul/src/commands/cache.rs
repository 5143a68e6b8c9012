//! `simpul cache purge`: drop a contract's cached answers on a running gateway, through its
//! admin listener.

use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use contracts::{MemberId, StaffId};
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
        /// The operator identity to present, e.g. operator:ID:GOV:KEMLU:OPS (default: the
        /// first of the gateway's `admin.operators`).
        #[arg(long = "as")]
        as_admin: Option<StaffId>,
    },
}

pub async fn run(config: &Config, command: CacheCommand) -> Result<ExitCode, CliError> {
    let CacheCommand::Purge {
        member,
        contract,
        version,
        as_admin,
    } = command;
    let admin = super::admin_listener(config, &member)?;
    let identity = as_admin
        .or_else(|| admin.operators.first().cloned())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{}: {member}'s admin.operators is empty: add one, or pass --as operator:{member}:NAME",
                config.source
            ))
        })?;
    let client = super::staff_client(config, &member, &identity, 1 << 20)?;
    let body = serde_json::to_vec(&serde_json::json!({"contract": contract, "version": version}))
        .map_err(|e| CliError::Process(format!("purge request: {e}")))?;
    let url = format!(
        "https://localhost:{}/admin/cache/purge",
        admin.listen.port()
    );
    let reply = super::post_json(&client, url, body, Duration::from_secs(10)).await?;
    let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
    if reply.status.is_success() {
        let what = match &version {
            Some(v) => format!("{contract}/{v}"),
            None => format!("{contract} (every version)"),
        };
        println!(
            "{member}: dropped {} cached answers of {what}",
            answer["entries"].as_u64().unwrap_or(0)
        );
    } else {
        eprintln!(
            "simpul: {member} refused the purge ({}): {}",
            reply.status,
            answer["detail"].as_str().map_or_else(
                || String::from_utf8_lossy(&reply.body).into_owned(),
                str::to_owned
            )
        );
    }
    Ok(super::exit_code(&reply))
}
