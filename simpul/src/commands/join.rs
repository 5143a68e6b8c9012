//! `simpul pki request | issue | hsm-key`: a ministry joining with keys it keeps. `request`
//! runs on the ministry's machine and makes its gateway TLS key and signing key there (or
//! uses the signing key in its PKCS#11 token) with a request for the authority; `issue` runs
//! at the authority and issues the gateway certificate from the request; `hsm-key` makes
//! the signing key pair inside the token the member's configuration names.

use std::path::PathBuf;
use std::process::ExitCode;

use contracts::MemberId;
use demo::request::{self, IssuePolicy};
use gateway::config::{Config, Member};
use gateway::hsm::{self, SigningConfig};

use crate::error::CliError;

/// `simpul pki request`.
#[derive(clap::Args)]
pub struct RequestArgs {
    /// The member, e.g. ID:GOV:KEMLU.
    #[arg(long)]
    member: String,
    /// Where to write the keys and the request (default: the member's directory under
    /// federation.certs, where its gateway reads its keys).
    #[arg(long)]
    out: Option<PathBuf>,
    /// A host name or address the gateway certificate names (repeatable; default:
    /// federation.hosts).
    #[arg(long = "host", value_name = "HOST")]
    hosts: Vec<String>,
}

/// `simpul pki issue`.
#[derive(clap::Args)]
pub struct IssueArgs {
    /// The request a ministry sent (`request.json`).
    request: PathBuf,
    /// Where to write the certificate and the CA certificate for the ministry.
    #[arg(long)]
    out: PathBuf,
}

/// `simpul pki hsm-key`: prints the public JWK, and writes it where `simpul manifest sign`
/// reads it.
#[derive(clap::Args)]
pub struct HsmKeyArgs {
    /// The member whose `signing.pkcs11` names the token and the key label.
    #[arg(long)]
    member: String,
}

/// The configured member `text` names.
fn member<'a>(config: &'a Config, text: &str) -> Result<&'a Member, CliError> {
    let usage = |reason: String| CliError::Usage(format!("--member: {reason}"));
    let id = MemberId::parse(text).map_err(|e| usage(e.to_string()))?;
    if id.is_subsystem() {
        return Err(usage(format!(
            "{id} is a subsystem: a gateway belongs to a member"
        )));
    }
    config
        .member(&id)
        .ok_or_else(|| usage(format!("{id} is not a member in {}", config.source)))
}

pub fn request(config: &Config, args: RequestArgs) -> Result<ExitCode, CliError> {
    let m = member(config, &args.member)?;
    let out = args
        .out
        .unwrap_or_else(|| config.federation.pki.member_dir(&m.id));
    let hosts = if args.hosts.is_empty() {
        config.federation.hosts.clone()
    } else {
        args.hosts
    };
    let signing = match &m.signing {
        SigningConfig::File(_) => None,
        SigningConfig::Pkcs11(p) => Some(hsm::open_key(p, &m.id)?),
    };
    let done = request::request(&m.id, &hosts, &out, signing)?;
    for p in &done.written {
        println!("wrote {}", p.display());
    }
    println!(
        "send {} to the federation authority (signing key {}); the private keys stay here",
        done.request.display(),
        done.kid
    );
    Ok(ExitCode::SUCCESS)
}

pub fn issue(config: &Config, args: IssueArgs) -> Result<ExitCode, CliError> {
    let issued = request::issue(
        &config.federation.pki,
        &IssuePolicy::of(config),
        &args.request,
        &args.out,
    )?;
    for p in &issued.written {
        println!("wrote {}", p.display());
    }
    println!(
        "issued {}'s gateway certificate; its signing key {} is recorded: sign the next \
         manifest with `simpul manifest sign`, then send {} and {} to the ministry",
        issued.member,
        issued.kid,
        args.out.join("gateway.pem").display(),
        args.out.join("ca.pem").display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn hsm_key(config: &Config, args: HsmKeyArgs) -> Result<ExitCode, CliError> {
    let m = member(config, &args.member)?;
    let SigningConfig::Pkcs11(p) = &m.signing else {
        return Err(CliError::Usage(format!(
            "--member: {} has no signing.pkcs11 in {}: its signing key is a file",
            m.id, config.source
        )));
    };
    let key = hsm::generate_key(p, &m.id)?;
    let mut jwk = serde_json::to_string_pretty(key.public_jwk())
        .map_err(|e| CliError::Process(e.to_string()))?;
    jwk.push('\n');
    // Where `simpul manifest sign` reads it when the authority's PKI is on this machine (the
    // demo); a ministry sends it with `simpul pki request` instead.
    let path = config.federation.pki.signing_jwk(&m.id);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(CliError::file(dir))?;
    }
    std::fs::write(&path, &jwk).map_err(CliError::file(&path))?;
    eprintln!("wrote {}", path.display());
    print!("{jwk}");
    Ok(ExitCode::SUCCESS)
}
