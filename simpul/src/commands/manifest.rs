//! `simpul manifest sign | verify`: the federation authority's manifest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use contracts::Manifest;
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
    }
    Ok(ExitCode::SUCCESS)
}
