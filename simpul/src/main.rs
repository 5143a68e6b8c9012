//! `simpul`: run a gateway or the demo federation, make the dev PKI, sign and verify the
//! manifest, ask the federation, cleanse a file of self-reports, operate the cache, audit the
//! log. One file per command
//! under `commands/`; this file parses the arguments, sets up logging and the runtime, and
//! prints the error of a failed command on one line.

mod commands;
mod error;
#[cfg(feature = "otel")]
mod otel;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use gateway::config::Config;

use crate::commands::{
    audit, cache, cleanse, completions, console, counts, doctor, events, man, manifest, openapi,
    pki, query, serve, up,
};
use crate::error::CliError;

#[derive(Parser)]
#[command(
    name = "simpul",
    version,
    about = "Simpul: a federated data-exchange gateway"
)]
struct Cli {
    /// The configuration file (default: ./config.toml, else the embedded demo federation).
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// How log lines are written to standard error: `text` for people, `json` (one JSON
    /// object per line, with the fields of the exchange's span) for log collectors.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// The format of log lines.
#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    /// One line of text per event, for people.
    Text,
    /// One JSON object per event, with the current span's fields (an exchange's id) and its
    /// parents'.
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo federation: make what is missing (PKI, manifest, data), serve every member.
    Up(up::Args),
    /// Run one member's gateway, as a ministry runs it in production.
    Serve(serve::Args),
    /// The development PKI.
    Pki {
        #[command(subcommand)]
        command: pki::PkiCommand,
    },
    /// The federation manifest.
    Manifest {
        #[command(subcommand)]
        command: manifest::ManifestCommand,
    },
    /// Operate a running gateway's response cache (through its admin listener).
    Cache {
        #[command(subcommand)]
        command: cache::CacheCommand,
    },
    /// Ask a contract through your own gateway, as a ministry system would.
    Query(query::Args),
    /// Each list's count from its statistics contract and your own list's overlap with each
    /// provider's from its overlap contract, through your own gateway, and what follows for
    /// the size of their unions.
    Counts(counts::Args),
    /// Cleanse a CSV file of self-reports: malformed NIKs refused, duplicates grouped, the
    /// kept rows verified against the civil registry through your own gateway.
    Cleanse(cleanse::Args),
    /// Open a member's command centre: a local proxy to its admin listener, with a one-time URL.
    Console(console::Args),
    /// Print the OpenAPI 3.1 document of a member's local face or federation face.
    Openapi(openapi::Args),
    /// The audit log: export it, verify an export, prove an exchange, reconcile two logs.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// Check a member's deployment and print what to fix, one line per check.
    Doctor(doctor::Args),
    /// Change notifications: each subscription a member delivers and each webhook it posts
    /// to, with backlog and lag; `redeliver` posts a webhook's events again.
    Events(events::Args),
    /// The demo federation's data (self-reports for `simpul cleanse`) and a member system's
    /// webhook receiver.
    Demo {
        #[command(subcommand)]
        command: commands::demo_data::DemoCommand,
    },
    /// Print the shell completion script for SHELL.
    Completions(completions::Args),
    /// The manual pages: simpul.1 on standard output, or every page into --out DIR.
    Man(man::Args),
}

/// The configuration named by `--config`, else `./config.toml`, else the embedded demo.
fn load_config(path: Option<&Path>) -> Result<Config, CliError> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None if Path::new("config.toml").exists() => Config::load(Path::new("config.toml"))?,
        None => demo::embedded_config(Path::new("."))?,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Up(_) | Command::Serve(_) => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Held to the end of `main`: dropped, it sends the spans still in the exporter's batch.
    let _export = match logging(filter, cli.log_format) {
        Ok(export) => export,
        Err(e) => {
            eprintln!("simpul: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One TLS crypto provider for the whole process (sqlx and rustls would each pick one).
    gateway::tls::install_crypto_provider();
    let result = tokio::runtime::Runtime::new()
        .map_err(|e| CliError::Process(format!("cannot start the runtime: {e}")))
        .and_then(|runtime| {
            let result = runtime.block_on(run(cli));
            // A stop while `up` generates its population leaves that thread running: it is
            // not waited for (the gateways have drained and recorded by now).
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
            result
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("simpul: {e}");
            ExitCode::FAILURE
        }
    }
}

/// What an OpenTelemetry export needs kept until the end (nothing without the feature).
struct Export {
    #[cfg(feature = "otel")]
    _flush: Option<otel::Export>,
}

/// Log lines to standard error in `format`, through `filter`; and, in a build with the
/// `otel` feature and an `OTEL_EXPORTER_OTLP_*ENDPOINT` set, the spans to OpenTelemetry.
fn logging(filter: tracing_subscriber::EnvFilter, format: LogFormat) -> Result<Export, CliError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    };
    let registry = tracing_subscriber::registry().with(filter).with(lines);
    #[cfg(feature = "otel")]
    {
        let (layer, export) = match otel::layer()? {
            Some((layer, export)) => (Some(layer), Some(export)),
            None => (None, None),
        };
        registry.with(layer).init();
        Ok(Export { _flush: export })
    }
    #[cfg(not(feature = "otel"))]
    {
        registry.init();
        if std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
            tracing::warn!(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set, but this simpul was built without the otel feature: no spans are exported"
            );
        }
        Ok(Export {})
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Up(args) => up::run(load_config(config)?, args).await,
        Command::Serve(args) => serve::run(load_config(config)?, args).await,
        Command::Pki { command } => pki::run(&load_config(config)?, command),
        Command::Manifest { command } => manifest::run(config, command),
        Command::Cache { command } => cache::run(&load_config(config)?, command).await,
        Command::Query(args) => query::run(&load_config(config)?, args).await,
        Command::Cleanse(args) => cleanse::run(&load_config(config)?, args).await,
        Command::Counts(args) => counts::run(&load_config(config)?, args).await,
        Command::Console(args) => console::run(&load_config(config)?, args).await,
        Command::Openapi(args) => openapi::run(&load_config(config)?, args),
        Command::Demo { command } => {
            commands::demo_data::run(|| load_config(config), command).await
        }
        Command::Audit { command } => audit::run(config, command).await,
        Command::Doctor(args) => doctor::run(&load_config(config)?, args).await,
        Command::Events(args) => events::run(&load_config(config)?, args).await,
        Command::Completions(args) => completions::run(Cli::command(), args),
        Command::Man(args) => man::run(Cli::command(), args),
    }
}
