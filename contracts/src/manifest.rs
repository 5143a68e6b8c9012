//! The federation manifest: who the members are, their keys, the contracts, and who may ask
//! what for which purpose — signed by the federation authority.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::contract::ContractRef;
use crate::jws::{JwsError, ParsedJws, SigningKey, VerifyingKey};
use crate::member::MemberId;

/// `typ` of a manifest JWS.
pub const MANIFEST_TYP: &str = "simpul-manifest+jws";

/// The manifest format versions this code reads: 1, and 2, whose keys may carry a
/// validity window (PROTOCOL.md §1.6).
pub const MANIFEST_VERSIONS: [u32; 2] = [1, 2];

/// The JWK member giving the first second a key may sign at (Unix seconds), manifest v2.
pub const NOT_BEFORE: &str = "not_before";

/// The JWK member giving the first second a key may no longer sign at (Unix seconds),
/// manifest v2.
pub const NOT_AFTER: &str = "not_after";

/// When a key may sign: from `not_before` (inclusive) to `not_after` (exclusive), Unix
/// seconds; an absent bound is open. A signature's time — the `iat` of an envelope, the
/// `timestamp` of a tree head in whole seconds — must fall inside (PROTOCOL.md §1.5).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWindow {
    /// First second the key may sign at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<i64>,
    /// First second the key may no longer sign at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
}

impl KeyWindow {
    /// The window a JWK carries in its `not_before` / `not_after` members.
    ///
    /// # Errors
    /// A bound that is not an integer, or `not_before` not earlier than `not_after`.
    pub fn of_jwk(jwk: &Value) -> Result<KeyWindow, String> {
        let bound = |name: &str| -> Result<Option<i64>, String> {
            match jwk.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_i64()
                    .map(Some)
                    .ok_or_else(|| format!("`{name}` must be an integer (Unix seconds)")),
            }
        };
        let window = KeyWindow {
            not_before: bound(NOT_BEFORE)?,
            not_after: bound(NOT_AFTER)?,
        };
        if let (Some(b), Some(a)) = (window.not_before, window.not_after)
            && b >= a
        {
            return Err(format!(
                "`{NOT_BEFORE}` {b} must be earlier than `{NOT_AFTER}` {a}"
            ));
        }
        Ok(window)
    }

    /// Whether the window is open at both ends.
    pub fn is_open(&self) -> bool {
        self.not_before.is_none() && self.not_after.is_none()
    }

    /// Whether a signature made at `t` (Unix seconds) falls inside.
    pub fn contains(&self, t: i64) -> bool {
        self.not_before.is_none_or(|b| t >= b) && self.not_after.is_none_or(|a| t < a)
    }

    /// Writes the window into `jwk` (removing a bound that is `None`).
    pub fn set_in(&self, jwk: &mut Value) {
        if let Some(map) = jwk.as_object_mut() {
            for (name, bound) in [(NOT_BEFORE, self.not_before), (NOT_AFTER, self.not_after)] {
                match bound {
                    Some(t) => map.insert(name.to_owned(), t.into()),
                    None => map.remove(name),
                };
            }
        }
    }
}

impl std::fmt::Display for KeyWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.not_before, self.not_after) {
            (None, None) => write!(f, "always"),
            (Some(b), None) => write!(f, "from {}", crate::utc(b)),
            (None, Some(a)) => write!(f, "until {}", crate::utc(a)),
            (Some(b), Some(a)) => write!(f, "from {} until {}", crate::utc(b), crate::utc(a)),
        }
    }
}

/// Why a key cannot check a signature: the manifest does not list it, or the signature's
/// time is outside its window.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyRefused {
    /// No member of the manifest has a key with this `kid`.
    #[error("kid `{kid}` names no key of a manifest member")]
    Unknown {
        /// The `kid`.
        kid: String,
    },
    /// The key is listed, but may not sign at the signature's time.
    #[error("key `{kid}` may sign {window}, not at {}", crate::utc(*at))]
    OutsideWindow {
        /// The `kid`.
        kid: String,
        /// The signature's time.
        at: i64,
        /// The key's window.
        window: KeyWindow,
    },
}

/// A member as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestMember {
    /// Member id (three parts).
    pub id: MemberId,
    /// Human name.
    pub name: String,
    /// Base URL of its gateway, `https://host:port`.
    pub gateway: String,
    /// Public signing keys (JWK with `kid`; in manifest v2, optionally `not_before` and
    /// `not_after`, see [`KeyWindow`]).
    pub keys: Vec<Value>,
}

/// A consumer allowed on a contract, and for which purposes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    /// Consumer member id.
    pub member: MemberId,
    /// Purposes it may ask for.
    pub purposes: Vec<String>,
}

/// Rate a consumer may ask a contract at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Sustained requests per second.
    pub per_second: u32,
    /// Burst above the sustained rate.
    pub burst: u32,
}

/// A contract as the manifest pins it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestContract {
    /// Contract id.
    pub id: String,
    /// Version.
    pub version: String,
    /// Provider member id.
    pub provider: MemberId,
    /// base64url SHA-256 of the contract document's RFC 8785 form.
    pub digest: String,
    /// Who may ask it, for what.
    pub consumers: Vec<Consumer>,
    /// Per-consumer rate.
    pub rate: Rate,
}

/// The manifest payload (PROTOCOL.md §1).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestDoc {
    /// Format version, 1 or 2 ([`MANIFEST_VERSIONS`]).
    pub v: u32,
    /// Federation instance, e.g. `ID`.
    pub federation: String,
    /// Increases with every new manifest; a lower one is a rollback.
    pub serial: u64,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; an expired manifest is refused.
    pub expires_at: i64,
    /// PEM certificates of the federation CAs.
    pub ca: Vec<String>,
    /// Members.
    pub members: Vec<ManifestMember>,
    /// Contracts.
    pub contracts: Vec<ManifestContract>,
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The JWS did not parse or verify.
    #[error("manifest signature: {0}")]
    Jws(#[from] JwsError),
    /// The JWS was signed by another key than the pinned authority key.
    #[error("manifest is signed by `{found}`, the pinned authority key is `{pinned}`")]
    WrongAuthority {
        /// The kid in the header.
        found: String,
        /// The pinned kid.
        pinned: String,
    },
    /// The payload cannot be encoded.
    #[error("manifest payload: {0}")]
    Payload(#[from] serde_json::Error),
    /// The payload is not strict JSON or not a manifest.
    #[error("manifest payload: {0}")]
    Json(#[from] crate::json::JsonError),
    /// The manifest's `expires_at` has passed.
    #[error("manifest serial {serial} expired at {expires_at} (now {now})")]
    Expired {
        /// Its serial.
        serial: u64,
        /// When it expired.
        expires_at: i64,
        /// Now.
        now: i64,
    },
    /// A manifest older than the one held.
    #[error("manifest serial {offered} is lower than the serial {held} already held (rollback)")]
    Rollback {
        /// The serial offered.
        offered: u64,
        /// The serial held.
        held: u64,
    },
    /// The content is inconsistent.
    #[error("manifest field `{field}`: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// What is wrong.
        reason: String,
    },
}

/// Every member key by kid: the member it is of, the key, its window.
type KeyIndex = HashMap<String, ((MemberId, VerifyingKey), KeyWindow)>;

/// A verified manifest with its indexes.
#[derive(Clone, Debug)]
pub struct Manifest {
    doc: Arc<ManifestDoc>,
    jws: Arc<str>,
    keys: Arc<KeyIndex>,
    members: Arc<HashMap<MemberId, usize>>,
    contracts: Arc<HashMap<ContractRef, usize>>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ManifestError {
    ManifestError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl Manifest {
    /// Signs a manifest document with the authority's key, after checking it the way
    /// [`Manifest::verify`] will.
    pub fn sign(doc: &ManifestDoc, authority: &SigningKey) -> Result<String, ManifestError> {
        Self::index(doc)?;
        let payload = serde_json::to_vec(doc)?;
        Ok(authority.sign(MANIFEST_TYP, &payload)?)
    }

    /// Verifies a manifest JWS against the pinned authority key and checks that it has not
    /// expired at `now` and is internally consistent.
    pub fn verify(
        jws: &str,
        authority: &VerifyingKey,
        now: i64,
    ) -> Result<Manifest, ManifestError> {
        Self::verify_inner(jws, authority, Some(now))
    }

    /// [`Manifest::verify`] without the expiry check: for reading a manifest of the past
    /// offline (the key history of an audit export, `simpul manifest diff`), never for
    /// trusting one at run time.
    pub fn verify_any_time(jws: &str, authority: &VerifyingKey) -> Result<Manifest, ManifestError> {
        Self::verify_inner(jws, authority, None)
    }

    fn verify_inner(
        jws: &str,
        authority: &VerifyingKey,
        now: Option<i64>,
    ) -> Result<Manifest, ManifestError> {
        let parsed = ParsedJws::parse(jws.trim(), MANIFEST_TYP)?;
        let kid = parsed.header.kid.clone().unwrap_or_default();
        if kid != authority.kid() {
            return Err(ManifestError::WrongAuthority {
                found: kid,
                pinned: authority.kid().to_owned(),
            });
        }
        authority.verify(&parsed)?;
        let doc: ManifestDoc = crate::json::from_slice(&parsed.payload)?;
        if let Some(now) = now
            && doc.expires_at <= now
        {
            return Err(ManifestError::Expired {
                serial: doc.serial,
                expires_at: doc.expires_at,
                now,
            });
        }
        let (keys, members, contracts) = Self::index(&doc)?;
        Ok(Manifest {
            doc: Arc::new(doc),
            jws: jws.trim().into(),
            keys: Arc::new(keys),
            members: Arc::new(members),
            contracts: Arc::new(contracts),
        })
    }

    /// Refuses a manifest whose serial is lower than the one already held.
    pub fn check_not_older_than(&self, held_serial: u64) -> Result<(), ManifestError> {
        if self.doc.serial < held_serial {
            return Err(ManifestError::Rollback {
                offered: self.doc.serial,
                held: held_serial,
            });
        }
        Ok(())
    }

    #[allow(clippy::type_complexity)]
    fn index(
        doc: &ManifestDoc,
    ) -> Result<
        (
            KeyIndex,
            HashMap<MemberId, usize>,
            HashMap<ContractRef, usize>,
        ),
        ManifestError,
    > {
        if !MANIFEST_VERSIONS.contains(&doc.v) {
            return Err(invalid(
                "v",
                format!("version {} is not supported (1 or 2)", doc.v),
            ));
        }
        if doc.issued_at >= doc.expires_at {
            return Err(invalid("expires_at", "must be after issued_at"));
        }
        if doc.ca.is_empty() {
            return Err(invalid("ca", "at least one CA certificate is required"));
        }
        let mut keys = HashMap::new();
        let mut members = HashMap::new();
        for (i, m) in doc.members.iter().enumerate() {
            let at = format!("members[{i}]");
            if m.id.is_subsystem() {
                return Err(invalid(
                    format!("{at}.id"),
                    "must be a member id, not a subsystem",
                ));
            }
            if members.insert(m.id.clone(), i).is_some() {
                return Err(invalid(
                    format!("{at}.id"),
                    format!("{} is listed twice", m.id),
                ));
            }
            check_gateway_url(&m.gateway).map_err(|why| invalid(format!("{at}.gateway"), why))?;
            if m.keys.is_empty() {
                return Err(invalid(
                    format!("{at}.keys"),
                    "at least one key is required",
                ));
            }
            for (k, jwk) in m.keys.iter().enumerate() {
                let key = VerifyingKey::from_jwk(jwk)
                    .map_err(|e| invalid(format!("{at}.keys[{k}]"), e.to_string()))?;
                let expected = format!("{}#", m.id);
                if !key.kid().starts_with(&expected) {
                    return Err(invalid(
                        format!("{at}.keys[{k}].kid"),
                        format!("`{}` must start with `{expected}`", key.kid()),
                    ));
                }
                let window = KeyWindow::of_jwk(jwk)
                    .map_err(|why| invalid(format!("{at}.keys[{k}]"), why))?;
                if doc.v < 2 && !window.is_open() {
                    // A reader of version 1 would ignore the window and accept the key at
                    // any time: a window needs a version such a reader refuses.
                    return Err(invalid(
                        format!("{at}.keys[{k}]"),
                        format!("`{NOT_BEFORE}`/`{NOT_AFTER}` need manifest version 2"),
                    ));
                }
                if keys
                    .insert(key.kid().to_owned(), ((m.id.clone(), key), window))
                    .is_some()
                {
                    return Err(invalid(
                        format!("{at}.keys[{k}].kid"),
                        "kid is listed twice",
                    ));
                }
            }
        }
        let mut contracts = HashMap::new();
        for (i, c) in doc.contracts.iter().enumerate() {
            let at = format!("contracts[{i}]");
            if !members.contains_key(&c.provider) {
                return Err(invalid(
                    format!("{at}.provider"),
                    format!("{} is not a member", c.provider),
                ));
            }
            let mut seen = HashSet::new();
            for (j, consumer) in c.consumers.iter().enumerate() {
                if !members.contains_key(&consumer.member) {
                    return Err(invalid(
                        format!("{at}.consumers[{j}].member"),
                        format!("{} is not a member", consumer.member),
                    ));
                }
                if !seen.insert(&consumer.member) {
                    return Err(invalid(
                        format!("{at}.consumers[{j}].member"),
                        "listed twice",
                    ));
                }
            }
            if c.rate.per_second == 0 {
                return Err(invalid(
                    format!("{at}.rate.per_second"),
                    "must be at least 1",
                ));
            }
            if contracts
                .insert(ContractRef::new(&c.id, &c.version), i)
                .is_some()
            {
                return Err(invalid(
                    at,
                    format!("{}/{} is listed twice", c.id, c.version),
                ));
            }
        }
        Ok((keys, members, contracts))
    }

    /// The document.
    pub fn doc(&self) -> &ManifestDoc {
        &self.doc
    }

    /// The signed JWS, as received: what `GET /v1/manifest` serves.
    pub fn jws(&self) -> &str {
        &self.jws
    }

    /// A member by id.
    pub fn member(&self, id: &MemberId) -> Option<&ManifestMember> {
        self.members.get(id).map(|&i| &self.doc.members[i])
    }

    /// A member's key by full kid (`<member>#<key id>`), with the member it belongs to,
    /// whatever its window: a verifier checks a signature with [`Manifest::key_at`].
    pub fn key(&self, kid: &str) -> Option<&(MemberId, VerifyingKey)> {
        self.keys.get(kid).map(|(k, _)| k)
    }

    /// The validity window of a member's key, by full kid.
    pub fn key_window(&self, kid: &str) -> Option<KeyWindow> {
        self.keys.get(kid).map(|(_, w)| *w)
    }

    /// The key a signature made at `t` (Unix seconds: an envelope's `iat`, a tree head's
    /// `timestamp` in seconds) is checked with: the key `kid` names, if its window holds `t`.
    ///
    /// # Errors
    /// [`KeyRefused`]: no such key, or `t` outside its window.
    pub fn key_at(&self, kid: &str, t: i64) -> Result<&(MemberId, VerifyingKey), KeyRefused> {
        let (key, window) = self.keys.get(kid).ok_or_else(|| KeyRefused::Unknown {
            kid: kid.to_owned(),
        })?;
        if !window.contains(t) {
            return Err(KeyRefused::OutsideWindow {
                kid: kid.to_owned(),
                at: t,
                window: *window,
            });
        }
        Ok(key)
    }

    /// A contract by id and version.
    pub fn contract(&self, r: &ContractRef) -> Option<&ManifestContract> {
        self.contracts.get(r).map(|&i| &self.doc.contracts[i])
    }

    /// The contracts a member provides.
    pub fn provided_by<'a>(
        &'a self,
        provider: &'a MemberId,
    ) -> impl Iterator<Item = &'a ManifestContract> + 'a {
        self.doc
            .contracts
            .iter()
            .filter(move |c| &c.provider == provider)
    }

    /// Purposes for which `consumer` may ask `contract`; `None` if it may not ask at all.
    pub fn grant<'a>(
        &self,
        contract: &'a ManifestContract,
        consumer: &MemberId,
    ) -> Option<&'a [String]> {
        contract
            .consumers
            .iter()
            .find(|c| &c.member == consumer)
            .map(|c| c.purposes.as_slice())
    }

    /// Whether the manifest lets `consumer` ask `contract` for `purpose`: the one grant check
    /// both sides of an exchange make (the consumer before it asks, the provider before it
    /// answers).
    ///
    /// # Errors
    /// [`NotGranted`] saying whether the consumer holds no grant at all or another purpose.
    pub fn authorize(
        &self,
        contract: &ManifestContract,
        consumer: &MemberId,
        purpose: &str,
    ) -> Result<(), NotGranted> {
        let reference = ContractRef::new(&contract.id, &contract.version);
        match self.grant(contract, consumer) {
            Some(purposes) if purposes.iter().any(|p| p == purpose) => Ok(()),
            Some(purposes) => Err(NotGranted::Purpose {
                consumer: consumer.clone(),
                contract: reference,
                granted: purposes.to_vec(),
                asked: purpose.to_owned(),
            }),
            None => Err(NotGranted::Consumer {
                consumer: consumer.clone(),
                contract: reference,
            }),
        }
    }

    /// A summary for people: members, keys, contracts and grants.
    pub fn summary(&self) -> String {
        let d = &self.doc;
        let mut out = format!(
            "federation {} serial {} issued {} expires {}\n{} CA certificate(s)\nmembers:\n",
            d.federation,
            d.serial,
            crate::utc(d.issued_at),
            crate::utc(d.expires_at),
            d.ca.len()
        );
        for m in &d.members {
            out.push_str(&format!("  {} ({}) at {}\n", m.id, m.name, m.gateway));
            for k in &m.keys {
                let window = KeyWindow::of_jwk(k).unwrap_or_default();
                out.push_str(&format!(
                    "    key {}{}\n",
                    k.get("kid").and_then(Value::as_str).unwrap_or("?"),
                    if window.is_open() {
                        String::new()
                    } else {
                        format!(" (signs {window})")
                    }
                ));
            }
        }
        out.push_str("contracts:\n");
        for c in &d.contracts {
            out.push_str(&format!(
                "  {}/{} by {} digest {} rate {}/s burst {}\n",
                c.id, c.version, c.provider, c.digest, c.rate.per_second, c.rate.burst
            ));
            let grants: BTreeMap<_, _> = c
                .consumers
                .iter()
                .map(|g| (g.member.as_str(), g.purposes.join(",")))
                .collect();
            for (m, p) in grants {
                out.push_str(&format!("    {m} for {p}\n"));
            }
        }
        out
    }
}

/// Checks a member's gateway URL: `https://host[:port]`, a trailing `/` allowed, and nothing
/// else — no user info, path, query or fragment, so that every consumer reaches and names
/// the same server however it builds URLs from it.
///
/// # Errors
/// What is wrong with it, for the manifest's error.
pub fn check_gateway_url(url: &str) -> Result<(), &'static str> {
    let rest = url
        .strip_prefix("https://")
        .ok_or("must be an https:// URL")?;
    if rest.contains(['?', '#']) {
        return Err("must have no query or fragment: https://host[:port]");
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err("must have no path: https://host[:port]");
    }
    if authority.contains('@') {
        return Err("must have no user info: https://host[:port]");
    }
    if authority
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\' || c == '%')
    {
        return Err("must name a host without spaces, escapes or control characters");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or("an IPv6 host must be in brackets")?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or("only a port may follow an IPv6 host")?,
                ),
            };
            (host, port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return Err("must name a host");
    }
    if let Some(port) = port
        && !(port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok_and(|p| p > 0))
    {
        return Err("the port must be a number from 1 to 65535");
    }
    Ok(())
}

/// Why the manifest does not let a consumer ask a contract (problem code `forbidden`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotGranted {
    /// The consumer holds no grant for the contract.
    #[error("{consumer} is not a consumer of {contract} in the manifest")]
    Consumer {
        /// Who asked.
        consumer: MemberId,
        /// What.
        contract: ContractRef,
    },
    /// The consumer holds a grant, for other purposes.
    #[error("{consumer} may ask {contract} for {} only, not for `{asked}`", granted.join(", "))]
    Purpose {
        /// Who asked.
        consumer: MemberId,
        /// What.
        contract: ContractRef,
        /// The purposes it is granted.
        granted: Vec<String>,
        /// The purpose it asked for.
        asked: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jws::Algorithm;

    /// A v`v` manifest of one member with `keys`, signed by a fresh authority.
    fn signed(v: u32, keys: Vec<Value>) -> (Result<Manifest, ManifestError>, VerifyingKey) {
        let authority = SigningKey::generate(Algorithm::ES256, "ID:GOV:SIMPUL").unwrap();
        let doc = ManifestDoc {
            v,
            federation: "ID".into(),
            serial: 1,
            issued_at: 100,
            expires_at: 2_000_000_000,
            ca: vec!["CA".into()],
            members: vec![ManifestMember {
                id: MemberId::parse("ID:GOV:A").unwrap(),
                name: "A".into(),
                gateway: "https://a:1".into(),
                keys,
            }],
            contracts: vec![],
        };
        // Signed as is: `sign` would refuse an inconsistent one before `verify` could.
        let jws = authority
            .sign(MANIFEST_TYP, &serde_json::to_vec(&doc).unwrap())
            .unwrap();
        let key = authority.verifying_key().unwrap();
        (Manifest::verify(&jws, &key, 1_000), key)
    }

    fn jwk(key: &SigningKey, window: KeyWindow) -> Value {
        let mut jwk = key.public_jwk().clone();
        window.set_in(&mut jwk);
        jwk
    }

    #[test]
    fn a_key_signs_inside_its_window_only() {
        let old = SigningKey::generate(Algorithm::ES256, "ID:GOV:A").unwrap();
        let new = SigningKey::generate(Algorithm::ES256, "ID:GOV:A").unwrap();
        let (m, _) = signed(
            2,
            vec![
                jwk(
                    &old,
                    KeyWindow {
                        not_before: None,
                        not_after: Some(500),
                    },
                ),
                jwk(
                    &new,
                    KeyWindow {
                        not_before: Some(400),
                        not_after: None,
                    },
                ),
            ],
        );
        let m = m.unwrap();
        assert!(m.key_at(old.kid(), 0).is_ok());
        assert!(m.key_at(old.kid(), 499).is_ok());
        assert!(matches!(
            m.key_at(old.kid(), 500),
            Err(KeyRefused::OutsideWindow { at: 500, .. })
        ));
        assert!(matches!(
            m.key_at(new.kid(), 399),
            Err(KeyRefused::OutsideWindow { .. })
        ));
        assert!(m.key_at(new.kid(), 400).is_ok());
        assert!(m.key_at(new.kid(), i64::MAX).is_ok());
        assert!(matches!(
            m.key_at("ID:GOV:A#nope", 450),
            Err(KeyRefused::Unknown { .. })
        ));
        // The key itself is found whatever the time, with its window.
        assert!(m.key(old.kid()).is_some());
        assert_eq!(m.key_window(old.kid()).unwrap().not_after, Some(500));
        let refused = m.key_at(old.kid(), 600).unwrap_err().to_string();
        assert!(
            refused.contains("may sign until 1970-01-01T00:08:20Z, not at 1970-01-01T00:10:00Z"),
            "{refused}"
        );
    }

    #[test]
    fn windows_need_version_2_and_must_be_integers_in_order() {
        let k = SigningKey::generate(Algorithm::ES256, "ID:GOV:A").unwrap();
        let w = KeyWindow {
            not_before: Some(1),
            not_after: None,
        };
        // Version 1 without windows, and version 2 with or without, are read.
        assert!(signed(1, vec![k.public_jwk().clone()]).0.is_ok());
        assert!(signed(2, vec![k.public_jwk().clone()]).0.is_ok());
        assert!(signed(2, vec![jwk(&k, w)]).0.is_ok());
        let refused = |v, key: Value, why: &str| match signed(v, vec![key]).0 {
            Err(ManifestError::Invalid { field, reason }) => {
                assert_eq!(field, "members[0].keys[0]");
                assert!(reason.contains(why), "{reason}");
            }
            other => panic!("{other:?}"),
        };
        refused(1, jwk(&k, w), "need manifest version 2");
        let mut text = k.public_jwk().clone();
        text["not_after"] = "soon".into();
        refused(2, text, "must be an integer");
        refused(
            2,
            jwk(
                &k,
                KeyWindow {
                    not_before: Some(5),
                    not_after: Some(5),
                },
            ),
            "must be earlier than",
        );
        assert!(matches!(
            signed(3, vec![k.public_jwk().clone()]).0,
            Err(ManifestError::Invalid { field, .. }) if field == "v"
        ));
    }

    #[test]
    fn an_expired_manifest_is_read_any_time_but_not_trusted_now() {
        let k = SigningKey::generate(Algorithm::ES256, "ID:GOV:A").unwrap();
        let (m, authority) = signed(1, vec![k.public_jwk().clone()]);
        let jws = m.unwrap().jws().to_owned();
        assert!(matches!(
            Manifest::verify(&jws, &authority, 2_000_000_000),
            Err(ManifestError::Expired { .. })
        ));
        assert!(Manifest::verify_any_time(&jws, &authority).is_ok());
        let stranger = SigningKey::generate(Algorithm::ES256, "ID:GOV:SIMPUL").unwrap();
        assert!(Manifest::verify_any_time(&jws, &stranger.verifying_key().unwrap()).is_err());
    }

    #[test]
    fn a_gateway_url_is_https_host_and_port_only() {
        for good in [
            "https://dukcapil.simpul.example:7442",
            "https://dukcapil.simpul.example",
            "https://127.0.0.1:7442/",
            "https://[::1]:7442",
        ] {
            assert_eq!(check_gateway_url(good), Ok(()), "{good}");
        }
        for bad in [
            "http://dukcapil.simpul.example:7442",
            "https://user:pass@dukcapil.simpul.example:7442",
            "https://dukcapil.simpul.example:7442?x=1",
            "https://dukcapil.simpul.example:7442#frag",
            "https://dukcapil.simpul.example:7442/v1",
            "https://",
            "https://:7442",
            "https://host:0",
            "https://host:65536",
            "https://host:74a2",
            "https://host name",
            "https://[::1]x",
        ] {
            assert!(check_gateway_url(bad).is_err(), "{bad}");
        }
    }
}
