//! The federation authority's work: building the manifest from the configuration and the
//! catalog — each member's keys with their validity windows, from its current, next and
//! retired public keys — and signing it with a serial that only grows, across a re-key too.

use std::path::{Path, PathBuf};

use contracts::manifest::{KeyWindow, ManifestContract, ManifestDoc, ManifestMember};
use contracts::{Algorithm, Manifest, MemberId, SigningKey};
use serde_json::Value;

use crate::assemble::{StartError, load_authority_key};
use crate::config::Config;
use crate::layout::PkiLayout;

/// Why a manifest could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AuthorityError {
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The manifest could not be made or read.
    #[error(transparent)]
    Start(#[from] StartError),
    /// Signing failed.
    #[error("manifest: {0}")]
    Manifest(#[from] contracts::ManifestError),
}

fn file_err(path: &Path, e: impl std::fmt::Display) -> AuthorityError {
    AuthorityError::File {
        path: path.to_owned(),
        reason: e.to_string(),
    }
}

/// The manifest document the configuration describes, with the members' public keys and
/// CA certificate read from the PKI directory.
pub fn build_manifest_doc(
    config: &Config,
    serial: u64,
    now: i64,
) -> Result<ManifestDoc, AuthorityError> {
    let layout = &config.federation.pki;
    let ca =
        std::fs::read_to_string(layout.ca_cert()).map_err(|e| file_err(&layout.ca_cert(), e))?;
    let mut members = Vec::new();
    for m in &config.members {
        members.push(ManifestMember {
            id: m.id.clone(),
            name: m.name.clone(),
            gateway: m.gateway.clone(),
            keys: member_keys(layout, &m.id)?,
        });
    }
    // A window needs version 2, which a reader that does not know windows refuses.
    let windowed = members
        .iter()
        .flat_map(|m| &m.keys)
        .any(|k| KeyWindow::of_jwk(k).is_ok_and(|w| !w.is_open()));
    let mut contracts = Vec::new();
    for m in &config.members {
        for p in &m.provides {
            // Config::parse has checked the contract is in the catalog.
            let digest = config
                .catalog
                .get(&p.contract)
                .map(|c| c.digest().to_owned())
                .unwrap_or_default();
            contracts.push(ManifestContract {
                id: p.contract.id.clone(),
                version: p.contract.version.clone(),
                provider: m.id.clone(),
                digest,
                consumers: p.consumers.clone(),
                rate: p.rate.clone(),
            });
        }
        // An event contract's subscribers are its consumers: the grant is the subscription.
        for e in &m.events {
            let digest = config
                .catalog
                .get(&e.contract)
                .map(|c| c.digest().to_owned())
                .unwrap_or_default();
            contracts.push(ManifestContract {
                id: e.contract.id.clone(),
                version: e.contract.version.clone(),
                provider: m.id.clone(),
                digest,
                consumers: e.subscribers.clone(),
                rate: e.rate.clone(),
            });
        }
    }
    Ok(ManifestDoc {
        v: if windowed { 2 } else { 1 },
        federation: config.federation.id.clone(),
        serial,
        issued_at: now,
        expires_at: now + i64::from(config.federation.manifest_validity_days) * 86_400,
        ca: vec![ca],
        members,
        contracts,
    })
}

/// The public keys `member` publishes, each JWK with its window: its current key
/// (`signing.jwk`), its next key while a rotation is under way (`signing.next.jwk`), and its
/// retired keys (`retired/*.jwk`, in file-name order), so that signatures they made stay
/// verifiable with later manifests.
pub fn member_keys(layout: &PkiLayout, member: &MemberId) -> Result<Vec<Value>, AuthorityError> {
    let read = |path: &Path| -> Result<Value, AuthorityError> {
        let text = std::fs::read_to_string(path).map_err(|e| file_err(path, e))?;
        contracts::json::value_from_slice(text.as_bytes())
            .map_err(|e| file_err(path, format!("not a JWK: {e}")))
    };
    let mut keys = vec![read(&layout.signing_jwk(member))?];
    let next = layout.next_signing_jwk(member);
    if next.symlink_metadata().is_ok() {
        keys.push(read(&next)?);
    }
    let retired = layout.retired_dir(member);
    match std::fs::read_dir(&retired) {
        Ok(entries) => {
            let mut files = Vec::new();
            for entry in entries {
                let path = entry.map_err(|e| file_err(&retired, e))?.path();
                if path.extension().is_some_and(|e| e == "jwk") {
                    files.push(path);
                }
            }
            files.sort();
            for path in files {
                keys.push(read(&path)?);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_err(&retired, e)),
    }
    Ok(keys)
}

/// Where the authority records the last serial it signed: beside the manifest
/// (`<manifest>` with the extension `authority.serial`), outside the PKI directory that
/// `simpul pki init --force` rewrites.
pub fn authority_serial_file(config: &Config) -> PathBuf {
    config
        .federation
        .manifest
        .with_extension("authority.serial")
}

/// The serial of the next manifest: the signing time in Unix seconds, or one more than the
/// last serial this authority signed (its serial file) or the serial of the manifest on disk
/// when either is as high — so it grows across a re-key (whose new authority key no longer
/// verifies the old manifest) and over several manifests signed within one second.
///
/// # Errors
/// The serial file exists and does not hold a serial.
pub fn next_serial(config: &Config, now: i64) -> Result<u64, AuthorityError> {
    let path = authority_serial_file(config);
    let recorded = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().parse::<u64>().map_err(|_| {
            file_err(
                &path,
                "does not hold a manifest serial: restore it, or remove it (the serial is then \
                 the time, or one above the manifest on disk)",
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(file_err(&path, e)),
    };
    let held = current_manifest(config).map(|m| m.doc().serial);
    let above = |s: Option<u64>| s.map_or(0, |s| s.saturating_add(1));
    Ok(u64::try_from(now)
        .unwrap_or(0)
        .max(above(recorded))
        .max(above(held)))
}

/// Reads the manifest currently on disk, if it verifies.
fn current_manifest(config: &Config) -> Option<Manifest> {
    let key = load_authority_key(&config.federation.authority_key).ok()?;
    let text = std::fs::read_to_string(&config.federation.manifest).ok()?;
    Manifest::verify(&text, &key, contracts::unix_now()).ok()
}

/// Signs a new manifest from the configuration with the authority key, with the serial of
/// [`next_serial`], writes it and records its serial. Returns the manifest.
pub fn sign_manifest(config: &Config, out: Option<&Path>) -> Result<Manifest, AuthorityError> {
    let layout = &config.federation.pki;
    let key_path = layout.authority_key();
    let pem = std::fs::read(&key_path).map_err(|e| file_err(&key_path, e))?;
    let authority =
        SigningKey::from_pem(Algorithm::ES256, config.federation.authority.as_str(), &pem)
            .map_err(|e| file_err(&key_path, e))?;
    let now = contracts::unix_now();
    let serial = next_serial(config, now)?;
    let doc = build_manifest_doc(config, serial, now)?;
    let jws = Manifest::sign(&doc, &authority)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.federation.manifest.clone());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    }
    std::fs::write(&out, format!("{jws}\n")).map_err(|e| file_err(&out, e))?;
    // Written aside and renamed, so a crash leaves the old serial or the new one.
    let serial_file = authority_serial_file(config);
    let tmp = serial_file.with_extension("serial.tmp");
    std::fs::write(&tmp, format!("{serial}\n"))
        .and_then(|()| std::fs::rename(&tmp, &serial_file))
        .map_err(|e| file_err(&serial_file, e))?;
    Ok(Manifest::verify(
        &jws,
        &authority
            .verifying_key()
            .map_err(|e| file_err(&key_path, e))?,
        now,
    )?)
}

/// True when the manifest on disk verifies and says what the configuration says (ignoring
/// serial and dates).
pub fn manifest_is_current(config: &Config) -> bool {
    let Some(held) = current_manifest(config) else {
        return false;
    };
    let Ok(mut wanted) = build_manifest_doc(config, held.doc().serial, held.doc().issued_at) else {
        return false;
    };
    wanted.expires_at = held.doc().expires_at;
    // A manifest close to expiry is renewed.
    let fresh = held.doc().expires_at - contracts::unix_now() > 86_400;
    fresh && &wanted == held.doc()
}
