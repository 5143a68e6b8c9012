//! `members.signing`: the key file by default, or a key pair in a PKCS#11 token whose PIN is
//! read from a 0600 file or an environment variable — never from the configuration.

use std::path::Path;

use contracts::MemberId;

use super::raw::RawSigning;
use super::resolve::Refuse;
use super::{ConfigError, Rejection};
use crate::hsm::{PinSource, Pkcs11Config, SigningConfig};
use crate::layout::PkiLayout;

/// The member's signing key's place, validated.
pub(super) fn resolve(
    refuse: &Refuse,
    at: &str,
    member: &MemberId,
    raw: Option<RawSigning>,
    base_dir: &Path,
    pki: &PkiLayout,
) -> Result<SigningConfig, ConfigError> {
    let Some(p) = raw.and_then(|s| s.pkcs11) else {
        return Ok(SigningConfig::File(pki.signing_key(member)));
    };
    let at = format!("{at}.signing.pkcs11");
    if p.pin.is_some() {
        return Err(refuse.at(
            Rejection::InlineSecret,
            format!("{at}.pin"),
            "a PIN is never written into the configuration: use pin_file (a 0600 file) or \
             pin_env (an environment variable)",
        ));
    }
    for (field, value) in [("token", &p.token), ("key", &p.key)] {
        if value.trim().is_empty() {
            return Err(refuse.at(
                Rejection::Missing,
                format!("{at}.{field}"),
                "the label must not be empty",
            ));
        }
    }
    let pin = match (p.pin_file, p.pin_env) {
        (Some(file), None) => PinSource::File(base_dir.join(file)),
        (None, Some(var)) if !var.is_empty() && !var.contains(['=', '\0']) => PinSource::Env(var),
        (None, Some(_)) => {
            return Err(refuse.at(
                Rejection::Missing,
                format!("{at}.pin_env"),
                "must name an environment variable",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(refuse.at(
                Rejection::Conflict,
                format!("{at}.pin_env"),
                "give the PIN one way: pin_file or pin_env, not both",
            ));
        }
        (None, None) => {
            return Err(refuse.at(
                Rejection::Missing,
                format!("{at}.pin_file"),
                "the token's PIN is needed: pin_file (a 0600 file) or pin_env (an environment \
                 variable)",
            ));
        }
    };
    Ok(SigningConfig::Pkcs11(Pkcs11Config {
        module: base_dir.join(p.module),
        token: p.token,
        key: p.key,
        pin,
    }))
}
