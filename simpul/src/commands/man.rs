//! `simpul man [--out DIR]`: the manual pages, generated from the CLI definition — `simpul.1`
//! on standard output, or with `--out` that page and one per subcommand (`simpul-serve.1`,
//! `simpul-pki-init.1`, …) written into DIR.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::CliError;

#[derive(clap::Args)]
pub struct Args {
    /// Write every page into this directory (created if missing) instead of printing
    /// simpul.1.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

/// Renders the pages of `cli` (the whole `simpul` command).
pub fn run(cli: clap::Command, args: Args) -> Result<ExitCode, CliError> {
    let Some(dir) = args.out else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cli)
            .render(&mut page)
            .map_err(|e| CliError::Process(format!("cannot render the manual page: {e}")))?;
        std::io::stdout()
            .lock()
            .write_all(&page)
            .map_err(|e| CliError::Process(format!("cannot write to standard output: {e}")))?;
        return Ok(ExitCode::SUCCESS);
    };
    std::fs::create_dir_all(&dir).map_err(CliError::file(&dir))?;
    // `help` is no page of its own: each page lists its subcommands already.
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    write_pages(&cli, &dir)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes the page of `cmd` and of each of its visible subcommands, depth first, into `dir`,
/// printing each file written.
fn write_pages(cmd: &clap::Command, dir: &std::path::Path) -> Result<(), CliError> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub, dir)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let path = dir.join(man.get_filename());
    let mut page = Vec::new();
    man.render(&mut page).map_err(CliError::file(&path))?;
    std::fs::write(&path, page).map_err(CliError::file(&path))?;
    println!("{}", path.display());
    Ok(())
}
