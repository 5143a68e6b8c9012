//! `simpul pki`: the development PKI of the configuration's federation — make it, renew a
//! certificate, revoke one, re-sign the CRLs.

use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};
use contracts::{MemberId, StaffId};
use demo::crl::{self, Ca, Reason};
use demo::pki::Holder;
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
    /// Re-issue one certificate for 90 days from its CA, keeping its key unless --new-key.
    Renew {
        #[command(flatten)]
        holder: HolderArgs,
        /// Make a new private key too (after a key compromise).
        #[arg(long)]
        new_key: bool,
    },
    /// Revoke one certificate: add it to its CA's CRL, which gateways load at start-up.
    Revoke {
        #[command(flatten)]
        holder: HolderArgs,
        /// Why.
        #[arg(long, value_enum, default_value_t = ReasonArg::Unspecified)]
        reason: ReasonArg,
    },
    /// Re-sign every CA's CRL with fresh dates (writing any that is missing).
    Crl,
    /// On a ministry's machine: make the member's gateway TLS key and signing key (kept
    /// there) and a request for the authority.
    Request(super::join::RequestArgs),
    /// At the authority: issue the gateway certificate a request asks for and record its
    /// signing key for the next manifest.
    Issue(super::join::IssueArgs),
    /// Make the member's signing key pair inside the PKCS#11 token its configuration names.
    HsmKey(super::join::HsmKeyArgs),
    /// Rotate a member's signing key: make its next key beside the current one (the next
    /// `manifest sign` publishes both, the current one until the overlap ends); with
    /// --finish, make the next key the current one and keep the old public key in
    /// `retired/`.
    Rotate(crate::commands::rotate::RotateArgs),
}

/// Whose certificate: exactly one of these.
#[derive(Args)]
#[group(required = true, multiple = false)]
pub struct HolderArgs {
    /// A member's gateway certificate (issued by the federation CA).
    #[arg(long, value_name = "MEMBER")]
    member: Option<String>,
    /// A subsystem's client certificate (issued by its member's CA).
    #[arg(long, value_name = "SUBSYSTEM")]
    subsystem: Option<String>,
    /// An operator's or auditor's certificate (`operator:ID:GOV:KEMLU:OPS`).
    #[arg(long, value_name = "STAFF")]
    staff: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ReasonArg {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
}

impl From<ReasonArg> for Reason {
    fn from(r: ReasonArg) -> Self {
        match r {
            ReasonArg::Unspecified => Reason::Unspecified,
            ReasonArg::KeyCompromise => Reason::KeyCompromise,
            ReasonArg::AffiliationChanged => Reason::AffiliationChanged,
            ReasonArg::Superseded => Reason::Superseded,
            ReasonArg::CessationOfOperation => Reason::CessationOfOperation,
        }
    }
}

impl HolderArgs {
    /// The holder, checked against the configuration: a member of it, a subsystem of one of
    /// its members, a staff member of one.
    fn holder(&self, config: &Config) -> Result<Holder, CliError> {
        let usage = |flag: &str, reason: String| CliError::Usage(format!("--{flag}: {reason}"));
        let member_of = |flag: &str, m: &MemberId| {
            if config.member(m).is_some() {
                Ok(())
            } else {
                Err(usage(
                    flag,
                    format!("{m} is not a member in {}", config.source),
                ))
            }
        };
        if let Some(m) = &self.member {
            let id = MemberId::parse(m).map_err(|e| usage("member", e.to_string()))?;
            if id.is_subsystem() {
                return Err(usage(
                    "member",
                    format!("{id} is a subsystem: use --subsystem"),
                ));
            }
            member_of("member", &id)?;
            return Ok(Holder::Gateway(id));
        }
        if let Some(s) = &self.subsystem {
            let id = MemberId::parse(s).map_err(|e| usage("subsystem", e.to_string()))?;
            if !id.is_subsystem() {
                return Err(usage(
                    "subsystem",
                    format!("{id} is a member: use --member for its gateway certificate"),
                ));
            }
            member_of("subsystem", &id.member())?;
            return Ok(Holder::Subsystem(id));
        }
        let s = self.staff.as_deref().unwrap_or_default();
        let id = StaffId::parse(s).map_err(|e| usage("staff", e.to_string()))?;
        member_of("staff", id.member())?;
        Ok(Holder::Staff(id))
    }
}

pub fn run(config: &Config, command: PkiCommand) -> Result<ExitCode, CliError> {
    let layout = &config.federation.pki;
    match command {
        PkiCommand::Request(args) => return super::join::request(config, args),
        PkiCommand::Issue(args) => return super::join::issue(config, args),
        PkiCommand::HsmKey(args) => return super::join::hsm_key(config, args),
        PkiCommand::Init { force } => {
            let report = demo::pki::init(layout, &demo::pki_plan(config), force)?;
            for p in &report.written {
                println!("wrote {}", p.display());
            }
            // New current keys: a rotation under way is abandoned (OPERATIONS.md §6.3).
            for m in &config.members {
                for p in demo::rotate::abandon(layout, &m.id)? {
                    println!("removed {}", p.display());
                }
            }
        }
        PkiCommand::Renew { holder, new_key } => {
            let holder = holder.holder(config)?;
            let report = demo::pki::renew(layout, &holder, &config.federation.hosts, new_key)?;
            for p in &report.written {
                println!("wrote {}", p.display());
            }
        }
        PkiCommand::Revoke { holder, reason } => {
            let holder = holder.holder(config)?;
            let revoked = crl::revoke(layout, &holder, reason.into())?;
            if revoked.already {
                println!(
                    "serial {} is already revoked in {}",
                    revoked.serial,
                    revoked.crl.display()
                );
            } else {
                println!(
                    "revoked serial {} of {}: wrote {} (gateways load it when they start)",
                    revoked.serial,
                    holder.cert(layout).display(),
                    revoked.crl.display()
                );
            }
        }
        PkiCommand::Rotate(args) => crate::commands::rotate::run(config, args)?,
        PkiCommand::Crl => {
            let cas = std::iter::once(Ca::Federation)
                .chain(config.members.iter().map(|m| Ca::Member(m.id.clone())));
            for ca in cas {
                println!("wrote {}", crl::resign(layout, &ca)?.display());
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
