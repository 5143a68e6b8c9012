//! The demo's change generator: SISKOP2MI at work. Every few seconds it ends a placement or
//! starts one in BP2MI's database, as BP2MI's own system would, and emits
//! `placement.changed` for it through BP2MI's local face (PROTOCOL.md §4.5) with its own
//! client certificate; BP2MI's gateway signs the event and delivers it to Kemlu.

use std::path::PathBuf;
use std::time::Duration;

use contracts::MemberId;
use gateway::client::PeerClient;
use gateway::config::Config;
use gateway::tls::FederationTrust;
use http::Method;
use serde_json::json;
use sqlx::{ConnectOptions, Row};
use tokio::sync::watch;

use crate::DemoPlan;

/// The event contract the generator emits.
const CONTRACT: &str = "placement.changed";

/// What the generator needs: who emits, where, and the database it changes.
pub struct Changes {
    client: PeerClient,
    url: String,
    database: PathBuf,
}

/// Why there is no generator for this configuration.
#[derive(Debug, thiserror::Error)]
pub enum ChangesError {
    /// No member emits `placement.changed`, or its emitter or data is not what the demo has.
    #[error("no change generator: {0}")]
    Unavailable(String),
}

impl Changes {
    /// The generator of the member that emits `placement.changed` in `config`, acting as its
    /// first emitter, on the SQLite database the demo seeded for it.
    ///
    /// # Errors
    /// [`ChangesError::Unavailable`], saying what is missing.
    pub fn for_config(
        config: &Config,
        plan: &DemoPlan,
        trust: &FederationTrust,
    ) -> Result<Changes, ChangesError> {
        let unavailable = |why: String| ChangesError::Unavailable(why);
        let (member, source) = config
            .members
            .iter()
            .find_map(|m| {
                m.events
                    .iter()
                    .find(|e| e.contract.id == CONTRACT)
                    .map(|e| (m, e))
            })
            .ok_or_else(|| unavailable(format!("no member emits {CONTRACT}")))?;
        let emitter: &MemberId = source
            .emitters
            .first()
            .ok_or_else(|| unavailable(format!("{} names no emitter of {CONTRACT}", member.id)))?;
        let local = member
            .local
            .as_ref()
            .ok_or_else(|| unavailable(format!("{} has no local listener", member.id)))?;
        let target = plan
            .target(&member.id)
            .filter(|t| t.server.is_none())
            .ok_or_else(|| {
                unavailable(format!("{}'s placements are not an SQLite file", member.id))
            })?;
        let layout = &config.federation.pki;
        let client = PeerClient::from_files(
            trust,
            &layout.client_cert(emitter),
            &layout.client_key(emitter),
            member.id.clone(),
            1 << 16,
        )
        .map_err(|e| unavailable(format!("{emitter}'s certificate: {e}")))?;
        Ok(Changes {
            client,
            url: format!("{}/v1/events/{CONTRACT}/1", local.url()),
            database: target.database.clone(),
        })
    }

    /// Until `shutdown`: every `every`, one placement ends or starts, and its event is
    /// emitted. A step that fails is logged and the next one tried.
    pub async fn run(self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut n: u64 = 0;
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            n += 1;
            let change = if n % 2 == 1 { "ended" } else { "started" };
            match self.step(change).await {
                Ok((placement, event)) => tracing::info!(
                    placement,
                    change,
                    event,
                    "SISKOP2MI emitted placement.changed"
                ),
                Err(e) => tracing::warn!(error = %e, "the demo's change generator skipped a step"),
            }
        }
    }

    /// One change: the database first, as SISKOP2MI records it, then the event.
    async fn step(&self, change: &str) -> Result<(String, String), String> {
        let mut db = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&self.database)
            .busy_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| format!("{}: {e}", self.database.display()))?;
        let row = if change == "ended" {
            sqlx::query(
                "UPDATE placements SET status = 'completed', end_date = date('now')
                  WHERE id = (SELECT id FROM placements WHERE status = 'active' ORDER BY random() LIMIT 1)
              RETURNING id, date('now')",
            )
        } else {
            sqlx::query(
                "INSERT INTO placements (nik, country, agency, occupation, status, start_date)
                 SELECT nik, country, agency, occupation, 'active', date('now')
                   FROM placements WHERE status = 'completed' ORDER BY random() LIMIT 1
              RETURNING id, date('now')",
            )
        }
        .fetch_one(&mut db)
        .await
        .map_err(|e| format!("{}: {e}", self.database.display()))?;
        let placement: i64 = row.try_get(0).map_err(|e| e.to_string())?;
        let on: String = row.try_get(1).map_err(|e| e.to_string())?;
        let body =
            json!({"data": {"placement": placement.to_string(), "change": change, "on": on}});
        let reply = self
            .client
            .call(
                Method::POST,
                &self.url,
                "application/json",
                serde_json::to_vec(&body).map_err(|e| e.to_string())?.into(),
                Duration::from_secs(10),
            )
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        if !reply.status.is_success() {
            return Err(format!(
                "{} answered {}: {}",
                self.url, reply.status, answer["detail"]
            ));
        }
        Ok((
            placement.to_string(),
            answer["event_id"].as_str().unwrap_or_default().to_owned(),
        ))
    }
}
