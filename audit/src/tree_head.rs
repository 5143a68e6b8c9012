//! Signed tree heads: `{member, log, tree_size, root_hash, timestamp}` as a compact JWS with
//! `typ` `simpul-tree-head+jws`, signed by the member key. The signature is what an auditor
//! trusts; everything else in a log can be recomputed and checked against it. A head names
//! its origin — the member whose key signs it and the log it is of — so a head can never be
//! passed off as another member's or another log's.

use contracts::canonical::canonical_json;
use contracts::{JwsError, ParsedJws, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::merkle::{Hash, decode_hash, encode_hash};

pub use contracts::envelope::TREE_HEAD_TYP;

/// The name of a member's log of exchanges: the only log a gateway keeps today, named in
/// every head it signs.
pub const EXCHANGE_LOG: &str = "exchanges";

/// The signed payload of a tree head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TreeHeadPayload {
    /// The member whose log it is, and whose key signs it: the part of the key's `kid`
    /// before `#`.
    pub member: String,
    /// Which of the member's logs: [`EXCHANGE_LOG`].
    pub log: String,
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
    /// The member whose log it is.
    pub member: String,
    /// Which of its logs.
    pub log: String,
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
    #[error("member/log/tree_size/root_hash/timestamp differ from the signed payload")]
    Mismatch,
    /// The head names another origin than the key's member and the log of exchanges.
    #[error(
        "the head is of log `{log}` of `{member}`, not of log `{EXCHANGE_LOG}` of `{expected}`"
    )]
    Origin {
        /// The member it names.
        member: String,
        /// The log it names.
        log: String,
        /// The member of the key that signs it.
        expected: String,
    },
}

/// The member a key id belongs to: the part before `#` (PROTOCOL.md §1.4).
pub fn kid_member(kid: &str) -> &str {
    kid.split_once('#').map_or(kid, |(member, _)| member)
}

/// Signs `{member, log, tree_size, root_hash, timestamp}` with `key`; the member is the
/// key's, the log [`EXCHANGE_LOG`].
pub fn sign_tree_head(
    key: &SigningKey,
    tree_size: u64,
    root: &Hash,
    timestamp: i64,
) -> Result<SignedTreeHead, JwsError> {
    let payload = TreeHeadPayload {
        member: kid_member(key.kid()).to_owned(),
        log: EXCHANGE_LOG.to_owned(),
        tree_size,
        root_hash: encode_hash(root),
        timestamp,
    };
    let bytes = canonical_json(&payload).map_err(|e| JwsError::Key(e.to_string()))?;
    let jws = key.sign(TREE_HEAD_TYP, &bytes)?;
    Ok(SignedTreeHead {
        member: payload.member,
        log: payload.log,
        tree_size,
        root_hash: payload.root_hash,
        timestamp,
        jws,
    })
}

/// Checks a tree head: its JWS has `typ` `simpul-tree-head+jws`, names `key` as its `kid`,
/// is signed with the key's own algorithm and verifies with it, names the key's member and
/// the log of exchanges as its origin, and signs exactly the fields beside it. Returns the
/// signed payload and its root hash.
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
    let payload: TreeHeadPayload = contracts::json::from_slice(&parsed.payload)
        .map_err(|e| TreeHeadError::Payload(e.to_string()))?;
    let root = decode_hash(&payload.root_hash)
        .ok_or_else(|| TreeHeadError::Payload("root_hash is not a base64url SHA-256".into()))?;
    let expected = kid_member(key.kid());
    if payload.member != expected || payload.log != EXCHANGE_LOG {
        return Err(TreeHeadError::Origin {
            member: payload.member,
            log: payload.log,
            expected: expected.to_owned(),
        });
    }
    if payload.member != head.member
        || payload.log != head.log
        || payload.tree_size != head.tree_size
        || payload.root_hash != head.root_hash
        || payload.timestamp != head.timestamp
    {
        return Err(TreeHeadError::Mismatch);
    }
    Ok((payload, root))
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::Algorithm;

    fn signed(member: &str) -> (SigningKey, SignedTreeHead) {
        let key = SigningKey::generate(Algorithm::ES256, member).unwrap();
        let head = sign_tree_head(&key, 3, &[7u8; 32], 1_700_000_000_000).unwrap();
        (key, head)
    }

    #[test]
    fn a_head_names_the_member_of_its_key_and_the_log_of_exchanges() {
        let (key, head) = signed("ID:GOV:KEMLU");
        assert_eq!(
            (head.member.as_str(), head.log.as_str()),
            ("ID:GOV:KEMLU", "exchanges")
        );
        let (payload, root) = verify_tree_head(&head, &key.verifying_key().unwrap()).unwrap();
        assert_eq!(payload.member, "ID:GOV:KEMLU");
        assert_eq!(root, [7u8; 32]);
    }

    /// A JWS over a payload of the caller's choosing, signed by `key`.
    fn forge(key: &SigningKey, payload: &TreeHeadPayload) -> SignedTreeHead {
        let bytes = canonical_json(payload).unwrap();
        SignedTreeHead {
            member: payload.member.clone(),
            log: payload.log.clone(),
            tree_size: payload.tree_size,
            root_hash: payload.root_hash.clone(),
            timestamp: payload.timestamp,
            jws: key.sign(TREE_HEAD_TYP, &bytes).unwrap(),
        }
    }

    #[test]
    fn a_head_naming_another_origin_is_refused_even_when_signed() {
        let (key, head) = signed("ID:GOV:KEMLU");
        let public = key.verifying_key().unwrap();
        let base = TreeHeadPayload {
            member: head.member.clone(),
            log: head.log.clone(),
            tree_size: head.tree_size,
            root_hash: head.root_hash.clone(),
            timestamp: head.timestamp,
        };
        for (member, log) in [("ID:GOV:DUKCAPIL", "exchanges"), ("ID:GOV:KEMLU", "events")] {
            let other = TreeHeadPayload {
                member: member.into(),
                log: log.into(),
                ..base.clone()
            };
            let e = verify_tree_head(&forge(&key, &other), &public).unwrap_err();
            assert!(matches!(e, TreeHeadError::Origin { .. }), "{e}");
        }
        // The readers' copy of the origin must be what is signed.
        let mut relabelled = head.clone();
        relabelled.log = "events".into();
        assert!(matches!(
            verify_tree_head(&relabelled, &public),
            Err(TreeHeadError::Mismatch)
        ));
    }

    #[test]
    fn a_head_without_an_origin_is_not_a_tree_head() {
        let key = SigningKey::generate(Algorithm::ES256, "ID:GOV:KEMLU").unwrap();
        let legacy = br#"{"root_hash":"AAAA","timestamp":1,"tree_size":0}"#;
        let head = SignedTreeHead {
            member: "ID:GOV:KEMLU".into(),
            log: EXCHANGE_LOG.into(),
            tree_size: 0,
            root_hash: "AAAA".into(),
            timestamp: 1,
            jws: key.sign(TREE_HEAD_TYP, legacy).unwrap(),
        };
        let e = verify_tree_head(&head, &key.verifying_key().unwrap()).unwrap_err();
        assert!(matches!(e, TreeHeadError::Payload(_)), "{e}");
    }
}
