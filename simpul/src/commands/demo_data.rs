//! `simpul demo reports`: the demo's self-reports of citizens abroad as a CSV of any size,
//! drawn from Dukcapil's seeded civil registry, for `simpul cleanse` to work through; and
//! `simpul demo webhook`, a member system's webhook receiver (in `webhook_receiver`).

use std::io::{BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use demo::population::{Dataset, SEED_ROWS, write_self_reports};
use gateway::config::Config;

use crate::error::CliError;

#[derive(clap::Subcommand)]
pub enum DemoCommand {
    /// Write self-reports of citizens abroad as a CSV, drawn from Dukcapil's seeded registry
    /// (`simpul up` seeds it) with duplicates, mistyped and broken NIKs, unknown people,
    /// wrong names and birth dates, foreigners and the deceased among them.
    Reports(ReportsArgs),
    /// Receive change notifications as a member system would: a plain HTTP server that
    /// checks each webhook's signature (Standard Webhooks) with the secret the subscriber's
    /// gateway uses, answers 204 or 401, and prints each verified webhook on one line.
    Webhook(super::webhook_receiver::Args),
}

#[derive(clap::Args)]
pub struct ReportsArgs {
    /// Rows to write (the seed's portal held 2,406,163); the registry must hold about
    /// nine in ten of them as distinct people (`[data] people`).
    #[arg(long, default_value_t = SEED_ROWS)]
    rows: u64,
    /// The CSV to write.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
}

/// Runs `command`; `config` loads the configuration, which only `reports` needs.
pub async fn run(
    config: impl FnOnce() -> Result<Config, CliError>,
    command: DemoCommand,
) -> Result<ExitCode, CliError> {
    match command {
        DemoCommand::Reports(args) => reports(&config()?, args).await,
        DemoCommand::Webhook(args) => super::webhook_receiver::run(args).await,
    }
}

async fn reports(config: &Config, args: ReportsArgs) -> Result<ExitCode, CliError> {
    let plan = demo::DemoPlan::from_config(config)?;
    let registry = plan
        .targets
        .iter()
        .find(|t| t.dataset == Dataset::Residents && t.server.is_none())
        .ok_or_else(|| {
            CliError::Usage(format!(
                "{}: no member seeds the civil registry (`seed = {{ dataset = \"residents\", database = \"….db\" }}`) in a SQLite file",
                config.source
            ))
        })?;
    if !registry.database.exists() {
        return Err(CliError::File {
            path: registry.database.clone(),
            reason: "the civil registry is not seeded yet: run `simpul up` once (it seeds it), then this".into(),
        });
    }
    let partial = args.out.with_extension("csv.partial");
    let file = std::fs::File::create(&partial).map_err(CliError::file(&partial))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let started = Instant::now();
    let mut last = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let rows = args.rows;
    let mix = write_self_reports(&registry.database, plan.data.seed, rows, &mut out, |done| {
        if last.elapsed().as_secs() >= 2 || done == rows {
            last = Instant::now();
            let line = format!("{done} of {rows} rows ({}%)", done * 100 / rows.max(1));
            if terminal {
                eprint!("\r{line}");
            } else {
                eprintln!("{line}");
            }
        }
    })
    .await
    .map_err(|e| CliError::Process(e.to_string()))?;
    if terminal {
        eprintln!();
    }
    out.flush().map_err(CliError::file(&partial))?;
    drop(out);
    std::fs::rename(&partial, &args.out).map_err(CliError::file(&args.out))?;
    println!(
        "{}: {} self-reports of {} people in {:.1} s (seed {}): {} re-reports, {} with a mistyped NIK, {} with a broken NIK, {} with a NIK nobody holds, {} with another's name, {} with a birth date off",
        args.out.display(),
        mix.rows,
        mix.people,
        started.elapsed().as_secs_f64(),
        plan.data.seed,
        mix.again,
        mix.typo,
        mix.broken,
        mix.nobody,
        mix.other_name,
        mix.wrong_birth
    );
    Ok(ExitCode::SUCCESS)
}
