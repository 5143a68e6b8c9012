//! The federation authority's work: building the manifest from the configuration and the
//! catalog, and signing it one serial above the manifest on disk.

use std::path::{Path, PathBuf};

use contracts::manifest::{ManifestContract, ManifestDoc, ManifestMember};
use contracts::{Algorithm, Manifest, SigningKey};

use crate::assemble::{StartError, load_authority_key};
use crate::config::Config;

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
        let path = layout.signing_jwk(&m.id);
        let text = std::fs::read_to_string(&path).map_err(|e| file_err(&path, e))?;
        let jwk: serde_json::Value = serde_json::from_str(&text).map_err(|e| file_err(&path, e))?;
        members.push(ManifestMember {
            id: m.id.clone(),
            name: m.name.clone(),
            gateway: m.gateway.clone(),
            keys: vec![jwk],
        });
    }
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
    }
    Ok(ManifestDoc {
        v: 1,
        federation: config.federation.id.clone(),
        serial,
        issued_at: now,
        expires_at: now + i64::from(config.federation.manifest_validity_days) * 86_400,
        ca: vec![ca],
        members,
        contracts,
    })
}

/// Reads the manifest currently on disk, if it verifies.
fn current_manifest(config: &Config) -> Option<Manifest> {
    let key = load_authority_key(&config.federation.authority_key).ok()?;
    let text = std::fs::read_to_string(&config.federation.manifest).ok()?;
    Manifest::verify(&text, &key, contracts::unix_now()).ok()
}

/// Signs a new manifest from the configuration with the authority key, one serial above the
/// one on disk, and writes it. Returns the manifest.
pub fn sign_manifest(config: &Config, out: Option<&Path>) -> Result<Manifest, AuthorityError> {
    let layout = &config.federation.pki;
    let key_path = layout.authority_key();
    let pem = std::fs::read(&key_path).map_err(|e| file_err(&key_path, e))?;
    let authority =
        SigningKey::from_pem(Algorithm::ES256, config.federation.authority.as_str(), &pem)
            .map_err(|e| file_err(&key_path, e))?;
    let serial = current_manifest(config)
        .map(|m| m.doc().serial + 1)
        .unwrap_or(1);
    let now = contracts::unix_now();
    let doc = build_manifest_doc(config, serial, now)?;
    let jws = Manifest::sign(&doc, &authority)?;
    let out = out
        .map(Path::to_path_buf)
        .unwrap_or_else(|| config.federation.manifest.clone());
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e))?;
    }
    std::fs::write(&out, format!("{jws}\n")).map_err(|e| file_err(&out, e))?;
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
