//! `simpul completions SHELL`: the shell completion script, generated from the CLI
//! definition, on standard output.

use std::io::Write;
use std::process::ExitCode;

use clap_complete::Shell;

use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// The shell to complete in.
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the completion script of `cli` (the whole `simpul` command) for `args.shell`.
pub fn run(mut cli: clap::Command, args: Args) -> Result<ExitCode, CliError> {
    let name = cli.get_name().to_owned();
    // Into memory first: the generator panics on a failed write, standard output may be closed.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cli, name, &mut script);
    std::io::stdout()
        .lock()
        .write_all(&script)
        .map_err(|e| CliError::Process(format!("cannot write to standard output: {e}")))?;
    Ok(ExitCode::SUCCESS)
}
