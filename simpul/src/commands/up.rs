//! `simpul up`: the demo federation — make what is missing (PKI, manifest, data), bind every
//! member's listeners, say how to ask it, serve until stopped.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use demo::DemoPlan;
use demo::population::Sample;
use gateway::config::Config;
use gateway::gateway::Gateway;

use crate::commands::serve;
use crate::error::CliError;

/// The environment variable with the PostgreSQL URL for `simpul up --backend postgres`.
const PG_URL_VAR: &str = "SIMPUL_PG_URL";
const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/simpul_demo";

#[derive(clap::Args)]
pub struct Args {
    /// Where the demo's data lives: `sqlite` files beside the configuration, or
    /// `postgres`: one schema per member in the database of $SIMPUL_PG_URL (default
    /// postgres://postgres@127.0.0.1:5432/simpul_demo, created if missing).
    #[arg(long, value_enum, default_value_t = DemoBackend::Sqlite)]
    backend: DemoBackend,
}

/// Where `simpul up` keeps the demo's data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum DemoBackend {
    /// One SQLite file per member (`data/*.db`).
    Sqlite,
    /// One schema per member in a PostgreSQL database.
    Postgres,
}

pub async fn run(config: Config, args: Args) -> Result<ExitCode, CliError> {
    // From the first moment: preparing (seeding above all) can take a while.
    let mut stop_signal = serve::StopSignal::install()?;
    let bound = tokio::select! {
        prepared = prepare(config, args) => prepared?,
        () = stop_signal.received() => {
            tracing::info!("stopped before the federation was up");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let (bound, config, sample, changes) = bound;
    print_demo(&config, &sample, changes.as_ref().err());
    // SISKOP2MI at work: placements end and start, each with its row of BP2MI's change
    // table, which BP2MI's gateway emits as placement.changed.
    let (stop_changes, stopped) = tokio::sync::watch::channel(false);
    if let Ok(changes) = changes {
        tokio::spawn(changes.run(CHANGE_EVERY, stopped));
    }
    let served = bound.serve(stop_signal).await;
    let _ = stop_changes.send(true);
    served
}

/// How often the demo's SISKOP2MI ends or starts a placement.
const CHANGE_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Makes what is missing and binds every member's listeners.
async fn prepare(
    mut config: Config,
    args: Args,
) -> Result<
    (
        serve::Bound,
        Config,
        Sample,
        Result<demo::changes::Changes, demo::changes::ChangesError>,
    ),
    CliError,
> {
    let mut plan = DemoPlan::from_config(&config)?;
    let mut server = None;
    if args.backend == DemoBackend::Postgres {
        let url = std::env::var(PG_URL_VAR).unwrap_or_else(|_| DEFAULT_PG_URL.into());
        demo::use_database_server(&mut config, &mut plan, &url)?;
        server = Some(url);
    }
    // Generated once: for seeding (when some dataset is missing) and for the examples.
    tracing::info!(
        "generating the synthetic population: {} residents",
        plan.data.people
    );
    // On a thread of its own, so that a stop signal is heard while it runs.
    let population = {
        let plan = plan.clone();
        tokio::task::spawn_blocking(move || plan.population())
            .await
            .map_err(|e| CliError::Process(format!("generating the population: {e}")))?
    };
    let prepared = match demo::prepare(&config, &plan, &population).await {
        Ok(p) => p,
        // Seeding is the first use of the server: say which server, and where its URL came from.
        Err(e @ demo::PrepareError::Seed(_)) if server.is_some() => {
            let url = server.as_deref().unwrap_or_default();
            return Err(CliError::Usage(format!(
                "--backend postgres: {e}; the server is {} ({}): start it, or set {PG_URL_VAR} to a PostgreSQL URL",
                without_password(url),
                if std::env::var_os(PG_URL_VAR).is_some() {
                    format!("from {PG_URL_VAR}")
                } else {
                    format!("the default; {PG_URL_VAR} is not set")
                }
            )));
        }
        Err(e) => return Err(e.into()),
    };
    for note in &prepared.notes {
        tracing::info!("{note}");
    }
    let mut gateways = Vec::new();
    for m in &config.members {
        gateways.push(Arc::new(Gateway::from_config(&config, &m.id).await?));
    }
    let changes = demo::changes::Changes::for_config(&config, &plan);
    let bound = serve::bind(gateways).await?;
    // Whom to ask about: people the seeded databases hold, whatever `[data]` says now.
    let sample = demo::population::read_sample(&plan)
        .await
        .map_err(demo::PrepareError::from)?;
    Ok((bound, config, sample, changes))
}

/// `url` with any password replaced by `***`, to be shown.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

/// Says that the federation is up and prints two ready-to-paste curl commands, each to the
/// local listener of the member that defines a federated contract, and how to watch the
/// change notifications arrive.
fn print_demo(config: &Config, sample: &Sample, no_changes: Option<&demo::changes::ChangesError>) {
    println!(
        "\nSimpul demo federation is up: {} gateways.",
        config.members.len()
    );
    for m in &config.members {
        let local = m
            .local
            .as_ref()
            .map(|l| format!("   its own systems: {}", l.url()))
            .unwrap_or_default();
        println!("  {:<18} {}{local}", m.id.as_str(), m.gateway.clone());
    }
    let Some((member, subsystem)) = demo::demo_caller(config) else {
        return;
    };
    let Some(mc) = config.member(&member) else {
        return;
    };
    let Some(fc) = mc.federated.first() else {
        return;
    };
    let Some(local) = mc.local.as_ref() else {
        return;
    };
    let layout = &config.federation.pki;
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
            url = local.url(),
            id = fc.reference.id,
            version = fc.reference.version,
        )
    };
    let whom = [
        ("a person known to all four ministries", &sample.in_all_four),
        ("a person known only to Dukcapil", &sample.dukcapil_only),
    ];
    println!(
        "\nAsk the {} as {subsystem}, on {member}'s local listener:",
        fc.reference.id
    );
    for (who, nik) in whom {
        match nik {
            Some(nik) => println!("\nfor {who}:\n\n{}", curl(nik)),
            // Databases seeded by hand, or under a population that has nobody who fits.
            None => println!("\n(the databases in use hold no {who}; ask about any NIK they hold)"),
        }
    }
    print_events(config, no_changes, &rel);
    println!();
    println!("Ctrl-C stops the federation.");
}

/// How to watch Peduli WNI's webhook receive BP2MI's placement.changed events.
fn print_events(
    config: &Config,
    no_changes: Option<&demo::changes::ChangesError>,
    rel: &dyn Fn(PathBuf) -> String,
) {
    let Some((member, hook)) = config
        .members
        .iter()
        .find_map(|m| m.webhooks.first().map(|w| (m, w)))
    else {
        return;
    };
    match no_changes {
        None => println!(
            "\nEvery {} s SISKOP2MI ends or starts a placement and, in the same transaction, writes\n\
             a row of BP2MI's change table; BP2MI's gateway emits each row as placement.changed.\n\
             {} receives each, verified and recorded, and posts it to the webhook `{}`.\n\
             Watch it arrive, signed, in another terminal:\n\n\
             simpul demo webhook --listen {} --secret-file {}",
            CHANGE_EVERY.as_secs(),
            member.id,
            hook.name,
            hook.url
                .authority()
                .map_or("127.0.0.1:7680", |a| a.as_str()),
            rel(hook.secret_file.clone()),
        ),
        Some(e) => println!("\n({e}: placement.changed is not emitted by the demo)"),
    }
    println!(
        "\nEach subscription's backlog and lag: simpul events --member {}",
        member.id
    );
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_shown_url_keeps_everything_but_the_password() {
        assert_eq!(
            super::without_password("postgres://simpul:s3cret@db:5432/demo"),
            "postgres://simpul:***@db:5432/demo"
        );
        for kept in ["postgres://postgres@127.0.0.1:5432/x", "not a url"] {
            assert_eq!(super::without_password(kept), kept);
        }
    }
}
