//! Emitting from a change table (PROTOCOL.md §4.5): for each event contract bound to one
//! (`[members.events.sql]`, `rows = "changes"`), the rows after the last one emitted are read
//! each second — and at once again after a full batch — and each is emitted in order, as the
//! local face emits one, with its row number as `source`. A row that cannot be emitted stops
//! the reading there (fail closed: no row is emitted past one that was not): it is logged,
//! counted and tried again each second, until the member's system fixes it.

use std::sync::Arc;
use std::time::Duration;

use adapters::{Adapter, AdapterError, Change};
use audit::Role;
use audit_store::events::{Emitted, EventStoreError};
use contracts::{ContractRef, Problem};
use serde_json::Value;
use tokio::sync::watch;

use super::emit::{record_emitted, sign_and_keep};
use crate::gateway::Gateway;
use crate::metrics::count;
use crate::trail::Trail;

/// The most rows read at once.
const BATCH: u32 = 100;

/// How long the poller waits after a batch that was not full, or that stopped.
const EVERY: Duration = Duration::from_secs(1);

/// Why a round of reading the change table stopped before its last row.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    /// The event store could not say where the table was left.
    #[error("the last row emitted cannot be read from the event store: {0}")]
    Position(EventStoreError),
    /// The table could not be read, or a row of it did not fit the binding.
    #[error("the change table cannot be read: {0}")]
    Unreadable(AdapterError),
    /// A row was refused (its data off the contract's schema, say) or could not be kept.
    #[error("the row with source {row} cannot be emitted: {}", .problem.detail)]
    Refused {
        /// Its `source`.
        row: i64,
        /// Why, as the local face would have answered.
        problem: Problem,
    },
    /// A row's event is in the outbox, but its emission could not be recorded.
    #[error("the row with source {row} was emitted, but its record is not durable: {}", .problem.detail)]
    Unrecorded {
        /// Its `source`.
        row: i64,
        /// What the audit log said.
        problem: Problem,
    },
}

impl Stopped {
    /// Whether it is the backend (or the store) being away for a while, rather than
    /// something an operator must fix.
    fn transient(&self) -> bool {
        matches!(
            self,
            Stopped::Position(_)
                | Stopped::Unreadable(AdapterError::Unavailable(_) | AdapterError::Timeout(_))
        )
    }
}

/// Until `shutdown`: emits the rows of `contract`'s change table, read through `adapter`.
pub(crate) async fn run(
    gw: Arc<Gateway>,
    contract: ContractRef,
    adapter: Arc<dyn Adapter>,
    mut shutdown: watch::Receiver<bool>,
) {
    let label = contract.to_string();
    loop {
        let full = match poll(&gw, &contract, adapter.as_ref()).await {
            Ok(read) => read >= BATCH as usize,
            Err(stopped) => {
                if stopped.transient() {
                    tracing::warn!(member = %gw.member, contract = %label, error = %stopped, "events are not emitted from the change table now");
                } else {
                    tracing::error!(member = %gw.member, contract = %label, error = %stopped, "events are not emitted from the change table until this is fixed");
                }
                count!(gw.labels, "simpul_events_source_errors_total", "contract" => label.clone());
                false
            }
        };
        if *shutdown.borrow() {
            return;
        }
        if !full {
            tokio::select! {
                () = tokio::time::sleep(EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// One round: the rows after the last one emitted, each emitted in order; how many were read.
async fn poll(
    gw: &Gateway,
    contract: &ContractRef,
    adapter: &dyn Adapter,
) -> Result<usize, Stopped> {
    let after = gw
        .events
        .store
        .last_source(&contract.id)
        .await
        .map_err(Stopped::Position)?
        .unwrap_or(0);
    let changes = adapter
        .changes(after, BATCH)
        .await
        .map_err(Stopped::Unreadable)?;
    let read = changes.len();
    for change in changes {
        emit_row(gw, contract, change).await?;
    }
    Ok(read)
}

/// Emits one row as the local face emits one event, with no subsystem: the gateway read it.
async fn emit_row(gw: &Gateway, contract: &ContractRef, change: Change) -> Result<(), Stopped> {
    let row = change.source;
    let id = contracts::ExchangeId::new().to_string();
    let mut trail = Trail::new(&gw.audit, &gw.labels, Role::Provider, contract);
    trail.set_exchange_id(&id);
    trail.set_consumer(&gw.member);
    trail.set_provider(&gw.member);
    let data = Value::Object(change.data);
    match sign_and_keep(gw, contract, data, Some(row), &id, &mut trail).await {
        Ok(Emitted::New { .. }) => record_emitted(gw, contract, trail)
            .await
            .map_err(|problem| Stopped::Unrecorded { row, problem }),
        // Emitted already (by a replica sharing the outbox): nothing new, nothing recorded.
        Ok(Emitted::Existing { .. }) => {
            trail.dismiss();
            Ok(())
        }
        // Not recorded: the row is tried again each second until it is fixed, and a record
        // of each try would fill the log. The log line and the counter say it instead.
        Err(problem) => {
            trail.dismiss();
            Err(Stopped::Refused { row, problem })
        }
    }
}
