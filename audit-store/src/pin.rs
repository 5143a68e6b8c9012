//! The pinned head: the last tree head this gateway signed, kept outside the audit store
//! (by default next to the member's signing key) so that someone who can write the store
//! but does not hold the key cannot rewrite or cut back the log and have the gateway sign
//! over it. Written durably (a temporary file synced, renamed over the old one, the
//! directory synced), mode 0600.

use std::io::Write;
use std::path::{Path, PathBuf};

use audit::SignedTreeHead;

use crate::AuditError;

/// The file that holds the pinned head.
#[derive(Clone, Debug)]
pub(crate) struct PinFile {
    path: PathBuf,
}

impl PinFile {
    pub(crate) fn new(path: PathBuf) -> PinFile {
        PinFile { path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: String) -> AuditError {
        AuditError::Pin {
            path: self.path.clone(),
            reason,
        }
    }

    /// The pinned head, or `None` if there is no file yet.
    pub(crate) fn load(&self) -> Result<Option<SignedTreeHead>, AuditError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.err(format!("cannot read: {e}"))),
        };
        contracts::json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| self.err(format!("not a signed tree head: {e}")))
    }

    /// Replaces the pinned head with `head`, durably.
    pub(crate) fn store(&self, head: &SignedTreeHead) -> Result<(), AuditError> {
        let dir = self
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| self.err(format!("cannot create its directory: {e}")))?;
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.tmp"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut text = serde_json::to_vec_pretty(head)?;
        text.push(b'\n');
        options
            .open(&tmp)
            .and_then(|mut f| f.write_all(&text).and_then(|()| f.sync_all()))
            .map_err(|e| self.err(format!("cannot write {}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| self.err(format!("cannot replace: {e}")))?;
        // The rename is durable only once the directory is.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.err(format!("cannot sync {}: {e}", dir.display())))
    }
}
