//! `simpul`: run a gateway or the demo federation, make the dev PKI, sign and verify the
//! manifest, ask the federation.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use contracts::envelope::LocalQuery;
use contracts::{ContractRef, Manifest, MemberId};
use gateway::client::PeerClient;
use gateway::config::Config;
use gateway::gateway::{Gateway, load_authority_key};
use tokio::net::TcpListener;
use tokio::sync::watch;

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
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the demo federation: make what is missing (PKI, manifest, data), serve every member.
    Up {
        /// Where the demo's data lives: `sqlite` files beside the configuration, or
        /// `postgres`: one schema per member in the database of $SIMPUL_PG_URL (default
        /// postgres://postgres@127.0.0.1:5432/simpul_demo, created if missing).
        #[arg(long, value_enum, default_value_t = DemoBackend::Sqlite)]
        backend: DemoBackend,
    },
    /// Run one member's gateway, as a ministry runs it in production.
    Serve {
        /// The member, e.g. ID:GOV:DUKCAPIL.
        #[arg(long)]
        member: MemberId,
    },
    /// The development PKI.
    Pki {
        #[command(subcommand)]
        command: PkiCommand,
    },
    /// The federation manifest.
    Manifest {
        #[command(subcommand)]
        command: ManifestCommand,
    },
    /// Operate a running gateway's response cache (through its admin listener).
    Cache {
        #[command(subcommand)]
        command: CacheCommand,
    },
    /// Ask a contract through your own gateway, as a ministry system would.
    Query {
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
    },
    /// The audit log: export it, verify an export, prove an exchange, reconcile two logs.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum CacheCommand {
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
        /// The admin identity to present (default: the first of the gateway's admin clients).
        #[arg(long = "as")]
        as_admin: Option<MemberId>,
    },
}

/// Where `simpul up` keeps the demo's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DemoBackend {
    /// One SQLite file per member (`data/*.db`).
    Sqlite,
    /// One schema per member in a PostgreSQL database.
    Postgres,
}

/// The environment variable with the PostgreSQL URL for `simpul up --backend postgres`.
const PG_URL_VAR: &str = "SIMPUL_PG_URL";
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/simpul_demo";

#[derive(Subcommand)]
enum PkiCommand {
    /// Make the federation CA, the authority key, and every member's certificates and keys.
    Init {
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum ManifestCommand {
    /// Build the manifest from the configuration and the catalog, and sign it.
    Sign {
        /// Where to write it (default: federation.manifest).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a manifest and print what it holds.
    Verify {
        /// The manifest file.
        file: PathBuf,
        /// The authority's public JWK (default: the configuration's pinned key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
}

fn load_config(path: Option<&Path>) -> Result<Config, String> {
    match path {
        Some(p) => Config::load(p).map_err(|e| e.to_string()),
        None if Path::new("config.toml").exists() => {
            Config::load(Path::new("config.toml")).map_err(|e| e.to_string())
        }
        None => Config::embedded(Path::new(".")).map_err(|e| e.to_string()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Up { .. } | Command::Serve { .. } => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    // One TLS crypto provider for the whole process (sqlx and rustls would each pick one).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("simpul: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("simpul: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::Up { backend } => {
            let mut config = load_config(cli.config.as_deref())?;
            if backend == DemoBackend::Postgres {
                let url = std::env::var(PG_URL_VAR).unwrap_or_else(|_| DEFAULT_PG_URL.into());
                gateway::federation::use_database_server(&mut config, &url)
                    .map_err(|e| e.to_string())?;
            }
            up(config).await
        }
        Command::Serve { member } => {
            let config = load_config(cli.config.as_deref())?;
            let gw = Gateway::from_config(&config, &member)
                .await
                .map_err(|e| e.to_string())?;
            serve_all(vec![Arc::new(gw)]).await
        }
        Command::Pki {
            command: PkiCommand::Init { force },
        } => {
            let config = load_config(cli.config.as_deref())?;
            let report = gateway::pki::init(&config.pki_layout(), &config.pki_plan(), force)
                .map_err(|e| e.to_string())?;
            for p in &report.written {
                println!("wrote {}", p.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Manifest {
            command: ManifestCommand::Sign { out },
        } => {
            let config = load_config(cli.config.as_deref())?;
            let m = gateway::federation::sign_manifest(&config, out.as_deref())
                .map_err(|e| e.to_string())?;
            println!(
                "signed manifest serial {} into {}",
                m.doc().serial,
                out.unwrap_or_else(|| config.manifest_path()).display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Manifest {
            command: ManifestCommand::Verify { file, key },
        } => {
            let key_path = match key {
                Some(k) => k,
                None => load_config(cli.config.as_deref())?.authority_key_path(),
            };
            let key = load_authority_key(&key_path).map_err(|e| e.to_string())?;
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let m = Manifest::verify(&text, &key, contracts::unix_now())
                .map_err(|e| format!("{}: {e}", file.display()))?;
            println!("{}: valid, signed by {}", file.display(), key.kid());
            print!("{}", m.summary());
            Ok(ExitCode::SUCCESS)
        }
        Command::Cache {
            command:
                CacheCommand::Purge {
                    member,
                    contract,
                    version,
                    as_admin,
                },
        } => {
            let config = load_config(cli.config.as_deref())?;
            cache_purge(&config, &member, &contract, version, as_admin).await
        }
        Command::Query {
            as_subsystem,
            purpose,
            contract,
            version,
            query,
        } => {
            let config = load_config(cli.config.as_deref())?;
            query_cmd(
                &config,
                &as_subsystem,
                purpose,
                ContractRef::new(contract, version),
                &query,
            )
            .await
        }
        Command::Audit { command } => audit_cmd(cli.config.as_deref(), command).await,
    }
}

async fn up(config: Config) -> Result<ExitCode, String> {
    let prepared = gateway::federation::prepare(&config)
        .await
        .map_err(|e| e.to_string())?;
    for note in &prepared.notes {
        eprintln!("simpul: {note}");
    }
    let mut gateways = Vec::new();
    for m in &config.members {
        gateways.push(Arc::new(
            Gateway::from_config(&config, &m.id)
                .await
                .map_err(|e| e.to_string())?,
        ));
    }
    print_demo(&config);
    serve_all(gateways).await
}

fn print_demo(config: &Config) {
    let Some((member, subsystem)) = gateway::federation::demo_caller(config) else {
        return;
    };
    let Some(mc) = config.member(&member) else {
        return;
    };
    let Some(fc) = mc.federated.first() else {
        return;
    };
    let population = gateway::seed::generate(&config.data);
    let layout = config.pki_layout();
    let rel = |p: PathBuf| {
        let cwd = std::env::current_dir().unwrap_or_default();
        p.strip_prefix(&cwd)
            .map(Path::to_path_buf)
            .unwrap_or(p)
            .display()
            .to_string()
    };
    let curl = |nik: &str| {
        format!(
            "curl -s --cacert {ca} --cert {cert} --key {key} \\\n    -H 'content-type: application/json' \\\n    -d '{{\"purpose\":\"{purpose}\",\"query\":{{\"nik\":\"{nik}\"}}}}' \\\n    {url}/v1/query/{id}/{version}",
            ca = rel(layout.ca_cert()),
            cert = rel(layout.client_cert(&subsystem)),
            key = rel(layout.client_key(&subsystem)),
            purpose = fc.purpose,
            url = mc.gateway_url(),
            id = fc.id,
            version = fc.version,
        )
    };
    println!(
        "\nSimpul demo federation is up: {} gateways.",
        config.members.len()
    );
    for m in &config.members {
        println!("  {:<18} {}", m.id.as_str(), m.gateway_url());
    }
    println!(
        "\nAsk the {} as {subsystem}, for a person known to all four ministries:\n",
        fc.id
    );
    println!("{}\n", curl(population.sample_in_all_four()));
    println!("and for a person known only to Dukcapil:\n");
    println!("{}\n", curl(population.sample_dukcapil_only()));
    println!("Ctrl-C stops the federation.");
}

async fn serve_all(gateways: Vec<Arc<Gateway>>) -> Result<ExitCode, String> {
    gateway::metrics::install();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = Vec::new();
    for gw in gateways {
        let listener = TcpListener::bind(gw.listen)
            .await
            .map_err(|e| format!("{}: cannot listen on {}: {e}", gw.member, gw.listen))?;
        if let Some(admin) = gw.admin.clone() {
            let admin_listener = TcpListener::bind(admin.listen).await.map_err(|e| {
                format!(
                    "{}: cannot listen on {} (admin): {e}",
                    gw.member, admin.listen
                )
            })?;
            tasks.push(tokio::spawn(gateway::admin::serve(
                gw.clone(),
                admin_listener,
                admin,
                stopped.clone(),
            )));
        }
        tasks.push(tokio::spawn(gateway::server::serve(
            gw,
            listener,
            stopped.clone(),
        )));
    }
    wait_for_stop_signal().await;
    eprintln!("simpul: stopping");
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_stop_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

async fn query_cmd(
    config: &Config,
    subsystem: &MemberId,
    purpose: Option<String>,
    contract: ContractRef,
    query: &str,
) -> Result<ExitCode, String> {
    if !subsystem.is_subsystem() {
        return Err(format!(
            "--as {subsystem}: must be a subsystem id (four parts)"
        ));
    }
    let member = subsystem.member();
    let mc = config.member(&member).ok_or_else(|| {
        format!(
            "--as {subsystem}: {member} is not a member in {}",
            config.source
        )
    })?;
    let query: serde_json::Value =
        serde_json::from_str(query).map_err(|e| format!("query: not JSON: {e}"))?;
    let key = load_authority_key(&config.authority_key_path()).map_err(|e| e.to_string())?;
    let manifest_path = config.manifest_path();
    let text = std::fs::read_to_string(&manifest_path)
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let manifest = Manifest::verify(&text, &key, contracts::unix_now())
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    let purpose = match purpose {
        Some(p) => p,
        None => match mc.federated.iter().find(|f| f.reference() == contract) {
            Some(f) => f.purpose.clone(),
            None => {
                let granted = manifest
                    .contract(&contract)
                    .and_then(|c| manifest.grant(c, &member))
                    .unwrap_or_default();
                match granted {
                    [one] => one.clone(),
                    [] => {
                        return Err(format!(
                            "{member} is not granted {contract} in the manifest"
                        ));
                    }
                    many => return Err(format!("--purpose: choose one of {}", many.join(", "))),
                }
            }
        },
    };
    let cas = gateway::tls::certs_from_pem(&manifest.doc().ca).map_err(|e| e.to_string())?;
    let layout = config.pki_layout();
    let client = PeerClient::from_files(
        &cas,
        &layout.client_cert(subsystem),
        &layout.client_key(subsystem),
        member.clone(),
        contracts::envelope::MAX_ANSWER_BYTES,
    )
    .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&LocalQuery { purpose, query }).map_err(|e| e.to_string())?;
    let url = format!(
        "{}/v1/query/{}/{}",
        mc.gateway_url(),
        contract.id,
        contract.version
    );
    let reply = client
        .call(
            http::Method::POST,
            &url,
            "application/json",
            body.into(),
            std::time::Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.to_string())?;
    let pretty = serde_json::from_slice::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned());
    println!("{pretty}");
    Ok(if reply.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn cache_purge(
    config: &Config,
    member: &MemberId,
    contract: &str,
    version: Option<String>,
    as_admin: Option<MemberId>,
) -> Result<ExitCode, String> {
    let mc = config
        .member(member)
        .ok_or_else(|| format!("--member {member}: not a member in {}", config.source))?;
    let admin = mc.admin.as_ref().ok_or_else(|| {
        format!(
            "{member} has no admin listener in {} (members.admin)",
            config.source
        )
    })?;
    let identity = as_admin
        .or_else(|| admin.clients.first().cloned())
        .ok_or_else(|| format!("{member}'s admin.clients is empty: pass --as"))?;
    let layout = config.pki_layout();
    let ca = gateway::tls::load_certs(&layout.ca_cert()).map_err(|e| e.to_string())?;
    let client = PeerClient::from_files(
        &ca,
        &layout.client_cert(&identity),
        &layout.client_key(&identity),
        member.clone(),
        1 << 20,
    )
    .map_err(|e| e.to_string())?;
    let body = serde_json::to_vec(&serde_json::json!({"contract": contract, "version": version}))
        .map_err(|e| e.to_string())?;
    let url = format!(
        "https://localhost:{}/admin/cache/purge",
        admin.listen.port()
    );
    let reply = client
        .call(
            http::Method::POST,
            &url,
            "application/json",
            body.into(),
            std::time::Duration::from_secs(10),
        )
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", String::from_utf8_lossy(&reply.body));
    Ok(if reply.status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ---- `simpul audit`: the auditor's tools (docs/AUDIT.md) ----

#[derive(Subcommand)]
enum AuditCommand {
    /// Write a member's log as JSON lines: records and signed tree heads. Reads the store
    /// directly (the gateway may be running) and signs a fresh tree head first if the
    /// latest does not cover every record.
    Export {
        /// The member whose log to export.
        #[arg(long)]
        member: MemberId,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify an export offline with the member's public key: recompute the tree, check
    /// every signed tree head. Exit 1 naming the first bad sequence number.
    Verify {
        /// The export file.
        export: PathBuf,
        /// The member's public signing key (a JWK file, e.g. certs/<MEMBER>/signing.jwk).
        #[arg(long)]
        key: PathBuf,
        /// A signed tree head kept from before (a JSON file: a head as the admin listener
        /// serves it, or a proof bundle); the export must extend it. Repeatable.
        #[arg(long = "head")]
        heads: Vec<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an inclusion proof bundle for an exchange: its records, their leaf hashes and
    /// paths, and the signed tree head they are against.
    Prove {
        /// The exchange id.
        exchange_id: String,
        /// The member whose log to prove it in.
        #[arg(long)]
        member: MemberId,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a proof bundle offline with the member's public key. Exit 1 if it fails.
    CheckProof {
        /// The proof bundle file.
        proof: PathBuf,
        /// The member's public signing key (a JWK file).
        #[arg(long)]
        key: PathBuf,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two members' exports (a consumer's and a provider's): exchanges one side
    /// has and the other lacks, and exchanges they disagree on. Exit 1 if any.
    Reconcile {
        /// The first export.
        a: PathBuf,
        /// The second export.
        b: PathBuf,
        /// Window start, unix milliseconds (inclusive).
        #[arg(long)]
        from: Option<i64>,
        /// Window end, unix milliseconds (exclusive).
        #[arg(long)]
        to: Option<i64>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

async fn audit_cmd(config_path: Option<&Path>, command: AuditCommand) -> Result<ExitCode, String> {
    match command {
        AuditCommand::Export { member, out } => {
            let config = load_config(config_path)?;
            let log = open_audit_log(&config, &member).await?;
            let covered = log
                .latest_tree_head()
                .await
                .map_err(|e| e.to_string())?
                .map_or(0, |h| h.tree_size);
            if covered < log.tree_size() || log.tree_size() == 0 {
                log.sign_tree_head().await.map_err(|e| e.to_string())?;
            }
            match &out {
                Some(path) => {
                    let mut file = std::fs::File::create(path)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    log.export(&mut file)
                        .await
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    file.sync_all()
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    eprintln!(
                        "simpul: exported {member}'s log ({} records) to {}",
                        log.tree_size(),
                        path.display()
                    );
                }
                None => log
                    .export(&mut std::io::stdout())
                    .await
                    .map_err(|e| e.to_string())?,
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Verify {
            export,
            key,
            heads,
            json,
        } => audit_verify(&export, &key, &heads, json),
        AuditCommand::Prove {
            exchange_id,
            member,
            out,
        } => {
            let config = load_config(config_path)?;
            let log = open_audit_log(&config, &member).await?;
            let bundle = log.prove(&exchange_id).await.map_err(|e| e.to_string())?;
            let text = serde_json::to_string_pretty(&bundle).map_err(|e| e.to_string())?;
            match &out {
                Some(path) => {
                    std::fs::write(path, format!("{text}\n"))
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    eprintln!(
                        "simpul: wrote the proof of {} record(s) of {exchange_id} against tree head {} to {}",
                        bundle.proofs.len(),
                        bundle.tree_head.tree_size,
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::CheckProof { proof, key, json } => audit_check_proof(&proof, &key, json),
        AuditCommand::Reconcile {
            a,
            b,
            from,
            to,
            json,
        } => audit_reconcile(&a, &b, from, to, json),
    }
}

/// Opens `member`'s audit log as its gateway does: its configured store, its signing key.
async fn open_audit_log(
    config: &Config,
    member: &MemberId,
) -> Result<audit_store::AuditLog, String> {
    let mc = config
        .member(member)
        .ok_or_else(|| format!("--member {member}: not a member in {}", config.source))?;
    let audit = mc.audit_config();
    // Reading a log must not create an empty one where a wrong configuration points.
    if let Some(file) = audit.sqlite_file(member, &config.base_dir)
        && !file.is_file()
    {
        return Err(format!(
            "{member}'s audit log {} does not exist (has its gateway run with {}?)",
            file.display(),
            config.source
        ));
    }
    let key_path = config.pki_layout().signing_key(member);
    let pem = std::fs::read(&key_path).map_err(|e| format!("{}: {e}", key_path.display()))?;
    let key = contracts::SigningKey::from_pem(contracts::Algorithm::ES256, member.as_str(), &pem)
        .map_err(|e| format!("{}: {e}", key_path.display()))?;
    audit_store::AuditLog::open(&audit, &config.base_dir, member, Arc::new(key))
        .await
        .map_err(|e| e.to_string())
}

/// Reads a public JWK file.
fn read_verifying_key(path: &Path) -> Result<contracts::VerifyingKey, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let jwk: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a JWK: {e}", path.display()))?;
    contracts::VerifyingKey::from_jwk(&jwk).map_err(|e| format!("{}: {e}", path.display()))
}

fn open_export(path: &Path) -> Result<std::io::BufReader<std::fs::File>, String> {
    std::fs::File::open(path)
        .map(std::io::BufReader::new)
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn print_json(value: &serde_json::Value) -> Result<(), String> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// Reads a kept tree head: a head object, or any object with one under `tree_head` (a
/// proof bundle).
fn read_tree_head(path: &Path) -> Result<audit::SignedTreeHead, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    if let Some(head) = value.get_mut("tree_head") {
        value = head.take();
    }
    serde_json::from_value(value)
        .map_err(|e| format!("{}: not a signed tree head: {e}", path.display()))
}

fn audit_verify(
    export: &Path,
    key: &Path,
    heads: &[PathBuf],
    json: bool,
) -> Result<ExitCode, String> {
    let key = read_verifying_key(key)?;
    let kept = heads
        .iter()
        .map(|p| read_tree_head(p))
        .collect::<Result<Vec<_>, _>>()?;
    let reader = open_export(export)?;
    let result = audit::verify_export_against(reader, &key, &kept);
    if json {
        print_json(&match &result {
            Ok(report) => serde_json::json!({"ok": true, "report": report}),
            Err(failure) => serde_json::json!({"ok": false, "failure": failure}),
        })?;
    } else {
        match &result {
            Ok(r) => {
                println!(
                    "{}: verified: {}'s log, {} records, {} signed tree heads, signed by {}",
                    export.display(),
                    r.log,
                    r.records,
                    r.tree_heads,
                    key.kid()
                );
                if let Some(root) = &r.verified_root {
                    println!("  tree size {} has root {root}", r.verified_size);
                }
                if !kept.is_empty() {
                    println!("  and it extends the {} kept tree head(s)", kept.len());
                }
                if r.unsigned_records > 0 {
                    println!(
                        "  warning: the last {} record(s) are after the last signed tree head and not covered by a signature",
                        r.unsigned_records
                    );
                }
            }
            Err(f) => {
                println!("{}: FAILED: {f}", export.display());
                if let Some(seq) = f.first_bad_seq {
                    println!("first bad seq: {seq}");
                }
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn audit_check_proof(proof: &Path, key: &Path, json: bool) -> Result<ExitCode, String> {
    let key = read_verifying_key(key)?;
    let text = std::fs::read(proof).map_err(|e| format!("{}: {e}", proof.display()))?;
    let result = serde_json::from_slice::<audit::ProofBundle>(&text)
        .map_err(|e| audit::ProofFailure::Malformed(e.to_string()))
        .and_then(|bundle| audit::check_proof_bundle(&bundle, &key));
    if json {
        print_json(&match &result {
            Ok(report) => serde_json::json!({"ok": true, "report": report}),
            Err(failure) => serde_json::json!({"ok": false, "failure": failure.to_string()}),
        })?;
    } else {
        match &result {
            Ok(r) => {
                println!(
                    "{}: valid: exchange {} is in {}'s log, signed by {} at tree size {} (root {}, signed {})",
                    proof.display(),
                    r.exchange_id,
                    r.log,
                    key.kid(),
                    r.tree_size,
                    r.root_hash,
                    format_ms(r.timestamp)
                );
                for rec in &r.records {
                    println!("  {}", describe_record(rec));
                }
            }
            Err(f) => println!("{}: FAILED: {f}", proof.display()),
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn audit_reconcile(
    a: &Path,
    b: &Path,
    from: Option<i64>,
    to: Option<i64>,
    json: bool,
) -> Result<ExitCode, String> {
    let report = audit::reconcile(open_export(a)?, open_export(b)?, from, to).map_err(|e| {
        let (which, path) = match &e {
            audit::ReconcileError::Read { which: 'B', .. } => ("B", b),
            _ => ("A", a),
        };
        format!("{which} = {}: {e}", path.display())
    })?;
    if json {
        print_json(&serde_json::to_value(&report).map_err(|e| e.to_string())?)?;
    } else {
        let window = match (from, to) {
            (None, None) => "all records".to_owned(),
            (f, t) => format!(
                "records from {} to {}",
                f.map_or_else(|| "the start".into(), format_ms),
                t.map_or_else(|| "the end".into(), format_ms)
            ),
        };
        println!(
            "A = {} ({}), B = {} ({}), {window}",
            a.display(),
            report.a_log,
            b.display(),
            report.b_log
        );
        println!("{} exchange(s) agree", report.matched);
        for (name, log, list) in [
            ("A", &report.a_log, &report.only_in_a),
            ("B", &report.b_log, &report.only_in_b),
        ] {
            if !list.is_empty() {
                println!(
                    "{} exchange(s) only in {name} ({log}), missing from the other log:",
                    list.len()
                );
                for r in list {
                    println!("  {}", describe_record(r));
                }
            }
        }
        if !report.disagreements.is_empty() {
            println!(
                "{} exchange(s) the two logs disagree on:",
                report.disagreements.len()
            );
            for d in &report.disagreements {
                println!("  {} differs in {}", d.exchange_id, d.fields.join(", "));
                println!("    A: {}", describe_record(&d.a));
                println!("    B: {}", describe_record(&d.b));
            }
        }
        if report.is_clean() {
            println!("the logs agree");
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn describe_record(r: &audit::AuditRecord) -> String {
    format!(
        "seq {} {} {} {} → {} {}/{} for {}: {} (request {})",
        r.seq,
        format_ms(r.ts),
        if r.exchange_id.is_empty() {
            "(no exchange id)"
        } else {
            r.exchange_id.as_str()
        },
        r.consumer,
        r.provider,
        r.contract,
        r.version,
        r.purpose,
        r.outcome,
        r.request_hash.as_deref().unwrap_or("none")
    )
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn format_ms(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}
