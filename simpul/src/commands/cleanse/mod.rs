//! `simpul cleanse --as SUBSYSTEM reports.csv --out cleansed.csv`: a member system's file of
//! self-reports cleansed — malformed NIKs refused, duplicates grouped with one row kept per
//! person, the kept rows verified against the civil registry through the member's own
//! gateway (`identity.verify`), every row given one reason — resumable from a work
//! directory after any interruption (docs/CLEANSE.md).

mod classify;
mod date;
mod dedupe;
mod input;
mod output;
mod progress;
mod verify;
mod work;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use contracts::{ContractRef, MemberId};
use gateway::config::Config;

use crate::error::CliError;

use self::date::Date;
use self::input::{ColumnNames, Report, Reports};
use self::output::{AgeAt, Outputs, Summary};
use self::progress::Progress;
use self::verify::{LocalFace, Pacing, Verifier};
use self::work::{Meta, Phase, Work};

/// The most items `identity.verify` takes in one exchange.
const MAX_BATCH: usize = 1000;

/// The largest local-face answer read: a full batch's verdicts with both signed envelopes.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// How long one batch may take, the gateway's own deadline for the exchange included.
const BATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// Rows loaded into the work database per transaction.
const LOAD_CHUNK: usize = 5_000;

#[derive(clap::Args)]
pub struct Args {
    /// The subsystem you ask as, e.g. ID:GOV:KEMLU:PEDULI-WNI: its certificate is presented to
    /// your own gateway's local face.
    #[arg(long = "as", value_name = "SUBSYSTEM")]
    as_subsystem: MemberId,
    /// The CSV file of self-reports (a header line, then one report per row).
    #[arg(value_name = "INPUT.csv")]
    input: PathBuf,
    /// Where the kept rows go (CSV, the input's columns).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Where the rejected rows go, with `reason` and `detail` (default: beside --out,
    /// `<name>.rejects.csv`).
    #[arg(long, value_name = "FILE")]
    rejects: Option<PathBuf>,
    /// Where the summary goes, as JSON (default: beside --out, `<name>.summary.json`).
    #[arg(long, value_name = "FILE")]
    summary: Option<PathBuf>,
    /// Count the kept rows that reach this age by --on, by sex.
    #[arg(long, value_name = "AGE", requires = "on")]
    age_at: Option<u32>,
    /// The day for --age-at (YYYY-MM-DD).
    #[arg(long, value_name = "DATE", requires = "age_at", value_parser = parse_date)]
    on: Option<Date>,
    /// Continue the run whose work directory is there (start afresh if there is none).
    #[arg(long)]
    resume: bool,
    /// The work directory (default: `<out>.work` beside --out).
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Keep the work directory after a completed run.
    #[arg(long)]
    keep_work: bool,
    /// The purpose (default: the one purpose your subsystem is granted for identity.verify).
    #[arg(long)]
    purpose: Option<String>,
    /// Kept rows per batch, one exchange each: 1 to 1000, and at most what the contract
    /// allows; a resumed run keeps the size it started with.
    #[arg(long, value_name = "N", default_value_t = MAX_BATCH, value_parser = clap::value_parser!(u16).range(1..=1000).map(usize::from))]
    batch_size: usize,
    /// Batches in flight at most (the run starts at 2 and adapts to the answers).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256).map(usize::from))]
    max_concurrency: usize,
    /// The NIK's column (default: `nik`).
    #[arg(long, value_name = "NAME")]
    nik_column: Option<String>,
    /// The full name's column (default: `full_name`, else `name`).
    #[arg(long, value_name = "NAME")]
    name_column: Option<String>,
    /// The birth date's column (default: `birth_date`).
    #[arg(long, value_name = "NAME")]
    birth_date_column: Option<String>,
    /// The sex's column (default: `sex`).
    #[arg(long, value_name = "NAME")]
    sex_column: Option<String>,
    /// The report date's column (default: `reported_on`).
    #[arg(long, value_name = "NAME")]
    reported_on_column: Option<String>,
}

fn parse_date(text: &str) -> Result<Date, String> {
    Date::parse(text).ok_or_else(|| format!("`{text}` is no date: write YYYY-MM-DD"))
}

/// Why a cleanse failed; each names the file or the rows and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum CleanseError {
    /// The input cannot be read.
    #[error("{}{}: {reason}", path.display(), line.map(|l| format!(": line {l}")).unwrap_or_default())]
    Input {
        /// The input file.
        path: PathBuf,
        /// The line at fault, when one is.
        line: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// A column is not in the header.
    #[error("{}: no column `{wanted}` in the header ({header}): name the column with {flag}", path.display())]
    Column {
        /// The input file.
        path: PathBuf,
        /// The name looked for.
        wanted: String,
        /// The flag that names it.
        flag: String,
        /// The header's names.
        header: String,
    },
    /// A work directory is there and `--resume` was not given.
    #[error("{}: the work directory of an earlier run is there: add --resume to continue it, or remove the directory to start over", dir.display())]
    WorkExists {
        /// The directory.
        dir: PathBuf,
    },
    /// The work directory does not fit this run, or cannot be read.
    #[error("{}: {what}", dir.display())]
    WorkMismatch {
        /// The directory.
        dir: PathBuf,
        /// How it does not fit, and what to do.
        what: String,
    },
    /// The work database failed.
    #[error("{}: {source}", dir.join(work::DB_FILE).display())]
    Work {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: sqlx::Error,
    },
    /// The work directory cannot be made or removed.
    #[error("{}: {source}", dir.display())]
    WorkIo {
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A kept row has no verdict when the files are written.
    #[error("{}: row {line} has no verdict: run again with --resume", dir.display())]
    Unverified {
        /// The work directory.
        dir: PathBuf,
        /// The row's line.
        line: u64,
    },
    /// An output cannot be written.
    #[error("{}: {reason}", path.display())]
    Output {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A batch was refused for good, or answered with what does not fit it.
    #[error("identity.verify, the batch of rows {}-{}: {reason}; fix that, then run again with --resume", rows.0, rows.1)]
    Verify {
        /// Its first and last row.
        rows: (String, String),
        /// The problem.
        reason: String,
    },
    /// A batch was not answered in its attempts.
    #[error("identity.verify, the batch of rows {}-{}: no answer after {attempts} attempts (last: {last}); the verdicts so far are kept: run again with --resume", rows.0, rows.1)]
    GaveUp {
        /// Its first and last row.
        rows: (String, String),
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// The run was stopped by a signal.
    #[error("stopped; the work so far is kept in {}: run the same command with --resume to continue", dir.display())]
    Interrupted {
        /// The work directory.
        dir: PathBuf,
    },
    /// The process could not do its own work.
    #[error("{0}")]
    Process(String),
}

impl CleanseError {
    fn input(path: &Path, line: Option<u64>, reason: impl std::fmt::Display) -> Self {
        CleanseError::Input {
            path: path.to_owned(),
            line,
            reason: reason.to_string(),
        }
    }

    fn work(dir: &Path, source: sqlx::Error) -> Self {
        CleanseError::Work {
            dir: dir.to_owned(),
            source,
        }
    }

    /// A work directory that cannot be read as one: `what` is wrong with it.
    fn corrupt(dir: &Path, what: impl std::fmt::Display) -> Self {
        CleanseError::WorkMismatch {
            dir: dir.to_owned(),
            what: format!("{what}: remove the directory to start over"),
        }
    }

    fn work_io(dir: &Path, source: std::io::Error) -> Self {
        CleanseError::WorkIo {
            dir: dir.to_owned(),
            source,
        }
    }

    fn output(path: &Path, reason: impl std::fmt::Display) -> Self {
        CleanseError::Output {
            path: path.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// One run: what to read, where to write, how to pace the batches.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The self-reports.
    pub input: PathBuf,
    /// The files written.
    pub outputs: Outputs,
    /// The work directory.
    pub work_dir: PathBuf,
    /// Continue the run in `work_dir`.
    pub resume: bool,
    /// Keep `work_dir` after a completed run.
    pub keep_work: bool,
    /// The columns asked for.
    pub columns: ColumnNames,
    /// Kept rows per batch.
    pub batch_size: usize,
    /// `--age-at` and `--on`.
    pub age: Option<AgeAt>,
    /// How batches are paced.
    pub pacing: Pacing,
    /// Rows loaded into the work database per transaction.
    pub load_chunk: usize,
}

impl Plan {
    /// Refuses a work directory that is there without `--resume`, and one file named for
    /// two purposes (an output that would overwrite the input, or another output).
    fn check(&self) -> Result<(), CleanseError> {
        if !self.resume && self.work_dir.exists() {
            return Err(CleanseError::WorkExists {
                dir: self.work_dir.clone(),
            });
        }
        let o = &self.outputs;
        let named = [
            (&self.input, "the input"),
            (&o.cleansed, "--out"),
            (&o.rejects, "--rejects"),
            (&o.summary, "--summary"),
        ];
        let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_owned());
        for (i, (a, what_a)) in named.iter().enumerate() {
            for (b, what_b) in &named[i + 1..] {
                if absolute(a) == absolute(b) {
                    return Err(CleanseError::Output {
                        path: b.to_path_buf(),
                        reason: format!("named as {what_a} and as {what_b}: name each file apart"),
                    });
                }
            }
        }
        Ok(())
    }
}

/// `path` with its extension replaced by `suffix` (`cleansed.csv` → `cleansed.rejects.csv`).
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "cleansed".to_owned());
    path.with_file_name(format!("{stem}{suffix}"))
}

pub async fn run(config: &Config, args: Args) -> Result<ExitCode, CliError> {
    let subsystem = &args.as_subsystem;
    let caller = super::local_caller(config, subsystem)?;
    let contract = ContractRef::new(verify::CONTRACT, verify::VERSION);
    // At most what the contract document allows in one exchange.
    let max_items = config
        .catalog
        .get(&contract)
        .and_then(|c| c.doc().batch.as_ref())
        .map_or(MAX_BATCH, |b| b.max_items as usize);
    let mut work_dir = args.out.as_os_str().to_owned();
    work_dir.push(".work");
    let plan = Plan {
        outputs: Outputs {
            rejects: args
                .rejects
                .unwrap_or_else(|| beside(&args.out, ".rejects.csv")),
            summary: args
                .summary
                .unwrap_or_else(|| beside(&args.out, ".summary.json")),
            cleansed: args.out,
        },
        input: args.input,
        work_dir: args.work.unwrap_or_else(|| PathBuf::from(work_dir)),
        resume: args.resume,
        keep_work: args.keep_work,
        columns: ColumnNames {
            nik: args.nik_column,
            name: args.name_column,
            birth_date: args.birth_date_column,
            sex: args.sex_column,
            reported_on: args.reported_on_column,
        },
        batch_size: args.batch_size.min(max_items).max(1),
        age: args.age_at.zip(args.on).map(|(age, on)| AgeAt { age, on }),
        pacing: Pacing {
            max: args.max_concurrency,
            ..Pacing::default()
        },
        load_chunk: LOAD_CHUNK,
    };
    // What can be refused without the federation is refused first: the work directory, the
    // files named, the input's columns.
    plan.check()?;
    Reports::open(&plan.input)?.map(&plan.columns)?;
    let manifest = super::verified_manifest(config)?;
    if manifest.contract(&contract).is_none() {
        return Err(CliError::Usage(format!(
            "{} {}: not in this federation's manifest ({}): the civil registry does not offer bulk verification here yet",
            contract.id,
            contract.version,
            config.federation.manifest.display()
        )));
    }
    let purpose = caller.purpose(config, &contract, args.purpose)?;
    let client = caller.client(config, &manifest, MAX_ANSWER_BYTES)?;
    let verifier = Arc::new(LocalFace::new(
        client,
        &caller.local.url(),
        purpose,
        BATCH_TIMEOUT,
    ));
    let progress = Progress::for_stderr();
    let summary = tokio::select! {
        done = cleanse(&plan, verifier, &progress) => done?,
        () = stop_signal() => {
            return Err(CleanseError::Interrupted { dir: plan.work_dir }.into());
        }
    };
    print!("{}", summary.table(&plan.outputs));
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot watch for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs `plan` to the end from wherever its work directory stands, asking `verifier` for the
/// verdicts, and returns the summary once the files are in place. Dropped at any point, or
/// killed, it leaves the work directory from which `--resume` gives the same files.
pub async fn cleanse<V: Verifier>(
    plan: &Plan,
    verifier: Arc<V>,
    progress: &Progress,
) -> Result<Summary, CleanseError> {
    plan.check()?;
    let mut reports = Reports::open(&plan.input)?;
    let columns = reports.map(&plan.columns)?;
    let meta = Meta {
        input_sha256: input::file_sha256(&plan.input)?,
        header: reports.header().to_vec(),
        columns,
        batch_size: plan.batch_size,
    };
    let mut work = open_work(plan, &meta).await?;
    // The stored choices stand for the whole run (its batches are cut already).
    let meta = work.meta().await?;
    loop {
        match work.phase().await? {
            Phase::Load => {
                load(&mut work, &mut reports, &meta, plan.load_chunk, progress).await?;
                work.set_phase(Phase::Dedupe).await?;
            }
            Phase::Dedupe => {
                let what = "grouping the rows of each person, cutting the batches";
                progress
                    .timed("group", what, dedupe::dedupe(&mut work, meta.batch_size))
                    .await?;
            }
            Phase::Verify => {
                verify::verify_batches(&mut work, verifier.clone(), &plan.pacing, progress).await?;
                let what = "keeping each person's row the registry confirms";
                progress
                    .timed("choose", what, dedupe::choose(&mut work))
                    .await?;
            }
            Phase::Output => break,
        }
    }
    let summary = output::write(&mut work, &meta, &plan.outputs, plan.age, progress).await?;
    if plan.keep_work {
        work.close().await?;
    } else {
        work.remove().await?;
    }
    Ok(summary)
}

/// The run's work directory: made afresh, or, with `--resume`, the one there if it was made
/// for the same input and columns.
async fn open_work(plan: &Plan, meta: &Meta) -> Result<Work, CleanseError> {
    let dir = &plan.work_dir;
    if !(plan.resume && Work::db_path(dir).exists()) {
        if plan.resume {
            tracing::info!("{}: no run to resume there; starting afresh", dir.display());
        }
        return Work::create(dir, meta).await;
    }
    let mut work = Work::open(dir).await?;
    let stored = work.meta().await?;
    let mismatch = |what: String| CleanseError::WorkMismatch {
        dir: dir.clone(),
        what,
    };
    if stored.input_sha256 != meta.input_sha256 {
        return Err(mismatch(format!(
            "was made for another input than {} (its SHA-256 differs): resume with the file it was made for, or remove the directory to start over",
            plan.input.display()
        )));
    }
    if stored.columns != meta.columns {
        return Err(mismatch(
            "was made with other columns (the --...-column flags): resume with the same flags, or remove the directory to start over"
                .to_owned(),
        ));
    }
    Ok(work)
}

/// Loads the rows not yet loaded, a chunk per transaction.
async fn load(
    work: &mut Work,
    reports: &mut Reports,
    meta: &Meta,
    chunk_rows: usize,
    progress: &Progress,
) -> Result<(), CleanseError> {
    let chunk_rows = chunk_rows.max(1);
    let already = work.loaded().await?;
    let mut meter = progress.meter("load", None, already);
    let mut read = 0u64;
    let mut chunk = Vec::with_capacity(chunk_rows);
    while let Some((line, fields)) = reports.next_row()? {
        read += 1;
        if read <= already {
            continue;
        }
        chunk.push(Report::from_fields(line, fields, &meta.columns));
        if chunk.len() == chunk_rows {
            work.load(&chunk, read).await?;
            meter.advance(chunk.len() as u64);
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        work.load(&chunk, read).await?;
        meter.advance(chunk.len() as u64);
    }
    meter.finish();
    Ok(())
}
