//! `simpul counts --as SUBSYSTEM [--by DIMENSION] [--json] [--overlap CONTRACT[/VERSION]…]
//! [--list NAME] [--no-overlaps] [CONTRACT/VERSION…]`: each list's own count from its
//! statistics contract, how many of your own list are on each provider's list from its overlap
//! contract, and what follows for the size of their unions — asked through your own gateway,
//! every figure with the exchange whose signed answer and audit records it came from
//! (docs/COUNTS.md).

mod report;

use std::collections::BTreeSet;
use std::fmt;
use std::process::ExitCode;
use std::time::Duration;

use contracts::disclosure::PublishedTable;
use contracts::envelope::{Evidence, LocalAnswer, LocalQuery, MAX_ANSWER_BYTES};
use contracts::{Contract, ContractRef, MemberId, Problem};
use gateway::client::PeerClient;
use gateway::config::Config;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use self::report::{Pair, Range, Row};
use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The subsystem you ask as, e.g. ID:GOV:KEMLU:PEDULI-WNI.
    #[arg(long = "as")]
    as_subsystem: MemberId,
    /// Break the counts down by this dimension, which every statistics contract asked must
    /// have (e.g. country). The overlaps are then broken down by the labels of your own list
    /// — its `label` column, whatever that holds (the demo's `selfreports`: the country of
    /// each NIK's latest self-report) — with the labels under the contract's minimum pooled
    /// as "(other)": use it with the dimension your list is labelled by.
    #[arg(long)]
    by: Option<String>,
    /// Print the report as JSON, with each list's signed answer and each overlap run's
    /// signed request and answer.
    #[arg(long)]
    json: bool,
    /// An overlap contract to count your own list against, as ID or ID/VERSION; repeat for
    /// more (default: every overlap contract the subsystem is granted). Each is run once,
    /// and spends one of the contract's runs a day.
    #[arg(
        long = "overlap",
        value_name = "CONTRACT[/VERSION]",
        conflicts_with = "no_overlaps"
    )]
    overlaps: Vec<String>,
    /// Your own list the overlaps count, one of your member's [[members.lists]] (default:
    /// its only list).
    #[arg(long, value_name = "NAME")]
    list: Option<String>,
    /// Run no overlap contract: only the statistics contracts' counts, spending none of
    /// the day's runs.
    #[arg(long)]
    no_overlaps: bool,
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

/// A contract to ask, and what for: everything is settled before anything is asked.
struct Planned<'c> {
    contract: &'c Contract,
    purpose: String,
    /// The local question's `query`.
    query: Value,
}

/// What one invocation asks: the statistics contracts, then the overlap contracts against
/// the caller's list `list` (one run each).
struct Plan<'c> {
    statistics: Vec<Planned<'c>>,
    overlaps: Vec<Planned<'c>>,
    /// The caller's own list the overlaps count; `None` when there is no overlap to run.
    list: Option<String>,
}

/// Why the local face gave no answer: its problem, or the call's failure.
#[derive(Serialize)]
struct Failure {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    type_uri: Option<String>,
    detail: String,
    /// The exchange, when one began: both gateways' records of it have this id.
    #[serde(skip_serializing_if = "Option::is_none")]
    exchange_id: Option<String>,
}

impl Failure {
    fn of(detail: impl Into<String>) -> Failure {
        Failure {
            status: None,
            type_uri: None,
            detail: detail.into(),
            exchange_id: None,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.status, &self.type_uri) {
            (Some(status), Some(t)) => write!(f, "HTTP {status} {t}: {}", self.detail),
            (Some(status), None) => write!(f, "HTTP {status}"),
            _ => f.write_str(&self.detail),
        }
    }
}

/// What the local face answers for an overlap run (gateway/src/overlap/consumer.rs).
#[derive(Deserialize)]
struct RunResult {
    overlap: u64,
    theirs: u64,
    identifiers: u64,
    groups: Vec<Group>,
    report: RunReport,
}

/// One group of the caller's list in a grouped run: its label, distinct identifiers and
/// how many of them are on the provider's list.
#[derive(Clone, Deserialize, Serialize)]
struct Group {
    label: String,
    size: u64,
    overlap: u64,
}

/// The run's report: the second exchange, which puts the count in the provider's log too.
#[derive(Deserialize, Serialize)]
struct RunReport {
    exchange_id: Option<String>,
    recorded: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    problem: Option<String>,
}

/// One overlap contract run against the caller's list.
#[derive(Serialize)]
struct Ran {
    contract: String,
    version: String,
    title: String,
    provider: MemberId,
    purpose: String,
    /// What the provider's list holds (e.g. `nik`).
    identifier: String,
    #[serde(flatten)]
    outcome: Outcome,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Outcome {
    Measured(Box<Measured>),
    Refused(Failure),
}

/// The figures of one run, each from the exchange named beside it.
#[derive(Serialize)]
struct Measured {
    /// The run: its signed request holds `identifiers` (the sizes of the groups sent), its
    /// signed answer `theirs`; both gateways record it under this id.
    exchange_id: String,
    /// The caller's list, A.
    list: String,
    /// |A| (`identifiers`: the distinct identifiers of A the run sent), |B| (`theirs`: the
    /// distinct identifiers of the provider's list) and |A ∩ B| (`overlap`: counted by the
    /// caller's gateway, recorded at both ends under the report's exchange id).
    #[serde(flatten)]
    figures: Pair,
    /// |A ∪ B| = |A| + |B| − |A ∩ B|.
    union: u64,
    /// Per label of A, when the run was grouped.
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<Vec<Group>>,
    report: RunReport,
    /// The run's signed request and answer (compact JWS).
    evidence: Evidence,
}

/// What the runs say of the people on the caller's list or any provider's list.
#[derive(Serialize)]
struct UnionOfAll {
    /// The caller's list, then each provider's (by its overlap contract).
    lists: Vec<String>,
    #[serde(flatten)]
    range: Range,
    /// The runs the bounds follow from.
    exchanges: Vec<String>,
    lo_is: &'static str,
    hi_is: &'static str,
}

const LO_IS: &str = "the largest union of the caller's list with one provider's list, |A| + |B| - |A ∩ B|: everyone in it is in the union of all";
const HI_IS: &str = "|A| + Σ|B| - Σ|A ∩ B|: the overlaps between two providers' lists are not measured, so a person on two of them and not on the caller's list is counted twice (on k of them, k times); no narrower bound follows from the figures";

/// The whole report, as `--json` prints it.
#[derive(Serialize)]
struct Report<'a> {
    asked_by: &'a MemberId,
    by: Option<&'a str>,
    /// The statistics contracts asked.
    lists: Vec<Asked>,
    rows: Vec<Row>,
    /// The caller's own list the overlaps count.
    #[serde(skip_serializing_if = "Option::is_none")]
    own_list: Option<OwnList>,
    overlaps: Vec<Ran>,
    #[serde(skip_serializing_if = "Option::is_none")]
    union_of_all: Option<UnionOfAll>,
    /// What a reader must know to compare the figures.
    notes: Vec<String>,
}

#[derive(Serialize)]
struct OwnList {
    name: String,
    member: MemberId,
    /// Whether the runs counted per label of the list.
    grouped: bool,
}

/// The longest a run is waited for: the gateway holds it to its own deadline (ten minutes
/// and one more per million identifiers, at most ten million) and then reports it.
const RUN_TIMEOUT: Duration = Duration::from_secs(30 * 60);

pub async fn run(config: &Config, args: Args) -> Result<ExitCode, CliError> {
    let caller = super::local_caller(config, &args.as_subsystem)?;
    // Everything is checked before anything is asked: a run spends one of a day's few.
    let plan = plan(config, &caller, &args)?;
    let manifest = super::verified_manifest(config)?;
    let client = caller.client(config, &manifest, MAX_ANSWER_BYTES)?;
    let mut asked = Vec::with_capacity(plan.statistics.len());
    for s in &plan.statistics {
        let r = s.contract.reference();
        let answer = ask(&client, &caller, s, Duration::from_secs(60))
            .await?
            .map_err(|f| CliError::Process(format!("{r}: refused: {f}")))?;
        let table: PublishedTable = serde_json::from_value(answer.result)
            .map_err(|e| CliError::Process(format!("{r}: the answer is not a table: {e}")))?;
        asked.push(Asked {
            contract: r.id.clone(),
            version: r.version.clone(),
            title: s.contract.doc().title.clone(),
            provider: answer.provider,
            purpose: s.purpose.clone(),
            exchange_id: answer.exchange_id,
            answer: answer.evidence.response,
            table,
        });
    }
    let tables: Vec<PublishedTable> = asked.iter().map(|a| a.table.clone()).collect();
    let rows = report::rows(&tables, args.by.is_some())
        .map_err(|e| CliError::Process(format!("counts: a table cannot be read: {e}")))?;
    let mut overlaps = Vec::with_capacity(plan.overlaps.len());
    if let Some(list) = &plan.list {
        // One at a time: a gateway makes one run at a time.
        for o in &plan.overlaps {
            overlaps.push(run_overlap(&client, &caller, o, list, args.by.is_some()).await);
        }
    }
    let measured: Vec<(&Ran, &Measured)> = overlaps
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Measured(m) => Some((r, m.as_ref())),
            Outcome::Refused(_) => None,
        })
        .collect();
    let union_of_all = plan.list.as_ref().and_then(|list| {
        let pairs: Vec<Pair> = measured.iter().map(|(_, m)| m.figures).collect();
        report::union_of_all(&pairs).map(|range| UnionOfAll {
            lists: std::iter::once(list.clone())
                .chain(measured.iter().map(|(r, _)| name(r)))
                .collect(),
            range,
            exchanges: measured
                .iter()
                .map(|(_, m)| m.exchange_id.clone())
                .collect(),
            lo_is: LO_IS,
            hi_is: HI_IS,
        })
    });
    let notes = notes(
        &caller.member.id,
        &asked,
        &rows,
        &measured,
        args.by.is_some(),
    );
    let refused = overlaps
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Refused(_)));
    let report = Report {
        asked_by: &args.as_subsystem,
        by: args.by.as_deref(),
        lists: asked,
        rows,
        own_list: plan.list.map(|name| OwnList {
            name,
            member: caller.member.id.clone(),
            grouped: args.by.is_some(),
        }),
        overlaps,
        union_of_all,
        notes,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| CliError::Process(format!("counts: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", text(&report));
    }
    // The figures measured are printed either way; a refused run fails the command.
    Ok(if refused {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// An overlap contract's name in the report: `placement.overlap/1`.
fn name(r: &Ran) -> String {
    ContractRef::new(&r.contract, &r.version).to_string()
}

/// Asks the local face `planned`'s question within `timeout`: the answer, or why there is
/// none (`Err` only when the call itself cannot be made or its answer read).
async fn ask(
    client: &PeerClient,
    caller: &super::LocalCaller<'_>,
    planned: &Planned<'_>,
    timeout: Duration,
) -> Result<Result<LocalAnswer, Failure>, CliError> {
    let r = planned.contract.reference();
    let body = serde_json::to_vec(&LocalQuery {
        purpose: planned.purpose.clone(),
        query: planned.query.clone(),
    })
    .map_err(|e| CliError::Process(format!("counts: {e}")))?;
    let url = format!("{}/v1/query/{}/{}", caller.local.url(), r.id, r.version);
    let reply = super::post_json(client, url, body, timeout).await?;
    if !reply.status.is_success() {
        return Ok(Err(serde_json::from_slice::<Problem>(&reply.body)
            .map_or_else(
                |_| Failure {
                    status: Some(reply.status.as_u16()),
                    ..Failure::of("")
                },
                |p| Failure {
                    status: Some(p.status),
                    type_uri: Some(p.type_uri),
                    detail: p.detail,
                    exchange_id: p.exchange_id,
                },
            )));
    }
    serde_json::from_slice(&reply.body)
        .map(Ok)
        .map_err(|e| CliError::Process(format!("{r}: the answer is not a local answer: {e}")))
}

/// Runs the overlap contract of `planned` against the caller's `list` once; whatever goes
/// wrong is the report's, so that the other runs' figures are not lost.
async fn run_overlap(
    client: &PeerClient,
    caller: &super::LocalCaller<'_>,
    planned: &Planned<'_>,
    list: &str,
    grouped: bool,
) -> Ran {
    let r = planned.contract.reference();
    let doc = planned.contract.doc();
    let outcome = match ask(client, caller, planned, RUN_TIMEOUT).await {
        Ok(Ok(answer)) => measured(answer, list, grouped)
            .map_or_else(Outcome::Refused, |m| Outcome::Measured(Box::new(m))),
        Ok(Err(refused)) => Outcome::Refused(refused),
        Err(e) => Outcome::Refused(Failure::of(e.to_string())),
    };
    Ran {
        contract: r.id,
        version: r.version,
        title: doc.title.clone(),
        provider: doc.provider.clone(),
        purpose: planned.purpose.clone(),
        identifier: planned
            .contract
            .overlap()
            .map(|t| t.identifier.clone())
            .unwrap_or_default(),
        outcome,
    }
}

/// The figures of a run's answer, checked to be the sizes of two sets and their overlap.
fn measured(answer: LocalAnswer, list: &str, grouped: bool) -> Result<Measured, Failure> {
    let result: RunResult = serde_json::from_value(answer.result).map_err(|e| Failure {
        exchange_id: Some(answer.exchange_id.clone()),
        ..Failure::of(format!("the answer is not an overlap count: {e}"))
    })?;
    let pair =
        Pair::new(result.identifiers, result.theirs, result.overlap).map_err(|e| Failure {
            exchange_id: Some(answer.exchange_id.clone()),
            ..Failure::of(format!("the answer reports {e}"))
        })?;
    Ok(Measured {
        exchange_id: answer.exchange_id,
        list: list.to_owned(),
        figures: pair,
        union: pair.union(),
        groups: grouped.then_some(result.groups),
        report: result.report,
        evidence: answer.evidence,
    })
}

/// Finds the contract `name` (`ID` or `ID/VERSION`) in the catalog; `kind` and `is` say
/// which contracts may be named.
fn find<'c>(
    config: &'c Config,
    name: &str,
    kind: &str,
    is: fn(&Contract) -> bool,
) -> Result<&'c Contract, CliError> {
    let (id, version) = name.split_once('/').unwrap_or((name, ""));
    let found: Vec<&Contract> = config
        .catalog
        .iter()
        .filter(|(r, _)| r.id == id && (version.is_empty() || r.version == version))
        .map(|(_, c)| c)
        .collect();
    match found.as_slice() {
        [one] if is(one) => Ok(*one),
        [one] => Err(CliError::Usage(format!(
            "{name}: {} is not {kind}",
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
}

/// The contracts named, or every one of the kind `is` picks that the subsystem is granted;
/// each once, however often it is named (a run is not spent twice).
fn contracts<'c>(
    config: &'c Config,
    caller: &super::LocalCaller<'_>,
    named: &[String],
    kind: &str,
    is: fn(&Contract) -> bool,
) -> Result<Vec<&'c Contract>, CliError> {
    let found: Vec<&Contract> = if named.is_empty() {
        caller
            .own
            .grants
            .iter()
            .filter_map(|g| config.catalog.get(&g.contract))
            .filter(|c| is(c))
            .collect()
    } else {
        named
            .iter()
            .map(|name| find(config, name, kind, is))
            .collect::<Result<_, _>>()?
    };
    let mut seen = BTreeSet::new();
    Ok(found
        .into_iter()
        .filter(|c| seen.insert(c.reference()))
        .collect())
}

/// What to ask, checked against the configuration before anything is asked.
fn plan<'c>(
    config: &'c Config,
    caller: &super::LocalCaller<'_>,
    args: &Args,
) -> Result<Plan<'c>, CliError> {
    let statistics = contracts(config, caller, &args.lists, "a statistics contract", |c| {
        c.statistics().is_some()
    })?;
    let overlaps = if args.no_overlaps {
        Vec::new()
    } else {
        contracts(config, caller, &args.overlaps, "an overlap contract", |c| {
            c.overlap().is_some()
        })?
    };
    if statistics.is_empty() && overlaps.is_empty() {
        return Err(CliError::Usage(format!(
            "--as {}: granted no statistics or overlap contract in {} (members.subsystems.grants); name the lists",
            args.as_subsystem, config.source
        )));
    }
    let statistics = statistics
        .into_iter()
        .map(|contract| {
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
            Ok(Planned {
                contract,
                purpose: caller.purpose(config, &r, None)?,
                query: json!({ "dimensions": [dimension] }),
            })
        })
        .collect::<Result<Vec<_>, CliError>>()?;
    // A list named is checked even when no overlap is to run.
    let list = own_list(config, caller, args.list.as_deref(), !overlaps.is_empty())?
        .filter(|_| !overlaps.is_empty());
    let overlaps = match &list {
        Some(list) => overlaps
            .into_iter()
            .map(|contract| {
                Ok(Planned {
                    contract,
                    purpose: caller.purpose(config, &contract.reference(), None)?,
                    query: json!({ "list": list, "grouped": args.by.is_some() }),
                })
            })
            .collect::<Result<Vec<_>, CliError>>()?,
        None => Vec::new(),
    };
    Ok(Plan {
        statistics,
        overlaps,
        list,
    })
}

/// The caller's list the overlaps count: `named`, else the member's only list; `None`
/// when no overlap is to run and none is named.
fn own_list(
    config: &Config,
    caller: &super::LocalCaller<'_>,
    named: Option<&str>,
    needed: bool,
) -> Result<Option<String>, CliError> {
    let member = &caller.member.id;
    let names: Vec<&str> = caller
        .member
        .lists
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    let known = || {
        if names.is_empty() {
            "it has none (members.lists)".to_owned()
        } else {
            format!("its lists: {}", names.join(", "))
        }
    };
    match (named, names.as_slice()) {
        (Some(name), _) if names.contains(&name) => Ok(Some(name.to_owned())),
        (Some(name), _) => Err(CliError::Usage(format!(
            "--list {name}: {member} has no such list in {}; {}",
            config.source,
            known()
        ))),
        (None, _) if !needed => Ok(None),
        (None, [one]) => Ok(Some((*one).to_owned())),
        (None, _) => Err(CliError::Usage(format!(
            "an overlap counts one of your own lists: name it with --list ({member} in {}: {}), or run none with --no-overlaps",
            config.source,
            known()
        ))),
    }
}

/// The footnotes: where a statistics contract's count and an overlap's list size are of
/// the same provider's records, they are different measures, and are said to be; and how a
/// grouped run's totals are made.
fn notes(
    own: &MemberId,
    asked: &[Asked],
    rows: &[Row],
    measured: &[(&Ran, &Measured)],
    grouped: bool,
) -> Vec<String> {
    let mut notes = Vec::new();
    let totals = rows.last().map(|r| r.lists.as_slice()).unwrap_or_default();
    let differ = |count: &Range, distinct: u64| {
        let exact = count.hi == Some(count.lo);
        let gap = if count.lo > distinct {
            Some(count.lo - distinct)
        } else {
            count.hi.filter(|&hi| hi < distinct).map(|hi| distinct - hi)
        };
        match gap {
            None if exact => "They agree here.".to_owned(),
            None => "The count's range holds the list's size.".to_owned(),
            Some(gap) if exact => format!("They differ here by {gap}."),
            Some(gap) => format!("They differ here by at least {gap}."),
        }
    };
    for (ran, m) in measured {
        let what = plural(&ran.identifier);
        for (a, total) in asked.iter().zip(totals) {
            if a.provider == ran.provider {
                notes.push(format!(
                    "{}: {}/{} counts {} (\"{}\"); the list of {} holds {} distinct {what}. {} Both are {}'s records, but not one measure: a statistics contract counts what it says it counts (e.g. placements, of which one person may have several), an overlap contract's list distinct {what}.",
                    ran.provider,
                    a.contract,
                    a.version,
                    total.text(),
                    a.title,
                    name(ran),
                    m.figures.theirs(),
                    differ(total, m.figures.theirs()),
                    ran.provider,
                ));
            }
        }
    }
    if let Some((ran, m)) = measured.first() {
        let what = plural(&ran.identifier);
        for (a, total) in asked.iter().zip(totals) {
            if &a.provider == own {
                notes.push(format!(
                    "{own} (your member): {}/{} counts {} (\"{}\"); your list {} sent {} distinct {what}. {} Not one measure either: the statistics contract counts what it says it counts (e.g. reports), the list distinct {what}.",
                    a.contract,
                    a.version,
                    total.text(),
                    a.title,
                    m.list,
                    m.figures.identifiers(),
                    differ(total, m.figures.identifiers()),
                ));
            }
        }
    }
    let sizes: BTreeSet<u64> = measured
        .iter()
        .map(|(_, m)| m.figures.identifiers())
        .collect();
    if sizes.len() > 1 {
        let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
        notes.push(format!(
            "Your list changed between the runs (they sent {} distinct identifiers): each union of two is exact for its run, but the runs did not measure one list, so nothing is said of the union of all.",
            sizes.join(" and ")
        ));
    }
    if grouped && !measured.is_empty() {
        notes.push(
            "A grouped run's |A| and |A ∩ B| are the sums over its groups: exact when each identifier has one label in your list, as one row per identifier gives; an identifier under two labels is counted in both, and the unions are then too large."
                .to_owned(),
        );
    }
    notes
}

/// The width the report's prose is wrapped to; tables are as wide as they are.
const WIDTH: usize = 92;

/// `text` in lines of at most `width` characters where its words allow, the first line
/// after `first`, the others after `rest`.
fn wrapped(text: &str, width: usize, first: &str, rest: &str) -> String {
    let mut out = String::new();
    let mut line = first.to_owned();
    let mut empty = true;
    for word in text.split_whitespace() {
        if !empty && line.chars().count() + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = rest.to_owned();
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `nik` → `NIKs`.
fn plural(identifier: &str) -> String {
    format!("{}s", identifier.to_uppercase())
}

/// `lines` as columns two spaces apart, the first `left` aligned left, the rest right.
fn aligned(lines: &[Vec<String>], left: usize) -> String {
    let columns = lines.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            lines
                .iter()
                .map(|l| l.get(c).map_or(0, |s| s.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for line in lines {
        let cells: Vec<String> = line
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, w))| {
                let pad = " ".repeat(w - cell.chars().count());
                if i < left {
                    format!("{cell}{pad}")
                } else {
                    format!("{pad}{cell}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The report as tables for people.
fn text(report: &Report<'_>) -> String {
    let mut out = format!(
        "Counts asked by {}{}\n",
        report.asked_by,
        report.by.map(|b| format!(", by {b}")).unwrap_or_default()
    );
    if !report.lists.is_empty() {
        out.push('\n');
        out.push_str(&statistics_text(report));
    }
    if let Some(own) = &report.own_list {
        out.push('\n');
        out.push_str(&overlaps_text(report, own));
    }
    if !report.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for note in &report.notes {
            out.push_str(&wrapped(note, WIDTH, "  - ", "    "));
        }
    }
    out
}

fn statistics_text(report: &Report<'_>) -> String {
    let names: Vec<String> = report
        .lists
        .iter()
        .map(|a| ContractRef::new(&a.contract, &a.version).to_string())
        .collect();
    let mut head = vec![report.by.unwrap_or("").to_uppercase()];
    head.extend(names.iter().cloned());
    head.push("UNION".into());
    let mut lines = vec![head];
    for row in &report.rows {
        let mut line = vec![row.value.clone().unwrap_or_else(|| "all".into())];
        line.extend(row.lists.iter().map(Range::text));
        line.push(row.union.text());
        lines.push(line);
    }
    let mut out = aligned(&lines, 1);
    out.push_str(
        "\nA range is what the published figures allow where a count is suppressed or rounded.\n\
         UNION: the people on at least one list, as far as the counts alone say — at least the\n\
         largest list, at most their sum.",
    );
    let measured = report
        .overlaps
        .iter()
        .any(|r| matches!(r.outcome, Outcome::Measured(_)));
    out.push_str(if measured {
        " Overlaps are not measured here: those below are\n\
         of lists of distinct identifiers, which the notes compare with these counts.\n"
    } else {
        " Overlaps between the lists are not measured here.\n"
    });
    out.push_str(
        "\nEach list's signed answer (its record at both gateways has the exchange id):\n",
    );
    for (name, a) in names.iter().zip(&report.lists) {
        out.push_str(&format!(
            "  {name}  {}  {}  exchange {}  ({})\n",
            a.provider, a.purpose, a.exchange_id, a.title
        ));
    }
    out
}

fn overlaps_text(report: &Report<'_>, own: &OwnList) -> String {
    let mut out = wrapped(
        &format!(
            "Overlaps of your list {} ({}) with each provider's list, counted without either side learning whose. A is your list, B the provider's list of the overlap contract.",
            own.name, own.member
        ),
        WIDTH,
        "",
        "",
    );
    out.push('\n');
    let mut lines = vec![
        ["B", "PROVIDER", "|A|", "|B|", "|A ∩ B|", "|A ∪ B|"]
            .map(String::from)
            .to_vec(),
    ];
    for ran in &report.overlaps {
        let mut line = vec![name(ran), ran.provider.to_string()];
        match &ran.outcome {
            Outcome::Measured(m) => line.extend(
                [
                    m.figures.identifiers(),
                    m.figures.theirs(),
                    m.figures.overlap(),
                    m.union,
                ]
                .map(|n| n.to_string()),
            ),
            // Why is said with the runs below.
            Outcome::Refused(_) => line.extend(["–"; 4].map(String::from)),
        }
        lines.push(line);
    }
    out.push_str(&aligned(&lines, 2));
    let measured: Vec<(&Ran, &Measured)> = report
        .overlaps
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Measured(m) => Some((r, m.as_ref())),
            Outcome::Refused(_) => None,
        })
        .collect();
    if own.grouped && !measured.is_empty() {
        out.push('\n');
        out.push_str(&wrapped(
            &format!(
                "|A ∩ B| by the labels of {} (asked with --by {}); labels under a contract's minimum are pooled as (other):",
                own.name,
                report.by.unwrap_or("")
            ),
            WIDTH,
            "",
            "",
        ));
        out.push('\n');
        out.push_str(&groups_text(&measured));
    }
    if let Some(u) = &report.union_of_all {
        out.push_str(&format!("\nAll lists: {}", u.lists.join(", ")));
        let hi = u.range.hi.map_or_else(|| "?".to_owned(), |h| h.to_string());
        if u.range.hi == Some(u.range.lo) {
            out.push_str(&format!(" — exactly {} people (|A ∪ B|).\n", u.range.lo));
        } else {
            let pairs: Vec<Pair> = measured.iter().map(|(_, m)| m.figures).collect();
            let theirs: u64 = pairs.iter().map(Pair::theirs).sum();
            let overlaps: u64 = pairs.iter().map(Pair::overlap).sum();
            out.push_str(&format!(" — between {} and {hi} people.\n", u.range.lo));
            out.push_str(&wrapped(
                &format!(
                    "at least {}: the largest union of two above; everyone in it is in the union of all.",
                    u.range.lo
                ),
                WIDTH,
                "  ",
                "    ",
            ));
            out.push_str(&wrapped(
                &format!(
                    "at most {hi} = |A| + Σ|B| − Σ|A ∩ B| = {} + {theirs} − {overlaps}: the overlaps between two providers' lists are not measured, so a person on two of them and not on {} is counted twice.",
                    pairs.first().map_or(0, Pair::identifiers),
                    own.name,
                ),
                WIDTH,
                "  ",
                "    ",
            ));
        }
    }
    out.push_str(
        "\nEach overlap's run (its signed request holds |A|, its signed answer |B|: see --json) and its\n\
         report (the count |A ∩ B|, recorded at both gateways):\n",
    );
    for ran in &report.overlaps {
        out.push_str(&format!(
            "  {}  {}  {}  ",
            name(ran),
            ran.provider,
            ran.purpose
        ));
        match &ran.outcome {
            Outcome::Measured(m) => {
                let report = match (&m.report.exchange_id, m.report.recorded) {
                    (Some(id), true) => format!("report {id} (recorded)"),
                    (Some(id), false) => format!(
                        "report {id} NOT recorded: {}",
                        m.report.problem.as_deref().unwrap_or("?")
                    ),
                    (None, _) => format!(
                        "report NOT recorded: {}",
                        m.report.problem.as_deref().unwrap_or("?")
                    ),
                };
                out.push_str(&format!("run {}  {report}\n", m.exchange_id));
            }
            Outcome::Refused(f) => {
                out.push_str(&format!("refused: {f}"));
                if let Some(id) = &f.exchange_id {
                    out.push_str(&format!(" (exchange {id})"));
                }
                out.push('\n');
            }
        }
    }
    out
}

/// The grouped runs side by side: a row per label of the caller's list, its size and its
/// overlap with each provider's list.
fn groups_text(measured: &[(&Ran, &Measured)]) -> String {
    let groups: Vec<&[Group]> = measured
        .iter()
        .map(|(_, m)| m.groups.as_deref().unwrap_or_default())
        .collect();
    let labels: BTreeSet<&str> = groups
        .iter()
        .flat_map(|g| g.iter().map(|g| g.label.as_str()))
        .collect();
    let mut head = vec!["LABEL".to_owned(), "|A|".to_owned()];
    head.extend(measured.iter().map(|(r, _)| name(r)));
    let mut lines = vec![head];
    for label in labels {
        let found: Vec<Option<&Group>> = groups
            .iter()
            .map(|g| g.iter().find(|g| g.label == label))
            .collect();
        // The same list grouped the same way gives one size; a list that changed between
        // runs shows each.
        let sizes: BTreeSet<u64> = found.iter().flatten().map(|g| g.size).collect();
        let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
        let mut line = vec![label.to_owned(), sizes.join("/")];
        line.extend(
            found
                .iter()
                .map(|g| g.map_or_else(|| "–".to_owned(), |g| g.overlap.to_string())),
        );
        lines.push(line);
    }
    let sizes: BTreeSet<u64> = measured
        .iter()
        .map(|(_, m)| m.figures.identifiers())
        .collect();
    let sizes: Vec<String> = sizes.iter().map(u64::to_string).collect();
    let mut all = vec!["all".to_owned(), sizes.join("/")];
    all.extend(
        measured
            .iter()
            .map(|(_, m)| m.figures.overlap().to_string()),
    );
    lines.push(all);
    aligned(&lines, 1)
}
