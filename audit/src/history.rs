//! A member's key history from federation manifests: which key checks a tree head signed
//! before or after a rotation, given only the authority's public key (docs/AUDIT.md §4.2).
//!
//! Each manifest must verify with one of the authority keys (expired or not: it is of the
//! past), so whoever hands over the manifests cannot add a key. A head is checked with the
//! key its `kid` names, taken from the highest-serial manifest listing it for the member,
//! and its `timestamp` in whole seconds must fall inside that key's window; a key without
//! `not_after` counts as valid until its manifest's `expires_at` (a manifest vouches for a
//! key no longer than it is valid itself).

use std::collections::HashMap;

use contracts::{KeyWindow, Manifest, ParsedJws, VerifyingKey};

use crate::tree_head::{SignedTreeHead, TREE_HEAD_TYP};

/// A key of the history: the key, its window, the serial of the manifest it is taken from.
struct Known {
    key: VerifyingKey,
    window: KeyWindow,
    serial: u64,
}

/// One member's keys with their windows, from the manifests added.
pub struct KeyHistory {
    member: String,
    keys: HashMap<String, Known>,
    manifests: u64,
}

impl KeyHistory {
    /// An empty history of `member`'s keys.
    pub fn new(member: &str) -> Self {
        Self {
            member: member.to_owned(),
            keys: HashMap::new(),
            manifests: 0,
        }
    }

    /// How many manifests were added.
    pub fn manifests(&self) -> u64 {
        self.manifests
    }

    /// Adds the member's keys from `jws`, a manifest that must verify with the authority
    /// key its `kid` names among `authorities`.
    ///
    /// # Errors
    /// Why the manifest is refused.
    pub fn add(&mut self, jws: &str, authorities: &[VerifyingKey]) -> Result<(), String> {
        let kid = ParsedJws::parse(jws.trim(), contracts::manifest::MANIFEST_TYP)
            .map_err(|e| e.to_string())?
            .header
            .kid
            .unwrap_or_default();
        let authority = authorities.iter().find(|k| k.kid() == kid).ok_or_else(|| {
            format!("it is signed by `{kid}`, which is not an authority key given")
        })?;
        let manifest = Manifest::verify_any_time(jws, authority).map_err(|e| e.to_string())?;
        self.manifests += 1;
        let doc = manifest.doc();
        let Some(member) = doc.members.iter().find(|m| m.id.as_str() == self.member) else {
            return Ok(());
        };
        for jwk in &member.keys {
            let Some(kid) = jwk.get("kid").and_then(serde_json::Value::as_str) else {
                continue;
            };
            let (Some((_, key)), Some(mut window)) = (manifest.key(kid), manifest.key_window(kid))
            else {
                continue;
            };
            if self.keys.get(kid).is_some_and(|k| k.serial >= doc.serial) {
                continue;
            }
            window.not_after.get_or_insert(doc.expires_at);
            self.keys.insert(
                kid.to_owned(),
                Known {
                    key: key.clone(),
                    window,
                    serial: doc.serial,
                },
            );
        }
        Ok(())
    }

    /// The key `head` names, if the history lists it and its window holds the head's
    /// timestamp (the signature itself is checked by [`crate::verify_tree_head`]).
    ///
    /// # Errors
    /// Why no key of the history may have signed it.
    pub fn key_for(&self, head: &SignedTreeHead) -> Result<&VerifyingKey, String> {
        let kid = ParsedJws::parse(&head.jws, TREE_HEAD_TYP)
            .map_err(|e| e.to_string())?
            .header
            .kid
            .unwrap_or_default();
        let known = self.keys.get(&kid).ok_or_else(|| {
            format!(
                "it is signed by `{kid}`, which no manifest given lists for {}",
                self.member
            )
        })?;
        let at = head.timestamp.div_euclid(1000);
        if !known.window.contains(at) {
            return Err(format!(
                "signed at {at} by `{kid}`, which may sign {} only",
                known.window
            ));
        }
        Ok(&known.key)
    }
}
