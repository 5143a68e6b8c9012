//! `simpul query --as SUBSYSTEM CONTRACT VERSION QUERY`: ask a contract through your own
//! gateway's local face, on its local listener, as a ministry system would.

use std::process::ExitCode;
use std::time::Duration;

use contracts::envelope::{LocalQuery, MAX_ANSWER_BYTES};
use contracts::{ContractRef, MemberId};
use gateway::config::Config;

use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The subsystem you ask as, e.g. ID:GOV:KEMLU:PEDULI-WNI.
    #[arg(long = "as")]
    as_subsystem: MemberId,
    /// The purpose (default: the one purpose your member is granted for the contract).
    #[arg(long)]
    purpose: Option<String>,
    /// Contract id.
    contract: String,
    /// Contract version.
    version: String,
    /// The query, as JSON.
    query: String,
}

pub async fn run(config: &Config, args: Args) -> Result<ExitCode, CliError> {
    let subsystem = &args.as_subsystem;
    let contract = ContractRef::new(args.contract, args.version);
    let caller = super::local_caller(config, subsystem)?;
    let mc = caller.member;
    let query: serde_json::Value = serde_json::from_str(&args.query)
        .map_err(|e| CliError::Usage(format!("query: not JSON: {e}")))?;
    let manifest = super::verified_manifest(config)?;
    // A contract nobody defines is a typo, not a permission problem.
    let federated = mc.federated.iter().any(|f| f.reference == contract);
    if !federated && manifest.contract(&contract).is_none() {
        let mut known: Vec<String> = manifest
            .doc()
            .contracts
            .iter()
            .map(|c| format!("{} {}", c.id, c.version))
            .chain(
                mc.federated
                    .iter()
                    .map(|f| format!("{} {}", f.reference.id, f.reference.version)),
            )
            .collect();
        known.sort();
        return Err(CliError::Usage(format!(
            "{} {}: no such contract in this federation; the contracts are: {}",
            contract.id,
            contract.version,
            known.join(", ")
        )));
    }
    let purpose = caller.purpose(config, &contract, args.purpose)?;
    let client = caller.client(config, &manifest, MAX_ANSWER_BYTES)?;
    let body = serde_json::to_vec(&LocalQuery { purpose, query })
        .map_err(|e| CliError::Process(format!("query: {e}")))?;
    let url = format!(
        "{}/v1/query/{}/{}",
        caller.local.url(),
        contract.id,
        contract.version
    );
    let reply = super::post_json(&client, url, body, Duration::from_secs(30)).await?;
    let pretty = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned());
    println!("{pretty}");
    Ok(super::exit_code(&reply))
}
