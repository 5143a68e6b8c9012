//! The audit log's core (PROTOCOL.md §5), with no I/O: the record, the RFC 9162 Merkle tree
//! over the records, signed tree heads, inclusion and consistency proofs, the export format,
//! and what a security team runs offline — [`verify`] an export, check a [`proof`],
//! [`reconcile`] two members' logs. The running log and its storage are `simpul-audit-store`.

pub mod export;
pub mod history;
pub mod merkle;
pub mod proof;
pub mod reconcile;
pub mod record;
pub mod tree_head;
pub mod verify;

pub use export::{
    EXPORT_FORMAT, EXPORT_FORMATS, ExportHeader, ExportLine, ExportedManifest, ExportedRecord,
};
pub use history::KeyHistory;
pub use merkle::{
    Hash, ProofError, empty_root, leaf_hash, node_hash, root, verify_consistency, verify_inclusion,
};
pub use proof::{
    ConsistencyProof, InclusionProof, PROOF_FORMAT, ProofBundle, ProofFailure, ProofReport,
    check_consistency_proof, check_inclusion_proof, check_proof_bundle,
};
pub use reconcile::{Disagreement, ReconcileError, ReconcileReport, reconcile};
pub use record::{
    Aggregate, AuditRecord, MAX_OVERLAP_GROUPS, MAX_SUBJECTS, NewRecord, OverlapFigures, Role,
    StoredEvidence,
};
pub use tree_head::{
    EXCHANGE_LOG, SignedTreeHead, TREE_HEAD_TYP, TreeHeadError, kid_member, verify_tree_head,
};
pub use verify::{
    Trust, VerifyFailure, VerifyFailureKind, VerifyReport, verify_export, verify_export_against,
    verify_export_trusting,
};
