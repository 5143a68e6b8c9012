//! `simpul audit verify`: an export checked offline against the member's public key alone,
//! or against the federation authority's key and the manifests the export carries.
//!
//! # Which key checks a head
//!
//! With [`Trust::Key`] every head must be signed by that one key (the export's manifests are
//! not read). With [`Trust::Authority`] the export's manifest lines (format 3, right after
//! the header) are the member's key history ([`crate::history::KeyHistory`]): each must
//! verify with one of the authority keys, and a manifest that does not is refused — so
//! whoever wrote the export cannot add a key. A head is then checked with the key its `kid`
//! names, inside that key's window.
//!
//! The records are read in one pass and must be seq 0, 1, 2, … without gaps; the tree is
//! recomputed from them (only its right edge is kept, so memory does not grow with the
//! log). Every signed tree head must verify with the key, and its root must equal the
//! recomputed root at its size. Two successive heads are then consistent by construction
//! — both are prefixes of the same recomputed sequence of leaves — which is stronger than
//! an RFC 9162 consistency proof between them.
//!
//! # The first bad sequence number
//!
//! [`VerifyFailure::first_bad_seq`] is the smallest seq at which the export is shown not
//! to be the log its heads signed:
//!
//! - a missing or reordered record: the seq expected where another one (or the end of the
//!   file, when a head covers more records than there are) was found;
//! - an altered record: its own seq, exactly, when the store's leaf hashes (the
//!   `leaf_hash` of each record line) hash to the signed root — that proves the stored
//!   hashes are the ones signed, and the first record whose recomputed leaf differs from
//!   its stored one is the altered one. This is the case when the records table was
//!   edited, whatever else was done to it;
//! - when the leaf hashes were rewritten as well, the altered record lies between the
//!   last head that verified and the first that did not: `first_bad_seq` is then the
//!   first seq of that stretch, the smallest seq not proven good, and
//!   [`VerifyFailureKind::RootMismatch`] says `exact: false`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;

use contracts::VerifyingKey;
use serde::Serialize;

use crate::export::{EXPORT_FORMATS, ExportLine, read_line};
use crate::history::KeyHistory;
use crate::merkle::{Frontier, Hash, decode_hash, encode_hash, leaf_hash};
use crate::tree_head::{SignedTreeHead, verify_tree_head};

/// Most tree heads held while waiting for the records they cover.
const MAX_PENDING_HEADS: usize = 10_000;

/// Most manifests an export may carry.
const MAX_MANIFESTS: usize = 1_000;

/// What the heads of an export are checked with.
#[derive(Clone, Copy, Debug)]
pub enum Trust<'a> {
    /// The member's one public key: every head must be signed by it.
    Key(&'a VerifyingKey),
    /// The federation authority's public keys: the member's keys and their windows come
    /// from the export's manifests, each of which must verify with one of these.
    Authority(&'a [VerifyingKey]),
}

/// What a verified export holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The member whose log it is.
    pub log: String,
    /// Records read (seq 0 to `records - 1`).
    pub records: u64,
    /// Signed tree heads checked.
    pub tree_heads: u64,
    /// The largest tree size a head verified: every record below it is proven.
    pub verified_size: u64,
    /// The root hash at `verified_size`, if any head verified.
    pub verified_root: Option<String>,
    /// Records after the last head, which no signature covers yet.
    pub unsigned_records: u64,
    /// The kids of the keys that signed the heads checked.
    pub signed_by: Vec<String>,
    /// Manifests of the export that verified with the authority key (0 with one key).
    pub manifests: u64,
}

/// Why an export failed verification.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VerifyFailureKind {
    /// The file could not be read.
    #[error("cannot read the export: {reason}")]
    Read {
        /// Why.
        reason: String,
    },
    /// A line is not part of an export.
    #[error("{reason}")]
    Malformed {
        /// What is wrong.
        reason: String,
    },
    /// The export is of another member's log than the key's.
    #[error("the export is of {export}'s log, the key is {key}")]
    WrongLog {
        /// The header's log.
        export: String,
        /// The key's kid.
        key: String,
    },
    /// A record out of sequence: deleted, duplicated or reordered records.
    #[error(
        "expected the record with seq {expected}, found seq {found} (a record was deleted or records were reordered)"
    )]
    Sequence {
        /// The seq that should come next.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// A manifest of the export does not verify with the authority key, or comes after a
    /// record or a head.
    #[error("a manifest of the export is refused: {reason}")]
    Manifest {
        /// Why.
        reason: String,
    },
    /// A tree head is not signed by the key.
    #[error("the tree head of size {tree_size} is not valid: {reason}")]
    TreeHead {
        /// Its claimed size.
        tree_size: u64,
        /// Why.
        reason: String,
    },
    /// A head of a larger tree is stamped earlier than a head of a smaller one: a gateway
    /// never signs so (PROTOCOL.md §5.2), so the heads were not all signed by it in order.
    #[error(
        "the tree head of size {tree_size} is stamped {timestamp}, before the head of size {earlier_size} ({earlier_timestamp}): heads' timestamps may not go back as the tree grows"
    )]
    TimeGoesBack {
        /// The larger head's size.
        tree_size: u64,
        /// Its timestamp.
        timestamp: i64,
        /// The smaller head's size.
        earlier_size: u64,
        /// Its, later, timestamp.
        earlier_timestamp: i64,
    },
    /// The records do not hash to a signed root: a record was altered.
    #[error("the records do not hash to the signed root of tree size {tree_size}; {}", if *exact {
        "the altered record is the one that no longer matches its stored leaf hash".to_owned()
    } else {
        format!("a record from seq {verified_size} to {} was altered (the stored leaf hashes were rewritten as well, so which one cannot be told)", tree_size.saturating_sub(1))
    })]
    RootMismatch {
        /// The head's size.
        tree_size: u64,
        /// The size of the last head that verified (0 if none).
        verified_size: u64,
        /// Whether `first_bad_seq` is the altered record itself (see the module doc).
        exact: bool,
    },
    /// A record does not hash to the leaf hash its log holds for it, in a part of the log
    /// no head covers yet, or while the records themselves match the signed root (then the
    /// store's tree was damaged, not the record).
    #[error("the record with seq {seq} does not hash to the leaf hash its log holds{}", if *signed_ok { " (the records verify against the signed head: the log's tree data was altered)" } else { " (the record was altered)" })]
    LeafHashMismatch {
        /// The record.
        seq: u64,
        /// Whether the records verify against a signed head nonetheless.
        signed_ok: bool,
    },
    /// A head covers more records than the export has: records were deleted at the end.
    #[error(
        "a tree head signs {tree_size} records, the export has {records} (records were deleted)"
    )]
    ShorterThanHead {
        /// Records in the export.
        records: u64,
        /// The head's size.
        tree_size: u64,
    },
}

/// An export that did not verify: where, why, and the first bad sequence number (see the
/// module doc for what that means).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VerifyFailure {
    /// The smallest seq shown to be bad, when the failure concerns records.
    pub first_bad_seq: Option<u64>,
    /// The line of the export (1-based) where it was found; 0 when it is not a line: at
    /// the end of the file, or a kept tree head ([`verify_export_against`]).
    pub line: u64,
    /// What failed.
    #[serde(flatten)]
    pub kind: VerifyFailureKind,
}

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "line {}: ", self.line)?;
        }
        write!(f, "{}", self.kind)?;
        if let Some(seq) = self.first_bad_seq {
            write!(f, "; first bad seq: {seq}")?;
        }
        Ok(())
    }
}

impl std::error::Error for VerifyFailure {}

/// The state of one pass over an export.
struct Pass<'k> {
    trust: Trust<'k>,
    /// With [`Trust::Authority`]: the member's keys, from the manifests read.
    history: Option<KeyHistory>,
    /// Kept heads not checked yet: they wait for the key history (the manifest lines).
    kept: Option<&'k [SignedTreeHead]>,
    signed_by: BTreeSet<String>,
    line: u64,
    log: Option<String>,
    /// The tree recomputed from the records.
    recomputed: Frontier,
    /// The tree of the leaf hashes the log holds; `None` once a record line lacks one.
    stored: Option<Frontier>,
    /// The first seq whose recomputed leaf differs from the stored one.
    first_leaf_mismatch: Option<u64>,
    tree_heads: u64,
    verified_size: u64,
    verified_root: Option<Hash>,
    /// Heads ahead of the records they cover, by size.
    pending: BTreeMap<u64, Vec<(u64, Hash)>>,
    /// The latest-stamped head so far: its size and timestamp.
    latest_stamp: Option<(u64, i64)>,
}

impl Pass<'_> {
    fn fail(&self, first_bad_seq: Option<u64>, kind: VerifyFailureKind) -> VerifyFailure {
        VerifyFailure {
            first_bad_seq,
            line: self.line,
            kind,
        }
    }

    fn malformed(&self, reason: impl Into<String>) -> VerifyFailure {
        self.fail(
            None,
            VerifyFailureKind::Malformed {
                reason: reason.into(),
            },
        )
    }

    /// Checks a verified head's root against the records read so far (exactly `size`).
    fn check_root(&mut self, size: u64, root: Hash, line: u64) -> Result<(), VerifyFailure> {
        let at = |kind| VerifyFailure {
            first_bad_seq: None,
            line,
            kind,
        };
        if self.recomputed.root() == root {
            if let Some(seq) = self.first_leaf_mismatch.filter(|s| *s < size) {
                let mut f = at(VerifyFailureKind::LeafHashMismatch {
                    seq,
                    signed_ok: true,
                });
                f.first_bad_seq = Some(seq);
                return Err(f);
            }
            self.verified_size = size;
            self.verified_root = Some(root);
            return Ok(());
        }
        let stored_signed = self.stored.as_ref().is_some_and(|s| s.root() == root);
        let (first_bad, exact) = match self.first_leaf_mismatch {
            Some(seq) => (seq, stored_signed),
            None => (self.verified_size, false),
        };
        let mut f = at(VerifyFailureKind::RootMismatch {
            tree_size: size,
            verified_size: self.verified_size,
            exact,
        });
        f.first_bad_seq = Some(first_bad);
        Err(f)
    }

    /// Reads a manifest line: with the authority's keys, a manifest signed by one of them
    /// adds the member's keys to the history; with one key, it is not read.
    fn manifest(&mut self, jws: &str, log: &str) -> Result<(), VerifyFailure> {
        let refuse =
            |pass: &Self, reason: String| pass.fail(None, VerifyFailureKind::Manifest { reason });
        if self.kept.is_none() || self.recomputed.size() > 0 || self.tree_heads > 0 {
            return Err(refuse(
                self,
                "manifests come right after the header, before any record or head".into(),
            ));
        }
        let Trust::Authority(authorities) = self.trust else {
            return Ok(());
        };
        let history = self.history.get_or_insert_with(|| KeyHistory::new(log));
        if history.manifests() >= MAX_MANIFESTS as u64 {
            return Err(refuse(self, format!("more than {MAX_MANIFESTS} manifests")));
        }
        let added = history.add(jws, authorities);
        added.map_err(|reason| refuse(self, reason))
    }

    /// Checks a head's signature with the key its `kid` names (see the module doc); its
    /// payload and root.
    fn check_signature(
        &mut self,
        head: &SignedTreeHead,
    ) -> Result<(crate::tree_head::TreeHeadPayload, Hash), String> {
        let key = match (self.trust, &self.history) {
            (Trust::Key(key), _) => key,
            (Trust::Authority(_), Some(history)) => history.key_for(head)?,
            (Trust::Authority(_), None) => {
                return Err("it cannot be checked: the export carries no manifest".into());
            }
        };
        let (payload, root) = verify_tree_head(head, key).map_err(|e| e.to_string())?;
        self.signed_by.insert(key.kid().to_owned());
        Ok((payload, root))
    }

    /// Checks the kept heads, once the key history is complete (the first record or head,
    /// or the end).
    fn check_kept(&mut self) -> Result<(), VerifyFailure> {
        let Some(kept) = self.kept.take() else {
            return Ok(());
        };
        let line = self.line;
        self.line = 0;
        for head in kept {
            let (payload, root) = self.check_signature(head).map_err(|e| {
                self.fail(
                    None,
                    VerifyFailureKind::TreeHead {
                        tree_size: head.tree_size,
                        reason: format!("a kept tree head: {e}"),
                    },
                )
            })?;
            if payload.tree_size == 0 {
                self.check_root(0, root, 0)?;
            } else {
                self.pending
                    .entry(payload.tree_size)
                    .or_default()
                    .push((0, root));
            }
        }
        self.line = line;
        Ok(())
    }

    fn head(&mut self, head: SignedTreeHead) -> Result<(), VerifyFailure> {
        self.check_kept()?;
        let (payload, root) = self.check_signature(&head).map_err(|reason| {
            self.fail(
                None,
                VerifyFailureKind::TreeHead {
                    tree_size: head.tree_size,
                    reason,
                },
            )
        })?;
        self.tree_heads += 1;
        let count = self.recomputed.size();
        let size = payload.tree_size;
        if let Some((earlier_size, earlier_timestamp)) = self.latest_stamp
            && size > earlier_size
            && payload.timestamp < earlier_timestamp
        {
            return Err(self.fail(
                None,
                VerifyFailureKind::TimeGoesBack {
                    tree_size: size,
                    timestamp: payload.timestamp,
                    earlier_size,
                    earlier_timestamp,
                },
            ));
        }
        if self
            .latest_stamp
            .is_none_or(|(_, stamp)| payload.timestamp >= stamp)
        {
            self.latest_stamp = Some((size, payload.timestamp));
        }
        if size < count {
            return Err(self.malformed(format!(
                "the tree head of size {size} comes after record {} (heads follow the record that completes their tree)",
                count - 1
            )));
        }
        if size == count {
            return self.check_root(size, root, self.line);
        }
        if self.pending.len() >= MAX_PENDING_HEADS {
            return Err(self.malformed("too many tree heads ahead of their records"));
        }
        self.pending
            .entry(size)
            .or_default()
            .push((self.line, root));
        Ok(())
    }

    fn record(&mut self, line: crate::export::ExportedRecord) -> Result<(), VerifyFailure> {
        self.check_kept()?;
        let expected = self.recomputed.size();
        let seq = line.record.seq;
        if seq != expected {
            return Err(self.fail(
                Some(expected),
                VerifyFailureKind::Sequence {
                    expected,
                    found: seq,
                },
            ));
        }
        let leaf = leaf_hash(&line.record)
            .map_err(|e| self.malformed(format!("record {seq} cannot be hashed: {e}")))?;
        match line.leaf_hash.as_deref().map(decode_hash) {
            Some(Some(stored)) => {
                if stored != leaf && self.first_leaf_mismatch.is_none() {
                    self.first_leaf_mismatch = Some(seq);
                }
                if let Some(s) = &mut self.stored {
                    s.push(stored, |_, _| {});
                }
            }
            Some(None) => {
                return Err(self.malformed(format!(
                    "record {seq}: leaf_hash is not a base64url SHA-256"
                )));
            }
            None => self.stored = None,
        }
        self.recomputed.push(leaf, |_, _| {});
        let count = self.recomputed.size();
        if let Some(heads) = self.pending.remove(&count) {
            for (line, root) in heads {
                self.check_root(count, root, line)?;
            }
        }
        Ok(())
    }
}

/// Verifies an export (see the module doc) with the member's public key; no database.
pub fn verify_export(
    reader: impl BufRead,
    key: &VerifyingKey,
) -> Result<VerifyReport, VerifyFailure> {
    verify_export_against(reader, key, &[])
}

/// [`verify_export`], and also that the export extends every head in `kept`: heads the
/// auditor kept from before (from the admin listener, a proof bundle, an earlier export).
/// Each must verify with `key`, and its root must equal the root recomputed from the
/// export's records at its size — so a log rewritten or cut back since then fails even if
/// whoever holds the store and the key replaced the heads inside the export. Failures
/// about a kept head have `line` 0.
pub fn verify_export_against(
    reader: impl BufRead,
    key: &VerifyingKey,
    kept: &[SignedTreeHead],
) -> Result<VerifyReport, VerifyFailure> {
    verify_export_trusting(reader, Trust::Key(key), kept)
}

/// [`verify_export_against`] with the heads' keys chosen as `trust` says (see the module
/// doc): one key, or the authority's keys and the manifests the export carries.
pub fn verify_export_trusting(
    mut reader: impl BufRead,
    trust: Trust<'_>,
    kept: &[SignedTreeHead],
) -> Result<VerifyReport, VerifyFailure> {
    let mut pass = Pass {
        trust,
        history: None,
        kept: Some(kept),
        signed_by: BTreeSet::new(),
        line: 0,
        log: None,
        recomputed: Frontier::new(),
        stored: Some(Frontier::new()),
        first_leaf_mismatch: None,
        tree_heads: 0,
        verified_size: 0,
        verified_root: None,
        pending: BTreeMap::new(),
        latest_stamp: None,
    };
    let key_member = match trust {
        Trust::Key(key) => Some(crate::tree_head::kid_member(key.kid())),
        Trust::Authority(_) => None,
    };
    let mut buf = Vec::new();
    loop {
        let more = read_line(&mut reader, &mut buf)
            .map_err(|reason| pass.fail(None, VerifyFailureKind::Read { reason }))?;
        if !more {
            break;
        }
        pass.line += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: ExportLine = contracts::json::from_slice(&buf)
            .map_err(|e| pass.malformed(format!("not an export line: {e}")))?;
        match (line, pass.log.is_some()) {
            (ExportLine::Header(h), false) => {
                if !EXPORT_FORMATS.contains(&h.format.as_str()) {
                    return Err(pass.malformed(format!(
                        "format `{}`, expected one of {}",
                        h.format,
                        EXPORT_FORMATS.join(", ")
                    )));
                }
                if let (Some(member), Trust::Key(key)) = (key_member, trust)
                    && h.log != member
                {
                    return Err(pass.fail(
                        None,
                        VerifyFailureKind::WrongLog {
                            export: h.log,
                            key: key.kid().to_owned(),
                        },
                    ));
                }
                pass.log = Some(h.log);
            }
            (ExportLine::Header(_), true) => return Err(pass.malformed("a second header")),
            (_, false) => return Err(pass.malformed("the export does not start with its header")),
            (ExportLine::Manifest(m), true) => {
                let log = pass.log.clone().unwrap_or_default();
                pass.manifest(&m.jws, &log)?;
            }
            (ExportLine::Record(r), true) => pass.record(r)?,
            (ExportLine::TreeHead(h), true) => pass.head(h)?,
        }
    }
    pass.line = 0;
    let Some(log) = pass.log.clone() else {
        return Err(pass.malformed("the export is empty"));
    };
    pass.check_kept()?;
    let count = pass.recomputed.size();
    if let Some((&size, _)) = pass.pending.iter().next() {
        // Records renumbered after a deletion also differ from their stored leaves, from
        // the deleted one on: that seq is the first bad one, not the end.
        let first_bad = pass.first_leaf_mismatch.map_or(count, |s| s.min(count));
        return Err(pass.fail(
            Some(first_bad),
            VerifyFailureKind::ShorterThanHead {
                records: count,
                tree_size: size,
            },
        ));
    }
    if let Some(seq) = pass.first_leaf_mismatch {
        return Err(pass.fail(
            Some(seq),
            VerifyFailureKind::LeafHashMismatch {
                seq,
                signed_ok: false,
            },
        ));
    }
    Ok(VerifyReport {
        log,
        records: count,
        tree_heads: pass.tree_heads,
        verified_size: pass.verified_size,
        verified_root: pass.verified_root.as_ref().map(encode_hash),
        unsigned_records: count - pass.verified_size,
        signed_by: pass.signed_by.into_iter().collect(),
        manifests: pass.history.as_ref().map_or(0, KeyHistory::manifests),
    })
}

#[cfg(test)]
mod strict_tests {
    use super::*;
    use contracts::{Algorithm, SigningKey};

    #[test]
    fn a_line_naming_a_member_twice_is_not_an_export_line() {
        let key = SigningKey::generate(Algorithm::ES256, "ID:GOV:KEMLU")
            .unwrap()
            .verifying_key()
            .unwrap();
        let export = "\n{\"type\":\"header\",\"type\":\"header\",\"format\":\"x\"}\n";
        let failure = verify_export(export.as_bytes(), &key).unwrap_err();
        assert_eq!(failure.line, 2);
        match failure.kind {
            VerifyFailureKind::Malformed { reason } => {
                assert!(reason.contains("`type` appears twice"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
