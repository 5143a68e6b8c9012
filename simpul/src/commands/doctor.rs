//! `simpul doctor --member ID`: checks one member's deployment (certificates, key files,
//! manifest, bindings, audit store, peers and clocks, listen addresses, open-file limit)
//! and prints one line per check, `ok`, `warn` or `FAIL`, with what to do; exit 1 on any
//! failure. The checks are `gateway::doctor`'s.

use std::process::ExitCode;

use contracts::MemberId;
use gateway::config::Config;
use gateway::doctor::{self, Verdict};

use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The member whose deployment to check.
    #[arg(long)]
    member: MemberId,
    /// Print the findings as one JSON document instead of lines.
    #[arg(long)]
    json: bool,
}

pub async fn run(config: &Config, args: Args) -> Result<ExitCode, CliError> {
    if config.member(&args.member).is_none() {
        return Err(CliError::Usage(format!(
            "--member {}: not a member in {}",
            args.member, config.source
        )));
    }
    let report = doctor::examine(config, &args.member, contracts::unix_now()).await?;
    let verdict = report.verdict();
    if args.json {
        let doc = serde_json::json!({
            "member": report.member,
            "verdict": verdict,
            "findings": report.findings,
        });
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| CliError::Process(format!("cannot write JSON: {e}")))?;
        println!("{text}");
    } else {
        for finding in &report.findings {
            println!("{finding}");
        }
        let count = |v| report.findings.iter().filter(|f| f.verdict == v).count();
        println!(
            "{}: {} ok, {} warn, {} FAIL",
            report.member,
            count(Verdict::Ok),
            count(Verdict::Warn),
            count(Verdict::Fail)
        );
    }
    Ok(if verdict == Verdict::Fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
