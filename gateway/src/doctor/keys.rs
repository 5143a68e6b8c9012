//! Private key and secret files: the gateway's TLS key, its signing key (or the PIN file of
//! its PKCS#11 token), the audit log's subject secret and evidence key. Each must be
//! readable by the user running the check and by nobody else: a mode that gives its group
//! or others any access fails (the gateway refuses to start on it), an owner other than the
//! user running the check is warned about (run the check as the gateway's service user).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{Check, Context, Finding, Verdict};
use crate::hsm::{PinSource, SigningConfig};

/// What to say of a file that does not exist.
#[derive(Clone, Copy)]
enum IfMissing {
    /// The gateway cannot start without it.
    Fail,
    /// The gateway makes it at its first start.
    Made,
}

pub(super) fn check(cx: &Context<'_>, out: &mut Vec<Finding>) {
    let layout = &cx.config.federation.pki;
    let member = &cx.member.id;
    let mut files: Vec<(PathBuf, IfMissing)> = vec![(layout.gateway_key(member), IfMissing::Fail)];
    match &cx.member.signing {
        SigningConfig::File(path) => files.push((path.clone(), IfMissing::Fail)),
        SigningConfig::Pkcs11(p) => {
            if let PinSource::File(pin) = &p.pin {
                files.push((pin.clone(), IfMissing::Fail));
            }
        }
    }
    let audit = &cx.member.audit;
    for file in [&audit.secret_file, &audit.evidence_key_file]
        .into_iter()
        .flatten()
    {
        files.push((cx.config.resolve(Path::new(file)), IfMissing::Made));
    }
    let euid = rustix::process::geteuid().as_raw();
    for (path, missing) in files {
        out.push(private_file(&path, missing, euid));
    }
}

/// One private file: it exists, nobody but its owner may reach it, its owner is `euid`, and
/// `euid` can read it.
fn private_file(path: &Path, missing: IfMissing, euid: u32) -> Finding {
    let finding = |verdict, message| Finding::new(Check::Key, path.display(), verdict, message);
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return match missing {
                IfMissing::Fail => finding(
                    Verdict::Fail,
                    "missing: the gateway does not start without it".into(),
                ),
                IfMissing::Made => finding(
                    Verdict::Warn,
                    "missing: the gateway makes a new one at its next start, and what the \
                     old one sealed or keyed cannot be matched or read again; restore it if \
                     this gateway has run before"
                        .into(),
                ),
            };
        }
        Err(e) => return finding(Verdict::Fail, format!("cannot be examined: {e}")),
    };
    let mode = meta.permissions().mode() & 0o777;
    // The gateway's own rule (`contracts::keyfile`), so the two never disagree.
    if let Err(reason) = contracts::keyfile::check_private(path) {
        return finding(Verdict::Fail, reason);
    }
    if let Err(e) = std::fs::File::open(path) {
        return finding(
            Verdict::Fail,
            format!(
                "cannot be read by uid {euid}: {e}: run the gateway (and this check) as its owner"
            ),
        );
    }
    if meta.uid() != euid {
        return finding(
            Verdict::Warn,
            format!(
                "owned by uid {}, not by uid {euid} running this check: run it as the \
                 gateway's service user, or `chown` the file to that user",
                meta.uid()
            ),
        );
    }
    finding(Verdict::Ok, format!("mode {mode:o}, owned by uid {euid}"))
}
