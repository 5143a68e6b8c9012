//! `simpul manifest sign | verify | diff`: the federation authority's manifest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use contracts::manifest::MANIFEST_TYP;
use contracts::{Manifest, ParsedJws, VerifyingKey};
use gateway::assemble::load_authority_key;

use crate::error::CliError;
use crate::load_config;

#[derive(Subcommand)]
pub enum ManifestCommand {
    /// Build the manifest from the configuration and the catalog, and sign it.
    Sign {
        /// Where to write it (default: federation.manifest).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a manifest and print what it holds.
    Verify {
        /// The manifest file.
        file: PathBuf,
        /// The authority's public JWK (default: the configuration's pinned key).
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Show what NEW changes against OLD: members, gateway URLs, keys and their windows,
    /// CA certificates, contracts (digest), grants, rates, serial and dates. Both files must
    /// verify with an authority key (an expired one is still read).
    Diff {
        /// The older manifest file.
        old: PathBuf,
        /// The newer manifest file.
        new: PathBuf,
        /// An authority public JWK each file may be signed with (default: the
        /// configuration's pinned key); repeat it for a diff across an authority re-key.
        #[arg(long = "authority-key")]
        authority_keys: Vec<PathBuf>,
        /// Print the changes as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Reads `file` as a manifest signed by one of `keys` (the one its `kid` names), expired or
/// not.
fn read_signed(file: &Path, keys: &[(PathBuf, VerifyingKey)]) -> Result<Manifest, CliError> {
    let text = std::fs::read_to_string(file).map_err(CliError::file(file))?;
    let kid = ParsedJws::parse(text.trim(), MANIFEST_TYP)
        .map_err(CliError::file(file))?
        .header
        .kid
        .unwrap_or_default();
    let (_, key) = keys.iter().find(|(_, k)| k.kid() == kid).ok_or_else(|| {
        CliError::file(file)(format!(
            "signed by `{kid}`, which is none of the authority keys given ({}): pass the one that signed it with --authority-key",
            keys.iter()
                .map(|(p, k)| format!("{} in {}", k.kid(), p.display()))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Manifest::verify_any_time(&text, key).map_err(CliError::file(file))
}

pub fn run(config_path: Option<&Path>, command: ManifestCommand) -> Result<ExitCode, CliError> {
    match command {
        ManifestCommand::Sign { out } => {
            let config = load_config(config_path)?;
            let m = gateway::authority::sign_manifest(&config, out.as_deref())?;
            println!(
                "signed manifest serial {} into {}",
                m.doc().serial,
                out.as_ref()
                    .unwrap_or(&config.federation.manifest)
                    .display()
            );
        }
        ManifestCommand::Verify { file, key } => {
            let key_path = match key {
                Some(k) => k,
                None => load_config(config_path)?.federation.authority_key,
            };
            let key = load_authority_key(&key_path)?;
            let text = std::fs::read_to_string(&file).map_err(CliError::file(&file))?;
            let m = Manifest::verify(&text, &key, contracts::unix_now())
                .map_err(CliError::file(&file))?;
            println!("{}: valid, signed by {}", file.display(), key.kid());
            print!("{}", m.summary());
        }
        ManifestCommand::Diff {
            old,
            new,
            authority_keys,
            json,
        } => {
            let paths = if authority_keys.is_empty() {
                vec![load_config(config_path)?.federation.authority_key]
            } else {
                authority_keys
            };
            let keys = paths
                .into_iter()
                .map(|p| load_authority_key(&p).map(|k| (p, k)))
                .collect::<Result<Vec<_>, _>>()?;
            let (a, b) = (read_signed(&old, &keys)?, read_signed(&new, &keys)?);
            let changes = contracts::manifest_diff::diff(a.doc(), b.doc());
            if json {
                let side = |file: &Path, m: &Manifest| {
                    serde_json::json!({
                        "file": file.display().to_string(),
                        "serial": m.doc().serial,
                        "expired": m.doc().expires_at <= contracts::unix_now(),
                    })
                };
                let out = serde_json::json!({
                    "old": side(&old, &a),
                    "new": side(&new, &b),
                    "changes": changes,
                });
                println!(
                    "{}",
                    serde_json::to_string_pretty(&out)
                        .map_err(|e| CliError::Process(format!("JSON: {e}")))?
                );
            } else {
                let now = contracts::unix_now();
                for (what, file, m) in [("old", &old, &a), ("new", &new, &b)] {
                    println!(
                        "{what}: {} serial {}{}",
                        file.display(),
                        m.doc().serial,
                        if m.doc().expires_at <= now {
                            " (expired)"
                        } else {
                            ""
                        }
                    );
                }
                if changes.is_empty() {
                    println!("no differences");
                }
                for c in &changes {
                    println!("{c}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
