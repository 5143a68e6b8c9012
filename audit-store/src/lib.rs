//! The running audit log (PROTOCOL.md §5) and its storage: one record per exchange, on both
//! sides, durable before the answer is released; the records are the leaves of an RFC 9162
//! Merkle tree whose heads the member key signs, so an auditor holding only the member's
//! public key can check inclusion and append-only growth offline.
//!
//! [`AuditLog`] appends (group commit: concurrent appends share one transaction and one
//! disk sync), signs tree heads, deletes old evidence, and serves proofs, records, evidence
//! and exports, over an embedded SQLite file or a PostgreSQL database shared by replicas.
//! The tree math, the record and the auditor's offline checks are the `audit` crate, which
//! touches no store.
//!
//! Memory is bounded whatever the log's size: the writer keeps the tree's right edge (at
//! most 64 hashes) and the batch being committed (at most `batch_max` records, whose
//! evidence the callers hold anyway); proofs read O(log n) stored nodes; exports, record
//! ranges and verification stream in chunks of at most 1,000 records (10,000 for
//! [`AuditLog::records`]).
//!
//! Beside the log, in the same engine, [`events::EventStore`] keeps a member's change
//! notifications: the outbox it delivers to subscribers and the inbox it forwards to its
//! member system (issue #17).

pub mod events;
mod export;
mod pin;
mod seal;
mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use audit::merkle::{self, NodeRef, encode_hash};
use audit::tree_head::{self, TreeHeadError};
use audit::{
    AuditRecord, ConsistencyProof, Hash, InclusionProof, MAX_SUBJECTS, NewRecord, PROOF_FORMAT,
    ProofBundle, ProofError, SignedTreeHead, StoredEvidence, empty_root,
};
use aws_lc_rs::hmac;
use contracts::canonical::{b64url, canonical_json};
use contracts::{JwsError, MemberId, SigningKey};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use pin::PinFile;
use seal::{EvidenceKey, Side};
use store::{Access, Answered, Store, StoreTarget};
pub use store::{Fork, JOURNAL_KEEP_UP, Witnessed};

/// Most records [`AuditLog::records`] returns per call.
pub const MAX_RECORDS_PER_CALL: u64 = 10_000;
/// Most records of one exchange id that proofs and evidence are given for (a gateway has
/// one or two per id; `""`, the id of refusals before an id was read, can have many).
pub const MAX_RECORDS_PER_EXCHANGE: u32 = 64;
/// Most records [`AuditLog::subject_history`] returns for one person.
pub const MAX_RECORDS_PER_SUBJECT: u32 = 1_000;
/// How long one group commit may take before its appends are failed.
const COMMIT_DEADLINE: Duration = Duration::from_secs(10);
/// How far a record's `ts` may fall below the `ts` of a record before it in the log: how
/// much earlier than asked [`AuditLog::count_answered`] starts the range it reads. The
/// writer stamps each group commit with the wall clock just before committing it, and
/// commits one at a time, so one writer's stamps rise with seq. Replicas sharing a
/// PostgreSQL log stamp before they wait for its lock and give a commit up after
/// [`COMMIT_DEADLINE`], so a commit that overtakes another replica's is stamped at most
/// that deadline, plus the hosts' clock difference (well under a second with NTP), later
/// than it. A minute covers both with room; it costs a count the records of one minute
/// more. A wall clock set back by more than this while records are appended (by hand) can
/// hide records stamped before the change from a count whose `since_ms` falls after it.
const STAMP_DISORDER_MS: i64 = 60_000;
const _: () = assert!(STAMP_DISORDER_MS > COMMIT_DEADLINE.as_millis() as i64);
/// How often old evidence is deleted.
const RETENTION_EVERY: Duration = Duration::from_secs(3600);

/// `[members.audit]` in `config.toml`: where a member's log lives and how it is kept.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// An SQLite file (relative to the configuration's directory), a `postgres://` URL, or
    /// `env:VAR` to read either from the environment. Empty means
    /// [`AuditConfig::default_store`].
    pub store: String,
    /// Seconds between tree heads signed in the background (only when the log grew).
    pub tree_head_interval_s: u64,
    /// Days the signed envelopes are kept; 0 keeps them forever. Records are never deleted.
    pub evidence_retention_days: u32,
    /// The HMAC secret for `subject` (relative to the configuration's directory); default
    /// `audit-<member>.secret` beside an SQLite store, `data/audit-<member>.secret` for
    /// PostgreSQL. Created (32 random bytes, mode 0600) if missing. Replicas sharing a
    /// PostgreSQL log must share this file.
    pub secret_file: Option<String>,
    /// Most appends committed in one transaction.
    pub batch_max: usize,
    /// The file the last signed tree head is pinned in, outside the store (relative to the
    /// configuration's directory); default `audit-<member>.head.json` beside the HMAC
    /// secret (the gateway's configuration puts it next to the member's signing key).
    pub pinned_head: Option<String>,
    /// The key that seals evidence at rest (relative to the configuration's directory):
    /// created (32 random bytes, mode 0600) if missing; default `audit-<member>.evidence.key`
    /// beside the HMAC secret (the gateway's configuration puts it next to the member's
    /// signing key). Without it the kept envelopes cannot be read; replicas sharing a
    /// PostgreSQL log must share it.
    pub evidence_key_file: Option<String>,
    /// Whether exchanges with a partner whose log this gateway caught forked are refused
    /// (409 `log-forked`, PROTOCOL.md §5.4); default true. Off, the fork is still kept as
    /// evidence, logged and counted, and exchanges go on.
    pub refuse_forked_partners: bool,
    /// The store size, in bytes, above which the gateway raises its alarm (the
    /// `simpul_audit_size_alarm` gauge and a warning); no alarm when absent.
    pub size_alarm_bytes: Option<u64>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            store: String::new(),
            tree_head_interval_s: 60,
            evidence_retention_days: 90,
            secret_file: None,
            batch_max: 256,
            pinned_head: None,
            evidence_key_file: None,
            refuse_forked_partners: true,
            size_alarm_bytes: None,
        }
    }
}

impl AuditConfig {
    /// `data/audit-<member file stem>.db`: the default SQLite store.
    pub fn default_store(member: &MemberId) -> String {
        format!("data/audit-{}.db", member.file_stem())
    }

    /// The defaults, with `store` set to [`AuditConfig::default_store`].
    pub fn for_member(member: &MemberId) -> AuditConfig {
        AuditConfig {
            store: Self::default_store(member),
            ..AuditConfig::default()
        }
    }

    /// The SQLite file the log lives in, resolved against `base_dir`; `None` for a
    /// PostgreSQL store (or an `env:` variable that is not set).
    pub fn sqlite_file(&self, member: &MemberId, base_dir: &Path) -> Option<PathBuf> {
        let store = if self.store.is_empty() {
            Self::default_store(member)
        } else {
            self.store.clone()
        };
        match StoreTarget::resolve(&store, base_dir).ok()? {
            StoreTarget::Sqlite(path) => Some(path),
            StoreTarget::Postgres { .. } => None,
        }
    }

    /// Where the HMAC secret is when `secret_file` is not set: `audit-<member>.secret`
    /// beside an SQLite store, `data/audit-<member>.secret` for PostgreSQL (where it was kept
    /// before the gateway's configuration moved it next to the member's keys). `None` if the
    /// store cannot be resolved.
    pub fn secret_beside_store(&self, member: &MemberId, base_dir: &Path) -> Option<PathBuf> {
        let store = if self.store.is_empty() {
            Self::default_store(member)
        } else {
            self.store.clone()
        };
        let target = StoreTarget::resolve(&store, base_dir).ok()?;
        Some(Self::secret_beside(&target, member, base_dir))
    }

    fn secret_beside(target: &StoreTarget, member: &MemberId, base_dir: &Path) -> PathBuf {
        let dir = match target {
            StoreTarget::Sqlite(p) => p
                .parent()
                .map_or_else(|| base_dir.to_path_buf(), Path::to_path_buf),
            StoreTarget::Postgres { .. } => base_dir.join("data"),
        };
        dir.join(format!("audit-{}.secret", member.file_stem()))
    }

    /// Checks the values: the field at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.tree_head_interval_s == 0 {
            return Err(("tree_head_interval_s", "must be at least 1".into()));
        }
        if self.batch_max == 0 || self.batch_max > 10_000 {
            return Err(("batch_max", "must be between 1 and 10000".into()));
        }
        if self.size_alarm_bytes == Some(0) {
            return Err(("size_alarm_bytes", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// Why the audit log could not do what was asked. Every variant names the store (path, or
/// URL without credentials) or the record concerned.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The configuration cannot be used.
    #[error("audit store {store}: {reason}")]
    Config {
        /// The store as configured.
        store: String,
        /// What is wrong.
        reason: String,
    },
    /// The store could not be opened.
    #[error("audit store {store}: cannot open: {source}")]
    Open {
        /// The store.
        store: String,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// A statement failed.
    #[error("audit store {store}: {op}: {source}")]
    Store {
        /// The store.
        store: String,
        /// What was being done.
        op: &'static str,
        /// The database's error.
        #[source]
        source: sqlx::Error,
    },
    /// An append's group commit failed: the record is not known to be durable, and the
    /// exchange must fail closed.
    #[error("audit store {store}: the record is not durable: {reason}")]
    NotDurable {
        /// The store.
        store: String,
        /// Why the commit failed.
        reason: String,
    },
    /// The store holds something the log never wrote.
    #[error("audit store {store}: {}{reason}", seq.map(|s| format!("seq {s}: ")).unwrap_or_default())]
    Corrupt {
        /// The store.
        store: String,
        /// The record concerned, if one is.
        seq: Option<u64>,
        /// What is wrong.
        reason: String,
    },
    /// The HMAC secret could not be read or made.
    #[error("audit secret {}: {reason}", path.display())]
    Secret {
        /// The secret file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The pinned head could not be read or written.
    #[error("pinned tree head {}: {reason}", path.display())]
    Pin {
        /// The pin file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The journal in front of an SQLite store's tables cannot be read, written or caught up.
    #[error("audit store {store}: journal: {reason}")]
    Journal {
        /// The store.
        store: String,
        /// What failed, and where.
        reason: String,
    },
    /// The stored tree is not an extension of a tree this gateway signed or committed: the
    /// store was rewritten or cut back behind the gateway's back. Nothing more is appended
    /// or signed until an operator has looked (the log fails closed).
    #[error("audit store {store}: TAMPERED: {reason}")]
    Tampered {
        /// The store.
        store: String,
        /// Which sizes disagree, and how.
        reason: String,
    },
    /// Evidence handed to `append` does not belong to the record.
    #[error("evidence for exchange {exchange_id}: {reason}")]
    Evidence {
        /// The record's exchange id.
        exchange_id: String,
        /// What does not match.
        reason: String,
    },
    /// A record names more item subjects than a record holds (no batch contract carries
    /// that many items): it would not fit an export line.
    #[error(
        "the record of exchange {exchange_id} names {count} item subjects; a record holds at most {MAX_SUBJECTS}"
    )]
    TooManySubjects {
        /// The record's exchange id.
        exchange_id: String,
        /// How many it names.
        count: usize,
    },
    /// A record's overlap figures are out of a reader's bounds
    /// ([`audit::OverlapFigures::check`]: more groups than a run has): the journal, the
    /// store and an export's verifier would refuse to read it back.
    #[error("the record of exchange {exchange_id} has overlap figures a reader refuses: {reason}")]
    OverlapFigures {
        /// The record's exchange id.
        exchange_id: String,
        /// What is out of bounds.
        reason: String,
    },
    /// No record has this exchange id.
    #[error("no audit record of exchange `{0}`")]
    UnknownExchange(String),
    /// A tree size beyond what is committed, or a record beyond a tree size.
    #[error("{0}")]
    OutOfRange(String),
    /// A proof could not be built.
    #[error("proof: {0}")]
    Proof(#[from] ProofError),
    /// A tree head could not be signed.
    #[error("signing a tree head: {0}")]
    Sign(#[from] JwsError),
    /// The writer task is gone (the runtime is shutting down).
    #[error("the audit log's writer has stopped")]
    Closed,
    /// Writing an export failed.
    #[error("writing the export: {0}")]
    Io(#[from] std::io::Error),
    /// Serialising failed.
    #[error("serialising: {0}")]
    Json(#[from] serde_json::Error),
}

/// One append waiting for its group commit.
struct Job {
    record: NewRecord,
    evidence: Option<StoredEvidence>,
    reply: oneshot::Sender<Result<Committed, AuditError>>,
}

/// A record as its append made it durable: shared with the rest of its group commit (and,
/// in the embedded store, with the indexer that writes it into the tables) rather than
/// copied for each appender. Derefs to the [`AuditRecord`].
#[derive(Clone)]
pub struct Committed {
    commit: Arc<store::Batch>,
    index: usize,
}

impl std::ops::Deref for Committed {
    type Target = AuditRecord;

    fn deref(&self) -> &AuditRecord {
        &self.commit.records[self.index]
    }
}

impl Committed {
    /// A copy of the record, for a caller that keeps it.
    pub fn to_record(&self) -> AuditRecord {
        AuditRecord::clone(self)
    }
}

impl std::fmt::Debug for Committed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        AuditRecord::fmt(self, f)
    }
}

impl PartialEq<AuditRecord> for Committed {
    fn eq(&self, other: &AuditRecord) -> bool {
        AuditRecord::eq(self, other)
    }
}

impl PartialEq<Committed> for AuditRecord {
    fn eq(&self, other: &Committed) -> bool {
        self == &**other
    }
}

struct Inner {
    log: MemberId,
    store: Store,
    jobs: mpsc::Sender<Job>,
    /// Signs tree heads; replaced when the gateway's signing key is rotated at run time.
    key: std::sync::RwLock<Arc<SigningKey>>,
    secret: hmac::Key,
    /// Seals and opens evidence.
    evidence_key: EvidenceKey,
    /// The last committed tree size this process knows of.
    size: Arc<AtomicU64>,
    /// Where the last signed head is pinned.
    pin: PinFile,
    /// The pinned head; signing holds this lock, so heads are signed one at a time.
    pinned: tokio::sync::Mutex<Option<SignedTreeHead>>,
    /// Set, once and for good, when the store is found rewritten or cut back.
    tampered: Arc<Tampered>,
    /// The compact JWS of the newest head this process signed or found, which every
    /// exchange carries to the partner (PROTOCOL.md §5.4).
    newest_jws: std::sync::RwLock<Option<Arc<str>>>,
    /// Appends running in tasks of their own ([`AuditLog::append_detached`]).
    detached: Arc<Detached>,
}

/// Appends in flight that nobody awaits, and a wake-up for when the last ends.
#[derive(Default)]
struct Detached {
    count: AtomicU64,
    done: tokio::sync::Notify,
}

/// The log's integrity verdict, shared with the writer: once the store is found altered,
/// every later append and signature is refused.
#[derive(Default)]
struct Tampered(std::sync::OnceLock<String>);

impl Tampered {
    /// Records `reason` (the first one stays) and logs it once.
    fn mark(&self, log: &MemberId, store: &str, reason: String) -> AuditError {
        if self.0.set(reason.clone()).is_ok() {
            tracing::error!(member = %log, store = %store, reason = %reason, "audit store tampered with: appends and tree heads are refused until an operator restores it");
        }
        AuditError::Tampered {
            store: store.to_owned(),
            reason,
        }
    }

    /// The refusal of a tampered log.
    fn refusal(&self, store: &str) -> AuditError {
        AuditError::Tampered {
            store: store.to_owned(),
            reason: self.0.get().cloned().unwrap_or_default(),
        }
    }

    fn check(&self, store: &str) -> Result<(), AuditError> {
        match self.0.get() {
            Some(_) => Err(self.refusal(store)),
            None => Ok(()),
        }
    }
}

/// A member's audit log: a cheap, cloneable handle (`Send + Sync`) on its store, its
/// group-commit writer and its tree-head signer. The background tasks stop when the last
/// handle is dropped.
#[derive(Clone)]
pub struct AuditLog {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "AuditLog({} at {}, size {})",
            self.inner.log,
            self.inner.store.label(),
            self.tree_size()
        )
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl AuditLog {
    /// Opens (creating tables if needed) the store, loads what proofs need, spawns the
    /// group-commit writer and the periodic tree-head signer. `member` names the log; `key`
    /// signs tree heads. Must run inside a Tokio runtime.
    ///
    /// Refuses a store whose tree nodes do not hash to its committed root (appending to it
    /// would break every later proof), and a store whose tree is not a consistent extension
    /// of the pinned head or of its own latest signed head, or whose latest head does not
    /// verify under `key` ([`AuditError::Tampered`], naming the sizes that disagree).
    pub async fn open(
        cfg: &AuditConfig,
        base_dir: &Path,
        member: &MemberId,
        key: Arc<SigningKey>,
    ) -> Result<AuditLog, AuditError> {
        Self::open_checked(cfg, base_dir, member, key, true).await
    }

    /// [`AuditLog::open`] for an operator or auditor who must read a log that may have been
    /// tampered with (export, prove): a tampered store opens, is reported in
    /// [`AuditLog::tampered`], and refuses every append and signature.
    pub async fn inspect(
        cfg: &AuditConfig,
        base_dir: &Path,
        member: &MemberId,
        key: Arc<SigningKey>,
    ) -> Result<AuditLog, AuditError> {
        Self::open_checked(cfg, base_dir, member, key, false).await
    }

    async fn open_checked(
        cfg: &AuditConfig,
        base_dir: &Path,
        member: &MemberId,
        key: Arc<SigningKey>,
        strict: bool,
    ) -> Result<AuditLog, AuditError> {
        let store_text = if cfg.store.is_empty() {
            AuditConfig::default_store(member)
        } else {
            cfg.store.clone()
        };
        cfg.check().map_err(|(field, reason)| AuditError::Config {
            store: store_text.clone(),
            reason: format!("{field}: {reason}"),
        })?;
        let target = StoreTarget::resolve(&store_text, base_dir)?;
        let secret_path = match &cfg.secret_file {
            Some(p) => base_dir.join(p),
            None => AuditConfig::secret_beside(&target, member, base_dir),
        };
        let pin_path = match &cfg.pinned_head {
            Some(p) => base_dir.join(p),
            None => secret_path.with_file_name(format!("audit-{}.head.json", member.file_stem())),
        };
        let evidence_key_path = match &cfg.evidence_key_file {
            Some(p) => base_dir.join(p),
            None => {
                secret_path.with_file_name(format!("audit-{}.evidence.key", member.file_stem()))
            }
        };
        let secret = load_or_create_secret(&secret_path)?;
        let evidence_key = EvidenceKey::new(&load_or_create_secret(&evidence_key_path)?);
        let access = if strict { Access::Append } else { Access::Read };
        let store = Store::open(&target, member.as_str(), access).await?;
        let frontier = store.frontier().await?;
        let size = frontier.size();
        // A records table that ends elsewhere than the committed tree was edited outside
        // the gateway. The tree itself is intact (checked above), so appending stays
        // correct; auditors will see the damage in `audit verify`.
        match store.max_seq().await? {
            Some(max) if max + 1 == size => {}
            None if size == 0 => {}
            other => tracing::error!(
                store = %store.label(),
                tree_size = size,
                last_record = ?other,
                "the audit records table does not end where the tree does: records were deleted or added outside the gateway"
            ),
        }
        let pin = PinFile::new(pin_path);
        let pinned = pin.load()?;
        let newest = store.latest_tree_head().await?.map(|h| Arc::from(h.jws));
        let inner = Arc::new(Inner {
            log: member.clone(),
            store: store.clone(),
            jobs: mpsc::channel(1).0,
            key: std::sync::RwLock::new(key),
            secret: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            evidence_key,
            size: Arc::new(AtomicU64::new(size)),
            pin,
            pinned: tokio::sync::Mutex::new(pinned),
            tampered: Arc::default(),
            newest_jws: std::sync::RwLock::new(newest),
            detached: Arc::default(),
        });
        let log = AuditLog { inner };
        if let Err(reason) = log.check_heads(&frontier).await? {
            let e = log
                .inner
                .tampered
                .mark(member, log.inner.store.label(), reason);
            if strict {
                return Err(e);
            }
        }
        // Checked: now the writer, with the sender the handle keeps.
        let mut inner = Arc::into_inner(log.inner).ok_or(AuditError::Closed)?;
        let (jobs, rx) = mpsc::channel(cfg.batch_max.saturating_mul(4));
        tokio::spawn(write_loop(
            inner.store.clone(),
            rx,
            cfg.batch_max,
            inner.size.clone(),
            frontier,
            member.clone(),
            inner.tampered.clone(),
        ));
        inner.jobs = jobs;
        let inner = Arc::new(inner);
        tokio::spawn(sign_loop(
            Arc::downgrade(&inner),
            Duration::from_secs(cfg.tree_head_interval_s),
        ));
        if cfg.evidence_retention_days > 0 {
            tokio::spawn(retention_loop(
                Arc::downgrade(&inner),
                i64::from(cfg.evidence_retention_days) * 86_400_000,
            ));
        }
        Ok(AuditLog { inner })
    }

    /// Checks the stored tree (`frontier`, already checked against its stored nodes)
    /// against the pinned head and the store's latest signed head: each must verify under
    /// the member's key and be extended by the stored tree, by a consistency proof
    /// recomputed from the stored nodes. With no pinned head yet (a new log, or one made
    /// before heads were pinned), the latest stored head that passes is pinned. `Ok(Err)`
    /// says which sizes disagree.
    async fn check_heads(
        &self,
        frontier: &merkle::Frontier,
    ) -> Result<Result<(), String>, AuditError> {
        let key = self.signing_key().verifying_key()?;
        let (size, root) = (frontier.size(), frontier.root());
        let mut pinned = self.inner.pinned.lock().await;
        let latest = self.inner.store.latest_tree_head().await?;
        let pin_name = format!("the pinned head ({})", self.inner.pin.path().display());
        let mut latest_verified = false;
        for (head, what, is_latest) in [
            (pinned.as_ref(), pin_name.as_str(), false),
            (latest.as_ref(), "the store's latest signed head", true),
        ] {
            let Some(head) = head else { continue };
            let head_root = match tree_head::verify_tree_head(head, &key) {
                Ok((_, root)) => {
                    latest_verified |= is_latest;
                    root
                }
                // Signed under an earlier key of the member (it re-keyed): its signature
                // cannot be checked here, but the stored tree must still extend it. Such a
                // head is never pinned anew; the next head signed replaces it.
                Err(TreeHeadError::WrongKey { found, .. }) => {
                    let Some(root) = merkle::decode_hash(&head.root_hash) else {
                        return Ok(Err(format!(
                            "{what} (size {}) has no valid root hash",
                            head.tree_size
                        )));
                    };
                    tracing::warn!(
                        member = %self.inner.log,
                        tree_size = head.tree_size,
                        signed_by = %found,
                        key = %key.kid(),
                        "{what} was signed by another key than the member's current one: checked for consistency only"
                    );
                    root
                }
                Err(e) => {
                    return Ok(Err(format!(
                        "{what} (size {}) does not verify under {}: {e}",
                        head.tree_size,
                        key.kid()
                    )));
                }
            };
            if let Err(reason) = self
                .inner
                .store
                .extends(head.tree_size, &head_root, size, &root, what)
                .await?
            {
                return Ok(Err(reason));
            }
        }
        if pinned.is_none()
            && latest_verified
            && let Some(head) = latest
        {
            tracing::warn!(
                member = %self.inner.log,
                pin = %self.inner.pin.path().display(),
                tree_size = head.tree_size,
                "no pinned tree head yet: pinning the store's latest signed head, which verifies and is extended by the stored tree"
            );
            self.inner.pin.store(&head)?;
            *pinned = Some(head);
        }
        Ok(Ok(()))
    }

    /// Why the store was found rewritten or cut back, if it was: then every append and
    /// signature is refused.
    pub fn tampered(&self) -> Option<&str> {
        self.inner.tampered.0.get().map(String::as_str)
    }

    /// HMAC of the personal identifiers: `personal` are the JSON values found at the
    /// contract's `personal_data` pointers; `None` if there are none. The HMAC is over
    /// the JCS form of the array, so equal values give equal subjects in this log (and in
    /// every replica sharing the secret), and nothing about the values without the secret.
    pub fn subject(&self, personal: &[Value]) -> Option<String> {
        if personal.is_empty() {
            return None;
        }
        // JCS of plain JSON values cannot fail; should it ever, the compact form is still
        // deterministic, and a subject is better than none.
        let bytes = canonical_json(&personal)
            .or_else(|_| serde_json::to_vec(&personal))
            .unwrap_or_default();
        Some(b64url(hmac::sign(&self.inner.secret, &bytes).as_ref()))
    }

    /// The item subjects of a batch exchange ([`AuditRecord::subjects`]): `personal` holds,
    /// for each item, the JSON values at the contract's `personal_data` pointers
    /// (`Contract::personal_values`), and each item's subject is [`AuditLog::subject`] of
    /// them — so a person has the same subject in a batch as in an exchange about them
    /// alone. Sorted and without duplicates, so the items' order is not kept; `None` when no
    /// item had personal data.
    pub fn subjects(&self, personal: &[Vec<Value>]) -> Option<Vec<String>> {
        let mut subjects: Vec<String> = personal.iter().filter_map(|p| self.subject(p)).collect();
        subjects.sort_unstable();
        subjects.dedup();
        (!subjects.is_empty()).then_some(subjects)
    }

    /// Appends `record` in a task of its own, for a caller that cannot wait (a trail
    /// dropped with its exchange); [`AuditLog::settle`] waits for every such append. Err
    /// when there is no runtime to run it on.
    pub fn append_detached(
        &self,
        record: NewRecord,
        evidence: Option<StoredEvidence>,
    ) -> Result<(), AuditError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| AuditError::Closed)?;
        let log = self.clone();
        let detached = self.inner.detached.clone();
        detached.count.fetch_add(1, Ordering::AcqRel);
        runtime.spawn(async move {
            let exchange_id = record.exchange_id.clone();
            if let Err(e) = log.append(record, evidence).await {
                tracing::error!(exchange_id, error = %e, "a detached record is not durable");
            }
            if detached.count.fetch_sub(1, Ordering::AcqRel) == 1 {
                detached.done.notify_waiters();
            }
        });
        Ok(())
    }

    /// Waits until every append begun by [`AuditLog::append_detached`] has ended and an
    /// SQLite store's tables hold every record its journal took, at most `limit`; false if
    /// not. A gateway calls it as it stops, so that exchanges cut at the end of the drain are
    /// on the log before the process exits, and the tables are whole for the next reader
    /// (what the journal still holds is written into them at the next open anyway).
    pub async fn settle(&self, limit: Duration) -> bool {
        let detached = &self.inner.detached;
        let wait = async {
            loop {
                let done = detached.done.notified();
                if detached.count.load(Ordering::Acquire) == 0 {
                    return;
                }
                done.await;
            }
        };
        let tables = async {
            wait.await;
            self.inner.store.settle().await.is_ok()
        };
        tokio::time::timeout(limit, tables).await.unwrap_or(false)
    }

    /// HMAC of an end user's id as a member system named it (PROTOCOL.md §4.2): over the
    /// JCS form of `{"user": id}`, so it never equals the subject of a query whose personal
    /// data is the same string.
    pub fn user(&self, id: &str) -> String {
        let bytes = canonical_json(&serde_json::json!({ "user": id }))
            .unwrap_or_else(|_| format!("{{\"user\":{id:?}}}").into_bytes());
        b64url(hmac::sign(&self.inner.secret, &bytes).as_ref())
    }

    /// Appends one record (and its evidence, if any) and returns it, with its `seq` and
    /// `ts`, only once it is durable: concurrent appends share one transaction and one
    /// sync. `Err` means NOT durable — the caller fails the exchange closed (503). (When a
    /// COMMIT itself fails the outcome can be unknown; the record may then exist although
    /// the exchange was failed, never the other way round.) Evidence must carry the
    /// record's exchange id and hash to its `request_hash` and `response_hash`; a record
    /// naming more than [`MAX_SUBJECTS`] item subjects is refused
    /// ([`AuditError::TooManySubjects`]), and one whose overlap figures fail their check
    /// ([`AuditError::OverlapFigures`]).
    pub async fn append(
        &self,
        record: NewRecord,
        evidence: Option<StoredEvidence>,
    ) -> Result<Committed, AuditError> {
        self.inner.tampered.check(self.inner.store.label())?;
        if let Some(subjects) = &record.subjects
            && subjects.len() > MAX_SUBJECTS
        {
            return Err(AuditError::TooManySubjects {
                exchange_id: record.exchange_id,
                count: subjects.len(),
            });
        }
        if let Some(Err(reason)) = record.overlap.as_ref().map(audit::OverlapFigures::check) {
            return Err(AuditError::OverlapFigures {
                exchange_id: record.exchange_id,
                reason,
            });
        }
        let evidence = match evidence {
            Some(ev) => {
                check_evidence(&record, &ev)?;
                Some(self.seal(ev)?)
            }
            None => None,
        };
        let (reply, answer) = oneshot::channel();
        self.inner
            .jobs
            .send(Job {
                record,
                evidence,
                reply,
            })
            .await
            .map_err(|_| AuditError::Closed)?;
        answer.await.map_err(|_| AuditError::Closed)?
    }

    /// Signs the committed tree size and root now, stores the head, pins it outside the
    /// store and returns it — only if the stored tree extends the pinned head (else the log
    /// is marked tampered and [`AuditError::Tampered`] names both sizes). Timestamps never
    /// go back: a head is stamped no earlier than the pinned one.
    pub async fn sign_tree_head(&self) -> Result<SignedTreeHead, AuditError> {
        let inner = &self.inner;
        inner.tampered.check(inner.store.label())?;
        let mut pinned = inner.pinned.lock().await;
        // Another replica may store a head of a larger tree between this one reading the
        // state and taking the lock: then the state is read again.
        for _ in 0..3 {
            let (size, root) = inner.store.state().await?;
            let mut floor = i64::MIN;
            if let Some(pin) = pinned.as_ref() {
                let pin_root =
                    merkle::decode_hash(&pin.root_hash).ok_or_else(|| AuditError::Pin {
                        path: inner.pin.path().to_owned(),
                        reason: "root_hash is not a base64url SHA-256".into(),
                    })?;
                let what = format!("the pinned head ({})", inner.pin.path().display());
                if let Err(reason) = inner
                    .store
                    .extends(pin.tree_size, &pin_root, size, &root, &what)
                    .await?
                {
                    return Err(inner.tampered.mark(&inner.log, inner.store.label(), reason));
                }
                floor = pin.timestamp;
            }
            let key = self.signing_key();
            let signed = inner
                .store
                .insert_tree_head(size, |stored| {
                    let timestamp = now_ms().max(stored).max(floor);
                    Ok(tree_head::sign_tree_head(&key, size, &root, timestamp)?)
                })
                .await?;
            if let Some(head) = signed {
                inner.pin.store(&head)?;
                *pinned = Some(head.clone());
                if let Ok(mut newest) = inner.newest_jws.write() {
                    *newest = Some(Arc::from(head.jws.as_str()));
                }
                return Ok(head);
            }
        }
        // Replicas keep signing larger trees: theirs is the newest head.
        self.latest_tree_head()
            .await?
            .ok_or_else(|| AuditError::Corrupt {
                store: inner.store.label().to_owned(),
                seq: None,
                reason: "a larger tree head was stored, and is gone".into(),
            })
    }

    /// The compact JWS of the newest tree head this process signed (or found in the store
    /// at open), which every exchange carries to the partner; `None` before the first.
    pub fn newest_head_jws(&self) -> Option<Arc<str>> {
        self.inner
            .newest_jws
            .read()
            .ok()
            .and_then(|newest| newest.clone())
    }

    /// The newest head held from each partner (PROTOCOL.md §5.4).
    pub async fn witnessed(&self) -> Result<Vec<Witnessed>, AuditError> {
        self.inner.store.witnessed().await
    }

    /// Keeps `head` as the newest held from its member.
    pub async fn keep_witnessed(&self, witnessed: &Witnessed) -> Result<(), AuditError> {
        self.inner.store.keep_witnessed(witnessed).await
    }

    /// The key that signs this log's tree heads.
    fn signing_key(&self) -> Arc<SigningKey> {
        self.inner
            .key
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Signs later tree heads with `key`: the gateway's signing key was rotated at run time
    /// (the manifest lists the new key under this member). Heads signed before stay as they
    /// were.
    pub fn set_signing_key(&self, key: Arc<SigningKey>) {
        *self
            .inner
            .key
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = key;
    }

    /// The highest manifest serial this member's gateway adopted, as kept in the store;
    /// `None` before the first.
    pub async fn held_manifest_serial(&self) -> Result<Option<u64>, AuditError> {
        self.inner.store.held_manifest_serial().await
    }

    /// Raises the held manifest serial to `serial` (never lowers it), adopted at `now_ms`.
    pub async fn hold_manifest_serial(&self, serial: u64, now_ms: i64) -> Result<(), AuditError> {
        self.inner.store.hold_manifest_serial(serial, now_ms).await
    }

    /// Every fork caught so far, oldest first.
    pub async fn forks(&self) -> Result<Vec<Fork>, AuditError> {
        self.inner.store.forks().await
    }

    /// Keeps the evidence of a fork.
    pub async fn record_fork(&self, fork: &Fork) -> Result<(), AuditError> {
        self.inner.store.record_fork(fork).await
    }

    /// The head of the largest tree signed so far (the newest of those), if any.
    pub async fn latest_tree_head(&self) -> Result<Option<SignedTreeHead>, AuditError> {
        self.inner.store.latest_tree_head().await
    }

    /// Inclusion proofs of every record with `exchange_id` (at most
    /// [`MAX_RECORDS_PER_EXCHANGE`]; a gateway that asks itself holds a consumer and a
    /// provider record of one id); empty when no record has that id. Against `tree_size`
    /// if given (at most the committed size, and beyond every such record, else
    /// [`AuditError::OutOfRange`]); otherwise against the latest signed tree head, signing
    /// a fresh one first if that does not cover them — so the proofs always match a head an
    /// auditor can fetch ([`AuditLog::prove`] returns both together).
    pub async fn inclusion_proof(
        &self,
        exchange_id: &str,
        tree_size: Option<u64>,
    ) -> Result<Vec<InclusionProof>, AuditError> {
        let seqs = match self.seqs_of(exchange_id).await {
            Err(AuditError::UnknownExchange(_)) => return Ok(Vec::new()),
            other => other?,
        };
        let size = match tree_size {
            Some(n) => {
                let (committed, _) = self.inner.store.state().await?;
                if n > committed {
                    return Err(AuditError::OutOfRange(format!(
                        "tree size {n} is beyond the log's {committed}"
                    )));
                }
                n
            }
            None => self.covering_head(&seqs).await?.tree_size,
        };
        self.proofs_for(&seqs, size).await
    }

    /// An inclusion proof bundle for `exchange_id`: its records' proofs and the signed
    /// tree head they are against (the latest, or a freshly signed one if the latest does
    /// not cover them). What `simpul audit prove` writes and `check-proof` checks.
    /// [`AuditError::UnknownExchange`] when no record has that id.
    pub async fn prove(&self, exchange_id: &str) -> Result<ProofBundle, AuditError> {
        let seqs = self.seqs_of(exchange_id).await?;
        let head = self.covering_head(&seqs).await?;
        let proofs = self.proofs_for(&seqs, head.tree_size).await?;
        Ok(ProofBundle {
            format: PROOF_FORMAT.to_owned(),
            log: self.inner.log.to_string(),
            exchange_id: exchange_id.to_owned(),
            tree_head: head,
            proofs,
        })
    }

    /// Every record of this log about one person — whose personal identifiers, in the
    /// contract's `personal_data` order, are `personal` (for the demo's contracts, the NIK
    /// alone): those whose `subject` is theirs, and those of batch exchanges whose
    /// `subjects` hold it — oldest first, at most [`MAX_RECORDS_PER_SUBJECT`], each with an
    /// inclusion proof against the returned head (signed now if the latest does not cover
    /// them). What a member's data-protection officer answers a citizen with; the
    /// identifiers are only hashed with this log's secret, never stored or returned.
    pub async fn subject_history(
        &self,
        personal: &[Value],
    ) -> Result<(Option<SignedTreeHead>, Vec<InclusionProof>), AuditError> {
        let Some(subject) = self.subject(personal) else {
            return Ok((None, Vec::new()));
        };
        let seqs = self
            .inner
            .store
            .seqs_of_subject(&subject, MAX_RECORDS_PER_SUBJECT)
            .await?;
        if seqs.is_empty() {
            return Ok((self.latest_tree_head().await?, Vec::new()));
        }
        let head = self.covering_head(&seqs).await?;
        let proofs = self.proofs_for(&seqs, head.tree_size).await?;
        Ok((Some(head), proofs))
    }

    /// A consistency proof that the tree of `second` leaves extends the tree of `first`
    /// (`first ≤ second ≤` the committed size; empty when `first` is 0 or equals `second`).
    pub async fn consistency_proof(
        &self,
        first: u64,
        second: u64,
    ) -> Result<ConsistencyProof, AuditError> {
        let (committed, _) = self.inner.store.state().await?;
        if second > committed {
            return Err(AuditError::OutOfRange(format!(
                "tree size {second} is beyond the log's {committed}"
            )));
        }
        let ranges = merkle::consistency_ranges(first, second)?;
        let path = self.range_hashes(&ranges, &[]).await?.0;
        Ok(ConsistencyProof {
            first,
            second,
            path: path.iter().map(encode_hash).collect(),
        })
    }

    /// Records with `from_seq ≤ seq < to_seq_exclusive`, in order; at most
    /// [`MAX_RECORDS_PER_CALL`] (the range is cut there: ask again from the next seq).
    pub async fn records(
        &self,
        from_seq: u64,
        to_seq_exclusive: u64,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        let to = to_seq_exclusive.min(from_seq.saturating_add(MAX_RECORDS_PER_CALL));
        if to <= from_seq {
            return Ok(Vec::new());
        }
        Ok(self
            .inner
            .store
            .records(from_seq, to)
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect())
    }

    /// How many records there are of exchanges this gateway answered as provider (`role`
    /// provider, outcome "ok") of `contract`/`version` for `consumer` and `purpose`, with
    /// no `lookup_id`, at or after `since_ms` (ms since the Unix epoch, the records' `ts`):
    /// what a per-day limit counts (an overlap contract's `runs_per_day`: a run exchange
    /// has no `lookup_id`; the report of a run carries the run's id there, and a refusal
    /// has its problem code as outcome).
    ///
    /// Reads no more than it must, without an index of its own (appends pay for every index
    /// of the records): the first seq stamped at or after a minute before `since_ms` is
    /// found by binary search of point lookups on the primary key `(log, seq)` — seq order
    /// follows `ts` within that margin (replicas' commits that overtake one another) — and
    /// the count reads the records from there to the committed size: O(log n) lookups plus
    /// the records since then, of every consumer and contract. Like every read, it first
    /// waits until the tables hold every record answered.
    pub async fn count_answered(
        &self,
        contract: &str,
        version: &str,
        consumer: &str,
        purpose: &str,
        since_ms: i64,
    ) -> Result<u64, AuditError> {
        let answered = Answered {
            contract,
            version,
            consumer,
            purpose,
        };
        let from_ms = since_ms.saturating_sub(STAMP_DISORDER_MS);
        self.inner
            .store
            .count_answered(answered, from_ms, since_ms)
            .await
    }

    /// The evidence kept for `exchange_id` (empty once the retention has passed), opened
    /// with the evidence key.
    pub async fn evidence(&self, exchange_id: &str) -> Result<Vec<StoredEvidence>, AuditError> {
        let stored = self.inner.store.evidence(exchange_id).await?;
        stored.into_iter().map(|ev| self.unseal(ev)).collect()
    }

    /// `ev` with its envelopes sealed for the store.
    fn seal(&self, ev: StoredEvidence) -> Result<StoredEvidence, AuditError> {
        let (key, log) = (&self.inner.evidence_key, self.inner.log.as_str());
        let fail = |e: seal::SealError| AuditError::Evidence {
            exchange_id: ev.exchange_id.clone(),
            reason: format!("cannot seal: {e}"),
        };
        let request = key
            .seal(log, &ev.exchange_id, Side::Request, &ev.request)
            .map_err(fail)?;
        let response = match &ev.response {
            Some(r) => Some(
                key.seal(log, &ev.exchange_id, Side::Response, r)
                    .map_err(fail)?,
            ),
            None => None,
        };
        Ok(StoredEvidence {
            exchange_id: ev.exchange_id.clone(),
            request,
            response,
        })
    }

    /// `ev` as read from the store, opened. Evidence kept before sealing was introduced is
    /// returned as it is; sealed evidence that does not open is refused (another key, or
    /// moved between records).
    fn unseal(&self, ev: StoredEvidence) -> Result<StoredEvidence, AuditError> {
        let (key, log) = (&self.inner.evidence_key, self.inner.log.as_str());
        let open = |side: Side, text: String| {
            if !EvidenceKey::is_sealed(&text) {
                return Ok(text);
            }
            key.open(log, &ev.exchange_id, side, &text)
                .map_err(|e| AuditError::Evidence {
                    exchange_id: ev.exchange_id.clone(),
                    reason: format!("the kept {} {e}", side.as_str()),
                })
        };
        let request = open(Side::Request, ev.request.clone())?;
        let response = match ev.response.clone() {
            Some(r) => Some(open(Side::Response, r)?),
            None => None,
        };
        Ok(StoredEvidence {
            exchange_id: ev.exchange_id,
            request,
            response,
        })
    }

    /// Writes the log as JSON lines ([`ExportLine`]): a header, then every record up to the
    /// committed size with each signed tree head right after the record that completes
    /// it. Streamed in chunks of 1,000 records; writes to `out` are blocking.
    pub async fn export(&self, out: &mut (dyn std::io::Write + Send)) -> Result<(), AuditError> {
        export::write_export(&self.inner.store, &self.inner.log, &[], out).await
    }

    /// [`AuditLog::export`] carrying `manifests` (compact JWSs signed by the federation
    /// authority): the member's key history, with which the export verifies given only the
    /// authority's key (docs/AUDIT.md §4.2).
    pub async fn export_with_manifests(
        &self,
        manifests: &[String],
        out: &mut (dyn std::io::Write + Send),
    ) -> Result<(), AuditError> {
        export::write_export(&self.inner.store, &self.inner.log, manifests, out).await
    }

    /// The bytes the store takes on disk: for SQLite its file and write-ahead log, for
    /// PostgreSQL the `simpul_audit_*` tables with their indexes (every log the store
    /// holds, evidence included). A few queries: for an interval or a metrics scrape, not
    /// for the append path.
    pub async fn store_size(&self) -> Result<u64, AuditError> {
        self.inner.store.size_bytes().await
    }

    /// Records answered (durable in an SQLite store's journal) that its tables do not hold
    /// yet: a fraction of a second's worth normally; growing while the tables cannot be
    /// written (locked, full). Always 0 for PostgreSQL.
    pub fn tables_behind(&self) -> u64 {
        self.inner.store.tables_behind()
    }

    /// The last committed tree size this process knows of (appends by other replicas show
    /// up after this process's next append).
    pub fn tree_size(&self) -> u64 {
        self.inner.size.load(Ordering::Acquire)
    }

    async fn seqs_of(&self, exchange_id: &str) -> Result<Vec<u64>, AuditError> {
        let seqs = self
            .inner
            .store
            .seqs_of(exchange_id, MAX_RECORDS_PER_EXCHANGE)
            .await?;
        if seqs.is_empty() {
            return Err(AuditError::UnknownExchange(exchange_id.to_owned()));
        }
        Ok(seqs)
    }

    /// The latest signed head if it covers every seq, else a freshly signed one.
    async fn covering_head(&self, seqs: &[u64]) -> Result<SignedTreeHead, AuditError> {
        let needed = seqs.iter().max().map_or(0, |s| s + 1);
        match self.latest_tree_head().await? {
            Some(head) if head.tree_size >= needed => Ok(head),
            _ => self.sign_tree_head().await,
        }
    }

    async fn range_hashes(
        &self,
        ranges: &[(u64, u64)],
        extra: &[NodeRef],
    ) -> Result<(Vec<Hash>, Vec<Hash>), AuditError> {
        self.inner.store.range_hashes(ranges, extra).await
    }

    async fn proofs_for(
        &self,
        seqs: &[u64],
        tree_size: u64,
    ) -> Result<Vec<InclusionProof>, AuditError> {
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if seq >= tree_size {
                return Err(AuditError::OutOfRange(format!(
                    "record {seq} is not in the tree of size {tree_size}"
                )));
            }
            let Some((record, _)) = self.inner.store.records(seq, seq + 1).await?.pop() else {
                return Err(AuditError::Corrupt {
                    store: self.inner.store.label().to_owned(),
                    seq: Some(seq),
                    reason: "the record vanished while its proof was made".into(),
                });
            };
            let ranges = merkle::inclusion_ranges(seq, tree_size)?;
            let (path, leaf) = self.range_hashes(&ranges, &[NodeRef::leaf(seq)]).await?;
            // The leaf hash is the stored one, not one recomputed from the record: a record
            // altered in the store then fails `check-proof` instead of being proven anew.
            let leaf = leaf.first().copied().unwrap_or_else(empty_root);
            out.push(InclusionProof {
                seq,
                tree_size,
                leaf_hash: encode_hash(&leaf),
                path: path.iter().map(encode_hash).collect(),
                record,
            });
        }
        Ok(out)
    }
}

/// The evidence belongs to the record: same exchange id, and its envelopes hash to the
/// record's hashes.
fn check_evidence(record: &NewRecord, ev: &StoredEvidence) -> Result<(), AuditError> {
    let bad = |reason: String| AuditError::Evidence {
        exchange_id: record.exchange_id.clone(),
        reason,
    };
    if ev.exchange_id != record.exchange_id {
        return Err(bad(format!("evidence is of exchange `{}`", ev.exchange_id)));
    }
    let hash = |text: &str| contracts::canonical::sha256_b64url(text.as_bytes());
    if record.request_hash.as_deref() != Some(hash(&ev.request).as_str()) {
        return Err(bad("the request does not hash to request_hash".into()));
    }
    match (&ev.response, &record.response_hash) {
        (Some(r), Some(h)) if &hash(r) == h => Ok(()),
        (None, _) => Ok(()),
        _ => Err(bad("the response does not hash to response_hash".into())),
    }
}

/// Reads a secret key file (the HMAC secret, the evidence key), creating it (32 random bytes, mode 0600) if the file is missing.
fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, AuditError> {
    let err = |reason: String| AuditError::Secret {
        path: path.to_owned(),
        reason,
    };
    contracts::keyfile::check_private(path).map_err(err)?;
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= 32 => return Ok(bytes),
        Ok(bytes) => {
            return Err(err(format!(
                "holds {} bytes; at least 32 are needed",
                bytes.len()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(format!("cannot read: {e}"))),
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| err(format!("cannot create its directory: {e}")))?;
    }
    let mut secret = vec![0u8; 32];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| err("no randomness".into()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            use std::io::Write;
            file.write_all(&secret)
                .and_then(|()| file.sync_all())
                .map_err(|e| err(format!("cannot write: {e}")))?;
            Ok(secret)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_secret(path),
        Err(e) => Err(err(format!("cannot create: {e}"))),
    }
}

/// The group-commit writer: takes every append waiting (up to `batch_max`), commits them
/// in one transaction, then answers each. Seqs are assigned here, inside the transaction,
/// so they are gap-free and in commit order.
async fn write_loop(
    store: Store,
    mut rx: mpsc::Receiver<Job>,
    batch_max: usize,
    size: Arc<AtomicU64>,
    mut frontier: merkle::Frontier,
    log: MemberId,
    tampered: Arc<Tampered>,
) {
    let mut jobs = Vec::with_capacity(batch_max);
    while rx.recv_many(&mut jobs, batch_max).await > 0 {
        if tampered.0.get().is_some() {
            for job in jobs.drain(..) {
                let _ = job.reply.send(Err(tampered.refusal(store.label())));
            }
            continue;
        }
        let mut batch = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs.drain(..) {
            batch.push((job.record, job.evidence));
            replies.push(job.reply);
        }
        let n = batch.len();
        let outcome = tokio::time::timeout(
            COMMIT_DEADLINE,
            store.commit(batch, &mut frontier, now_ms()),
        )
        .await
        .unwrap_or_else(|_| {
            Err(AuditError::NotDurable {
                store: store.label().to_owned(),
                reason: format!("no commit within {} s", COMMIT_DEADLINE.as_secs()),
            })
        });
        match outcome {
            Ok(commit) => {
                size.store(frontier.size(), Ordering::Release);
                // One record per append, in order (`Batch::assign`); an index is only ever
                // made for a record the commit holds.
                for (index, reply) in (0..commit.records.len()).zip(replies) {
                    let commit = commit.clone();
                    let _ = reply.send(Ok(Committed { commit, index }));
                }
            }
            Err(AuditError::Tampered { reason, .. }) => {
                tampered.mark(&log, store.label(), reason);
                for reply in replies {
                    let _ = reply.send(Err(tampered.refusal(store.label())));
                }
            }
            Err(e) => {
                tracing::error!(store = %store.label(), appends = n, error = %e, "audit group commit failed");
                let reason = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(AuditError::NotDurable {
                        store: store.label().to_owned(),
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }
}

/// Signs a tree head every `every`, when the log has grown since the latest head. The
/// first comes one interval after start: a head on demand (an auditor's request, `audit
/// export`, `audit prove`) is signed when it is asked for.
async fn sign_loop(inner: Weak<Inner>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        let log = AuditLog { inner };
        let grown = async {
            let (size, _) = log.inner.store.state().await?;
            let latest = log.latest_tree_head().await?.map(|h| h.tree_size);
            if latest != Some(size) {
                log.sign_tree_head().await?;
            }
            Ok::<_, AuditError>(())
        };
        if let Err(e) = grown.await {
            tracing::warn!(member = %log.inner.log, error = %e, "periodic tree head not signed");
        }
    }
}

/// Deletes evidence older than the retention, hourly.
async fn retention_loop(inner: Weak<Inner>, keep_ms: i64) {
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match inner.store.delete_evidence_before(now_ms() - keep_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(member = %inner.log, deleted = n, "old audit evidence deleted"),
            Err(e) => {
                tracing::warn!(member = %inner.log, error = %e, "old audit evidence not deleted")
            }
        }
    }
}
