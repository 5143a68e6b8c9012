//! `simpul pki rotate --member M [--overlap-days N] [--finish]`: a member's signing key
//! rotated without downtime (OPERATIONS.md §6.5). Apart from `pki.rs`'s certificate commands.

use clap::Args;
use contracts::MemberId;
use demo::rotate::{self, DEFAULT_OVERLAP_DAYS};
use gateway::config::Config;

use crate::error::CliError;

#[derive(Args)]
pub struct RotateArgs {
    /// The member whose signing key to rotate.
    #[arg(long, value_name = "MEMBER")]
    member: String,
    /// Days the current key still signs once the next key exists (both verify meanwhile).
    #[arg(long, default_value_t = DEFAULT_OVERLAP_DAYS, conflicts_with = "finish")]
    overlap_days: u32,
    /// Finish the rotation under way: the next key becomes the current one, the old public
    /// key is kept in `retired/`.
    #[arg(long)]
    finish: bool,
}

pub fn run(config: &Config, args: RotateArgs) -> Result<(), CliError> {
    let usage = |reason: String| CliError::Usage(format!("--member: {reason}"));
    let member = MemberId::parse(&args.member).map_err(|e| usage(e.to_string()))?;
    if member.is_subsystem() || config.member(&member).is_none() {
        return Err(usage(format!(
            "{member} is not a member in {}",
            config.source
        )));
    }
    let layout = &config.federation.pki;
    if args.finish {
        let f = rotate::finish(layout, &member)?;
        println!(
            "{member} now signs with {}; {} retired (its public key kept in {}). Restart {member}'s gateway to sign with the new key.",
            f.current,
            f.retired,
            f.retired_jwk.display()
        );
    } else {
        let r = rotate::rotate(layout, &member, args.overlap_days, contracts::unix_now())?;
        for p in &r.written {
            println!("wrote {}", p.display());
        }
        println!(
            "{member}: next key {} may sign from {}; current key {} until {}. Sign and distribute the manifest (`simpul manifest sign`), then finish with `simpul pki rotate --member {member} --finish` before {}.",
            r.next, r.next_from, r.current, r.current_until, r.current_until
        );
    }
    Ok(())
}
