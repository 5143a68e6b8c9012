//! Compact JWS (RFC 7515) with the two algorithms the protocol allows, ES256 and EdDSA.
//!
//! Parsing and checking the protected header is done here, by hand, before any key is
//! touched: `alg` is matched against an allow-list (so `none` and every HMAC are refused
//! whatever a library would do with them), and the signature is then checked over the exact
//! bytes that were received.
//!
//! Signing and verifying, once per envelope, run on aws-lc-rs (already linked for rustls,
//! about 30 % faster than OpenSSL here: docs/BENCHMARKS.md), with each key prepared once
//! when it is read. josekit stays the JWS implementation of record: it reads PEM and JWK
//! keys (so a key is refused for the reasons it always was) and makes new ones, and the
//! tests hold each side to verifying the other's signatures.

use std::fmt;

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, ParsedPublicKey, Signature, VerificationAlgorithm,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use josekit::jwk::{Jwk, KeyPair};
use josekit::jws::{ES256, EdDSA};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::canonical::{b64url, b64url_decode, sha256};

/// The signature algorithms a Simpul envelope may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256, the default.
    ES256,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// The `alg` header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::ES256 => "ES256",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// The allow-list: any other `alg` is refused.
    pub fn from_header(alg: &str) -> Option<Algorithm> {
        match alg {
            "ES256" => Some(Algorithm::ES256),
            "EdDSA" => Some(Algorithm::EdDSA),
            _ => None,
        }
    }
}

/// Why a JWS was refused or a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JwsError {
    /// Not three base64url parts, or a header or payload that is not JSON.
    #[error("not a compact JWS: {0}")]
    Malformed(&'static str),
    /// `alg` missing or not one of ES256, EdDSA.
    #[error("algorithm `{0}` is not allowed (ES256 or EdDSA only)")]
    AlgorithmNotAllowed(String),
    /// `typ` is not the one this kind of document must carry.
    #[error("typ `{found}` where `{expected}` is required")]
    WrongType {
        /// What the header said.
        found: String,
        /// What it must say.
        expected: &'static str,
    },
    /// `kid` missing or not of the form `<member id>#<key id>`.
    #[error("kid missing or not `<member id>#<key id>`")]
    BadKid,
    /// The key's algorithm differs from the header's.
    #[error("key {kid} is an {key} key, header says {header}")]
    AlgorithmMismatch {
        /// The key id.
        kid: String,
        /// The key's algorithm.
        key: &'static str,
        /// The header's algorithm.
        header: &'static str,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    BadSignature,
    /// A key could not be read or made.
    #[error("key: {0}")]
    Key(String),
    /// The key lives outside this process (a PKCS#11 token): its private part cannot be
    /// exported.
    #[error("key {kid} is held by {holder}: its private part cannot be exported")]
    NotExportable {
        /// The key id.
        kid: String,
        /// Where it is held.
        holder: String,
    },
    /// The external signer holding the key failed to sign (a token removed, a session
    /// lost, a PIN no longer accepted).
    #[error("key {kid}: signing failed: {reason}")]
    Signing {
        /// The key id.
        kid: String,
        /// Why.
        reason: String,
    },
}

/// A signer holding a private key outside this process (e.g. a PKCS#11 token), behind a
/// [`SigningKey`]: it makes the raw JWS signature of a message (for ES256, `r || s`, 64
/// bytes).
pub trait ExternalSigner: Send + Sync {
    /// The raw signature of `message` (the JWS signing input).
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String>;

    /// Where the key is held, for messages (`PKCS#11 token "x", key "y"`).
    fn holder(&self) -> String;
}

/// The protected header fields the protocol uses.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Header {
    /// Algorithm, as sent.
    pub alg: String,
    /// `<member id>#<key id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// Document type, e.g. `simpul-request+jws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Critical extensions (RFC 7515 §4.1.11): none are understood, so any is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crit: Option<serde_json::Value>,
}

/// A compact JWS split into its parts, its header read, its signature not yet checked.
#[derive(Clone, Debug)]
pub struct ParsedJws<'a> {
    /// The protected header.
    pub header: Header,
    /// The algorithm from the allow-list.
    pub alg: Algorithm,
    /// The decoded payload bytes.
    pub payload: Vec<u8>,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl<'a> ParsedJws<'a> {
    /// Splits `text`, decodes the header and checks `alg` against the allow-list and `typ`
    /// against `expected_typ`. The signature is checked later, by [`VerifyingKey::verify`].
    pub fn parse(text: &'a str, expected_typ: &'static str) -> Result<Self, JwsError> {
        let mut parts = text.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed("expected three dot-separated parts"));
        };
        let header_bytes =
            b64url_decode(h).ok_or(JwsError::Malformed("header is not base64url"))?;
        let payload = b64url_decode(p).ok_or(JwsError::Malformed("payload is not base64url"))?;
        let signature =
            b64url_decode(s).ok_or(JwsError::Malformed("signature is not base64url"))?;
        let header: Header = crate::json::from_slice(&header_bytes).map_err(|e| {
            JwsError::Malformed(match e {
                crate::json::JsonError::DuplicateName(_) => "the header names a member twice",
                _ => "header is not a JSON object with a string alg",
            })
        })?;
        // Part of the header's shape (PROTOCOL.md §1.5 step 1), so before `alg`.
        if header.crit.is_some() {
            return Err(JwsError::Malformed(
                "the header has `crit` extensions, none of which are understood",
            ));
        }
        let alg = Algorithm::from_header(&header.alg)
            .ok_or_else(|| JwsError::AlgorithmNotAllowed(header.alg.clone()))?;
        if header.typ.as_deref() != Some(expected_typ) {
            return Err(JwsError::WrongType {
                found: header.typ.clone().unwrap_or_default(),
                expected: expected_typ,
            });
        }
        Ok(ParsedJws {
            header,
            alg,
            payload,
            signing_input: &text[..h.len() + 1 + p.len()],
            signature,
        })
    }

    /// The `kid` split into member id text and key id.
    pub fn kid_parts(&self) -> Result<(&str, &str), JwsError> {
        self.header
            .kid
            .as_deref()
            .and_then(|k| k.split_once('#'))
            .filter(|(m, k)| !m.is_empty() && !k.is_empty())
            .ok_or(JwsError::BadKid)
    }
}

/// A private signing key with its key id (`<member id>#<key id>`): a PKCS#8 key in this
/// process, or a key held by an [`ExternalSigner`] (a PKCS#11 token). Cloning shares the
/// external signer.
#[derive(Clone)]
pub struct SigningKey {
    alg: Algorithm,
    kid: String,
    public_jwk: Value,
    signer: Signer,
}

/// Where the private key is.
#[derive(Clone)]
enum Signer {
    /// In memory, read from (or written to) a PKCS#8 PEM.
    Pem { pem: Vec<u8>, key: LocalKey },
    /// Outside the process.
    External(std::sync::Arc<dyn ExternalSigner>),
}

/// A private key in this process, prepared once for aws-lc-rs. Cloning shares the key.
#[derive(Clone)]
enum LocalKey {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl LocalKey {
    /// From the private part `d` of the JWK josekit read out of the PEM and the public key
    /// (`04 || x || y` for ES256, `x` for EdDSA): aws-lc-rs checks that they belong together.
    fn new(alg: Algorithm, private: &Jwk, public: &[u8]) -> Result<Self, JwsError> {
        let d = private
            .parameter("d")
            .and_then(Value::as_str)
            .and_then(b64url_decode)
            .ok_or_else(|| JwsError::Key("the private key has no `d`".into()))?;
        Ok(match alg {
            Algorithm::ES256 => LocalKey::Es256(
                EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &d,
                    public,
                )
                .map_err(key_err)?,
            ),
            Algorithm::EdDSA => LocalKey::EdDsa(
                Ed25519KeyPair::from_seed_and_public_key(&d, public).map_err(key_err)?,
            ),
        })
    }

    /// The raw JWS signature of `message`: `r || s` (64 bytes) for ES256, 64 bytes for
    /// Ed25519.
    fn sign(&self, message: &[u8]) -> Result<Signature, JwsError> {
        match self {
            // aws-lc-rs draws its own nonce; the `SecureRandom` is there for ring's API.
            LocalKey::Es256(key) => key.sign(&aws_lc_rs::rand::SystemRandom::new(), message),
            LocalKey::EdDsa(key) => key.try_sign(message),
        }
        .map_err(|_| JwsError::Key("aws-lc-rs could not sign".into()))
    }
}

/// The raw public key aws-lc-rs reads from a public JWK josekit has already accepted: the
/// uncompressed point `04 || x || y` for EC (built as josekit builds it), `x` for OKP.
fn raw_public_key(
    alg: Algorithm,
    jwk: &serde_json::Map<String, Value>,
) -> Result<Vec<u8>, JwsError> {
    let coordinate = |name: &str| {
        jwk.get(name)
            .and_then(Value::as_str)
            .and_then(b64url_decode)
            .ok_or_else(|| JwsError::Key(format!("JWK `{name}` is not base64url")))
    };
    Ok(match alg {
        Algorithm::ES256 => {
            let (x, y) = (coordinate("x")?, coordinate("y")?);
            let mut point = Vec::with_capacity(1 + x.len() + y.len());
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            point
        }
        Algorithm::EdDSA => coordinate("x")?,
    })
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({} {})", self.alg.as_str(), self.kid)
    }
}

fn key_err(e: impl fmt::Display) -> JwsError {
    JwsError::Key(e.to_string())
}

/// The RFC 7638 thumbprint of a public JWK: the key id the tools give new keys.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, JwsError> {
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        _ => return Err(JwsError::Key("only EC and OKP keys are supported".into())),
    };
    let mut required = serde_json::Map::new();
    for m in members {
        let v = jwk
            .get(*m)
            .ok_or_else(|| JwsError::Key(format!("JWK lacks `{m}`")))?;
        required.insert((*m).to_owned(), v.clone());
    }
    let bytes = crate::canonical::canonical_json(&Value::Object(required)).map_err(key_err)?;
    Ok(b64url(&sha256(&bytes)))
}

impl SigningKey {
    /// Makes a new key of `alg`. Its key id is its JWK thumbprint; `kid` is
    /// `<member>#<thumbprint>`.
    pub fn generate(alg: Algorithm, member: &str) -> Result<Self, JwsError> {
        let pem = match alg {
            Algorithm::ES256 => ES256
                .generate_key_pair()
                .map_err(key_err)?
                .to_pem_private_key(),
            Algorithm::EdDSA => EdDSA
                .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed25519)
                .map_err(key_err)?
                .to_pem_private_key(),
        };
        Self::from_pem(alg, member, &pem)
    }

    /// Reads a PKCS#8 PEM private key of `alg` for `member`; the key id is the thumbprint.
    pub fn from_pem(alg: Algorithm, member: &str, pem: &[u8]) -> Result<Self, JwsError> {
        // josekit reads the PEM (the forms it accepts are the forms a gateway accepts);
        // aws-lc-rs gets the key once, here, for every signature after.
        let (private, mut jwk) = match alg {
            Algorithm::ES256 => {
                let pair = josekit::jwk::alg::ec::EcKeyPair::from_pem(
                    pem,
                    Some(josekit::jwk::alg::ec::EcCurve::P256),
                )
                .map_err(key_err)?;
                (pair.to_jwk_private_key(), pair.to_jwk_public_key())
            }
            Algorithm::EdDSA => {
                let pair = josekit::jwk::alg::ed::EdKeyPair::from_pem(pem).map_err(key_err)?;
                (pair.to_jwk_private_key(), pair.to_jwk_public_key())
            }
        };
        let key = LocalKey::new(alg, &private, &raw_public_key(alg, jwk.as_ref())?)?;
        let thumb = jwk_thumbprint(&Value::Object(jwk.as_ref().clone()))?;
        let kid = format!("{member}#{thumb}");
        jwk.set_key_id(&kid);
        jwk.set_algorithm(alg.as_str());
        jwk.set_key_use("sig");
        Ok(SigningKey {
            alg,
            kid,
            public_jwk: Value::Object(jwk.as_ref().clone()),
            signer: Signer::Pem {
                pem: pem.to_vec(),
                key,
            },
        })
    }

    /// A key of `alg` for `member` held by `signer`, whose public key is `public_jwk` (a
    /// public JWK: `kty`, `crv`, `x`, `y` for ES256); the key id is its thumbprint. The
    /// signer is asked to sign once here and the signature is checked against the public
    /// key, so a signer whose private key is not that public key's is refused at once.
    pub fn external(
        alg: Algorithm,
        member: &str,
        public_jwk: &Value,
        signer: std::sync::Arc<dyn ExternalSigner>,
    ) -> Result<Self, JwsError> {
        let map = public_jwk
            .as_object()
            .ok_or_else(|| JwsError::Key("the public JWK is not an object".into()))?;
        if map.contains_key("d") {
            return Err(JwsError::Key(
                "the public JWK holds a private key (`d`)".into(),
            ));
        }
        let thumb = jwk_thumbprint(public_jwk)?;
        let kid = format!("{member}#{thumb}");
        let mut jwk = map.clone();
        jwk.insert("kid".into(), Value::String(kid.clone()));
        jwk.insert("alg".into(), Value::String(alg.as_str().to_owned()));
        jwk.insert("use".into(), Value::String("sig".into()));
        let key = SigningKey {
            alg,
            kid,
            public_jwk: Value::Object(jwk),
            signer: Signer::External(signer),
        };
        let verifying = key.verifying_key()?;
        if verifying.alg != alg {
            return Err(JwsError::Key(format!(
                "the public key is not an {} key",
                alg.as_str()
            )));
        }
        let probe = key.sign("simpul-key-probe+jws", b"{}")?;
        let parsed = ParsedJws::parse(&probe, "simpul-key-probe+jws")?;
        verifying.verify(&parsed).map_err(|_| {
            JwsError::Key(format!(
                "{}: its signature does not verify with its public key",
                key.holder()
            ))
        })?;
        Ok(key)
    }

    /// Where the private key is held: `this process` or the external signer's holder.
    pub fn holder(&self) -> String {
        match &self.signer {
            Signer::Pem { .. } => "this process".to_owned(),
            Signer::External(e) => e.holder(),
        }
    }

    /// The key id, `<member id>#<key id>`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The private key as PKCS#8 PEM, for writing to a 0600 file; a key held by an
    /// external signer has none ([`JwsError::NotExportable`]).
    pub fn private_pem(&self) -> Result<&[u8], JwsError> {
        match &self.signer {
            Signer::Pem { pem, .. } => Ok(pem),
            Signer::External(e) => Err(JwsError::NotExportable {
                kid: self.kid.clone(),
                holder: e.holder(),
            }),
        }
    }

    /// The public key as a JWK with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> &Value {
        &self.public_jwk
    }

    /// The matching verifying key.
    pub fn verifying_key(&self) -> Result<VerifyingKey, JwsError> {
        VerifyingKey::from_jwk(&self.public_jwk)
    }

    /// Signs `payload` as a compact JWS with protected header `{alg, kid, typ}`.
    pub fn sign(&self, typ: &str, payload: &[u8]) -> Result<String, JwsError> {
        let header = serde_json::to_vec(&OutgoingHeader {
            alg: self.alg.as_str(),
            kid: &self.kid,
            typ,
        })
        .map_err(key_err)?;
        // base64url is 4/3 of its input: room for the header, the payload, the signature.
        let mut out = String::with_capacity((header.len() + payload.len() + 64) * 4 / 3 + 8);
        URL_SAFE_NO_PAD.encode_string(&header, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut out);
        match &self.signer {
            Signer::Pem { key, .. } => {
                let signature = key.sign(out.as_bytes())?;
                out.push('.');
                URL_SAFE_NO_PAD.encode_string(signature, &mut out);
            }
            Signer::External(e) => {
                let signature = e.sign(out.as_bytes()).map_err(|reason| JwsError::Signing {
                    kid: self.kid.clone(),
                    reason,
                })?;
                out.push('.');
                URL_SAFE_NO_PAD.encode_string(signature, &mut out);
            }
        }
        Ok(out)
    }
}

/// The protected header [`SigningKey::sign`] writes: [`Header`]'s members in its order,
/// borrowed rather than copied.
#[derive(Serialize)]
struct OutgoingHeader<'a> {
    alg: &'a str,
    kid: &'a str,
    typ: &'a str,
}

/// A public key that checks signatures, read from a JWK. Cloning shares the prepared key.
#[derive(Clone)]
pub struct VerifyingKey {
    alg: Algorithm,
    kid: String,
    jwk: Value,
    key: ParsedPublicKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({} {})", self.alg.as_str(), self.kid)
    }
}

impl VerifyingKey {
    /// Reads a public JWK. It must carry `kid`, and `alg` ES256 (EC P-256) or EdDSA (OKP
    /// Ed25519); private members are refused so a secret never sits in a manifest.
    pub fn from_jwk(jwk: &Value) -> Result<Self, JwsError> {
        let map = jwk
            .as_object()
            .ok_or_else(|| JwsError::Key("JWK is not an object".into()))?;
        if map.contains_key("d") {
            return Err(JwsError::Key("JWK holds a private key (`d`)".into()));
        }
        let kid = map
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| JwsError::Key("JWK lacks `kid`".into()))?
            .to_owned();
        let parsed = Jwk::from_map(map.clone()).map_err(key_err)?;
        // josekit checks the JWK (`use`, `key_ops`, `alg`, `crv`, the point), so a key is
        // refused for the reasons it always was; aws-lc-rs then parses the point once.
        let (alg, algorithm): (Algorithm, &'static dyn VerificationAlgorithm) = match (
            map.get("kty").and_then(Value::as_str),
            map.get("crv").and_then(Value::as_str),
            map.get("alg").and_then(Value::as_str),
        ) {
            (Some("EC"), Some("P-256"), Some("ES256") | None) => {
                ES256.verifier_from_jwk(&parsed).map_err(key_err)?;
                (Algorithm::ES256, &ECDSA_P256_SHA256_FIXED)
            }
            (Some("OKP"), Some("Ed25519"), Some("EdDSA") | None) => {
                EdDSA.verifier_from_jwk(&parsed).map_err(key_err)?;
                (Algorithm::EdDSA, &ED25519)
            }
            (kty, crv, alg) => {
                return Err(JwsError::Key(format!(
                    "unsupported key {kty:?}/{crv:?} with alg {alg:?} (EC P-256 ES256 or OKP Ed25519 EdDSA)"
                )));
            }
        };
        let key = ParsedPublicKey::new(algorithm, raw_public_key(alg, map)?).map_err(key_err)?;
        Ok(VerifyingKey {
            alg,
            kid,
            jwk: jwk.clone(),
            key,
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// Checks the signature of `jws`, whose algorithm must be this key's.
    pub fn verify(&self, jws: &ParsedJws<'_>) -> Result<(), JwsError> {
        if jws.alg != self.alg {
            return Err(JwsError::AlgorithmMismatch {
                kid: self.kid.clone(),
                key: self.alg.as_str(),
                header: jws.alg.as_str(),
            });
        }
        // The fixed `r || s` form only (RFC 7518 §3.4): aws-lc-rs refuses any other length,
        // DER included, as josekit did.
        self.key
            .verify_sig(jws.signing_input.as_bytes(), &jws.signature)
            .map_err(|_| JwsError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use josekit::jws::{JwsSigner, JwsVerifier};

    use super::*;

    const TYP: &str = "simpul-request+jws";

    #[test]
    fn es256_and_eddsa_round_trip() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let key = SigningKey::generate(alg, "ID:GOV:X").unwrap();
            assert!(key.kid().starts_with("ID:GOV:X#"));
            let jws = key.sign(TYP, br#"{"a":1}"#).unwrap();
            let parsed = ParsedJws::parse(&jws, TYP).unwrap();
            assert_eq!(parsed.payload, br#"{"a":1}"#);
            key.verifying_key().unwrap().verify(&parsed).unwrap();
            // The PEM reads back to the same key id.
            let again = SigningKey::from_pem(alg, "ID:GOV:X", key.private_pem().unwrap()).unwrap();
            assert_eq!(again.kid(), key.kid());
        }
    }

    /// A signer outside the `SigningKey`: a real key behind the [`ExternalSigner`] trait, as a
    /// PKCS#11 token is (gateway/tests/hsm.rs signs in a real SoftHSM2).
    struct Outside(Box<dyn JwsSigner>);

    impl ExternalSigner for Outside {
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
            self.0.sign(message).map_err(|e| e.to_string())
        }
        fn holder(&self) -> String {
            "a test signer".into()
        }
    }

    fn outside() -> (std::sync::Arc<dyn ExternalSigner>, Value) {
        let pair = ES256.generate_key_pair().unwrap();
        let jwk = Value::Object(pair.to_jwk_public_key().as_ref().clone());
        let signer = ES256.signer_from_jwk(&pair.to_jwk_private_key()).unwrap();
        (std::sync::Arc::new(Outside(Box::new(signer))), jwk)
    }

    #[test]
    fn an_external_signer_signs_behind_signing_key_and_exports_nothing() {
        let (signer, jwk) = outside();
        let key = SigningKey::external(Algorithm::ES256, "ID:GOV:X", &jwk, signer).unwrap();
        assert_eq!(
            key.kid(),
            format!("ID:GOV:X#{}", jwk_thumbprint(&jwk).unwrap())
        );
        let jws = key.sign(TYP, br#"{"a":1}"#).unwrap();
        let parsed = ParsedJws::parse(&jws, TYP).unwrap();
        VerifyingKey::from_jwk(key.public_jwk())
            .unwrap()
            .verify(&parsed)
            .unwrap();
        // A clone shares the signer.
        let again = key.clone().sign(TYP, b"{}").unwrap();
        key.verifying_key()
            .unwrap()
            .verify(&ParsedJws::parse(&again, TYP).unwrap())
            .unwrap();
        assert!(matches!(
            key.private_pem(),
            Err(JwsError::NotExportable { holder, .. }) if holder == "a test signer"
        ));
    }

    #[test]
    fn an_external_signer_whose_key_is_not_the_public_one_is_refused() {
        let (signer, _) = outside();
        let (_, other_jwk) = outside();
        let e = SigningKey::external(Algorithm::ES256, "ID:GOV:X", &other_jwk, signer).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        // A private JWK is no public key.
        let pair = ES256.generate_key_pair().unwrap();
        let private = Value::Object(pair.to_jwk_private_key().as_ref().clone());
        let (signer, _) = outside();
        assert!(SigningKey::external(Algorithm::ES256, "ID:GOV:X", &private, signer).is_err());
    }

    #[test]
    fn tampered_payload_fails() {
        let key = SigningKey::generate(Algorithm::ES256, "ID:GOV:X").unwrap();
        let jws = key.sign(TYP, br#"{"a":1}"#).unwrap();
        let parts: Vec<&str> = jws.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], b64url(br#"{"a":2}"#), parts[2]);
        let parsed = ParsedJws::parse(&forged, TYP).unwrap();
        assert!(matches!(
            key.verifying_key().unwrap().verify(&parsed),
            Err(JwsError::BadSignature)
        ));
    }

    #[test]
    fn none_and_hmac_are_refused_before_any_key() {
        for alg in ["none", "HS256", "RS256", ""] {
            let h =
                b64url(format!(r#"{{"alg":"{alg}","kid":"ID:GOV:X#k","typ":"{TYP}"}}"#).as_bytes());
            let jws = format!("{h}.{}.", b64url(b"{}"));
            assert!(
                matches!(
                    ParsedJws::parse(&jws, TYP),
                    Err(JwsError::AlgorithmNotAllowed(_))
                ),
                "{alg}"
            );
        }
    }

    #[test]
    fn wrong_typ_and_bad_shape_are_refused() {
        let key = SigningKey::generate(Algorithm::ES256, "ID:GOV:X").unwrap();
        let jws = key.sign("simpul-response+jws", b"{}").unwrap();
        assert!(matches!(
            ParsedJws::parse(&jws, TYP),
            Err(JwsError::WrongType { .. })
        ));
        for bad in ["", "a.b", "a.b.c.d", "!!.e30.", "e30.e30.e30"] {
            assert!(ParsedJws::parse(bad, TYP).is_err(), "{bad}");
        }
    }

    #[test]
    fn crit_extensions_are_refused() {
        let h = b64url(br#"{"alg":"ES256","kid":"ID:GOV:X#k","typ":"simpul-request+jws","crit":["exp"],"exp":1}"#);
        let jws = format!("{h}.{}.{}", b64url(b"{}"), b64url(&[0u8; 64]));
        assert!(matches!(
            ParsedJws::parse(&jws, TYP),
            Err(JwsError::Malformed(_))
        ));
        // Whatever the `alg`: the header's shape is checked first.
        let h =
            b64url(br#"{"alg":"none","kid":"ID:GOV:X#k","typ":"simpul-request+jws","crit":[]}"#);
        let jws = format!("{h}.{}.", b64url(b"{}"));
        assert!(matches!(
            ParsedJws::parse(&jws, TYP),
            Err(JwsError::Malformed(_))
        ));
    }

    #[test]
    fn a_header_member_given_twice_is_refused() {
        // Two `typ`s: one reader would take the first, another the last.
        let h = b64url(
            br#"{"alg":"ES256","kid":"ID:GOV:X#k","typ":"simpul-request+jws","typ":"simpul-response+jws"}"#,
        );
        let jws = format!("{h}.{}.{}", b64url(b"{}"), b64url(&[0u8; 64]));
        assert!(matches!(
            ParsedJws::parse(&jws, TYP),
            Err(JwsError::Malformed("the header names a member twice"))
        ));
    }

    #[test]
    fn typ_is_compared_exactly() {
        for typ in [
            "Simpul-Request+JWS",
            "application/simpul-request+jws",
            "simpul-request+jws ",
            "simpul-request+jws\\n",
        ] {
            let h =
                b64url(format!(r#"{{"alg":"ES256","kid":"ID:GOV:X#k","typ":"{typ}"}}"#).as_bytes());
            let jws = format!("{h}.{}.{}", b64url(b"{}"), b64url(&[0u8; 64]));
            assert!(
                matches!(ParsedJws::parse(&jws, TYP), Err(JwsError::WrongType { .. })),
                "{typ}"
            );
        }
    }

    #[test]
    fn private_jwk_is_refused_as_a_verifying_key() {
        let pair = ES256.generate_key_pair().unwrap();
        let mut jwk = Value::Object(pair.to_jwk_private_key().as_ref().clone());
        jwk["kid"] = "ID:GOV:X#k".into();
        assert!(VerifyingKey::from_jwk(&jwk).is_err());
    }

    // Cross-checks: aws-lc-rs signs and verifies, josekit (OpenSSL) is the implementation
    // of record; each must accept what the other makes and refuse what the other refuses.

    /// The signing input and the raw signature of a compact JWS.
    fn split(jws: &str) -> (&str, Vec<u8>) {
        let (input, signature) = jws.rsplit_once('.').unwrap();
        (input, b64url_decode(signature).unwrap())
    }

    /// `jws` with its signature replaced.
    fn resigned(jws: &str, signature: &[u8]) -> String {
        format!("{}.{}", split(jws).0, b64url(signature))
    }

    fn josekit_verifier(key: &SigningKey) -> Box<dyn JwsVerifier> {
        let jwk = Jwk::from_map(key.public_jwk().as_object().unwrap().clone()).unwrap();
        match key.alg() {
            Algorithm::ES256 => Box::new(ES256.verifier_from_jwk(&jwk).unwrap()),
            Algorithm::EdDSA => Box::new(EdDSA.verifier_from_jwk(&jwk).unwrap()),
        }
    }

    fn josekit_signer(key: &SigningKey) -> Box<dyn JwsSigner> {
        let pem = key.private_pem().unwrap();
        match key.alg() {
            Algorithm::ES256 => Box::new(ES256.signer_from_pem(pem).unwrap()),
            Algorithm::EdDSA => Box::new(EdDSA.signer_from_pem(pem).unwrap()),
        }
    }

    /// What this module says of `jws`, and what josekit says of its signature.
    fn both_verdicts(key: &SigningKey, jws: &str) -> (Result<(), JwsError>, bool) {
        let ours = key
            .verifying_key()
            .unwrap()
            .verify(&ParsedJws::parse(jws, TYP).unwrap());
        let (input, signature) = split(jws);
        let theirs = josekit_verifier(key)
            .verify(input.as_bytes(), &signature)
            .is_ok();
        (ours, theirs)
    }

    // 512 signatures each: about one ES256 signature in 128 has an `r` or `s` with a
    // leading zero byte, the case a fixed-width encoding gets wrong.
    const MANY: usize = 512;

    #[test]
    fn josekit_verifies_every_signature_this_module_makes() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let key = SigningKey::generate(alg, "ID:GOV:X").unwrap();
            let josekit = josekit_verifier(&key);
            for n in 0..MANY {
                let jws = key.sign(TYP, format!(r#"{{"n":{n}}}"#).as_bytes()).unwrap();
                let (input, signature) = split(&jws);
                assert_eq!(signature.len(), 64, "{alg:?}: the fixed form");
                josekit
                    .verify(input.as_bytes(), &signature)
                    .unwrap_or_else(|e| panic!("{alg:?} signature {n}: {e}"));
            }
        }
    }

    #[test]
    fn this_module_verifies_every_signature_josekit_makes() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let key = SigningKey::generate(alg, "ID:GOV:X").unwrap();
            let josekit = josekit_signer(&key);
            let verifying = key.verifying_key().unwrap();
            for n in 0..MANY {
                let ours = key.sign(TYP, format!(r#"{{"n":{n}}}"#).as_bytes()).unwrap();
                let input = split(&ours).0;
                let theirs = format!(
                    "{input}.{}",
                    b64url(&josekit.sign(input.as_bytes()).unwrap())
                );
                verifying
                    .verify(&ParsedJws::parse(&theirs, TYP).unwrap())
                    .unwrap_or_else(|e| panic!("{alg:?} josekit signature {n}: {e}"));
            }
        }
    }

    /// P-256's group order n, big-endian.
    const P256_N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];

    /// `a - b` of two 32-byte big-endian numbers, `a >= b`.
    fn minus(a: &[u8; 32], b: &[u8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        let mut borrow = 0i16;
        for i in (0..32).rev() {
            let d = i16::from(a[i]) - i16::from(b[i]) - borrow;
            borrow = i16::from(d < 0);
            out[i] = (d + 256 * borrow) as u8;
        }
        out
    }

    /// The same signature in ASN.1 DER, made by aws-lc-rs with the same key: a valid ECDSA
    /// signature, in the form JWS does not allow.
    fn der_signature(key: &SigningKey, input: &str) -> Vec<u8> {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_ASN1, ECDSA_P256_SHA256_ASN1_SIGNING, UnparsedPublicKey,
        };
        let pair =
            josekit::jwk::alg::ec::EcKeyPair::from_pem(key.private_pem().unwrap(), None).unwrap();
        let der_key = EcdsaKeyPair::from_private_key_der(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &pair.to_der_private_key(),
        )
        .unwrap();
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let signature = der_key.sign(&rng, input.as_bytes()).unwrap();
        let public =
            raw_public_key(Algorithm::ES256, key.public_jwk().as_object().unwrap()).unwrap();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, public)
            .verify(input.as_bytes(), signature.as_ref())
            .expect("a valid DER signature");
        signature.as_ref().to_vec()
    }

    #[test]
    fn es256_signatures_not_in_the_fixed_form_or_altered_are_refused_as_josekit_refuses_them() {
        let key = SigningKey::generate(Algorithm::ES256, "ID:GOV:X").unwrap();
        let jws = key.sign(TYP, br#"{"a":1}"#).unwrap();
        let (input, good) = split(&jws);
        let (r, s) = good.split_at(32);
        let cat = |a: &[u8], b: &[u8]| [a, b].concat();
        let mut flipped = good.clone();
        flipped[40] ^= 0x01;
        let refused: Vec<(&str, Vec<u8>)> = vec![
            ("a bit flipped", flipped),
            ("63 bytes", good[..63].to_vec()),
            ("65 bytes", cat(&good, &[0])),
            ("r alone", r.to_vec()),
            ("empty", vec![]),
            ("DER", der_signature(&key, input)),
            ("r = 0", cat(&[0; 32], s)),
            ("s = 0", cat(r, &[0; 32])),
            ("r = n", cat(&P256_N, s)),
            ("s = n", cat(r, &P256_N)),
            ("r above n", cat(&[0xff; 32], s)),
            ("all ones", vec![0xff; 64]),
        ];
        both_refuse(&key, &jws, refused);
        // ECDSA is malleable: (r, n - s) is the same signature's twin. JWS (RFC 7518 §3.4)
        // does not ask for low S and OpenSSL never refused it, so neither does this module;
        // the replay window keys on the exchange id in the signed payload, not on these
        // bytes.
        let high_s = cat(r, &minus(&P256_N, s));
        let (ours, theirs) = both_verdicts(&key, &resigned(&jws, &high_s));
        assert!(
            ours.is_ok() && theirs,
            "the twin (r, n - s): {ours:?}, josekit {theirs}"
        );
        // A valid signature of other bytes, and one by another key.
        let other = key.sign(TYP, br#"{"a":2}"#).unwrap();
        let (ours, theirs) = both_verdicts(&key, &resigned(&jws, &split(&other).1));
        assert!(matches!(ours, Err(JwsError::BadSignature)) && !theirs);
        let stranger = SigningKey::generate(Algorithm::ES256, "ID:GOV:X").unwrap();
        let theirs = stranger.sign(TYP, br#"{"a":1}"#).unwrap();
        let (ours, josekit) = both_verdicts(&key, &resigned(&jws, &split(&theirs).1));
        assert!(matches!(ours, Err(JwsError::BadSignature)) && !josekit);
    }

    /// Each signature, put in place of `jws`'s, is refused by this module and by josekit.
    fn both_refuse(key: &SigningKey, jws: &str, refused: Vec<(&str, Vec<u8>)>) {
        for (what, signature) in refused {
            let (ours, theirs) = both_verdicts(key, &resigned(jws, &signature));
            assert!(
                matches!(ours, Err(JwsError::BadSignature)),
                "{what}: {ours:?}"
            );
            assert!(!theirs, "{what}: josekit accepts it");
        }
    }

    /// Ed25519's group order L, little-endian.
    const ED25519_L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];

    #[test]
    fn eddsa_signatures_altered_are_refused_as_josekit_refuses_them() {
        let key = SigningKey::generate(Algorithm::EdDSA, "ID:GOV:X").unwrap();
        let jws = key.sign(TYP, br#"{"a":1}"#).unwrap();
        let good = split(&jws).1;
        let mut flipped = good.clone();
        flipped[5] ^= 0x80;
        // S + L: the same S modulo L, in a form RFC 8032 §5.1.7 requires a verifier refuse.
        let mut s_plus_l = good.clone();
        let mut carry = 0u16;
        for (byte, l) in s_plus_l[32..].iter_mut().zip(ED25519_L) {
            let sum = u16::from(*byte) + u16::from(l) + carry;
            *byte = sum as u8;
            carry = sum >> 8;
        }
        let refused: Vec<(&str, Vec<u8>)> = vec![
            ("a bit flipped", flipped),
            ("63 bytes", good[..63].to_vec()),
            ("65 bytes", [good.as_slice(), &[0]].concat()),
            ("empty", vec![]),
            ("S + L", s_plus_l),
            ("all zeros", vec![0; 64]),
        ];
        both_refuse(&key, &jws, refused);
    }

    fn with_kid(jwk: Jwk) -> Value {
        let mut jwk = Value::Object(jwk.as_ref().clone());
        jwk["kid"] = "ID:GOV:X#k".into();
        jwk
    }

    #[test]
    fn a_key_of_another_curve_or_off_the_curve_is_refused() {
        let p384 = josekit::jws::ES384.generate_key_pair().unwrap();
        let p384_jwk = with_kid(p384.to_jwk_public_key());
        assert!(VerifyingKey::from_jwk(&p384_jwk).is_err(), "P-384");
        let mut relabelled = p384_jwk.clone();
        relabelled["crv"] = "P-256".into();
        relabelled["alg"] = "ES256".into();
        assert!(
            VerifyingKey::from_jwk(&relabelled).is_err(),
            "a P-384 point called P-256"
        );
        let k256 = josekit::jws::ES256K.generate_key_pair().unwrap();
        assert!(
            VerifyingKey::from_jwk(&with_kid(k256.to_jwk_public_key())).is_err(),
            "secp256k1"
        );
        assert!(
            SigningKey::from_pem(Algorithm::ES256, "ID:GOV:X", &p384.to_pem_private_key()).is_err(),
            "a P-384 private key for ES256"
        );
        let ed448 = EdDSA
            .generate_key_pair(josekit::jwk::alg::ed::EdCurve::Ed448)
            .unwrap();
        assert!(
            VerifyingKey::from_jwk(&with_kid(ed448.to_jwk_public_key())).is_err(),
            "Ed448"
        );
        assert!(
            SigningKey::from_pem(Algorithm::EdDSA, "ID:GOV:X", &ed448.to_pem_private_key())
                .is_err(),
            "an Ed448 private key for EdDSA"
        );

        // A P-256 point moved off the curve.
        let key = SigningKey::generate(Algorithm::ES256, "ID:GOV:X").unwrap();
        let mut off = key.public_jwk().clone();
        let mut y = b64url_decode(off["y"].as_str().unwrap()).unwrap();
        y[31] ^= 0x01;
        off["y"] = b64url(&y).into();
        assert!(VerifyingKey::from_jwk(&off).is_err(), "off the curve");

        // An Ed25519 key is not asked about an ES256 signature, nor labelled ES256.
        let ed = SigningKey::generate(Algorithm::EdDSA, "ID:GOV:X").unwrap();
        let jws = key.sign(TYP, b"{}").unwrap();
        assert!(matches!(
            ed.verifying_key()
                .unwrap()
                .verify(&ParsedJws::parse(&jws, TYP).unwrap()),
            Err(JwsError::AlgorithmMismatch { .. })
        ));
        let mut labelled = ed.public_jwk().clone();
        labelled["alg"] = "ES256".into();
        assert!(VerifyingKey::from_jwk(&labelled).is_err());
    }

    #[test]
    fn a_traditional_ec_pem_still_reads_and_signs() {
        let pair = ES256.generate_key_pair().unwrap();
        let traditional = pair.to_traditional_pem_private_key();
        assert!(String::from_utf8_lossy(&traditional).contains("BEGIN EC PRIVATE KEY"));
        let key = SigningKey::from_pem(Algorithm::ES256, "ID:GOV:X", &traditional).unwrap();
        let pkcs8 =
            SigningKey::from_pem(Algorithm::ES256, "ID:GOV:X", &pair.to_pem_private_key()).unwrap();
        assert_eq!(key.kid(), pkcs8.kid());
        let jws = key.sign(TYP, b"{}").unwrap();
        let (ours, theirs) = both_verdicts(&pkcs8, &jws);
        assert!(ours.is_ok() && theirs);
    }

    #[test]
    fn the_header_written_is_the_header_read_byte_for_byte() {
        let key = SigningKey::generate(Algorithm::ES256, "ID:GOV:X").unwrap();
        let jws = key.sign(TYP, b"{}").unwrap();
        let written = b64url_decode(jws.split('.').next().unwrap()).unwrap();
        let header = Header {
            alg: "ES256".into(),
            kid: Some(key.kid().to_owned()),
            typ: Some(TYP.into()),
            crit: None,
        };
        assert_eq!(written, serde_json::to_vec(&header).unwrap());
    }

    #[test]
    fn a_cloned_key_signs_and_verifies_as_the_original() {
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let key = SigningKey::generate(alg, "ID:GOV:X").unwrap();
            let verifying = key.verifying_key().unwrap().clone();
            let jws = key.clone().sign(TYP, b"{}").unwrap();
            verifying
                .verify(&ParsedJws::parse(&jws, TYP).unwrap())
                .unwrap();
        }
    }
}
