//! `simpul counts --as SUBSYSTEM [--by DIMENSION] [--json] [CONTRACT/VERSION…]`: each list's
//! own count from its statistics contract, asked through your own gateway, and what follows
//! for the size of their union — every figure with the exchange whose signed answer it came
//! from, which both gateways' audit logs record under that id (docs/COUNTS.md).

mod report;

use std::process::ExitCode;
use std::time::Duration;

use contracts::disclosure::PublishedTable;
use contracts::envelope::{LocalAnswer, LocalQuery, MAX_ANSWER_BYTES};
use contracts::{Contract, ContractRef, MemberId, Problem};
use gateway::config::Config;
use serde::Serialize;
use serde_json::json;

use self::report::Row;
use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The subsystem you ask as, e.g. ID:GOV:KEMLU:PEDULI-WNI.
    #[arg(long = "as")]
    as_subsystem: MemberId,
    /// Break the counts down by this dimension, which every list's contract must have
    /// (e.g. country).
    #[arg(long)]
    by: Option<String>,
    /// Print the report as JSON, with each list's signed answer.
    #[arg(long)]
    json: bool,
    /// The lists: statistics contracts as ID or ID/VERSION (default: every statistics
    /// contract the subsystem is granted).
    lists: Vec<String>,
}

/// One list asked, and its answer.
#[derive(Serialize)]
struct Asked {
    contract: String,
    version: String,
    title: String,
    provider: MemberId,
    purpose: String,
    /// The exchange: its record at this member's gateway and at the provider's has this id.
    exchange_id: String,
    /// The provider's signed answer (compact JWS), which holds the table.
    answer: String,
    #[serde(skip)]
    table: PublishedTable,
}

pub async fn run(config: &Config, args: Args) -> Result<ExitCode, CliError> {
    let caller = super::local_caller(config, &args.as_subsystem)?;
    let lists = lists(config, &caller, &args)?;
    let manifest = super::verified_manifest(config)?;
    let client = caller.client(config, &manifest, MAX_ANSWER_BYTES)?;
    let mut asked = Vec::with_capacity(lists.len());
    for contract in lists {
        let r = contract.reference();
        let stats = contract
            .statistics()
            .ok_or_else(|| CliError::Usage(format!("{r} is not a statistics contract")))?;
        let dimension = match &args.by {
            Some(by) if stats.dimensions.contains(by) => by.clone(),
            Some(by) => {
                return Err(CliError::Usage(format!(
                    "--by {by}: {r} has no such dimension (its dimensions: {})",
                    stats.dimensions.join(", ")
                )));
            }
            // Any one: only the grand total is read.
            None => stats.dimensions[0].clone(),
        };
        let purpose = caller.purpose(config, &r, None)?;
        let body = serde_json::to_vec(&LocalQuery {
            purpose: purpose.clone(),
            query: json!({ "dimensions": [dimension] }),
        })
        .map_err(|e| CliError::Process(format!("counts: {e}")))?;
        let url = format!("{}/v1/query/{}/{}", caller.local.url(), r.id, r.version);
        let reply = super::post_json(&client, url, body, Duration::from_secs(60)).await?;
        if !reply.status.is_success() {
            let why = serde_json::from_slice::<Problem>(&reply.body).map_or_else(
                |_| format!("HTTP {}", reply.status),
                |p| format!("HTTP {} {}: {}", p.status, p.type_uri, p.detail),
            );
            return Err(CliError::Process(format!("{r}: refused: {why}")));
        }
        let answer: LocalAnswer = serde_json::from_slice(&reply.body).map_err(|e| {
            CliError::Process(format!("{r}: the answer is not a local answer: {e}"))
        })?;
        let table: PublishedTable = serde_json::from_value(answer.result)
            .map_err(|e| CliError::Process(format!("{r}: the answer is not a table: {e}")))?;
        asked.push(Asked {
            contract: r.id.clone(),
            version: r.version.clone(),
            title: contract.doc().title.clone(),
            provider: answer.provider,
            purpose,
            exchange_id: answer.exchange_id,
            answer: answer.evidence.response,
            table,
        });
    }
    let tables: Vec<PublishedTable> = asked.iter().map(|a| a.table.clone()).collect();
    let rows = report::rows(&tables, args.by.is_some())
        .map_err(|e| CliError::Process(format!("counts: a table cannot be read: {e}")))?;
    if args.json {
        let out = json!({
            "asked_by": args.as_subsystem,
            "by": args.by,
            "lists": asked,
            "rows": rows,
        });
        let text = serde_json::to_string_pretty(&out)
            .map_err(|e| CliError::Process(format!("counts: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", table_text(&args, &asked, &rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// The lists to ask: those named, or every statistics contract the subsystem is granted.
fn lists<'c>(
    config: &'c Config,
    caller: &super::LocalCaller<'_>,
    args: &Args,
) -> Result<Vec<&'c Contract>, CliError> {
    if args.lists.is_empty() {
        let granted: Vec<&Contract> = caller
            .own
            .grants
            .iter()
            .filter_map(|g| config.catalog.get(&g.contract))
            .filter(|c| c.statistics().is_some())
            .collect();
        if granted.is_empty() {
            return Err(CliError::Usage(format!(
                "--as {}: granted no statistics contract in {} (members.subsystems.grants); name the lists",
                args.as_subsystem, config.source
            )));
        }
        return Ok(granted);
    }
    args.lists
        .iter()
        .map(|name| {
            let (id, version) = name.split_once('/').unwrap_or((name, ""));
            let found: Vec<&Contract> = config
                .catalog
                .iter()
                .filter(|(r, _)| r.id == id && (version.is_empty() || r.version == version))
                .map(|(_, c)| c)
                .collect();
            match found.as_slice() {
                [one] if one.statistics().is_some() => Ok(*one),
                [one] => Err(CliError::Usage(format!(
                    "{name}: {} is not a statistics contract",
                    one.reference()
                ))),
                [] => Err(CliError::Usage(format!(
                    "{name}: no such contract in the catalog of {}",
                    config.source
                ))),
                _ => Err(CliError::Usage(format!(
                    "{name}: more than one version; name one as {id}/VERSION"
                ))),
            }
        })
        .collect()
}

/// The report as a table for people.
fn table_text(args: &Args, asked: &[Asked], rows: &[Row]) -> String {
    let mut out = String::new();
    let heading = args.by.as_deref().unwrap_or("").to_uppercase();
    let names: Vec<String> = asked
        .iter()
        .map(|a| ContractRef::new(&a.contract, &a.version).to_string())
        .collect();
    let mut lines: Vec<Vec<String>> = Vec::new();
    let mut head = vec![heading];
    head.extend(names.iter().cloned());
    head.push("UNION".into());
    lines.push(head);
    for row in rows {
        let mut line = vec![row.value.clone().unwrap_or_else(|| "all".into())];
        line.extend(row.lists.iter().map(report::Range::text));
        line.push(row.union.text());
        lines.push(line);
    }
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    out.push_str(&format!(
        "Counts asked by {}{}\n\n",
        args.as_subsystem,
        args.by
            .as_deref()
            .map(|b| format!(", by {b}"))
            .unwrap_or_default()
    ));
    for line in &lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                let pad = w - cell.chars().count();
                if i == 0 {
                    format!("{cell}{}", " ".repeat(pad))
                } else {
                    format!("{}{cell}", " ".repeat(pad))
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(
        "\nA range is what the published figures allow where a count is suppressed or rounded.\n\
         UNION: the people on at least one list, as far as the counts alone say — at least the\n\
         largest list, at most their sum. Overlaps between the lists are not measured here.\n\n\
         Each list's signed answer (its record at both gateways has the exchange id):\n",
    );
    for (name, a) in names.iter().zip(asked) {
        out.push_str(&format!(
            "  {name}  {}  {}  exchange {}  ({})\n",
            a.provider, a.purpose, a.exchange_id, a.title
        ));
    }
    out
}
