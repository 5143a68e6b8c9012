//! Inclusion and consistency proofs as they travel (base64url hashes), the proof bundle
//! `simpul audit prove` writes, and their offline checks.

use contracts::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::merkle::{
    Hash, ProofError, decode_hash, leaf_hash, verify_consistency, verify_inclusion,
};
use crate::record::AuditRecord;
use crate::tree_head::{SignedTreeHead, TreeHeadError, verify_tree_head};

/// `format` of a proof bundle.
pub const PROOF_FORMAT: &str = "simpul-audit-proof/2";

/// That a record is leaf `seq` of the tree of `tree_size` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    /// The record's seq (its leaf index).
    pub seq: u64,
    /// The tree size the proof is against.
    pub tree_size: u64,
    /// base64url leaf hash, as the log holds it.
    pub leaf_hash: String,
    /// base64url hashes, RFC 9162 §2.1.3 order (the leaf's sibling first).
    pub path: Vec<String>,
    /// The record.
    pub record: AuditRecord,
}

/// That the tree of `second` leaves extends the tree of `first` leaves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    /// The smaller tree size.
    pub first: u64,
    /// The larger tree size.
    pub second: u64,
    /// base64url hashes, RFC 9162 §2.1.4 order.
    pub path: Vec<String>,
}

/// Everything needed to show, offline, that an exchange is in a member's log: the signed
/// tree head and the inclusion proof of each of the exchange's records against it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofBundle {
    /// [`PROOF_FORMAT`].
    pub format: String,
    /// The member whose log it is.
    pub log: String,
    /// The exchange proven.
    pub exchange_id: String,
    /// The signed tree head the proofs are against.
    pub tree_head: SignedTreeHead,
    /// One proof per record of the exchange.
    pub proofs: Vec<InclusionProof>,
}

/// What a proof bundle proved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProofReport {
    /// The member whose log it is.
    pub log: String,
    /// The exchange.
    pub exchange_id: String,
    /// The tree size of the signed head.
    pub tree_size: u64,
    /// Its root hash.
    pub root_hash: String,
    /// When it was signed (unix ms).
    pub timestamp: i64,
    /// The records proven to be in the log.
    pub records: Vec<AuditRecord>,
}

/// Why a proof did not check.
#[derive(Debug, thiserror::Error)]
pub enum ProofFailure {
    /// Not a proof bundle of this format.
    #[error("not a proof bundle: {0}")]
    Malformed(String),
    /// The bundle names another log than the key's member.
    #[error("the bundle is of {bundle}'s log, the key is {key}")]
    WrongLog {
        /// The bundle's log.
        bundle: String,
        /// The key's kid.
        key: String,
    },
    /// The tree head does not verify.
    #[error("the signed tree head: {0}")]
    TreeHead(#[from] TreeHeadError),
    /// The bundle holds no proof.
    #[error("the bundle holds no proof")]
    Empty,
    /// A proof is for another exchange, or its seq or size differ from its record's or
    /// its head's.
    #[error("seq {seq}: {reason}")]
    Inconsistent {
        /// The proof's seq.
        seq: u64,
        /// What differs.
        reason: String,
    },
    /// The record does not hash to the proof's leaf hash: the record was altered.
    #[error("seq {seq}: the record does not hash to the leaf hash of the log (it was altered)")]
    LeafMismatch {
        /// The record's seq.
        seq: u64,
    },
    /// The path does not lead from the leaf to the signed root.
    #[error("seq {seq}: {source}")]
    Path {
        /// The record's seq.
        seq: u64,
        /// Why.
        #[source]
        source: ProofError,
    },
}

fn decode_all(path: &[String]) -> Option<Vec<Hash>> {
    path.iter().map(|p| decode_hash(p)).collect()
}

/// Checks one inclusion proof against a root: the record is leaf `seq`, hashes to the
/// proof's leaf hash, and the path leads from it to `root`.
pub fn check_inclusion_proof(proof: &InclusionProof, root: &Hash) -> Result<(), ProofFailure> {
    let seq = proof.seq;
    if proof.record.seq != seq {
        return Err(ProofFailure::Inconsistent {
            seq,
            reason: format!("the record's seq is {}", proof.record.seq),
        });
    }
    let claimed = decode_hash(&proof.leaf_hash).ok_or_else(|| {
        ProofFailure::Malformed(format!("seq {seq}: leaf_hash is not a base64url SHA-256"))
    })?;
    let leaf =
        leaf_hash(&proof.record).map_err(|e| ProofFailure::Malformed(format!("seq {seq}: {e}")))?;
    if leaf != claimed {
        return Err(ProofFailure::LeafMismatch { seq });
    }
    let path = decode_all(&proof.path).ok_or_else(|| {
        ProofFailure::Malformed(format!("seq {seq}: a path hash is not a base64url SHA-256"))
    })?;
    verify_inclusion(&leaf, seq, proof.tree_size, &path, root)
        .map_err(|source| ProofFailure::Path { seq, source })
}

/// Checks a consistency proof between two roots.
pub fn check_consistency_proof(
    proof: &ConsistencyProof,
    first_root: &Hash,
    second_root: &Hash,
) -> Result<(), ProofError> {
    let path = decode_all(&proof.path).ok_or(ProofError::RootMismatch)?;
    verify_consistency(proof.first, proof.second, first_root, second_root, &path)
}

/// Checks a proof bundle offline with the member's public key: the tree head is signed by
/// `key` (its `kid`, its signature) for the bundle's log, and every record of the exchange
/// is proven against its root.
pub fn check_proof_bundle(
    bundle: &ProofBundle,
    key: &VerifyingKey,
) -> Result<ProofReport, ProofFailure> {
    if bundle.format != PROOF_FORMAT {
        return Err(ProofFailure::Malformed(format!(
            "format `{}`, expected `{PROOF_FORMAT}`",
            bundle.format
        )));
    }
    let key_member = crate::tree_head::kid_member(key.kid());
    if key_member != bundle.log {
        return Err(ProofFailure::WrongLog {
            bundle: bundle.log.clone(),
            key: key.kid().to_owned(),
        });
    }
    let (head, root) = verify_tree_head(&bundle.tree_head, key)?;
    if bundle.proofs.is_empty() {
        return Err(ProofFailure::Empty);
    }
    for p in &bundle.proofs {
        if p.tree_size != head.tree_size {
            return Err(ProofFailure::Inconsistent {
                seq: p.seq,
                reason: format!(
                    "proof is for tree size {}, the signed head's is {}",
                    p.tree_size, head.tree_size
                ),
            });
        }
        if p.record.exchange_id != bundle.exchange_id {
            return Err(ProofFailure::Inconsistent {
                seq: p.seq,
                reason: format!(
                    "the record is of exchange `{}`, not `{}`",
                    p.record.exchange_id, bundle.exchange_id
                ),
            });
        }
        check_inclusion_proof(p, &root)?;
    }
    Ok(ProofReport {
        log: bundle.log.clone(),
        exchange_id: bundle.exchange_id.clone(),
        tree_size: head.tree_size,
        root_hash: head.root_hash,
        timestamp: head.timestamp,
        records: bundle.proofs.iter().map(|p| p.record.clone()).collect(),
    })
}
