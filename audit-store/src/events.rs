//! The durable store of change notifications (issue #17): the emitting gateway's outbox with
//! one delivery cursor per subscriber, and the subscribing gateway's inbox with one webhook
//! cursor per local subscription.
//!
//! It lives where the member's audit log does: beside an SQLite audit store, in a file of its
//! own (`data/audit-bp2mi.db` → `data/audit-bp2mi.events.db`; WAL, `synchronous=FULL`), or
//! in the audit log's PostgreSQL database, in `simpul_event_*` tables whose every row names
//! its member (several members may share one database). Every call that writes has
//! committed, durably, when it returns. No call reads the clock: the caller gives the time.
//!
//! Tables:
//!
//! | table | holds |
//! | --- | --- |
//! | `simpul_event_state` | per member: the last outbox seq and the last inbox seq given — the row every writer of seqs locks |
//! | `simpul_event_outbox` | the events emitted, by `(member, seq)` |
//! | `simpul_event_sources` | per member and contract: the highest change-table row emitted, kept when its event is purged |
//! | `simpul_event_cursors` | one delivery cursor per subscriber and contract, with its lease and retry state |
//! | `simpul_event_notices` | expiry notices a subscriber has not been sent yet |
//! | `simpul_event_inbox` | the events received, by `(member, seq)` |
//! | `simpul_event_expired` | expiry notices received for events that never arrived |
//! | `simpul_event_hooks` | one webhook cursor per local subscription |
//!
//! Seqs are given under the state row's lock, held until COMMIT, so they become visible in
//! seq order: a cursor that has read up to seq n never later finds an event below n appear.
//!
//! One statement text serves both engines (sqlx binds SQLite's `$N` by number, as the audit
//! store relies on too), except where they differ: the `FOR UPDATE` row locks and the
//! leasing of due cursors, which PostgreSQL does with `SKIP LOCKED` ([`Dialect`]).

/// The statement text for a read that locks the rows it reads until the transaction ends:
/// PostgreSQL's `FOR UPDATE`; SQLite's `BEGIN IMMEDIATE` has locked the whole file already.
macro_rules! for_update {
    ($dialect:expr, $sql:literal) => {
        match $dialect {
            $crate::events::Dialect::Sqlite => $sql,
            $crate::events::Dialect::Postgres => concat!($sql, " FOR UPDATE"),
        }
    };
}

mod group;
mod inbox;
mod outbox;
mod schema;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use contracts::MemberId;
use sqlx::database::HasStatementCache;
use sqlx::{
    ColumnIndex, Connection, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, SqlStr,
    Transaction, Type,
};

use tokio::sync::{mpsc, oneshot};

use crate::store::{StoreTarget, postgres_pool, sqlite_pool};
use crate::{AuditConfig, AuditError};

/// Why the event store could not do what was asked. Every variant names the store (the
/// SQLite file, or the PostgreSQL URL without credentials and the member).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventStoreError {
    /// The audit store's configuration cannot be used, so neither can the event store beside
    /// it.
    #[error("event store of audit store {store}: {reason}")]
    Config {
        /// The audit store as configured, or the event store once resolved.
        store: String,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be opened.
    #[error("event store {store}: cannot open: {source}")]
    Open {
        /// The store.
        store: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("event store {store}: {op}: {source}")]
    Store {
        /// The store.
        store: String,
        /// What was being done.
        op: &'static str,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// The store holds a value this store never writes.
    #[error("event store {store}: {what}: {reason}")]
    Corrupt {
        /// The store.
        store: String,
        /// What was being read.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No delivery cursor of this subscriber and contract ([`EventStore::subscribe`] makes
    /// them).
    #[error(
        "event store {store}: no delivery cursor of subscriber {subscriber} for contract {contract}"
    )]
    UnknownCursor {
        /// The store.
        store: String,
        /// The subscriber asked for.
        subscriber: String,
        /// The contract asked for.
        contract: String,
    },
    /// No webhook cursor of this name ([`EventStore::hooks`] makes them).
    #[error("event store {store}: no webhook cursor named {hook}")]
    UnknownHook {
        /// The store.
        store: String,
        /// The name asked for.
        hook: String,
    },
    /// The transaction an emission shared with others ([`EventStore::emit`]'s group commit)
    /// failed: none of its events is stored.
    #[error("event store {store}: the group commit of {events} emitted events failed: {source}")]
    GroupCommit {
        /// The store.
        store: String,
        /// How many emissions the transaction held.
        events: usize,
        /// Why it failed (the same for every emission it held).
        #[source]
        source: Arc<EventStoreError>,
    },
    /// The store's committer of emissions is gone (the runtime is shutting down).
    #[error("event store {store}: closed, the event is not stored")]
    Closed {
        /// The store.
        store: String,
    },
    /// A redelivery would start inside the part of the inbox that was purged.
    #[error(
        "event store {store}: webhook {hook} cannot be rewound to seq {to_seq}: the inbox holds \
         events from seq {oldest} on (those before were purged), so the lowest position is {}",
        oldest - 1
    )]
    RewindPurged {
        /// The store.
        store: String,
        /// The webhook cursor.
        hook: String,
        /// The position asked for.
        to_seq: i64,
        /// The oldest seq still in the inbox (the next seq to be given when it is empty).
        oldest: i64,
    },
    /// A redelivery position beyond the newest event received, which would skip events yet to
    /// come.
    #[error(
        "event store {store}: webhook {hook} cannot be rewound to seq {to_seq}: the newest \
         inbox event is seq {newest}"
    )]
    RewindAhead {
        /// The store.
        store: String,
        /// The webhook cursor.
        hook: String,
        /// The position asked for.
        to_seq: i64,
        /// The newest seq given in the inbox.
        newest: i64,
    },
}

// ------------------------------------------------------------------------------------------
// The emitting side: the outbox.

/// An event to emit: a signed change notification of one contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// The event's id (unique among this member's events).
    pub id: String,
    /// The contract it is an event of (`placement.changed`).
    pub contract: String,
    /// The contract's version.
    pub version: String,
    /// Whom it is about (as the signed event names it).
    pub subject: String,
    /// When it was emitted, Unix milliseconds.
    pub emitted_ms: i64,
    /// When it expires (it is not delivered after), Unix milliseconds.
    pub expires_ms: i64,
    /// The signed event, a compact JWS.
    pub jws: String,
    /// The change-table row it was made from, when it was: an event of the same contract and
    /// source is emitted once.
    pub source: Option<i64>,
}

/// What [`EventStore::emit`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Emitted {
    /// The event is stored, with this seq.
    New {
        /// Its seq (per member: 1, 2, …).
        seq: i64,
    },
    /// Nothing was written: an event of the same id, or of the same contract and source, is
    /// stored already.
    Existing {
        /// The stored event's seq.
        seq: i64,
        /// The stored event's id.
        id: String,
    },
}

/// A subscription served by this gateway: a subscriber member and the contract whose events
/// it gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// The subscribing member.
    pub subscriber: String,
    /// The contract.
    pub contract: String,
    /// The contract's version the subscriber is granted.
    pub version: String,
    /// The purpose of its grant.
    pub purpose: String,
}

/// A delivery cursor with work to do, leased to the caller by [`EventStore::due`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// The subscribing member.
    pub subscriber: String,
    /// The contract.
    pub contract: String,
    /// The contract's version of the subscription.
    pub version: String,
    /// The purpose of the subscription.
    pub purpose: String,
    /// The seq of the last event delivered (or expired) to the subscriber.
    pub delivered_seq: i64,
    /// Failed deliveries since the last that succeeded.
    pub attempts: u32,
}

/// An event in the outbox, to deliver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutEvent {
    /// Its seq.
    pub seq: i64,
    /// Its id.
    pub id: String,
    /// Whom it is about.
    pub subject: String,
    /// The signed event, a compact JWS.
    pub jws: String,
    /// When it was emitted, Unix milliseconds.
    pub emitted_ms: i64,
    /// When it expires, Unix milliseconds.
    pub expires_ms: i64,
}

/// An event that expired before it was delivered to a subscriber, which is told of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// The event's id.
    pub event_id: String,
    /// base64url (no padding) SHA-256 of the event's JWS.
    pub hash: String,
    /// The event's seq.
    pub seq: i64,
}

/// A delivery cursor as it stands, for metrics and `simpul events`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorState {
    /// The subscribing member.
    pub subscriber: String,
    /// The contract.
    pub contract: String,
    /// The contract's version of the subscription.
    pub version: String,
    /// The purpose of the subscription.
    pub purpose: String,
    /// Whether the subscription is among those last given to [`EventStore::subscribe`].
    pub active: bool,
    /// The seq of the last event delivered (or expired).
    pub delivered_seq: i64,
    /// Events of its contract after its position.
    pub backlog: u64,
    /// The `emitted_ms` of the oldest of those, if any.
    pub oldest_pending_ms: Option<i64>,
    /// Failed deliveries since the last that succeeded.
    pub attempts: u32,
    /// When the next delivery may be tried, Unix milliseconds.
    pub next_attempt_ms: i64,
    /// Why the last delivery failed, until one succeeds.
    pub last_error: Option<String>,
    /// The id of the last event delivered.
    pub last_delivered_id: Option<String>,
    /// When it was delivered, Unix milliseconds.
    pub last_delivered_ms: Option<i64>,
    /// Expiry notices not sent yet.
    pub notices: u64,
}

// ------------------------------------------------------------------------------------------
// The subscribing side: the inbox.

/// An event received from a provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incoming {
    /// The member that emitted it.
    pub provider: String,
    /// The contract.
    pub contract: String,
    /// The contract's version.
    pub version: String,
    /// The event's id (unique among the provider's events).
    pub event_id: String,
    /// Whom it is about.
    pub subject: String,
    /// When it was emitted, Unix milliseconds.
    pub emitted_ms: i64,
    /// When it expires, Unix milliseconds.
    pub expires_ms: i64,
    /// The signed event, a compact JWS.
    pub jws: String,
    /// The id of the delivery that brought it.
    pub delivery_id: String,
    /// When it was received, Unix milliseconds.
    pub received_ms: i64,
}

/// What [`EventStore::receive`] did with one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// Stored, with this inbox seq.
    New {
        /// Its inbox seq (per member: 1, 2, …).
        seq: i64,
    },
    /// Received before (this call or an earlier one): not stored again.
    Duplicate {
        /// The stored event's inbox seq.
        seq: i64,
    },
}

/// An event in the inbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboxEvent {
    /// Its inbox seq.
    pub seq: i64,
    /// The member that emitted it.
    pub provider: String,
    /// The contract.
    pub contract: String,
    /// The contract's version.
    pub version: String,
    /// The event's id.
    pub event_id: String,
    /// Whom it is about.
    pub subject: String,
    /// When it was emitted, Unix milliseconds.
    pub emitted_ms: i64,
    /// When it expires, Unix milliseconds.
    pub expires_ms: i64,
    /// When it was received, Unix milliseconds.
    pub received_ms: i64,
    /// The signed event, a compact JWS.
    pub jws: String,
}

/// A webhook cursor as it stands: how far the inbox has been forwarded to one local
/// subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookState {
    /// The local subscription's name.
    pub name: String,
    /// The inbox seq of the last event forwarded.
    pub delivered_seq: i64,
    /// Failed forwards since the last that succeeded.
    pub attempts: u32,
    /// When the next forward may be tried, Unix milliseconds.
    pub next_attempt_ms: i64,
    /// Why the last forward failed, until one succeeds.
    pub last_error: Option<String>,
    /// When the last forward succeeded, Unix milliseconds.
    pub last_delivered_ms: Option<i64>,
}

// ------------------------------------------------------------------------------------------
// The store.

/// A member's event store: its outbox and delivery cursors, its inbox and webhook cursors.
/// Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct EventStore {
    engine: Arc<Engine>,
    /// Where [`EventStore::emit`] sends its event to the group commit.
    emissions: mpsc::Sender<group::Emission>,
}

#[derive(Debug)]
enum Engine {
    Sqlite(Db<sqlx::Sqlite>),
    Postgres(Db<sqlx::Postgres>),
}

impl Engine {
    fn label(&self) -> &str {
        match self {
            Engine::Sqlite(db) => &db.label,
            Engine::Postgres(db) => &db.label,
        }
    }

    async fn emit_batch(&self, events: &[NewEvent]) -> Result<Vec<Emitted>, EventStoreError> {
        match self {
            Engine::Sqlite(db) => db.emit_batch(events).await,
            Engine::Postgres(db) => db.emit_batch(events).await,
        }
    }
}

/// Runs the same generic method on whichever engine the store is.
macro_rules! on_engine {
    ($self:expr, $db:ident => $e:expr) => {
        match &*$self.engine {
            Engine::Sqlite($db) => $e,
            Engine::Postgres($db) => $e,
        }
    };
}

/// What differs between the engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Sqlite,
    Postgres,
}

/// One engine's pool and the member whose rows it reads and writes.
struct Db<DB: Database> {
    pool: Pool<DB>,
    dialect: Dialect,
    member: String,
    label: String,
}

impl<DB: Database> std::fmt::Debug for Db<DB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("dialect", &self.dialect)
            .field("member", &self.member)
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// The SQLite file of the event store beside the audit store in `audit_file`: its extension
/// replaced by `events.db`.
pub fn events_file(audit_file: &Path) -> PathBuf {
    audit_file.with_extension("events.db")
}

impl EventStore {
    /// Opens (creating tables if needed) the event store of `member` beside its audit store:
    /// `cfg.store` is read as the audit log reads it (an SQLite file relative to `base_dir`,
    /// a `postgres://` URL, or `env:VAR`).
    ///
    /// # Errors
    ///
    /// [`EventStoreError::Config`] when the store cannot be resolved, or a PostgreSQL
    /// connection does not commit durably (`synchronous_commit` off);
    /// [`EventStoreError::Open`] or [`EventStoreError::Store`] when it cannot be reached or
    /// its tables made.
    pub async fn open(
        cfg: &AuditConfig,
        base_dir: &Path,
        member: &MemberId,
    ) -> Result<EventStore, EventStoreError> {
        let store_text = if cfg.store.is_empty() {
            AuditConfig::default_store(member)
        } else {
            cfg.store.clone()
        };
        let target = StoreTarget::resolve(&store_text, base_dir).map_err(|e| match e {
            AuditError::Config { store, reason } => EventStoreError::Config { store, reason },
            other => EventStoreError::Config {
                store: store_text.clone(),
                reason: other.to_string(),
            },
        })?;
        let engine = match target {
            StoreTarget::Sqlite(audit_file) => {
                let path = events_file(&audit_file);
                let label = path.display().to_string();
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| EventStoreError::Config {
                        store: store_text.clone(),
                        reason: format!("cannot create {}: {e}", dir.display()),
                    })?;
                }
                let pool = sqlite_pool(&path)
                    .await
                    .map_err(|source| EventStoreError::Open {
                        store: label.clone(),
                        source,
                    })?;
                let db = Db {
                    pool,
                    dialect: Dialect::Sqlite,
                    member: member.as_str().to_owned(),
                    label,
                };
                db.create().await?;
                Engine::Sqlite(db)
            }
            StoreTarget::Postgres { options, label } => {
                let label = format!("{label} (events of {member})");
                let pool =
                    postgres_pool(&options)
                        .await
                        .map_err(|source| EventStoreError::Open {
                            store: label.clone(),
                            source,
                        })?;
                let db = Db {
                    pool,
                    dialect: Dialect::Postgres,
                    member: member.as_str().to_owned(),
                    label,
                };
                db.check_durable_commits().await?;
                db.create().await?;
                Engine::Postgres(db)
            }
        };
        let engine = Arc::new(engine);
        Ok(EventStore {
            emissions: group::start(engine.clone()),
            engine,
        })
    }

    /// How errors and log lines name the store: the SQLite file, or the PostgreSQL URL
    /// without credentials and the member.
    pub fn label(&self) -> &str {
        self.engine.label()
    }

    // ---------- the outbox ----------

    /// Stores one event, durable on return, with the next seq of this member (1, 2, …).
    /// When `source` is `Some` and an event of the same contract and source is stored
    /// already (a change-table row read twice), or an event of the same id is, nothing is
    /// written and [`Emitted::Existing`] names it.
    ///
    /// Emissions that arrive while an earlier one is being committed share the next
    /// transaction ([`EventStore::emit_batch`]): each returns once that transaction is
    /// durable, and all of them fail together ([`EventStoreError::GroupCommit`]) when it
    /// fails.
    pub async fn emit(&self, ev: &NewEvent) -> Result<Emitted, EventStoreError> {
        let closed = || EventStoreError::Closed {
            store: self.label().to_owned(),
        };
        let (reply, answer) = oneshot::channel();
        self.emissions
            .send(group::Emission {
                event: ev.clone(),
                reply,
            })
            .await
            .map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }

    /// Stores `events` in one transaction, in the given order, durable on return: what
    /// [`EventStore::emit`] does with each, one answer per event in the same order. An event
    /// whose source or id is that of an event stored before it, by an earlier call or
    /// earlier in `events`, is not stored: [`Emitted::Existing`] names the stored one. When
    /// the transaction fails, nothing of it is stored.
    pub async fn emit_batch(&self, events: &[NewEvent]) -> Result<Vec<Emitted>, EventStoreError> {
        self.engine.emit_batch(events).await
    }

    /// The highest `source` emitted for `contract` (where an outbox poller resumes), `None`
    /// if none. Kept when the event that carried it is purged.
    pub async fn last_source(&self, contract: &str) -> Result<Option<i64>, EventStoreError> {
        on_engine!(self, db => db.last_source(contract).await)
    }

    /// Makes `subs` the active subscriptions. A cursor per (subscriber, contract) is created
    /// if missing, positioned after the newest event emitted so far (a new subscriber gets
    /// what is emitted from now on); an existing one keeps its position and takes the given
    /// version and purpose; cursors not in `subs` become inactive (kept, with their
    /// position). One transaction.
    pub async fn subscribe(&self, subs: &[Subscription]) -> Result<(), EventStoreError> {
        on_engine!(self, db => db.subscribe(subs).await)
    }

    /// The active cursors with work (an event of their contract after their position, or
    /// pending notices) whose `next_attempt_ms <= now_ms` and whose lease is free or expired,
    /// each leased to `owner` until `now_ms + lease_ms` in the same statement, so replicas
    /// sharing a database never both get one cursor. Sorted by (contract, subscriber).
    pub async fn due(
        &self,
        now_ms: i64,
        lease_ms: i64,
        owner: &str,
    ) -> Result<Vec<Due>, EventStoreError> {
        let mut due = on_engine!(self, db => db.due(now_ms, lease_ms, owner).await)?;
        due.sort_by(|a, b| (&a.contract, &a.subscriber).cmp(&(&b.contract, &b.subscriber)));
        Ok(due)
    }

    /// Up to `limit` events of `contract` with seq above `after_seq`, in seq order.
    pub async fn pending(
        &self,
        contract: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<OutEvent>, EventStoreError> {
        on_engine!(self, db => db.pending(contract, after_seq, limit).await)
    }

    /// For one cursor: the events after its position that expired by `now_ms`, from its
    /// position up to (not past) the first that has not, become pending notices of the
    /// subscriber (kept until sent), and the cursor moves past them. Returns only those newly
    /// expired (the caller records each in its audit log). One transaction.
    ///
    /// # Errors
    ///
    /// [`EventStoreError::UnknownCursor`] when there is no such cursor.
    pub async fn expire(
        &self,
        subscriber: &str,
        contract: &str,
        now_ms: i64,
    ) -> Result<Vec<Notice>, EventStoreError> {
        on_engine!(self, db => db.expire(subscriber, contract, now_ms).await)
    }

    /// The pending (not yet sent) notices of one cursor, in seq order.
    pub async fn notices(
        &self,
        subscriber: &str,
        contract: &str,
    ) -> Result<Vec<Notice>, EventStoreError> {
        on_engine!(self, db => db.notices(subscriber, contract).await)
    }

    /// A delivery was acknowledged: the position becomes `max(position, through_seq)`,
    /// attempts 0 and the last error cleared, the next attempt `now_ms`, the lease freed,
    /// the notices of `sent_notices` (event ids) removed, and, when `last_id` is `Some`, the
    /// last delivered id and time set. One transaction.
    ///
    /// # Errors
    ///
    /// [`EventStoreError::UnknownCursor`] when there is no such cursor.
    pub async fn delivered(
        &self,
        subscriber: &str,
        contract: &str,
        through_seq: i64,
        sent_notices: &[String],
        last_id: Option<&str>,
        now_ms: i64,
    ) -> Result<(), EventStoreError> {
        on_engine!(self, db => db
            .delivered(subscriber, contract, through_seq, sent_notices, last_id, now_ms)
            .await)
    }

    /// Whether replicas may share this store (PostgreSQL), so that a lease another process
    /// holds may be live; an SQLite store has one gateway at a time.
    pub fn is_shared(&self) -> bool {
        matches!(*self.engine, Engine::Postgres(_))
    }

    /// Frees every lease on this member's cursors: for the one gateway of a store that is
    /// not shared ([`EventStore::is_shared`]), at start, so that a process killed while it
    /// delivered does not hold its cursors until their leases run out. Returns how many
    /// were held.
    pub async fn release_leases(&self) -> Result<u64, EventStoreError> {
        on_engine!(self, db => db.release_leases().await)
    }

    /// A delivery failed: attempts + 1, `error` kept as the last error, the next attempt at
    /// `next_attempt_ms`, the lease freed.
    ///
    /// # Errors
    ///
    /// [`EventStoreError::UnknownCursor`] when there is no such cursor.
    pub async fn failed(
        &self,
        subscriber: &str,
        contract: &str,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), EventStoreError> {
        on_engine!(self, db => db.failed(subscriber, contract, error, next_attempt_ms).await)
    }

    /// Every cursor, active or not, with its backlog (events of its contract after its
    /// position), the `emitted_ms` of the oldest of them, and its pending notices. Sorted by
    /// (contract, subscriber).
    pub async fn cursors(&self) -> Result<Vec<CursorState>, EventStoreError> {
        let mut cursors = on_engine!(self, db => db.cursors().await)?;
        cursors.sort_by(|a, b| (&a.contract, &a.subscriber).cmp(&(&b.contract, &b.subscriber)));
        Ok(cursors)
    }

    /// Deletes the events that expired by `now_ms` and that every cursor of their contract,
    /// active or not, has passed (those of a contract nobody subscribes to, once expired).
    /// Returns how many.
    pub async fn purge(&self, now_ms: i64) -> Result<u64, EventStoreError> {
        on_engine!(self, db => db.purge(now_ms).await)
    }

    /// The newest stored event's seq (0 when none) and how many events are stored.
    pub async fn outbox_size(&self) -> Result<(i64, u64), EventStoreError> {
        on_engine!(self, db => db.outbox_size().await)
    }

    // ---------- the inbox ----------

    /// Stores the events of one delivery in one transaction, in the given order, durable on
    /// return. An event whose (provider, event id) is stored already, by an earlier call or
    /// earlier in this one, is not stored again: [`Received::Duplicate`] with the stored
    /// event's seq. Inbox seqs are this member's: 1, 2, ….
    pub async fn receive(&self, events: &[Incoming]) -> Result<Vec<Received>, EventStoreError> {
        on_engine!(self, db => db.receive(events).await)
    }

    /// An expiry notice from `provider`: kept (provider, contract, event id, hash,
    /// `now_ms`) unless that event is in the inbox or was noticed already. Whether it was
    /// new.
    pub async fn notice_expired(
        &self,
        provider: &str,
        contract: &str,
        event_id: &str,
        hash: &str,
        now_ms: i64,
    ) -> Result<bool, EventStoreError> {
        on_engine!(self, db => db.notice_expired(provider, contract, event_id, hash, now_ms).await)
    }

    /// Up to `limit` inbox events with seq above `after_seq`, only of `provider` and of
    /// `contract` when given, in seq order.
    pub async fn inbox(
        &self,
        provider: Option<&str>,
        contract: Option<&str>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<InboxEvent>, EventStoreError> {
        on_engine!(self, db => db.inbox(provider, contract, after_seq, limit).await)
    }

    /// Where a redelivery "since `ts_ms`" starts after: the seq of the last inbox event
    /// received before `ts_ms`, or, when none of those is still stored, the seq just before
    /// the oldest one stored (0 when nothing was ever purged; the events purged had all
    /// expired).
    pub async fn inbox_seq_before(&self, ts_ms: i64) -> Result<i64, EventStoreError> {
        on_engine!(self, db => db.inbox_seq_before(ts_ms).await)
    }

    /// Creates the webhook cursors of `names` that are missing, at position 0 (a new hook is
    /// given everything in the inbox), and returns the states of those named, in the order
    /// given.
    pub async fn hooks(&self, names: &[String]) -> Result<Vec<HookState>, EventStoreError> {
        on_engine!(self, db => db.hooks(names).await)
    }

    /// A forward was acknowledged: the position becomes `max(position, through_seq)`,
    /// attempts 0, the last error cleared, the next attempt and the last delivery `now_ms`.
    ///
    /// # Errors
    ///
    /// [`EventStoreError::UnknownHook`] when there is no such hook.
    pub async fn hook_delivered(
        &self,
        name: &str,
        through_seq: i64,
        now_ms: i64,
    ) -> Result<(), EventStoreError> {
        on_engine!(self, db => db.hook_delivered(name, through_seq, now_ms).await)
    }

    /// A forward failed: attempts + 1, `error` kept as the last error, the next attempt at
    /// `next_attempt_ms`.
    ///
    /// # Errors
    ///
    /// [`EventStoreError::UnknownHook`] when there is no such hook.
    pub async fn hook_failed(
        &self,
        name: &str,
        error: &str,
        next_attempt_ms: i64,
    ) -> Result<(), EventStoreError> {
        on_engine!(self, db => db.hook_failed(name, error, next_attempt_ms).await)
    }

    /// Redelivery: the hook's position becomes `to_seq` (lower than it is, typically),
    /// attempts 0, the next attempt at once (`next_attempt_ms` 0).
    ///
    /// # Errors
    ///
    /// [`EventStoreError::RewindPurged`] for a `to_seq` below the oldest seq still in the
    /// inbox minus one (that part was purged); [`EventStoreError::RewindAhead`] for one
    /// beyond the newest seq given; [`EventStoreError::UnknownHook`] when there is no such
    /// hook.
    pub async fn rewind(&self, name: &str, to_seq: i64) -> Result<(), EventStoreError> {
        on_engine!(self, db => db.rewind(name, to_seq).await)
    }

    /// Deletes the inbox events that expired by `now_ms` and whose seq every hook of `hooks`
    /// has passed (a hook named that does not exist yet has passed none), and the expiry
    /// notices received more than 30 days before `now_ms`. Returns how many events.
    pub async fn purge_inbox(&self, now_ms: i64, hooks: &[String]) -> Result<u64, EventStoreError> {
        on_engine!(self, db => db.purge_inbox(now_ms, hooks).await)
    }
}

/// How many rows a statement wrote: sqlx has it per engine only.
trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// A row's columns, read in the order the statement selects them; a column that cannot be
/// read is an [`EventStoreError::Store`] naming the store and what was being done.
struct Cols<'r, DB: Database> {
    row: &'r DB::Row,
    at: usize,
    label: &'r str,
    op: &'static str,
}

impl<'r, DB: Database> Cols<'r, DB>
where
    usize: ColumnIndex<DB::Row>,
{
    /// The next column.
    fn next<T: Decode<'r, DB> + Type<DB>>(&mut self) -> Result<T, EventStoreError> {
        let at = self.at;
        self.at += 1;
        self.row
            .try_get(at)
            .map_err(|source| EventStoreError::Store {
                store: self.label.to_owned(),
                op: self.op,
                source,
            })
    }
}

// The statements of both engines: sqlx's generic `Database` with what they need of it. The
// files that add methods (`schema`, `outbox`, `inbox`) repeat these bounds.

impl<DB> Db<DB>
where
    DB: Database + HasStatementCache,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB> + Default,
    DB::QueryResult: RowsAffected,
    for<'q> i64: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> String: Encode<'q, DB> + Type<DB> + Decode<'q, DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> Option<String>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> Option<&'q str>: Encode<'q, DB>,
    for<'q> Option<i64>: Encode<'q, DB> + Decode<'q, DB>,
    for<'q> bool: Decode<'q, DB> + Type<DB>,
    usize: ColumnIndex<DB::Row>,
{
    /// Turns a database error into [`EventStoreError::Store`] naming `op`.
    fn err(&self, op: &'static str) -> impl Fn(sqlx::Error) -> EventStoreError + '_ {
        move |source| EventStoreError::Store {
            store: self.label.clone(),
            op,
            source,
        }
    }

    /// The columns of `row`, to read in order, for `op`.
    fn cols<'r>(&'r self, row: &'r DB::Row, op: &'static str) -> Cols<'r, DB> {
        Cols {
            row,
            at: 0,
            label: &self.label,
            op,
        }
    }

    /// Every row of `rows` read by `read`, for `op`.
    fn read_all<T>(
        &self,
        rows: &[DB::Row],
        op: &'static str,
        read: impl Fn(&mut Cols<'_, DB>) -> Result<T, EventStoreError>,
    ) -> Result<Vec<T>, EventStoreError> {
        rows.iter()
            .map(|row| read(&mut self.cols(row, op)))
            .collect()
    }

    fn corrupt(&self, what: &'static str, reason: impl Into<String>) -> EventStoreError {
        EventStoreError::Corrupt {
            store: self.label.clone(),
            what,
            reason: reason.into(),
        }
    }

    fn unknown_cursor(&self, subscriber: &str, contract: &str) -> EventStoreError {
        EventStoreError::UnknownCursor {
            store: self.label.clone(),
            subscriber: subscriber.to_owned(),
            contract: contract.to_owned(),
        }
    }

    fn unknown_hook(&self, hook: &str) -> EventStoreError {
        EventStoreError::UnknownHook {
            store: self.label.clone(),
            hook: hook.to_owned(),
        }
    }

    /// A stored count or attempt number as the unsigned type it is.
    fn unsigned<T: TryFrom<i64>>(&self, what: &'static str, v: i64) -> Result<T, EventStoreError> {
        T::try_from(v).map_err(|_| self.corrupt(what, format!("{v} is out of range")))
    }

    /// Begins a write transaction on `conn`. SQLite takes its write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads first could fail to upgrade when
    /// another connection wrote in between.
    async fn begin<'c>(
        &self,
        conn: &'c mut DB::Connection,
        op: &'static str,
    ) -> Result<Transaction<'c, DB>, EventStoreError> {
        match self.dialect {
            // A `SqlStr`, not the literal (see the audit store's `begin_write`: the literal
            // makes rustc find the caller's future not `Send`).
            Dialect::Sqlite => {
                conn.begin_with(SqlStr::from_static("BEGIN IMMEDIATE"))
                    .await
            }
            Dialect::Postgres => conn.begin().await,
        }
        .map_err(self.err(op))
    }

    /// Reads the member's seq counters inside a write transaction, locking out other writers
    /// of seqs until it ends (SQLite's `BEGIN IMMEDIATE` has locked the file already):
    /// `(last outbox seq, last inbox seq)`.
    async fn lock_state(
        &self,
        tx: &mut Transaction<'_, DB>,
        op: &'static str,
    ) -> Result<(i64, i64), EventStoreError> {
        let sql = for_update!(
            self.dialect,
            "SELECT outbox_seq, inbox_seq FROM simpul_event_state WHERE member = $1"
        );
        let row = sqlx::query::<DB>(sql)
            .bind(self.member.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(self.err(op))?
            .ok_or_else(|| self.corrupt("the member's state row", "missing"))?;
        let mut c = self.cols(&row, op);
        Ok((c.next()?, c.next()?))
    }
}
