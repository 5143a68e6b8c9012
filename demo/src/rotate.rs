//! Rotating a member's signing key without downtime (`simpul pki rotate`, OPERATIONS.md
//! §6.5): [`rotate`] makes the next key beside the current one and gives both their windows
//! (the current key may sign until the overlap ends, the next one from now), so the next
//! manifest publishes both; [`finish`] makes the next key the current one and keeps the old
//! public key, with its window, under `retired/`, so that later manifests still list it and
//! what it signed stays verifiable.
//!
//! The windows live in the public JWK files themselves (`not_before` / `not_after`, PROTOCOL.md
//! §1.6); `simpul manifest sign` publishes what the files say.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use contracts::jws::{Algorithm, SigningKey};
use contracts::{KeyWindow, MemberId};
use gateway::layout::PkiLayout;
use serde_json::Value;

use crate::pki::PkiError;

/// How long the current key and the next one both sign, by default: 7 days.
pub const DEFAULT_OVERLAP_DAYS: u32 = 7;

/// What [`rotate`] did.
#[derive(Clone, Debug)]
pub struct Rotation {
    /// The current key's kid.
    pub current: String,
    /// Until when it may sign (Unix seconds, exclusive).
    pub current_until: i64,
    /// The next key's kid.
    pub next: String,
    /// From when it may sign (Unix seconds).
    pub next_from: i64,
    /// The files written.
    pub written: Vec<PathBuf>,
}

/// What [`finish`] did.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The key now current.
    pub current: String,
    /// The key retired.
    pub retired: String,
    /// Where its public JWK is kept.
    pub retired_jwk: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_owned(),
        source,
    }
}

fn refused(path: &Path, reason: impl Into<String>) -> PkiError {
    PkiError::Refused {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

fn read_jwk(path: &Path) -> Result<Value, PkiError> {
    let text = fs::read_to_string(path).map_err(io_err(path))?;
    contracts::json::value_from_slice(text.as_bytes())
        .map_err(|e| refused(path, format!("not a JWK: {e}")))
}

fn read_key(path: &Path, member: &MemberId) -> Result<SigningKey, PkiError> {
    let pem = fs::read(path).map_err(io_err(path))?;
    SigningKey::from_pem(Algorithm::ES256, member.as_str(), &pem).map_err(|source| PkiError::Key {
        path: path.to_owned(),
        source,
    })
}

fn jwk_text(jwk: &Value) -> Vec<u8> {
    let mut text = serde_json::to_string_pretty(jwk).unwrap_or_else(|_| jwk.to_string());
    text.push('\n');
    text.into_bytes()
}

/// Writes a new file with `mode` (refusing an existing one), synced.
fn create(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                PkiError::Exists {
                    path: path.to_owned(),
                }
            } else {
                io_err(path)(e)
            }
        })?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

/// Replaces `path` with `bytes` (mode `mode`): written aside and renamed, so a crash leaves
/// the old file or the new one.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    let tmp = path.with_extension("tmp");
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&tmp)(e)),
    }
    create(&tmp, bytes, mode)?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

/// Starts a rotation of `member`'s signing key at `now` (Unix seconds): makes the next ES256
/// key (`signing.next.key`, mode 0600) and its public JWK with `not_before` = `now`
/// (`signing.next.jwk`, 0644), and gives the current public JWK (`signing.jwk`) `not_after`
/// = `now` + `overlap_days` (or keeps an earlier one it has). The gateway goes on signing
/// with the current key; the next `simpul manifest sign` publishes both.
///
/// # Errors
/// `overlap_days` is 0; a rotation is already under way (a next key exists); the current
/// key is missing or unreadable; a file cannot be written.
pub fn rotate(
    layout: &PkiLayout,
    member: &MemberId,
    overlap_days: u32,
    now: i64,
) -> Result<Rotation, PkiError> {
    let next_key = layout.next_signing_key(member);
    let next_jwk = layout.next_signing_jwk(member);
    if overlap_days == 0 {
        return Err(refused(
            &layout.signing_jwk(member),
            "the overlap must be at least 1 day: both keys must verify while every gateway picks up the new manifest",
        ));
    }
    for p in [&next_key, &next_jwk] {
        if p.symlink_metadata().is_ok() {
            return Err(refused(
                p,
                format!(
                    "a rotation is under way: finish it first with `simpul pki rotate --member {member} --finish`"
                ),
            ));
        }
    }
    let current_path = layout.signing_jwk(member);
    let current = read_key(&layout.signing_key(member), member)?;
    let mut current_jwk = read_jwk(&current_path)?;
    if current_jwk.get("kid").and_then(Value::as_str) != Some(current.kid()) {
        return Err(refused(
            &current_path,
            format!(
                "is not the public key of {} (kid {}): restore the pair",
                layout.signing_key(member).display(),
                current.kid()
            ),
        ));
    }
    let mut window = KeyWindow::of_jwk(&current_jwk).map_err(|why| refused(&current_path, why))?;
    let until = now.saturating_add(i64::from(overlap_days) * 86_400);
    window.not_after = Some(window.not_after.map_or(until, |a| a.min(until)));
    window.set_in(&mut current_jwk);

    let next = SigningKey::generate(Algorithm::ES256, member.as_str()).map_err(|source| {
        PkiError::Key {
            path: next_key.clone(),
            source,
        }
    })?;
    let mut public = next.public_jwk().clone();
    KeyWindow {
        not_before: Some(now),
        not_after: None,
    }
    .set_in(&mut public);
    let pem = next.private_pem().map_err(|source| PkiError::Key {
        path: next_key.clone(),
        source,
    })?;
    create(&next_key, pem, 0o600)?;
    create(&next_jwk, &jwk_text(&public), 0o644)?;
    replace(&current_path, &jwk_text(&current_jwk), 0o644)?;
    tracing::info!(%member, current = %current.kid(), next = %next.kid(), until, "signing key rotation started");
    Ok(Rotation {
        current: current.kid().to_owned(),
        current_until: window.not_after.unwrap_or(until),
        next: next.kid().to_owned(),
        next_from: now,
        written: vec![next_key, next_jwk, current_path],
    })
}

/// Finishes a rotation of `member`'s signing key: the current public JWK, with the window it
/// was published with, is kept as `retired/<key id>.jwk`; the next key becomes the current
/// one (`signing.next.key` → `signing.key`, `signing.next.jwk` → `signing.jwk`), and the old
/// private key is gone. A gateway signs with the new key once it restarts.
///
/// # Errors
/// No rotation is under way; the next key does not match its JWK; a file cannot be written.
pub fn finish(layout: &PkiLayout, member: &MemberId) -> Result<Finished, PkiError> {
    let next_key = layout.next_signing_key(member);
    let next_jwk = layout.next_signing_jwk(member);
    for p in [&next_key, &next_jwk] {
        if p.symlink_metadata().is_err() {
            return Err(refused(
                p,
                format!(
                    "does not exist: no rotation is under way (start one with `simpul pki rotate --member {member}`)"
                ),
            ));
        }
    }
    let next = read_key(&next_key, member)?;
    let public = read_jwk(&next_jwk)?;
    if public.get("kid").and_then(Value::as_str) != Some(next.kid()) {
        return Err(refused(
            &next_jwk,
            format!(
                "is not the public key of {} (kid {})",
                next_key.display(),
                next.kid()
            ),
        ));
    }
    let current_path = layout.signing_jwk(member);
    let old = read_jwk(&current_path)?;
    let old_kid = old
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| refused(&current_path, "the JWK has no `kid`"))?
        .to_owned();
    // The key id after `#` is a base64url thumbprint for keys the tools make: safe as a
    // file name. Any other is hashed.
    let key_id = old_kid.split_once('#').map_or("", |(_, k)| k);
    let stem = if !key_id.is_empty()
        && key_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        key_id.to_owned()
    } else {
        contracts::canonical::sha256_b64url(old_kid.as_bytes())
    };
    let retired = layout.retired_dir(member).join(format!("{stem}.jwk"));
    match create(&retired, &jwk_text(&old), 0o644) {
        Ok(()) => {}
        // Finishing again after an interruption: the same key kept already.
        Err(PkiError::Exists { .. }) if read_jwk(&retired).is_ok_and(|r| r == old) => {}
        Err(e) => return Err(e),
    }
    fs::rename(&next_key, layout.signing_key(member)).map_err(io_err(&next_key))?;
    fs::rename(&next_jwk, &current_path).map_err(io_err(&next_jwk))?;
    tracing::info!(%member, current = %next.kid(), retired = %old_kid, "signing key rotation finished");
    Ok(Finished {
        current: next.kid().to_owned(),
        retired: old_kid,
        retired_jwk: retired,
    })
}

/// Abandons a rotation under way, if any: removes `member`'s next key and its JWK (what
/// `simpul pki init --force` does, since it makes every member a new current key). Retired
/// keys stay, and stay published. Returns the files removed.
///
/// # Errors
/// A file cannot be removed.
pub fn abandon(layout: &PkiLayout, member: &MemberId) -> Result<Vec<PathBuf>, PkiError> {
    let mut removed = Vec::new();
    for p in [
        layout.next_signing_key(member),
        layout.next_signing_jwk(member),
    ] {
        match fs::remove_file(&p) {
            Ok(()) => removed.push(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&p)(e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{PkiPlan, init};
    use std::os::unix::fs::PermissionsExt;

    fn id(s: &str) -> MemberId {
        MemberId::parse(s).unwrap()
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn rotate_then_finish_keeps_the_old_public_key_with_its_window() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        let kemlu = id("ID:GOV:KEMLU");
        init(
            &layout,
            &PkiPlan::new(id("ID:GOV:SIMPUL")).with_member(kemlu.clone(), vec![]),
            false,
        )
        .unwrap();
        let first = read_jwk(&layout.signing_jwk(&kemlu)).unwrap();
        assert!(matches!(
            finish(&layout, &kemlu),
            Err(PkiError::Refused { .. })
        ));
        assert!(matches!(
            rotate(&layout, &kemlu, 0, 1_000),
            Err(PkiError::Refused { .. })
        ));

        let r = rotate(&layout, &kemlu, 7, 1_000).unwrap();
        assert_eq!(r.current, first["kid"].as_str().unwrap());
        assert_eq!(r.current_until, 1_000 + 7 * 86_400);
        assert_eq!(mode(&layout.next_signing_key(&kemlu)), 0o600);
        let current = read_jwk(&layout.signing_jwk(&kemlu)).unwrap();
        assert_eq!(
            KeyWindow::of_jwk(&current).unwrap().not_after,
            Some(r.current_until)
        );
        let next = read_jwk(&layout.next_signing_jwk(&kemlu)).unwrap();
        assert_eq!(next["kid"].as_str().unwrap(), r.next);
        assert_eq!(KeyWindow::of_jwk(&next).unwrap().not_before, Some(1_000));
        // The current private key is untouched; a second rotation waits for the first.
        assert_eq!(
            read_key(&layout.signing_key(&kemlu), &kemlu).unwrap().kid(),
            r.current
        );
        assert!(matches!(
            rotate(&layout, &kemlu, 7, 2_000),
            Err(PkiError::Refused { .. })
        ));

        let f = finish(&layout, &kemlu).unwrap();
        assert_eq!(
            (f.current.as_str(), f.retired.as_str()),
            (r.next.as_str(), r.current.as_str())
        );
        assert_eq!(
            read_key(&layout.signing_key(&kemlu), &kemlu).unwrap().kid(),
            r.next
        );
        assert_eq!(mode(&layout.signing_key(&kemlu)), 0o600);
        assert_eq!(read_jwk(&layout.signing_jwk(&kemlu)).unwrap(), next);
        assert_eq!(read_jwk(&f.retired_jwk).unwrap(), current);
        assert!(!layout.next_signing_key(&kemlu).exists());
        assert!(!layout.next_signing_jwk(&kemlu).exists());

        // A rotation abandoned (a re-key): the next key goes, nothing else.
        rotate(&layout, &kemlu, 1, 2_000).unwrap();
        assert_eq!(abandon(&layout, &kemlu).unwrap().len(), 2);
        assert!(!layout.next_signing_key(&kemlu).exists());
        assert_eq!(
            read_key(&layout.signing_key(&kemlu), &kemlu).unwrap().kid(),
            r.next
        );
        assert!(abandon(&layout, &kemlu).unwrap().is_empty());
        // The current key's window from the abandoned rotation stays until the next init;
        // give it back its open end for the test.
        let mut current = read_jwk(&layout.signing_jwk(&kemlu)).unwrap();
        KeyWindow::default().set_in(&mut current);
        replace(&layout.signing_jwk(&kemlu), &jwk_text(&current), 0o644).unwrap();

        // A second rotation: the first retired key stays, the second joins it.
        rotate(&layout, &kemlu, 1, 3_000).unwrap();
        finish(&layout, &kemlu).unwrap();
        assert_eq!(fs::read_dir(layout.retired_dir(&kemlu)).unwrap().count(), 2);
    }
}
