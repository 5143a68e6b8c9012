//! The audit store: its directory writable (an SQLite store), and the store opened as
//! `simpul audit export` opens it — beside a running gateway it waits a moment for the
//! journal, then reads the tables as they are, blocking no append — so that its stored
//! tree is checked against its committed root, its latest signed tree head and the head
//! pinned outside it ([`AuditLog::inspect`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use audit_store::AuditLog;
use contracts::SigningKey;

use super::{Check, Context, Finding, Verdict};

/// The longest opening and reading the store may take: the journal wait of a reader
/// beside a running gateway (2 s), and the reads.
const OPEN_TIMEOUT: Duration = Duration::from_secs(15);

/// The audit store's findings, and the manifest serial it holds (for the rollback check).
pub(super) async fn check(
    cx: &Context<'_>,
    signing: Option<SigningKey>,
) -> (Vec<Finding>, Option<u64>) {
    let member = &cx.member.id;
    let config = &cx.member.audit;
    let base = &cx.config.base_dir;
    let mut out = Vec::new();
    let store = if config.store.is_empty() {
        audit_store::AuditConfig::default_store(member)
    } else {
        config.store.clone()
    };
    let sqlite = config.sqlite_file(member, base);
    let subject = sqlite.as_ref().map_or_else(
        || format!("{store} (audit.store)"),
        |p| p.display().to_string(),
    );
    let finding = |verdict, message: String| Finding::new(Check::Audit, &subject, verdict, message);
    if let Some(file) = &sqlite {
        let dir = file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Err(e) = writable(dir) {
            out.push(finding(
                Verdict::Fail,
                format!(
                    "its directory {} cannot be written ({e}): the store, its WAL and its \
                     journal are written there; give the gateway's user write access",
                    dir.display()
                ),
            ));
        }
        if !file.is_file() {
            out.push(finding(
                Verdict::Warn,
                "does not exist yet: the gateway makes it at its first start (if it has run \
                 before, the store was moved or deleted: restore it)"
                    .into(),
            ));
            return (out, None);
        }
    }
    // Opening makes a missing secret: never here, where it would not be the gateway's.
    for secret in [&config.secret_file, &config.evidence_key_file]
        .into_iter()
        .flatten()
    {
        let path = cx.config.resolve(Path::new(secret));
        if !path.exists() {
            out.push(finding(
                Verdict::Fail,
                format!(
                    "not opened: {} is missing (restore it; see the key line)",
                    path.display()
                ),
            ));
            return (out, None);
        }
    }
    let Some(key) = signing else {
        out.push(finding(
            Verdict::Fail,
            "not opened: the tree heads cannot be checked without the member's signing key \
             (see the manifest line)"
                .into(),
        ));
        return (out, None);
    };
    let opened = tokio::time::timeout(
        OPEN_TIMEOUT,
        AuditLog::inspect(config, base, member, Arc::new(key)),
    )
    .await;
    let log = match opened {
        Err(_) => {
            out.push(finding(
                Verdict::Fail,
                format!(
                    "could not be opened and read within {} s: is the database reachable?",
                    OPEN_TIMEOUT.as_secs()
                ),
            ));
            return (out, None);
        }
        Ok(Err(e)) => {
            let advice = match e {
                audit_store::AuditError::Corrupt { .. }
                | audit_store::AuditError::Tampered { .. } => {
                    ": the gateway does not start on it; restore the store (with its journal) \
                     from a copy that extends the pinned head (AUDIT.md §7.1)"
                }
                _ => "",
            };
            out.push(finding(Verdict::Fail, format!("{e}{advice}")));
            return (out, None);
        }
        Ok(Ok(log)) => log,
    };
    if let Some(reason) = log.tampered() {
        out.push(finding(
            Verdict::Fail,
            format!(
                "TAMPERED: {reason}: the gateway appends and signs nothing until the store \
                 (with its journal) is restored from a copy that extends the pinned head \
                 (AUDIT.md §7.1)"
            ),
        ));
        return (out, None);
    }
    let head = match log.latest_tree_head().await {
        Ok(h) => h,
        Err(e) => {
            out.push(finding(Verdict::Fail, format!("{e}")));
            return (out, None);
        }
    };
    let held = log.held_manifest_serial().await.ok().flatten();
    let size = log.tree_size();
    out.push(finding(
        Verdict::Ok,
        match head {
            Some(h) => format!(
                "{size} records; the stored tree matches its root and extends the latest \
                 signed tree head (size {}) and the pinned head",
                h.tree_size
            ),
            None => format!("{size} records; no tree head signed yet"),
        },
    ));
    (out, held)
}

/// Whether `dir` takes a new file: one is made and removed.
fn writable(dir: &Path) -> std::io::Result<()> {
    let probe = dir.join(format!(".simpul-doctor-{}", std::process::id()));
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    std::fs::remove_file(&probe)
}
