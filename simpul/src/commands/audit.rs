//! `simpul audit`: the auditor's tools (docs/AUDIT.md). `export` and `prove` open a member's
//! log as its gateway does; `verify`, `check-proof` and `reconcile` work offline on files,
//! with the `audit` core alone.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use audit::SignedTreeHead;
use audit_store::AuditLog;
use clap::Subcommand;
use contracts::{MemberId, StaffId, VerifyingKey};
use gateway::config::Config;

use crate::error::CliError;
use crate::load_config;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Write a member's log as JSON lines: records and signed tree heads. Reads the store
    /// directly (the gateway may be running) and signs a fresh tree head first if the
    /// latest does not cover every record.
    Export {
        /// The member whose log to export.
        #[arg(long)]
        member: MemberId,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
        /// A manifest to carry besides the configuration's `federation.manifest` (an older
        /// one listing keys the member used before). Repeatable.
        #[arg(long = "manifest")]
        manifests: Vec<PathBuf>,
    },
    /// Verify an export offline with the member's public key, or with the federation
    /// authority's key and the manifests the export carries (the member's key history):
    /// recompute the tree, check every signed tree head. Exit 1 naming the first bad
    /// sequence number.
    Verify {
        /// The export file.
        export: PathBuf,
        #[command(flatten)]
        keys: HeadKeys,
        /// A signed tree head kept from before (a JSON file: a head as the admin listener
        /// serves it, or a proof bundle); the export must extend it. Repeatable.
        #[arg(long = "head")]
        heads: Vec<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write an inclusion proof bundle for an exchange: its records, their leaf hashes and
    /// paths, and the signed tree head they are against.
    Prove {
        /// The exchange id.
        exchange_id: String,
        /// The member whose log to prove it in.
        #[arg(long)]
        member: MemberId,
        /// Where to write it (default: standard output).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Every exchange at a member's gateway that touched one person's data (a citizen's
    /// request to the member's data-protection officer): consumer, contract, purpose, time
    /// and outcome of each, its inclusion proof checked against a tree head verified with
    /// the member's public key. Asked through the member's auditor face, as an auditor
    /// identity; the NIK is only hashed there, with the log's secret. Exit 1 if a proof fails.
    Subject {
        /// The member whose log to search.
        #[arg(long)]
        member: MemberId,
        /// The person's NIK (16 digits).
        #[arg(long)]
        nik: String,
        /// The auditor identity whose client certificate to use, e.g.
        /// auditor:ID:GOV:KEMLU:AUDIT (default: the member's first `admin.auditors`).
        #[arg(long = "as")]
        as_auditor: Option<StaffId>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What a member's gateway witnessed of its partners' logs (PROTOCOL.md §5.4): for each
    /// partner, the newest signed tree head it holds, and whether that partner's log was
    /// caught forked or shrunk, with the two heads that prove it. Reads the store directly.
    /// Exit 1 if any partner's log forked.
    Witness {
        /// The member whose gateway witnessed.
        #[arg(long)]
        member: MemberId,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check a proof bundle offline with the member's public key, or with the authority's
    /// key and manifests listing the member's keys. Exit 1 if it fails.
    CheckProof {
        /// The proof bundle file.
        proof: PathBuf,
        #[command(flatten)]
        keys: HeadKeys,
        /// A manifest listing the member's keys (with --authority-key). Repeatable.
        #[arg(long = "manifest")]
        manifests: Vec<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Compare two members' exports (a consumer's and a provider's): exchanges one side
    /// has and the other lacks, and exchanges they disagree on. Exit 1 if any.
    Reconcile {
        /// The first export.
        a: PathBuf,
        /// The second export.
        b: PathBuf,
        /// Window start, unix milliseconds (inclusive).
        #[arg(long)]
        from: Option<i64>,
        /// Window end, unix milliseconds (exclusive).
        #[arg(long)]
        to: Option<i64>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config_path: Option<&Path>, command: AuditCommand) -> Result<ExitCode, CliError> {
    match command {
        AuditCommand::Export {
            member,
            out,
            manifests,
        } => {
            let config = load_config(config_path)?;
            let manifests = export_manifests(&config, &manifests)?;
            let log = open_audit_log(&config, &member).await?;
            let covered = log.latest_tree_head().await?.map_or(0, |h| h.tree_size);
            // A tampered log is exported as it is, to be examined; it signs nothing.
            if log.tampered().is_none() && (covered < log.tree_size() || log.tree_size() == 0) {
                log.sign_tree_head().await?;
            }
            match &out {
                Some(path) => {
                    let mut file = std::fs::File::create(path).map_err(CliError::file(path))?;
                    log.export_with_manifests(&manifests, &mut file)
                        .await
                        .map_err(CliError::file(path))?;
                    file.sync_all().map_err(CliError::file(path))?;
                    eprintln!(
                        "simpul: exported {member}'s log ({} records) to {}",
                        log.tree_size(),
                        path.display()
                    );
                }
                None => {
                    log.export_with_manifests(&manifests, &mut std::io::stdout())
                        .await?
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Subject {
            member,
            nik,
            as_auditor,
            json,
        } => {
            let config = load_config(config_path)?;
            audit_subject(&config, &member, &nik, as_auditor, json).await
        }
        AuditCommand::Verify {
            export,
            keys,
            heads,
            json,
        } => audit_verify(&export, &keys, &heads, json),
        AuditCommand::Prove {
            exchange_id,
            member,
            out,
        } => {
            let config = load_config(config_path)?;
            let log = open_audit_log(&config, &member).await?;
            let bundle = log.prove(&exchange_id).await?;
            let text = to_pretty(&bundle)?;
            match &out {
                Some(path) => {
                    std::fs::write(path, format!("{text}\n")).map_err(CliError::file(path))?;
                    eprintln!(
                        "simpul: wrote the proof of {} record(s) of {exchange_id} against tree head {} to {}",
                        bundle.proofs.len(),
                        bundle.tree_head.tree_size,
                        path.display()
                    );
                }
                None => println!("{text}"),
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCommand::Witness { member, json } => {
            let config = load_config(config_path)?;
            let log = open_audit_log(&config, &member).await?;
            audit_witness(&log, json).await
        }
        AuditCommand::CheckProof {
            proof,
            keys,
            manifests,
            json,
        } => audit_check_proof(&proof, &keys, &manifests, json),
        AuditCommand::Reconcile {
            a,
            b,
            from,
            to,
            json,
        } => audit_reconcile(&a, &b, from, to, json),
    }
}

/// Opens `member`'s audit log as its gateway does: its configured store, its signing key,
/// its pinned head. A log found tampered with still opens, to be exported and examined,
/// with a warning; it signs nothing.
async fn open_audit_log(config: &Config, member: &MemberId) -> Result<AuditLog, CliError> {
    let mc = config.member(member).ok_or_else(|| {
        CliError::Usage(format!(
            "--member {member}: not a member in {}",
            config.source
        ))
    })?;
    let audit = mc.audit.clone();
    // Reading a log must not create an empty one where a wrong configuration points.
    if let Some(file) = audit.sqlite_file(member, &config.base_dir)
        && !file.is_file()
    {
        return Err(CliError::Usage(format!(
            "{member}'s audit log {} does not exist (has its gateway run with {}?)",
            file.display(),
            config.source
        )));
    }
    // The key file, or the member's PKCS#11 token, as its gateway uses it.
    let (key, _) = gateway::hsm::member_signing_key(&mc.signing, member)?;
    let log = AuditLog::inspect(&audit, &config.base_dir, member, Arc::new(key)).await?;
    if let Some(reason) = log.tampered() {
        eprintln!("simpul: warning: {member}'s audit log was tampered with: {reason}");
    }
    Ok(log)
}

/// Reads a public JWK file.
fn read_verifying_key(path: &Path) -> Result<VerifyingKey, CliError> {
    let bytes = std::fs::read(path).map_err(CliError::file(path))?;
    // The commonest slip: the member's private key file beside the public one.
    if bytes.starts_with(b"-----BEGIN") {
        let jwk = path.with_extension("jwk");
        return Err(CliError::file(path)(format!(
            "a PEM file, not a public JWK: pass the member's public key, e.g. {} (never the private key)",
            if jwk.exists() {
                jwk.display().to_string()
            } else {
                "certs/<MEMBER>/signing.jwk".to_owned()
            }
        )));
    }
    let jwk = contracts::json::value_from_slice(&bytes)
        .map_err(|e| CliError::file(path)(format!("not a JWK: {e}")))?;
    VerifyingKey::from_jwk(&jwk).map_err(CliError::file(path))
}

/// The key `member`'s head is checked with: the member key its `kid` names in the
/// configuration's manifest (verified with the pinned authority key), inside the key's
/// window at the head's timestamp — so a head signed before a rotation still verifies;
/// without a readable manifest, the member's current public key (`signing.jwk`).
fn head_key(
    config: &Config,
    member: &MemberId,
    head: &SignedTreeHead,
) -> Result<VerifyingKey, String> {
    let manifest = gateway::assemble::load_authority_key(&config.federation.authority_key)
        .ok()
        .and_then(|authority| {
            let text = std::fs::read_to_string(&config.federation.manifest).ok()?;
            contracts::Manifest::verify(&text, &authority, contracts::unix_now()).ok()
        });
    let Some(manifest) = manifest else {
        return read_verifying_key(&config.federation.pki.signing_jwk(member))
            .map_err(|e| e.to_string());
    };
    let kid = contracts::ParsedJws::parse(&head.jws, audit::TREE_HEAD_TYP)
        .map_err(|e| e.to_string())?
        .header
        .kid
        .unwrap_or_default();
    let (owner, key) = manifest
        .key_at(&kid, head.timestamp.div_euclid(1000))
        .map_err(|e| e.to_string())?;
    if owner != member {
        return Err(format!("signed by {owner}'s key `{kid}`"));
    }
    Ok(key.clone())
}

fn open_export(path: &Path) -> Result<BufReader<File>, CliError> {
    File::open(path)
        .map(BufReader::new)
        .map_err(CliError::file(path))
}

fn to_pretty(value: &impl serde::Serialize) -> Result<String, CliError> {
    serde_json::to_string_pretty(value).map_err(|e| CliError::Process(format!("JSON: {e}")))
}

fn print_json(value: &serde_json::Value) -> Result<(), CliError> {
    println!("{}", to_pretty(value)?);
    Ok(())
}

/// Reads a kept tree head: a head object, or any object with one under `tree_head` (a
/// proof bundle).
fn read_tree_head(path: &Path) -> Result<SignedTreeHead, CliError> {
    let bytes = std::fs::read(path).map_err(CliError::file(path))?;
    let mut value = contracts::json::value_from_slice(&bytes)
        .map_err(|e| CliError::file(path)(format!("not JSON: {e}")))?;
    if let Some(head) = value.get_mut("tree_head") {
        value = head.take();
    }
    serde_json::from_value(value)
        .map_err(|e| CliError::file(path)(format!("not a signed tree head: {e}")))
}

/// The manifests an export carries: the configuration's `federation.manifest` (when it
/// exists) and `extra`, each read as text.
fn export_manifests(config: &Config, extra: &[PathBuf]) -> Result<Vec<String>, CliError> {
    let mut out = Vec::new();
    let own = &config.federation.manifest;
    match std::fs::read_to_string(own) {
        Ok(text) => out.push(text.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!(
            "simpul: warning: {} does not exist: the export carries no manifest of the configuration",
            own.display()
        ),
        Err(e) => return Err(CliError::file(own)(e)),
    }
    for path in extra {
        let text = std::fs::read_to_string(path).map_err(CliError::file(path))?;
        let text = text.trim();
        if !text.starts_with("ey") || text.split('.').count() != 3 {
            return Err(CliError::file(path)(
                "--manifest: not a manifest (a compact JWS as `simpul manifest sign` writes it)",
            ));
        }
        if !out.iter().any(|m| m == text) {
            out.push(text.to_owned());
        }
    }
    Ok(out)
}

/// What a tree head is checked with offline: the member's own key, or the federation
/// authority's keys and the manifests that list the member's keys with their windows.
#[derive(clap::Args)]
pub struct HeadKeys {
    /// The member's public signing key (a JWK file, e.g. certs/<MEMBER>/signing.jwk):
    /// every head must be signed by it.
    #[arg(
        long,
        required_unless_present = "authority_keys",
        conflicts_with = "authority_keys"
    )]
    key: Option<PathBuf>,
    /// The federation authority's public key (a JWK file, e.g. certs/authority.jwk): each
    /// head is checked with the member key its kid names in the manifests (the export's, or
    /// --manifest), within the key's window. Repeatable (an authority that re-keyed).
    #[arg(long = "authority-key")]
    authority_keys: Vec<PathBuf>,
}

impl HeadKeys {
    /// The member's key, if given, and the authority's keys.
    fn read(&self) -> Result<(Option<VerifyingKey>, Vec<VerifyingKey>), CliError> {
        let key = self.key.as_deref().map(read_verifying_key).transpose()?;
        let authorities = self
            .authority_keys
            .iter()
            .map(|p| read_verifying_key(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((key, authorities))
    }
}

fn audit_verify(
    export: &Path,
    keys: &HeadKeys,
    heads: &[PathBuf],
    json: bool,
) -> Result<ExitCode, CliError> {
    let (key, authorities) = keys.read()?;
    let trust = match &key {
        Some(key) => audit::Trust::Key(key),
        None => audit::Trust::Authority(&authorities),
    };
    let kept = heads
        .iter()
        .map(|p| read_tree_head(p))
        .collect::<Result<Vec<_>, _>>()?;
    let reader = open_export(export)?;
    let result = audit::verify_export_trusting(reader, trust, &kept);
    if json {
        print_json(&match &result {
            Ok(report) => serde_json::json!({"ok": true, "report": report}),
            Err(failure) => serde_json::json!({"ok": false, "failure": failure}),
        })?;
    } else {
        match &result {
            Ok(r) => {
                println!(
                    "{}: verified: {}'s log, {} records, {} signed tree heads, signed by {}",
                    export.display(),
                    r.log,
                    r.records,
                    r.tree_heads,
                    match (&key, r.signed_by.is_empty()) {
                        (Some(key), _) => key.kid().to_owned(),
                        (None, true) => "no key (no heads)".to_owned(),
                        (None, false) => r.signed_by.join(", "),
                    }
                );
                if key.is_none() {
                    println!(
                        "  keys from {} manifest(s) signed by {}",
                        r.manifests,
                        authorities
                            .iter()
                            .map(|k| k.kid())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                if let Some(root) = &r.verified_root {
                    println!("  tree size {} has root {root}", r.verified_size);
                }
                if !kept.is_empty() {
                    println!("  and it extends the {} kept tree head(s)", kept.len());
                }
                if r.unsigned_records > 0 {
                    println!(
                        "  warning: the last {} record(s) are after the last signed tree head and not covered by a signature",
                        r.unsigned_records
                    );
                }
            }
            Err(f) => {
                println!("{}: FAILED: {f}", export.display());
                if let Some(seq) = f.first_bad_seq {
                    println!("first bad seq: {seq}");
                }
            }
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn audit_check_proof(
    proof: &Path,
    keys: &HeadKeys,
    manifests: &[PathBuf],
    json: bool,
) -> Result<ExitCode, CliError> {
    let (key, authorities) = keys.read()?;
    if key.is_none() && manifests.is_empty() {
        return Err(CliError::Usage(
            "--manifest: with --authority-key, give the manifest(s) listing the member's keys (e.g. data/manifest.jws)".into(),
        ));
    }
    let manifest_texts = manifests
        .iter()
        .map(|p| std::fs::read_to_string(p).map_err(CliError::file(p)))
        .collect::<Result<Vec<_>, _>>()?;
    let text = std::fs::read(proof).map_err(CliError::file(proof))?;
    let result = contracts::json::from_slice::<audit::ProofBundle>(&text)
        .map_err(|e| e.to_string())
        .and_then(|bundle| {
            let key = match &key {
                Some(key) => key.clone(),
                None => {
                    let mut history = audit::KeyHistory::new(&bundle.log);
                    for (path, text) in manifests.iter().zip(&manifest_texts) {
                        history
                            .add(text, &authorities)
                            .map_err(|e| format!("{}: {e}", path.display()))?;
                    }
                    history.key_for(&bundle.tree_head)?.clone()
                }
            };
            audit::check_proof_bundle(&bundle, &key)
                .map(|report| (report, key))
                .map_err(|e| e.to_string())
        });
    if json {
        print_json(&match &result {
            Ok((report, key)) => {
                serde_json::json!({"ok": true, "report": report, "signed_by": key.kid()})
            }
            Err(failure) => serde_json::json!({"ok": false, "failure": failure.to_string()}),
        })?;
    } else {
        match &result {
            Ok((r, key)) => {
                println!(
                    "{}: valid: exchange {} is in {}'s log, signed by {} at tree size {} (root {}, signed {})",
                    proof.display(),
                    r.exchange_id,
                    r.log,
                    key.kid(),
                    r.tree_size,
                    r.root_hash,
                    format_ms(r.timestamp)
                );
                for rec in &r.records {
                    println!("  {}", describe_record(rec));
                }
            }
            Err(f) => println!("{}: FAILED: {f}", proof.display()),
        }
    }
    Ok(if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn audit_reconcile(
    a: &Path,
    b: &Path,
    from: Option<i64>,
    to: Option<i64>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let report = audit::reconcile(open_export(a)?, open_export(b)?, from, to).map_err(|e| {
        let (which, path) = match &e {
            audit::ReconcileError::Read { which: 'B', .. } => ("B", b),
            _ => ("A", a),
        };
        CliError::Usage(format!("{which} = {}: {e}", path.display()))
    })?;
    if json {
        println!("{}", to_pretty(&report)?);
    } else {
        let window = match (from, to) {
            (None, None) => "all records".to_owned(),
            (f, t) => format!(
                "records from {} to {}",
                f.map_or_else(|| "the start".into(), format_ms),
                t.map_or_else(|| "the end".into(), format_ms)
            ),
        };
        println!(
            "A = {} ({}), B = {} ({}), {window}",
            a.display(),
            report.a_log,
            b.display(),
            report.b_log
        );
        println!("{} exchange(s) agree", report.matched);
        for (name, log, list) in [
            ("A", &report.a_log, &report.only_in_a),
            ("B", &report.b_log, &report.only_in_b),
        ] {
            if !list.is_empty() {
                println!(
                    "{} exchange(s) only in {name} ({log}), missing from the other log:",
                    list.len()
                );
                for r in list {
                    println!("  {}", describe_record(r));
                }
            }
        }
        if !report.disagreements.is_empty() {
            println!(
                "{} exchange(s) the two logs disagree on:",
                report.disagreements.len()
            );
            for d in &report.disagreements {
                println!("  {} differs in {}", d.exchange_id, d.fields.join(", "));
                println!("    A: {}", describe_record(&d.a));
                println!("    B: {}", describe_record(&d.b));
            }
        }
        if report.is_clean() {
            println!("the logs agree");
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn describe_record(r: &audit::AuditRecord) -> String {
    format!(
        "seq {} {} {} {} → {} {}/{} for {}: {} (request {})",
        r.seq,
        format_ms(r.ts),
        if r.exchange_id.is_empty() {
            "(no exchange id)"
        } else {
            r.exchange_id.as_str()
        },
        r.consumer,
        r.provider,
        r.contract,
        r.version,
        r.purpose,
        r.outcome,
        r.request_hash.as_deref().unwrap_or("none")
    )
}

/// `simpul audit witness`: each partner's newest head held, and the forks caught.
async fn audit_witness(log: &AuditLog, json: bool) -> Result<ExitCode, CliError> {
    let held = log.witnessed().await?;
    let forks = log.forks().await?;
    let mut members: Vec<&str> = held.iter().map(|w| w.member.as_str()).collect();
    members.extend(forks.iter().map(|f| f.member.as_str()));
    members.sort_unstable();
    members.dedup();
    let partners: Vec<serde_json::Value> = members
        .iter()
        .map(|m| {
            let head = held.iter().find(|w| w.member == *m);
            let caught: Vec<_> = forks.iter().filter(|f| f.member == *m).collect();
            serde_json::json!({
                "member": m,
                "tree_head": head.map(|w| &w.head),
                "received_at": head.map(|w| w.received_at),
                "consistent": caught.is_empty(),
                "forks": caught,
            })
        })
        .collect();
    if json {
        print_json(&serde_json::json!({ "partners": partners }))?;
    } else if partners.is_empty() {
        println!("no partner's tree head received yet");
    }
    if !json {
        for p in &partners {
            let member = p["member"].as_str().unwrap_or_default();
            let head = match (
                p["tree_head"]["tree_size"].as_u64(),
                p["tree_head"]["timestamp"].as_i64(),
            ) {
                (Some(size), Some(ts)) => format!(
                    "tree size {size}, signed {}, received {}",
                    format_ms(ts),
                    format_ms(p["received_at"].as_i64().unwrap_or_default())
                ),
                _ => "no head held".to_owned(),
            };
            if p["consistent"] == true {
                println!("{member}  {head}  consistent");
            } else {
                println!("{member}  {head}  FORKED");
                for f in forks.iter().filter(|f| f.member == member) {
                    println!("  caught {}: {}", format_ms(f.detected_at), f.reason);
                    println!("    held:    {}", f.held);
                    println!("    offered: {}", f.offered);
                }
            }
        }
    }
    Ok(if forks.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
fn format_ms(ms: i64) -> String {
    let seconds = contracts::utc(ms.div_euclid(1000));
    format!(
        "{}.{:03}Z",
        seconds.trim_end_matches('Z'),
        ms.rem_euclid(1000)
    )
}

/// `simpul audit subject`: asks the member's auditor face, then checks every proof here.
async fn audit_subject(
    config: &Config,
    member: &MemberId,
    nik: &str,
    as_auditor: Option<StaffId>,
    json: bool,
) -> Result<ExitCode, CliError> {
    let admin = super::admin_listener(config, member)?;
    let identity = as_auditor
        .or_else(|| admin.auditors.first().cloned())
        .ok_or_else(|| CliError::Usage(format!("{member}'s admin.auditors is empty: pass --as")))?;
    let client = super::staff_client(config, member, &identity, 64 << 20)?;
    let body = serde_json::to_vec(&serde_json::json!({ "nik": nik }))
        .map_err(|e| CliError::Process(format!("subject request: {e}")))?;
    let url = format!("https://localhost:{}/audit/subject", admin.listen.port());
    let reply = super::post_json(&client, url, body, std::time::Duration::from_secs(30)).await?;
    if !reply.status.is_success() {
        eprintln!("simpul: {}", String::from_utf8_lossy(&reply.body));
        return Ok(super::exit_code(&reply));
    }
    #[derive(serde::Deserialize)]
    struct History {
        tree_head: Option<SignedTreeHead>,
        proofs: Vec<audit::InclusionProof>,
    }
    let history: History = serde_json::from_slice(&reply.body).map_err(|e| {
        CliError::Process(format!("{member}'s answer is not a subject history: {e}"))
    })?;
    // Nothing is taken on the gateway's word: the head must verify with the member's key and
    // each record must be in the tree it signs.
    let mut failures = Vec::new();
    let root = match &history.tree_head {
        Some(head) => match head_key(config, member, head)
            .and_then(|key| audit::verify_tree_head(head, &key).map_err(|e| e.to_string()))
        {
            Ok((_, root)) => Some(root),
            Err(e) => {
                failures.push(format!("the tree head does not verify: {e}"));
                None
            }
        },
        None => None,
    };
    for p in &history.proofs {
        let checked = match &root {
            Some(root) => audit::check_inclusion_proof(p, root).map_err(|e| e.to_string()),
            None => Err("no verified tree head".to_owned()),
        };
        if let Err(e) = checked {
            failures.push(format!("seq {}: {e}", p.seq));
        }
    }
    if json {
        print_json(&serde_json::json!({
            "ok": failures.is_empty(),
            "tree_head": history.tree_head,
            "records": history.proofs.iter().map(|p| &p.record).collect::<Vec<_>>(),
            "failures": failures,
        }))?;
    } else {
        println!(
            "{member}: {} exchange record(s) about this person{}",
            history.proofs.len(),
            history
                .tree_head
                .as_ref()
                .map(|h| format!(
                    ", proven against the tree head of size {} signed by {}",
                    h.tree_size,
                    contracts::ParsedJws::parse(&h.jws, audit::TREE_HEAD_TYP)
                        .ok()
                        .and_then(|p| p.header.kid)
                        .unwrap_or_default()
                ))
                .unwrap_or_default()
        );
        for p in &history.proofs {
            let r = &p.record;
            println!(
                "  seq {:<6} {} {:<8} {} -> {}  {} v{}  purpose {}  {}  exchange {}",
                r.seq,
                r.ts,
                r.role.as_str(),
                r.consumer,
                r.provider,
                r.contract,
                r.version,
                r.purpose,
                r.outcome,
                r.exchange_id
            );
        }
        for f in &failures {
            println!("  FAILED: {f}");
        }
    }
    Ok(if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod format_tests {
    #[test]
    fn milliseconds_are_a_utc_time_with_three_decimals() {
        assert_eq!(
            super::format_ms(951_782_400_123),
            "2000-02-29T00:00:00.123Z"
        );
        assert_eq!(super::format_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
