//! Private key files: a gateway refuses to use one that its group or others can reach.

use std::path::Path;

/// Refuses a private key or secret file that its group or others may read or write, as ssh
/// refuses a private key: whoever else can read it can sign as the member, reverse
/// subjects or open evidence. A file that does not exist passes (it is about to be made,
/// mode 0600).
pub fn check_private(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "is accessible to its group or others (mode {mode:o}): run `chmod 600 {}`",
                        path.display()
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read: {e}")),
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::check_private;

    #[test]
    fn a_key_readable_by_others_is_refused_and_0600_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        assert!(
            check_private(&path).is_ok(),
            "a missing file is about to be made"
        );
        std::fs::write(&path, b"secret").unwrap();
        for (mode, ok) in [(0o600, true), (0o400, true), (0o640, false), (0o604, false)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let checked = check_private(&path);
            assert_eq!(checked.is_ok(), ok, "mode {mode:o}: {checked:?}");
            if let Err(e) = checked {
                assert!(e.contains("chmod 600"), "{e}");
            }
        }
    }
}
