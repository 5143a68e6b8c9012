//! `simpul pki init`: the development PKI of the configuration's federation.

use std::process::ExitCode;

use clap::Subcommand;
use gateway::config::Config;

use crate::error::CliError;

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Make the federation CA, the authority key, and every member's certificates and keys.
    Init {
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(config: &Config, command: PkiCommand) -> Result<ExitCode, CliError> {
    let PkiCommand::Init { force } = command;
    let report = demo::pki::init(&config.federation.pki, &demo::pki_plan(config), force)?;
    for p in &report.written {
        println!("wrote {}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
