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
            let gw = Gateway::from_config(&config, &member).map_err(|e| e.to_string())?;
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
            Gateway::from_config(&config, &m.id).map_err(|e| e.to_string())?,
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
                admin.clients,
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
