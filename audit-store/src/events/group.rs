//! Group commit of emissions: concurrent [`EventStore::emit`](super::EventStore::emit) calls
//! share one outbox transaction, so that one disk sync makes many events durable, as the
//! audit log's appends do.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Emitted, Engine, EventStoreError, NewEvent};

/// Most emissions committed in one transaction.
const BATCH_MAX: usize = 256;

/// One emission waiting for its group commit.
pub(super) struct Emission {
    pub(super) event: NewEvent,
    pub(super) reply: oneshot::Sender<Result<Emitted, EventStoreError>>,
}

/// Starts the committer of `engine`'s emissions and returns where to send them. It stops
/// when every sender is dropped (the last clone of the store).
pub(super) fn start(engine: Arc<Engine>) -> mpsc::Sender<Emission> {
    let (emissions, rx) = mpsc::channel(BATCH_MAX * 4);
    tokio::spawn(commit_loop(engine, rx));
    emissions
}

/// Takes every emission waiting (those that arrived while the previous commit ran, up to
/// [`BATCH_MAX`]), stores them in one transaction in the order they arrived, and only then
/// answers each: with its seq once the commit is durable, or, when the transaction failed,
/// every one of them with the failure (none of them is stored).
async fn commit_loop(engine: Arc<Engine>, mut rx: mpsc::Receiver<Emission>) {
    let mut waiting = Vec::with_capacity(BATCH_MAX);
    while rx.recv_many(&mut waiting, BATCH_MAX).await > 0 {
        let (events, replies): (Vec<NewEvent>, Vec<_>) =
            waiting.drain(..).map(|e| (e.event, e.reply)).unzip();
        match engine.emit_batch(&events).await {
            Ok(emitted) => {
                for (reply, emitted) in replies.into_iter().zip(emitted) {
                    // A caller that stopped waiting has no one to tell; its event is stored.
                    let _ = reply.send(Ok(emitted));
                }
            }
            Err(e) => {
                tracing::error!(
                    store = %engine.label(),
                    events = events.len(),
                    error = %e,
                    "a group commit of emitted events failed"
                );
                let cause = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(EventStoreError::GroupCommit {
                        store: engine.label().to_owned(),
                        events: events.len(),
                        source: cause.clone(),
                    }));
                }
            }
        }
    }
}
