//! The manifest: it verifies against the pinned authority key, has not expired (a warning
//! within `federation.expiry_warning_days`), is not older than the serial held beside it and
//! in the audit store, and fits this member as the gateway checks at start-up
//! ([`crate::snapshot::check_fit`]): this federation's, listing this member with its
//! signing key, pinning the catalog's digests, listing what it provides.

use contracts::{Manifest, SigningKey};

use super::{Check, Context, Finding, Verdict, days};
use crate::assemble::StartError;
use crate::snapshot::Sources;

/// The manifest whose signature verifies (expired or not: the peers and the CAs are still
/// read from it), with its findings.
pub(super) fn check(
    cx: &Context<'_>,
    sources: Result<&Sources, &StartError>,
    signing: Result<&(SigningKey, String), &StartError>,
    out: &mut Vec<Finding>,
) -> Option<Manifest> {
    let path = cx.config.federation.manifest.display().to_string();
    let fail = |message: String| Finding::new(Check::Manifest, &path, Verdict::Fail, message);
    let src = match sources {
        Ok(src) => src,
        Err(e) => {
            out.push(Finding::new(
                Check::Manifest,
                cx.config.federation.authority_key.display(),
                Verdict::Fail,
                format!(
                    "the pinned authority key cannot be used ({e}): get the authority's public \
                     JWK over a channel you trust (OPERATIONS.md §4.1)"
                ),
            ));
            return None;
        }
    };
    let text = match std::fs::read_to_string(&src.manifest) {
        Ok(t) => t,
        Err(e) => {
            out.push(fail(format!(
                "cannot read: {e}: put the authority's signed manifest here"
            )));
            return None;
        }
    };
    let manifest = match Manifest::verify_any_time(&text, &src.authority) {
        Ok(m) => m,
        Err(e) => {
            out.push(fail(format!(
                "does not verify against the pinned authority key {} ({e}): get the \
                 authority's current manifest",
                src.authority.kid()
            )));
            return None;
        }
    };
    let doc = manifest.doc();
    let serial = doc.serial;
    let mut problems = Vec::new();
    let left = doc.expires_at.saturating_sub(cx.now);
    if left <= 0 {
        problems.push(fail(format!(
            "serial {serial} expired at {}: every exchange is refused (manifest-expired) and \
             the gateway does not start until the authority's next manifest is in place",
            contracts::utc(doc.expires_at)
        )));
    } else if left.unsigned_abs() < src.expiry_warning.as_secs() {
        problems.push(Finding::new(
            Check::Manifest,
            &path,
            Verdict::Warn,
            format!(
                "serial {serial} expires at {}, in {} days: the authority must publish the \
                 next one before then",
                contracts::utc(doc.expires_at),
                days(left)
            ),
        ));
    }
    match crate::snapshot::read_serial_file(&src.serial_file) {
        Ok(Some(held)) if held > serial => problems.push(fail(format!(
            "serial {serial} is older than the serial {held} held in {}: the gateway refuses \
             it as a rollback; get the authority's current manifest",
            src.serial_file.display()
        ))),
        Ok(_) => {}
        Err(e) => problems.push(Finding::new(
            Check::Manifest,
            src.serial_file.display(),
            Verdict::Fail,
            match e {
                StartError::File { reason, .. } => reason,
                other => other.to_string(),
            },
        )),
    }
    match signing {
        Ok((key, _)) => {
            if let Err(e) =
                crate::snapshot::check_fit(src, &cx.config.catalog, &manifest, key.kid())
            {
                problems.push(fail(e.to_string()));
            }
        }
        Err(e) => problems.push(Finding::new(
            Check::Manifest,
            &src.signing,
            Verdict::Fail,
            format!(
                "the signing key cannot be read, so the manifest cannot be matched with it: {e}"
            ),
        )),
    }
    if problems.is_empty() {
        let kid = signing.map(|(k, _)| k.kid().to_owned()).unwrap_or_default();
        out.push(Finding::new(
            Check::Manifest,
            &path,
            Verdict::Ok,
            format!(
                "serial {serial}, signed by {}, valid until {} ({} days); lists {} with its \
                 signing key {kid}",
                src.authority.kid(),
                contracts::utc(doc.expires_at),
                days(left),
                src.member
            ),
        ));
    }
    out.extend(problems);
    Some(manifest)
}

/// The serial the audit store holds must not be above the manifest's (a rollback).
pub(super) fn check_store_serial(
    cx: &Context<'_>,
    manifest: &Manifest,
    held: u64,
    out: &mut Vec<Finding>,
) {
    let serial = manifest.doc().serial;
    if held > serial {
        out.push(Finding::new(
            Check::Manifest,
            cx.config.federation.manifest.display(),
            Verdict::Fail,
            format!(
                "serial {serial} is older than the serial {held} the audit store holds: the \
                 gateway refuses it as a rollback; get the authority's current manifest"
            ),
        ));
    }
}
