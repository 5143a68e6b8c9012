//! Evidence sealed at rest: each signed envelope kept as evidence is encrypted with
//! AES-256-GCM (aws-lc-rs) under a key of its own, derived with HKDF-SHA256 from the
//! member's evidence key and 16 random bytes stored beside the ciphertext — so no key
//! seals more than one message and the GCM nonce bound is never approached. The
//! associated data binds each ciphertext to its log, exchange and side: moved to another
//! record it no longer opens. The evidence key lives outside the store (by default next to
//! the member's signing key); a copy of the database alone holds no envelope in clear.
//!
//! Stored form: `enc1.<salt>.<ciphertext‖tag>`, both base64url.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::hkdf;
use contracts::canonical::b64url;

/// The prefix of a sealed value.
const SEALED: &str = "enc1.";

/// The member's evidence key.
pub(crate) struct EvidenceKey {
    prk: hkdf::Prk,
}

/// Which envelope of an exchange a sealed value is.
#[derive(Clone, Copy)]
pub(crate) enum Side {
    Request,
    Response,
}

impl Side {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Side::Request => "request",
            Side::Response => "response",
        }
    }
}

/// Why a sealed value did not open.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SealError {
    #[error("no randomness for a salt")]
    Random,
    #[error("not a sealed value")]
    Format,
    #[error("does not open with this evidence key (another key, or altered)")]
    Open,
}

impl EvidenceKey {
    /// The key from the secret file's bytes (at least 32).
    pub(crate) fn new(secret: &[u8]) -> EvidenceKey {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"simpul audit evidence v1");
        EvidenceKey {
            prk: salt.extract(secret),
        }
    }

    fn message_key(&self, salt: &[u8]) -> Result<LessSafeKey, SealError> {
        let info = [salt];
        let okm = self
            .prk
            .expand(&info, &AES_256_GCM)
            .map_err(|_| SealError::Format)?;
        Ok(LessSafeKey::new(UnboundKey::from(okm)))
    }

    fn aad(log: &str, exchange_id: &str, side: Side) -> Vec<u8> {
        format!("{log}\n{exchange_id}\n{}", side.as_str()).into_bytes()
    }

    /// Seals `plain`, bound to `log`, `exchange_id` and `side`.
    pub(crate) fn seal(
        &self,
        log: &str,
        exchange_id: &str,
        side: Side,
        plain: &str,
    ) -> Result<String, SealError> {
        let mut salt = [0u8; 16];
        aws_lc_rs::rand::fill(&mut salt).map_err(|_| SealError::Random)?;
        let key = self.message_key(&salt)?;
        let mut data = plain.as_bytes().to_vec();
        // One key per message: the all-zero nonce is used once per key.
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key([0; 12]),
            Aad::from(Self::aad(log, exchange_id, side)),
            &mut data,
        )
        .map_err(|_| SealError::Format)?;
        Ok(format!("{SEALED}{}.{}", b64url(&salt), b64url(&data)))
    }

    /// Opens a value [`EvidenceKey::seal`] made for the same `log`, `exchange_id` and `side`.
    pub(crate) fn open(
        &self,
        log: &str,
        exchange_id: &str,
        side: Side,
        sealed: &str,
    ) -> Result<String, SealError> {
        let rest = sealed.strip_prefix(SEALED).ok_or(SealError::Format)?;
        let (salt, data) = rest.split_once('.').ok_or(SealError::Format)?;
        let salt = contracts::canonical::b64url_decode(salt).ok_or(SealError::Format)?;
        let mut data = contracts::canonical::b64url_decode(data).ok_or(SealError::Format)?;
        let key = self.message_key(&salt)?;
        let plain = key
            .open_in_place(
                Nonce::assume_unique_for_key([0; 12]),
                Aad::from(Self::aad(log, exchange_id, side)),
                &mut data,
            )
            .map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open)
    }

    /// Whether a stored value is sealed (evidence kept before sealing was introduced is not).
    pub(crate) fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_envelope_opens_only_where_it_was_sealed() {
        let key = EvidenceKey::new(&[7; 32]);
        let sealed = key
            .seal(
                "ID:GOV:KEMLU",
                "x1",
                Side::Request,
                "eyJhbGciOi.3171011701900001",
            )
            .unwrap();
        assert!(EvidenceKey::is_sealed(&sealed));
        assert!(!sealed.contains("3171011701900001"));
        assert_eq!(
            key.open("ID:GOV:KEMLU", "x1", Side::Request, &sealed)
                .unwrap(),
            "eyJhbGciOi.3171011701900001"
        );
        for (log, id, side) in [
            ("ID:GOV:DUKCAPIL", "x1", Side::Request),
            ("ID:GOV:KEMLU", "x2", Side::Request),
            ("ID:GOV:KEMLU", "x1", Side::Response),
        ] {
            assert!(matches!(
                key.open(log, id, side, &sealed),
                Err(SealError::Open)
            ));
        }
        let other = EvidenceKey::new(&[8; 32]);
        assert!(matches!(
            other.open("ID:GOV:KEMLU", "x1", Side::Request, &sealed),
            Err(SealError::Open)
        ));
        assert!(matches!(
            key.open("ID:GOV:KEMLU", "x1", Side::Request, "plain"),
            Err(SealError::Format)
        ));
    }

    #[test]
    fn the_same_envelope_seals_differently_each_time() {
        let key = EvidenceKey::new(&[7; 32]);
        let a = key.seal("L", "x", Side::Request, "same").unwrap();
        let b = key.seal("L", "x", Side::Request, "same").unwrap();
        assert_ne!(a, b);
    }
}
