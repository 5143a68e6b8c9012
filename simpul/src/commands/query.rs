//! `simpul query --as SUBSYSTEM CONTRACT VERSION QUERY`: ask a contract through your own
//! gateway's local face, on its local listener, as a ministry system would.

use std::process::ExitCode;
use std::time::Duration;

use contracts::envelope::{LocalQuery, MAX_ANSWER_BYTES};
use contracts::{ContractRef, Manifest, MemberId};
use gateway::assemble::load_authority_key;
use gateway::client::PeerClient;
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
    let query: serde_json::Value = serde_json::from_str(&args.query)
        .map_err(|e| CliError::Usage(format!("query: not JSON: {e}")))?;
    let key = load_authority_key(&config.federation.authority_key)?;
    let manifest_path = config.federation.manifest.as_path();
    let text = std::fs::read_to_string(manifest_path).map_err(CliError::file(manifest_path))?;
    let manifest = Manifest::verify(&text, &key, contracts::unix_now())
        .map_err(CliError::file(manifest_path))?;
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
    let purpose = match args.purpose {
        Some(p) => p,
        None => match mc.federated.iter().find(|f| f.reference == contract) {
            Some(f) => f.purpose.clone(),
            None => {
                // The subsystem's own grant, as the gateway will check it.
                let granted = own
                    .grants
                    .iter()
                    .find(|g| g.contract == contract)
                    .map(|g| g.purposes.as_slice())
                    .unwrap_or_default();
                match granted {
                    [one] => one.clone(),
                    [] => {
                        return Err(CliError::Usage(format!(
                            "{}: {subsystem} is not granted {contract} (members.subsystems.grants)",
                            config.source
                        )));
                    }
                    many => {
                        return Err(CliError::Usage(format!(
                            "--purpose: choose one of {}",
                            many.join(", ")
                        )));
                    }
                }
            }
        },
    };
    let trust = gateway::tls::FederationTrust::load(&manifest.doc().ca, &config.federation.crl)?;
    let layout = &config.federation.pki;
    let client = PeerClient::from_files(
        &trust,
        &layout.client_cert(subsystem),
        &layout.client_key(subsystem),
        member.clone(),
        MAX_ANSWER_BYTES,
    )?;
    let body = serde_json::to_vec(&LocalQuery { purpose, query })
        .map_err(|e| CliError::Process(format!("query: {e}")))?;
    let url = format!(
        "{}/v1/query/{}/{}",
        local.url(),
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
