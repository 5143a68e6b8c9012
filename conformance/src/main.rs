//! `simpul-conformance`: run the conformance suite against a gateway, list its cases, drive a
//! gateway with load, verify a signed report.
//!
//! Exit status: 0 when every mandatory case run passed (or, with `--expect-fail`, when every
//! case run failed), 1 when not, 2 when the run could not be made (configuration, target
//! unreachable, files).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use conformance::cases::{self, CASES, Context};
use conformance::config::RunConfig;
use conformance::load::{self, LoadOptions};
use conformance::report::{ManifestInfo, Outcome, Report, Summary, TargetInfo, TesterInfo};
use contracts::VerifyingKey;
use contracts::canonical::sha256_b64url;

#[derive(Parser)]
#[command(
    name = "simpul-conformance",
    version,
    about = "The Simpul conformance suite and load generator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the suite against the gateway the configuration names.
    Run {
        /// The run configuration (see conformance/demo.toml).
        #[arg(long)]
        config: PathBuf,
        /// Write the JSON report here, and its signed form (JWS) beside it as `.jws`.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
        /// Run only these cases or groups (comma-separated ids or group names).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Run only the cases that guard this gateway check (a `SIMPUL_FAULT` name).
        #[arg(long)]
        guarding: Option<String>,
        /// Succeed only if every case run fails: for proving, against a gateway with a check
        /// switched off, that the cases guarding it can fail.
        #[arg(long)]
        expect_fail: bool,
    },
    /// List the gateway checks the cases guard, one name a line: the names a gateway's
    /// `faults` build takes in `SIMPUL_FAULT`.
    Checks,
    /// List the cases: id, group, mandatory, title, the gateway checks each guards.
    List {
        /// As a Markdown table.
        #[arg(long)]
        markdown: bool,
    },
    /// Drive one contract with N keep-alive connections and report exchanges/s and latency.
    Load {
        /// The run configuration.
        #[arg(long)]
        config: PathBuf,
        /// Parallel connections.
        #[arg(long, default_value_t = 8)]
        connections: usize,
        /// How long to measure, e.g. 10s (at most 40 s without --rate; any length with it).
        #[arg(long, default_value = "10s", value_parser = load::parse_duration)]
        duration: std::time::Duration,
        /// The contract id (default: the configuration's first).
        #[arg(long)]
        contract: Option<String>,
        /// Queries to cycle through, one JSON object per line (default: the configured ones).
        #[arg(long)]
        queries: Option<PathBuf>,
        /// Envelopes to sign ahead (default: measured by a warm-up).
        #[arg(long, conflicts_with = "rate")]
        envelopes: Option<usize>,
        /// Open loop: send this many exchanges per second in all, each at a fixed time,
        /// signed during the run; latency counts from when each was due.
        #[arg(long)]
        rate: Option<f64>,
        /// With --rate: print the latency of each window of this length as it closes (on
        /// standard error) and list them in the report, e.g. 1m.
        #[arg(long, requires = "rate", value_parser = load::parse_duration)]
        progress: Option<std::time::Duration>,
        /// The gateway's process id (same machine): report its CPU time per exchange and
        /// its peak resident memory.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Not a gateway: POST the contract's first query as plain JSON to this
        /// https://host:port/path over the same mutual TLS (the tester's certificate, the
        /// manifest's CAs), and count any 2xx as answered.
        #[arg(long, value_name = "URL")]
        plain: Option<String>,
        /// With --plain: present this client certificate (PEM chain) instead of the
        /// tester's, e.g. a member system's for a gateway's local face.
        #[arg(long, requires = "plain", requires = "key", value_name = "PEM")]
        cert: Option<PathBuf>,
        /// The private key (PEM) of --cert.
        #[arg(long, requires = "cert", value_name = "PEM")]
        key: Option<PathBuf>,
        /// A new connection for every exchange, without TLS session resumption: measures
        /// full mutual-TLS handshakes (each exchange's latency includes its handshake).
        #[arg(long)]
        handshake_each: bool,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a signed report (`.jws`) and print it.
    VerifyReport {
        /// The signed report.
        file: PathBuf,
        /// The tester's public JWK.
        #[arg(long, conflicts_with = "manifest")]
        key: Option<PathBuf>,
        /// Find the tester's key in this manifest instead (needs --authority-key).
        #[arg(long, requires = "authority_key")]
        manifest: Option<PathBuf>,
        /// The federation authority's public JWK, to verify --manifest.
        #[arg(long)]
        authority_key: Option<PathBuf>,
    },
}

/// An error that ends the run with status 2.
struct Fatal(String);

impl<E: std::fmt::Display> From<E> for Fatal {
    fn from(e: E) -> Self {
        Fatal(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    conformance::install_crypto_provider();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("simpul-conformance: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(Fatal(message)) => {
            eprintln!("simpul-conformance: {message}");
            ExitCode::from(2)
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Fatal> {
    match cli.command {
        Command::Run {
            config,
            json,
            junit,
            only,
            guarding,
            expect_fail,
        } => {
            run(
                &config,
                json.as_deref(),
                junit.as_deref(),
                &only,
                guarding.as_deref(),
                expect_fail,
            )
            .await
        }
        Command::Checks => {
            for c in &contracts::checks::CHECKS {
                println!("{}", c.name);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::List { markdown } => {
            list(markdown);
            Ok(ExitCode::SUCCESS)
        }
        Command::Load {
            config,
            connections,
            duration,
            contract,
            queries,
            envelopes,
            rate,
            progress,
            server_pid,
            plain,
            cert,
            key,
            handshake_each,
            json,
        } => {
            let config = RunConfig::load(&config)?;
            let identity = match (cert, key) {
                (Some(cert), Some(key)) => {
                    let read = |p: &Path| {
                        std::fs::read(p).map_err(|e| Fatal(format!("{}: {e}", p.display())))
                    };
                    let identity =
                        conformance::client::TlsIdentity::from_pem(&read(&cert)?, &read(&key)?)
                            .map_err(|e| Fatal(format!("--cert {}: {e}", cert.display())))?;
                    Some(identity)
                }
                _ => None,
            };
            let options = LoadOptions {
                connections,
                duration,
                contract,
                queries,
                envelopes,
                rate,
                server_pid,
                progress,
                plain,
                identity,
                handshake_each,
            };
            let report = load::run(&config, &options).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", report.text());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::VerifyReport {
            file,
            key,
            manifest,
            authority_key,
        } => verify_report(
            &file,
            key.as_deref(),
            manifest.as_deref(),
            authority_key.as_deref(),
        ),
    }
}

async fn run(
    config_path: &Path,
    json: Option<&Path>,
    junit: Option<&Path>,
    only: &[String],
    guarding: Option<&str>,
    expect_fail: bool,
) -> Result<ExitCode, Fatal> {
    let config = RunConfig::load(config_path)?;
    let mut selected = cases::select(only).map_err(Fatal)?;
    if let Some(check) = guarding {
        let guards = cases::guarding(check);
        if guards.is_empty() {
            return Err(Fatal(format!("no case guards the check `{check}`")));
        }
        selected.retain(|c| guards.iter().any(|g| g.id == c.id));
    }
    let full = only.is_empty() && guarding.is_none();
    let started_at = contracts::unix_now();
    let cx = Context::new(config)?;
    cases::preflight(&cx).await.map_err(|e| {
        Fatal(format!(
            "cannot reach {} over mutual TLS as {}: {e}",
            cx.config.target.url, cx.config.tester.member
        ))
    })?;
    let results = cases::run(&cx, &selected).await;
    let c = &cx.config;
    let report = Report {
        v: 1,
        tool: "simpul-conformance".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        started_at,
        finished_at: contracts::unix_now(),
        target: TargetInfo {
            member: c.target.member.to_string(),
            url: c.target.url.clone(),
        },
        tester: TesterInfo {
            member: c.tester.member.to_string(),
            kid: c.tester.signing.kid().to_owned(),
        },
        manifest: ManifestInfo {
            serial: c.manifest.doc().serial,
            digest: sha256_b64url(c.manifest.jws().as_bytes()),
        },
        selection: (!full).then(|| selected.iter().map(|s| s.id.to_owned()).collect()),
        summary: Summary::of(&results, full),
        cases: results,
    };
    print!("{}", report.table());
    if let Some(path) = json {
        let bytes = report.to_json()?;
        write(path, &bytes)?;
        let jws = Report::sign(&bytes, &c.tester.signing)?;
        let signed = signed_path(path);
        write(&signed, format!("{jws}\n").as_bytes())?;
        println!(
            "wrote {} and {} (signed by {})",
            path.display(),
            signed.display(),
            c.tester.signing.kid()
        );
    }
    if let Some(path) = junit {
        write(path, report.junit().as_bytes())?;
        println!("wrote {}", path.display());
    }
    if expect_fail {
        let survivors: Vec<&str> = report
            .cases
            .iter()
            .filter(|c| c.outcome != Outcome::Fail)
            .map(|c| c.id.as_str())
            .collect();
        return Ok(if survivors.is_empty() {
            println!("as expected, every case run failed");
            ExitCode::SUCCESS
        } else {
            println!(
                "expected every case to fail; these did not: {}",
                survivors.join(", ")
            );
            ExitCode::FAILURE
        });
    }
    Ok(if report.mandatory_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `report.json` → `report.jws`; a name without `.json` gets `.jws` appended.
fn signed_path(json: &Path) -> PathBuf {
    if json.extension().is_some_and(|e| e == "json") {
        json.with_extension("jws")
    } else {
        let mut s = json.as_os_str().to_owned();
        s.push(".jws");
        PathBuf::from(s)
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Fatal> {
    std::fs::write(path, bytes).map_err(|e| Fatal(format!("{}: {e}", path.display())))
}

fn list(markdown: bool) {
    if markdown {
        println!("| id | group | mandatory | rule | guards (`SIMPUL_FAULT`) |");
        println!("| --- | --- | --- | --- | --- |");
    }
    for c in CASES {
        let guards = c.guards.join(", ");
        if markdown {
            println!(
                "| {} | {} | {} | {} | {} |",
                c.id,
                c.group.name(),
                if c.mandatory { "yes" } else { "optional" },
                c.title,
                if guards.is_empty() {
                    "—".into()
                } else {
                    guards
                }
            );
        } else {
            println!(
                "{:<7} {:<9} {:<3} {:<88} {}",
                c.id,
                c.group.name(),
                if c.mandatory { "M" } else { "opt" },
                c.title,
                guards
            );
        }
    }
}

fn read_jwk(path: &Path) -> Result<VerifyingKey, Fatal> {
    let bytes = std::fs::read(path).map_err(|e| Fatal(format!("{}: {e}", path.display())))?;
    let jwk: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Fatal(format!("{}: not a JWK: {e}", path.display())))?;
    VerifyingKey::from_jwk(&jwk).map_err(|e| Fatal(format!("{}: {e}", path.display())))
}

fn verify_report(
    file: &Path,
    key: Option<&Path>,
    manifest: Option<&Path>,
    authority_key: Option<&Path>,
) -> Result<ExitCode, Fatal> {
    let jws =
        std::fs::read_to_string(file).map_err(|e| Fatal(format!("{}: {e}", file.display())))?;
    let key = match (key, manifest, authority_key) {
        (Some(k), _, _) => read_jwk(k)?,
        (None, Some(m), Some(a)) => {
            let authority = read_jwk(a)?;
            let text =
                std::fs::read_to_string(m).map_err(|e| Fatal(format!("{}: {e}", m.display())))?;
            let manifest = contracts::Manifest::verify(&text, &authority, contracts::unix_now())
                .map_err(|e| Fatal(format!("{}: {e}", m.display())))?;
            let kid = Report::signer_kid(&jws)?;
            manifest
                .key(&kid)
                .map(|(_, k)| k.clone())
                .ok_or_else(|| Fatal(format!("the report's signer {kid} is not in the manifest")))?
        }
        _ => {
            return Err(Fatal(
                "give the tester's key (--key) or a manifest and its authority key".into(),
            ));
        }
    };
    let report =
        Report::verify(&jws, &key).map_err(|e| Fatal(format!("{}: {e}", file.display())))?;
    print!("{}", report.table());
    println!(
        "\n{}: signature valid, signed by {}",
        file.display(),
        key.kid()
    );
    Ok(ExitCode::SUCCESS)
}
