//! Signed tree heads: `{tree_size, root_hash, timestamp}` as a compact JWS with `typ`
//! `simpul-tree-head+jws`, signed by the member key. The signature is what an auditor
//! trusts; everything else in a log can be recomputed and checked against it.

use contracts::canonical::canonical_json;
use contracts::{JwsError, ParsedJws, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::{Hash, decode_hash, encode_hash};

/// `typ` of a signed tree head.
pub const TREE_HEAD_TYP: &str = "simpul-tree-head+jws";

/// The signed payload of a tree head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHeadPayload {
    /// Leaves in the tree.
    pub tree_size: u64,
    /// base64url root hash of the tree of that size.
    pub root_hash: String,
    /// Unix milliseconds when it was signed.
    pub timestamp: i64,
}

/// A tree head and its signature. `tree_size`, `root_hash` and `timestamp` repeat the JWS
/// payload for readers; a verifier takes them from the verified payload
/// ([`verify_tree_head`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTreeHead {
    /// Leaves in the tree.
    pub tree_size: u64,
    /// base64url root hash.
    pub root_hash: String,
    /// Unix milliseconds when it was signed.
    pub timestamp: i64,
    /// The compact JWS over `{tree_size, root_hash, timestamp}` (JCS).
    pub jws: String,
}

/// Why a signed tree head was refused.
#[derive(Debug, thiserror::Error)]
pub enum TreeHeadError {
    /// Not a JWS of the right type, or a bad signature.
    #[error("{0}")]
    Jws(#[from] JwsError),
    /// Signed by a key other than the one given.
    #[error("signed by {found}, not by {expected}")]
    WrongKey {
        /// The `kid` in the header.
        found: String,
        /// The key's `kid`.
        expected: String,
    },
    /// The payload is not a tree head.
    #[error("the payload is not a tree head: {0}")]
    Payload(String),
    /// The fields beside the JWS differ from what it signs.
    #[error("tree_size/root_hash/timestamp differ from the signed payload")]
    Mismatch,
}

/// Signs `{tree_size, root_hash, timestamp}` with `key`.
pub fn sign_tree_head(
    key: &SigningKey,
    tree_size: u64,
    root: &Hash,
    timestamp: i64,
) -> Result<SignedTreeHead, JwsError> {
    let payload = TreeHeadPayload {
        tree_size,
        root_hash: encode_hash(root),
        timestamp,
    };
    let bytes = canonical_json(&payload).map_err(|e| JwsError::Key(e.to_string()))?;
    let jws = key.sign(TREE_HEAD_TYP, &bytes)?;
    Ok(SignedTreeHead {
        tree_size,
        root_hash: payload.root_hash,
        timestamp,
        jws,
    })
}

/// Checks a tree head: its JWS has `typ` `simpul-tree-head+jws`, names `key` as its `kid`,
/// verifies with it, and signs exactly the fields beside it. Returns the signed payload
/// and its root hash.
pub fn verify_tree_head(
    head: &SignedTreeHead,
    key: &VerifyingKey,
) -> Result<(TreeHeadPayload, Hash), TreeHeadError> {
    let parsed = ParsedJws::parse(&head.jws, TREE_HEAD_TYP)?;
    let kid = parsed.header.kid.clone().unwrap_or_default();
    if kid != key.kid() {
        return Err(TreeHeadError::WrongKey {
            found: kid,
            expected: key.kid().to_owned(),
        });
    }
    key.verify(&parsed)?;
    let payload: TreeHeadPayload = serde_json::from_slice(&parsed.payload)
        .map_err(|e| TreeHeadError::Payload(e.to_string()))?;
    let root = decode_hash(&payload.root_hash)
        .ok_or_else(|| TreeHeadError::Payload("root_hash is not a base64url SHA-256".into()))?;
    if payload.tree_size != head.tree_size
        || payload.root_hash != head.root_hash
        || payload.timestamp != head.timestamp
    {
        return Err(TreeHeadError::Mismatch);
    }
    Ok((payload, root))
}
