//! `simpul serve --member ID`: one member's gateway, as a ministry runs it in production;
//! and binding then serving gateways, which `simpul up` shares.

use std::process::ExitCode;
use std::sync::Arc;

use gateway::config::{AdminConfig, Config};
use gateway::gateway::Gateway;
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;

use contracts::MemberId;

use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The member, e.g. ID:GOV:DUKCAPIL.
    #[arg(long)]
    member: MemberId,
}

pub async fn run(config: Config, args: Args) -> Result<ExitCode, CliError> {
    let mut stop_signal = StopSignal::install()?;
    let gw = tokio::select! {
        gw = Gateway::from_config(&config, &args.member) => gw?,
        () = stop_signal.received() => {
            tracing::info!("stopped before the gateway was serving");
            return Ok(ExitCode::SUCCESS);
        }
    };
    bind(vec![Arc::new(gw)]).await?.serve(stop_signal).await
}

/// One gateway with its listeners bound.
struct BoundGateway {
    gateway: Arc<Gateway>,
    listener: TcpListener,
    local: Option<TcpListener>,
    admin: Option<(TcpListener, AdminConfig)>,
}

/// Gateways whose every listener is bound: nothing can fail with "address in use" after
/// this, so a caller may announce that they are up.
pub struct Bound(Vec<BoundGateway>);

/// Binds every listener of `gateways` (member, local and admin), or fails naming the first
/// that cannot be bound.
pub async fn bind(gateways: Vec<Arc<Gateway>>) -> Result<Bound, CliError> {
    let mut bound = Vec::with_capacity(gateways.len());
    for gw in gateways {
        let bind_err = |addr, what| {
            let member = gw.member.to_string();
            move |source| CliError::Bind {
                member,
                addr,
                what,
                source,
            }
        };
        let listener = TcpListener::bind(gw.listen)
            .await
            .map_err(bind_err(gw.listen, ""))?;
        let local = match gw.local_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(bind_err(addr, " (local)"))?,
            ),
            None => None,
        };
        let admin = match gw.admin.clone() {
            Some(admin) => Some((
                TcpListener::bind(admin.listen)
                    .await
                    .map_err(bind_err(admin.listen, " (admin)"))?,
                admin,
            )),
            None => None,
        };
        bound.push(BoundGateway {
            gateway: gw,
            listener,
            local,
            admin,
        });
    }
    Ok(Bound(bound))
}

impl Bound {
    /// Serves until SIGINT or SIGTERM, then drains open connections and returns. On SIGHUP
    /// every gateway reads its manifest, CRLs and keys again ([`Gateway::reload`]).
    pub async fn serve(self, mut stop_signal: StopSignal) -> Result<ExitCode, CliError> {
        gateway::metrics::install();
        // Before any listener accepts: every connection it holds is a descriptor.
        let connections = self
            .0
            .iter()
            .map(|b| b.gateway.max_open_connections())
            .fold(0, u64::saturating_add);
        gateway::descriptors::prepare(connections)?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(reload_on_hangup(
            self.0.iter().map(|b| b.gateway.clone()).collect(),
            stopped.clone(),
        )));
        for b in self.0 {
            if let Some(listener) = b.local {
                tasks.push(tokio::spawn(gateway::local_server::serve(
                    b.gateway.clone(),
                    listener,
                    stopped.clone(),
                )));
            }
            if let Some((listener, admin)) = b.admin {
                tasks.push(tokio::spawn(gateway::admin::serve(
                    b.gateway.clone(),
                    listener,
                    admin,
                    stopped.clone(),
                )));
            }
            tasks.push(tokio::spawn(gateway::server::serve(
                b.gateway,
                b.listener,
                stopped.clone(),
            )));
        }
        stop_signal.received().await;
        tracing::info!("stopping");
        let _ = stop.send(true);
        for t in tasks {
            let _ = t.await;
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Reloads every gateway on each SIGHUP, until `stopped`.
async fn reload_on_hangup(gateways: Vec<Arc<Gateway>>, mut stopped: watch::Receiver<bool>) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP cannot be caught: reloads happen on the refresh interval only");
            return;
        }
    };
    loop {
        tokio::select! {
            received = hangup.recv() => {
                if received.is_none() {
                    return;
                }
                for gw in &gateways {
                    let done = gw.reload().await;
                    tracing::info!(member = %gw.member, serial = done.serial, adopted = done.adopted, problems = done.problems.len(), "reloaded on SIGHUP");
                }
            }
            _ = stopped.changed() => return,
        }
    }
}

/// Ctrl-C (SIGINT) and SIGTERM, caught from the moment it is installed: a command installs
/// it first thing, so that a stop while it prepares is a stop too, never a kill.
pub(crate) struct StopSignal {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignal {
    /// Catches SIGINT and SIGTERM from now on.
    ///
    /// # Errors
    /// The signal handlers cannot be installed.
    pub(crate) fn install() -> Result<Self, CliError> {
        let catch = |kind: SignalKind| {
            signal(kind).map_err(|e| CliError::Process(format!("cannot catch stop signals: {e}")))
        };
        Ok(StopSignal {
            interrupt: catch(SignalKind::interrupt())?,
            terminate: catch(SignalKind::terminate())?,
        })
    }

    /// Waits for either.
    pub(crate) async fn received(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
