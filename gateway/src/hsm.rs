//! Where a member's signing key lives: a PKCS#8 key file (the default), or a PKCS#11 token —
//! a hardware security module — through the `cryptoki` crate (tested against SoftHSM2).
//!
//! A key in a token is used behind [`SigningKey`], so whatever signs with the member's key
//! (exchange requests and answers, tree heads, evidence) does so unchanged: ES256 is
//! `CKM_ECDSA` over the SHA-256 digest of the JWS signing input, which the token returns as
//! the raw `r || s` a JWS carries. The public JWK (and with it the kid) is read from the
//! token's public key object (`CKA_EC_POINT`); the private key never leaves the token.
//!
//! Each PKCS#11 module is loaded and initialised once per process and kept: two gateways of
//! one process (`simpul up`) share it. Signing takes a session from a small pool (one per
//! signing thread at a time, each logged in), and returns it; a pooled session that fails is
//! dropped and the signature tried once more in a new session (opened and logged in), so a
//! token that comes back is used again. Every failure is an [`HsmError`], never a panic.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use contracts::canonical::{b64url, sha256};
use contracts::{Algorithm, ExternalSigner, MemberId, SigningKey};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use serde_json::{Value, json};

/// The DER of the P-256 curve's OID (prime256v1), as `CKA_EC_PARAMS` holds it.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Sessions kept open for signing, at most; more signers at once open more, then close them.
const IDLE_SESSIONS: usize = 4;

/// `members.signing`: where the member's signing key lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SigningConfig {
    /// A PKCS#8 PEM file (mode 0600): `<certs>/<member>/signing.key`.
    File(PathBuf),
    /// A PKCS#11 token.
    Pkcs11(Pkcs11Config),
}

impl std::fmt::Display for SigningConfig {
    /// Where the key is, for messages: the file, or the token and key labels.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SigningConfig::File(path) => write!(f, "{}", path.display()),
            SigningConfig::Pkcs11(c) => write!(f, "PKCS#11 token `{}`, key `{}`", c.token, c.key),
        }
    }
}

/// `members.signing.pkcs11`: a key pair in a PKCS#11 token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (a shared library), e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The label (`CKA_LABEL`) of the key pair's private and public key objects.
    pub key: String,
    /// Where the user PIN comes from: never the configuration itself.
    pub pin: PinSource,
}

/// Where a token's user PIN is read from when the gateway starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// A file only its owner can read (mode 0600), holding the PIN (a final newline is
    /// ignored).
    File(PathBuf),
    /// An environment variable of the gateway's process.
    Env(String),
}

impl std::fmt::Display for PinSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PinSource::File(p) => write!(f, "pin_file {}", p.display()),
            PinSource::Env(v) => write!(f, "pin_env {v}"),
        }
    }
}

/// Why a key in a token cannot be used or made.
#[derive(Debug, thiserror::Error)]
pub enum HsmError {
    /// The module cannot be loaded or initialised.
    #[error("PKCS#11 module {}: {reason}", module.display())]
    Module {
        /// The module.
        module: PathBuf,
        /// Why.
        reason: String,
    },
    /// The PIN cannot be read.
    #[error("the token PIN ({origin}): {reason}")]
    Pin {
        /// Where it was to come from.
        origin: String,
        /// Why it cannot be read.
        reason: String,
    },
    /// No token, or more than one, has the label.
    #[error("PKCS#11 module {}: {reason}", module.display())]
    Token {
        /// The module.
        module: PathBuf,
        /// What is wrong (no such token, several).
        reason: String,
    },
    /// The token refused the PIN.
    #[error("token `{token}`: the PIN ({origin}) is wrong: login refused ({rv})")]
    WrongPin {
        /// The token label.
        token: String,
        /// Where the PIN came from.
        origin: String,
        /// The token's answer.
        rv: String,
    },
    /// The key pair is missing, ambiguous, not P-256, or already there when one is made.
    #[error("token `{token}`, key `{key}`: {reason}")]
    Key {
        /// The token label.
        token: String,
        /// The key label.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A PKCS#11 call failed (the token removed, a session lost, …).
    #[error("token `{token}`: {operation}: {reason}")]
    Call {
        /// The token label.
        token: String,
        /// What was being done.
        operation: &'static str,
        /// The module's answer.
        reason: String,
    },
}

/// The loaded and initialised modules, by path: one per process, never finalised.
static MODULES: Mutex<BTreeMap<PathBuf, Pkcs11>> = Mutex::new(BTreeMap::new());

fn module(path: &Path) -> Result<Pkcs11, HsmError> {
    let err = |reason: String| HsmError::Module {
        module: path.to_owned(),
        reason,
    };
    let mut modules = MODULES
        .lock()
        .map_err(|_| err("a thread panicked while loading it".into()))?;
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let ctx = Pkcs11::new(path).map_err(|e| err(format!("cannot load: {e}")))?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(err(format!("cannot initialise: {e}"))),
    }
    modules.insert(path.to_owned(), ctx.clone());
    Ok(ctx)
}

fn read_pin(source: &PinSource) -> Result<AuthPin, HsmError> {
    let err = |reason: String| HsmError::Pin {
        origin: source.to_string(),
        reason,
    };
    let text = match source {
        PinSource::File(path) => {
            contracts::keyfile::check_private(path).map_err(err)?;
            std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?
        }
        PinSource::Env(var) => std::env::var(var)
            .map_err(|_| err("the environment variable is not set (or not UTF-8)".into()))?,
    };
    let pin = text.strip_suffix('\n').unwrap_or(&text);
    let pin = pin.strip_suffix('\r').unwrap_or(pin);
    if pin.is_empty() {
        return Err(err("is empty".into()));
    }
    Ok(AuthPin::from(pin.to_owned()))
}

/// The token's slot, found by its label: exactly one.
fn find_token(ctx: &Pkcs11, config: &Pkcs11Config) -> Result<Slot, HsmError> {
    let err = |reason: String| HsmError::Token {
        module: config.module.clone(),
        reason,
    };
    let slots = ctx
        .get_slots_with_token()
        .map_err(|e| err(format!("cannot list its slots: {e}")))?;
    let mut found = Vec::new();
    let mut labels = Vec::new();
    for slot in slots {
        let info = ctx
            .get_token_info(slot)
            .map_err(|e| err(format!("cannot read a token's information: {e}")))?;
        let label = info.label().trim_end().to_owned();
        if label == config.token {
            found.push(slot);
        }
        labels.push(format!("`{label}`"));
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(err(format!(
            "no token is labelled `{}` (tokens: {})",
            config.token,
            if labels.is_empty() {
                "none".to_owned()
            } else {
                labels.join(", ")
            }
        ))),
        _ => Err(err(format!(
            "{} tokens are labelled `{}`: relabel one",
            found.len(),
            config.token
        ))),
    }
}

/// A logged-in session on the token.
fn login(
    ctx: &Pkcs11,
    slot: Slot,
    config: &Pkcs11Config,
    pin: &AuthPin,
    rw: bool,
) -> Result<Session, HsmError> {
    let call = |operation, e: CkError| HsmError::Call {
        token: config.token.clone(),
        operation,
        reason: e.to_string(),
    };
    let session = if rw {
        ctx.open_rw_session(slot)
    } else {
        ctx.open_ro_session(slot)
    }
    .map_err(|e| call("opening a session", e))?;
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(rv @ (RvError::PinIncorrect | RvError::PinLocked), _)) => {
            Err(HsmError::WrongPin {
                token: config.token.clone(),
                origin: config.pin.to_string(),
                rv: format!("{rv:?}"),
            })
        }
        Err(e) => Err(call("login", e)),
    }
}

/// The handles of the objects of `class` labelled `key`.
fn find(
    session: &Session,
    config: &Pkcs11Config,
    class: ObjectClass,
) -> Result<Vec<ObjectHandle>, HsmError> {
    session
        .find_objects(&[
            Attribute::Class(class),
            Attribute::Label(config.key.as_bytes().to_vec()),
        ])
        .map_err(|e| HsmError::Call {
            token: config.token.clone(),
            operation: "finding the key",
            reason: e.to_string(),
        })
}

/// The one private EC key labelled `config.key`.
fn private_key(session: &Session, config: &Pkcs11Config) -> Result<ObjectHandle, HsmError> {
    match find(session, config, ObjectClass::PRIVATE_KEY)?.as_slice() {
        [one] => Ok(*one),
        [] => Err(key_err(
            config,
            "no private key has this label: make the key pair with `simpul pki hsm-key`",
        )),
        many => Err(key_err(
            config,
            &format!(
                "{} private keys have this label: relabel all but one",
                many.len()
            ),
        )),
    }
}

fn key_err(config: &Pkcs11Config, reason: &str) -> HsmError {
    HsmError::Key {
        token: config.token.clone(),
        key: config.key.clone(),
        reason: reason.to_owned(),
    }
}

/// The public JWK of the one public key labelled `config.key`: EC P-256, its point from
/// `CKA_EC_POINT` (a DER OCTET STRING of the uncompressed point, or the bare point as some
/// modules give it).
fn public_jwk(session: &Session, config: &Pkcs11Config) -> Result<Value, HsmError> {
    let handle = match find(session, config, ObjectClass::PUBLIC_KEY)?.as_slice() {
        [one] => *one,
        [] => {
            return Err(key_err(
                config,
                "no public key has this label (the JWK is read from it)",
            ));
        }
        many => {
            return Err(key_err(
                config,
                &format!("{} public keys have this label", many.len()),
            ));
        }
    };
    let attributes = session
        .get_attributes(
            handle,
            &[
                AttributeType::KeyType,
                AttributeType::EcParams,
                AttributeType::EcPoint,
            ],
        )
        .map_err(|e| HsmError::Call {
            token: config.token.clone(),
            operation: "reading the public key",
            reason: e.to_string(),
        })?;
    let (mut ec, mut params, mut point) = (false, None, None);
    for a in attributes {
        match a {
            Attribute::KeyType(t) => ec = t == KeyType::EC,
            Attribute::EcParams(p) => params = Some(p),
            Attribute::EcPoint(p) => point = Some(p),
            _ => {}
        }
    }
    if !ec || params.as_deref() != Some(&P256_PARAMS[..]) {
        return Err(key_err(config, "is not an EC P-256 key (ES256 needs one)"));
    }
    let point = point.unwrap_or_default();
    let raw = match point.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest,
        raw if raw.len() == 65 => raw,
        _ => {
            return Err(key_err(
                config,
                "its CKA_EC_POINT is not an uncompressed P-256 point",
            ));
        }
    };
    if raw[0] != 0x04 {
        return Err(key_err(
            config,
            "its CKA_EC_POINT is not an uncompressed P-256 point",
        ));
    }
    Ok(json!({
        "kty": "EC",
        "crv": "P-256",
        "x": b64url(&raw[1..33]),
        "y": b64url(&raw[33..65]),
    }))
}

/// A key pair in a token, signing through a pool of logged-in sessions.
struct TokenSigner {
    ctx: Pkcs11,
    slot: Slot,
    config: Pkcs11Config,
    pin: AuthPin,
    /// Idle sessions, each with its handle of the private key.
    idle: Mutex<Vec<(Session, ObjectHandle)>>,
}

impl TokenSigner {
    /// An idle session of the pool, if there is one.
    fn idle_session(&self) -> Option<(Session, ObjectHandle)> {
        self.idle.lock().ok()?.pop()
    }

    /// A new logged-in session, with its handle of the private key.
    fn new_session(&self) -> Result<(Session, ObjectHandle), HsmError> {
        let session = login(&self.ctx, self.slot, &self.config, &self.pin, false)?;
        let key = private_key(&session, &self.config)?;
        Ok((session, key))
    }

    fn sign_digest(&self, message: &[u8]) -> Result<Vec<u8>, HsmError> {
        let digest = sha256(message);
        let sign = |(session, key): &(Session, ObjectHandle)| {
            session
                .sign(&Mechanism::Ecdsa, *key, &digest)
                .map_err(|e| HsmError::Call {
                    token: self.config.token.clone(),
                    operation: "signing",
                    reason: e.to_string(),
                })
        };
        // An idle session may have gone stale (the token was removed and is back, its login
        // lost): it is dropped (closed), and the signature is made once more in a new one.
        let (session, signature) = match self.idle_session() {
            Some(s) => match sign(&s) {
                Ok(signature) => (s, signature),
                Err(e) => {
                    tracing::warn!(error = %e, "PKCS#11 session dropped; signing in a new one");
                    drop(s);
                    let s = self.new_session()?;
                    let signature = sign(&s)?;
                    (s, signature)
                }
            },
            None => {
                let s = self.new_session()?;
                let signature = sign(&s)?;
                (s, signature)
            }
        };
        // A session that signed goes back to the pool.
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < IDLE_SESSIONS
        {
            idle.push(session);
        }
        if signature.len() != 64 {
            return Err(key_err(
                &self.config,
                &format!(
                    "the token gave a {}-byte ECDSA signature, not 64",
                    signature.len()
                ),
            ));
        }
        Ok(signature)
    }
}

impl ExternalSigner for TokenSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        self.sign_digest(message).map_err(|e| {
            tracing::error!(error = %e, "PKCS#11 signing failed");
            e.to_string()
        })
    }

    fn holder(&self) -> String {
        format!(
            "PKCS#11 token `{}`, key `{}`",
            self.config.token, self.config.key
        )
    }
}

/// The member's key pair in the token `config` names, as a [`SigningKey`]: the module loaded,
/// the token found by its label, logged in with the PIN, the private and public key objects
/// found by the key label, the public JWK read, and one signature made and checked.
pub fn open_key(config: &Pkcs11Config, member: &MemberId) -> Result<SigningKey, HsmError> {
    let ctx = module(&config.module)?;
    let pin = read_pin(&config.pin)?;
    let slot = find_token(&ctx, config)?;
    let session = login(&ctx, slot, config, &pin, false)?;
    let key = private_key(&session, config)?;
    let jwk = public_jwk(&session, config)?;
    let signer = Arc::new(TokenSigner {
        ctx,
        slot,
        config: config.clone(),
        pin,
        idle: Mutex::new(vec![(session, key)]),
    });
    SigningKey::external(Algorithm::ES256, member.as_str(), &jwk, signer)
        .map_err(|e| key_err(config, &e.to_string()))
}

/// Makes the member's ES256 key pair inside the token `config` names, labelled `config.key`:
/// the private key sensitive and never extractable, both token objects; refused if an object
/// with that label is already there. Returns it as [`open_key`] does.
pub fn generate_key(config: &Pkcs11Config, member: &MemberId) -> Result<SigningKey, HsmError> {
    let ctx = module(&config.module)?;
    let pin = read_pin(&config.pin)?;
    let slot = find_token(&ctx, config)?;
    let session = login(&ctx, slot, config, &pin, true)?;
    for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
        if !find(&session, config, class)?.is_empty() {
            return Err(key_err(
                config,
                "a key with this label is already in the token: choose another label",
            ));
        }
    }
    let label = config.key.as_bytes().to_vec();
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(P256_PARAMS.to_vec()),
        Attribute::Label(label.clone()),
        Attribute::Id(label.clone()),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.clone()),
        Attribute::Id(label),
    ];
    session
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        .map_err(|e| HsmError::Call {
            token: config.token.clone(),
            operation: "generating the key pair",
            reason: e.to_string(),
        })?;
    drop(session);
    tracing::info!(token = %config.token, key = %config.key, "signing key pair made in the token");
    open_key(config, member)
}

/// The member's signing key as its configuration places it, and where it is (for messages):
/// the key file (refused if its group or others can reach it) or the token.
pub fn member_signing_key(
    signing: &SigningConfig,
    member: &MemberId,
) -> Result<(SigningKey, String), crate::assemble::StartError> {
    use crate::assemble::StartError;
    match signing {
        SigningConfig::File(path) => {
            let file_err = |reason: String| StartError::File {
                path: path.clone(),
                reason,
            };
            contracts::keyfile::check_private(path).map_err(file_err)?;
            let pem = std::fs::read(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
            let key = SigningKey::from_pem(Algorithm::ES256, member.as_str(), &pem)
                .map_err(|e| file_err(e.to_string()))?;
            Ok((key, path.display().to_string()))
        }
        SigningConfig::Pkcs11(config) => {
            let key = open_key(config, member).map_err(StartError::Hsm)?;
            let holder = key.holder();
            Ok((key, holder))
        }
    }
}
