//! Row 0 of PROTOCOL.md §3.3: the manifest this exchange runs under has not expired. A
//! gateway whose manifest expired while it ran refuses every exchange with 503
//! `manifest-expired` until it adopts a current one: its grants, keys and CAs are no longer
//! the federation's word.

use contracts::Manifest;

use super::refusal::Refusal;

/// Refuses when `manifest` has expired at `now` (Unix seconds).
pub(crate) fn check_manifest(manifest: &Manifest, now: i64) -> Result<(), Refusal> {
    let doc = manifest.doc();
    if doc.expires_at <= now {
        return Err(Refusal::ManifestExpired {
            serial: doc.serial,
            expires_at: doc.expires_at,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::ProblemCode;

    #[test]
    fn an_expired_manifest_refuses_with_503_manifest_expired() {
        use crate::exchange::fixtures;
        let manifest = fixtures::manifest(&[&fixtures::key("ID:GOV:KEMLU")]);
        let expires = manifest.doc().expires_at;
        assert!(check_manifest(&manifest, expires - 1).is_ok());
        let p = check_manifest(&manifest, expires)
            .unwrap_err()
            .into_problem(None);
        assert_eq!(p.code(), Some(ProblemCode::ManifestExpired));
        assert_eq!(p.status, 503);
        assert!(p.detail.contains("expired"), "{}", p.detail);
    }
}
