//! The audit log's Merkle tree, RFC 9162 §2.1: leaf and node hashes, roots, the nodes an
//! inclusion or consistency proof is made of, and the verification of both proofs.
//!
//! Pure functions, no store. The store keeps the hash of every *complete* subtree (a node
//! whose `2^level` leaves all exist) under the id [`NodeRef::id`]; a proof of any size is
//! then a handful of those, looked up by id ([`inclusion_ranges`], [`consistency_ranges`],
//! [`range_subtrees`]). [`Frontier`] is the right edge of a tree — the roots of its
//! complete subtrees, at most 64 hashes — which is all an appender or a streaming verifier
//! needs to keep in memory.

use contracts::canonical::{b64url, b64url_decode, sha256, sha256_of, write_canonical_json};

use crate::record::AuditRecord;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// Leaf hashes are `SHA-256(0x00 ‖ leaf)`.
const LEAF_PREFIX: u8 = 0x00;
/// Interior nodes are `SHA-256(0x01 ‖ left ‖ right)`.
const NODE_PREFIX: u8 = 0x01;

/// The root of the empty tree: SHA-256 of nothing (RFC 9162 §2.1.1).
pub fn empty_root() -> Hash {
    sha256(b"")
}

/// `SHA-256(0x00 ‖ bytes)`: the hash of a leaf whose canonical bytes are `bytes`.
pub fn leaf_hash_of_bytes(bytes: &[u8]) -> Hash {
    sha256_of(&[&[LEAF_PREFIX], bytes])
}

/// The leaf hash of an audit record: `SHA-256(0x00 ‖ JCS(record))` (PROTOCOL.md §5).
/// Fails only if the record cannot be serialised, which a well-formed record never is.
pub fn leaf_hash(record: &AuditRecord) -> Result<Hash, serde_json::Error> {
    let mut buf = Vec::with_capacity(512);
    buf.push(LEAF_PREFIX);
    write_canonical_json(&mut buf, record)?;
    Ok(sha256(&buf))
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 65];
    buf[0] = NODE_PREFIX;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    sha256(&buf)
}

/// The Merkle tree hash of `leaves` (leaf hashes, in order): RFC 9162 `MTH(D[n])`.
/// Linear time, logarithmic memory.
pub fn root(leaves: &[Hash]) -> Hash {
    let mut f = Frontier::new();
    for leaf in leaves {
        f.push(*leaf, |_, _| {});
    }
    f.root()
}

/// A hash as base64url, the form of every hash in records, proofs and exports.
pub fn encode_hash(hash: &Hash) -> String {
    b64url(hash)
}

/// A base64url hash back to its 32 bytes; `None` when it is not one.
pub fn decode_hash(text: &str) -> Option<Hash> {
    b64url_decode(text).and_then(|v| <Hash>::try_from(v.as_slice()).ok())
}

/// A complete subtree: `2^level` leaves starting at leaf `index << level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeRef {
    /// Height above the leaves (0 for a leaf).
    pub level: u32,
    /// Position among the subtrees of its level, from the left.
    pub index: u64,
}

impl NodeRef {
    /// The leaf at `seq`.
    pub fn leaf(seq: u64) -> NodeRef {
        NodeRef {
            level: 0,
            index: seq,
        }
    }

    /// The node's in-order index in the (infinite) complete binary tree (RFC 9420 §4.1's
    /// array-based trees): leaf `i` is `2i`, a node of `level` L and `index` i is
    /// `i·2^(L+1) + 2^L − 1`. Unique per node and stable as the tree grows, so the store can
    /// key every node by one integer. Valid for trees of fewer than 2^62 leaves.
    pub fn id(self) -> u64 {
        (self.index << (self.level + 1)) | ((1u64 << self.level) - 1)
    }

    /// The first leaf it covers.
    pub fn first_leaf(self) -> u64 {
        self.index << self.level
    }

    /// How many leaves it covers.
    pub fn width(self) -> u64 {
        1u64 << self.level
    }
}

/// Why a proof was not produced or did not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("leaf {index} is not in a tree of size {size}")]
    IndexOutOfRange {
        /// The leaf.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// The first tree is larger than the second.
    #[error("tree size {first} is larger than {second}")]
    FirstLarger {
        /// First size.
        first: u64,
        /// Second size.
        second: u64,
    },
    /// The path has the wrong number of hashes for these sizes.
    #[error("the path has {found} hashes, {expected} are needed for these tree sizes")]
    PathLength {
        /// Hashes a proof for these sizes has.
        expected: usize,
        /// Hashes given.
        found: usize,
    },
    /// The path does not lead to the root given.
    #[error("the path does not lead to the expected root hash")]
    RootMismatch,
    /// The tree is too large for this implementation (2^62 leaves or more).
    #[error("tree size {0} is too large")]
    TooLarge(u64),
}

/// Largest tree size this implementation handles (node ids must fit in an `i64` column).
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// The largest power of two strictly smaller than `n` (`n ≥ 2`).
fn split_point(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// The complete subtrees that make up the leaf range `[start, end)`, left to right; the
/// range's Merkle tree hash is their hashes folded from the right,
/// `H(s0, H(s1, … H(sk-1, sk)))` ([`fold_subtrees`]).
///
/// Only ranges that occur in RFC 9162's recursion are accepted: `start` must be a multiple
/// of the smallest power of two not below `end - start` (then the subtrees are the binary
/// digits of the range's length, largest first, which is exactly how `MTH` splits it).
/// Every range returned by [`inclusion_ranges`] and [`consistency_ranges`] is one.
pub fn range_subtrees(start: u64, end: u64) -> Option<Vec<NodeRef>> {
    if start >= end || end > MAX_TREE_SIZE {
        return None;
    }
    let len = end - start;
    if !start.is_multiple_of(len.next_power_of_two()) {
        return None;
    }
    let mut out = Vec::with_capacity(len.count_ones() as usize);
    let mut at = start;
    for level in (0..64u32).rev() {
        if len & (1u64 << level) != 0 {
            out.push(NodeRef {
                level,
                index: at >> level,
            });
            at += 1u64 << level;
        }
    }
    Some(out)
}

/// Folds subtree hashes (left to right) into the hash of the range they cover.
pub fn fold_subtrees(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The leaf ranges whose Merkle tree hashes form the inclusion path of leaf `index` in a
/// tree of `size` leaves, in RFC 9162 §2.1.3.1 order (the leaf's sibling first, the root's
/// other child last).
pub fn inclusion_ranges(index: u64, size: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if size > MAX_TREE_SIZE {
        return Err(ProofError::TooLarge(size));
    }
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    // PATH(m, D[a:b]), walked from the root down, then reversed into leaf-first order.
    let mut out = Vec::new();
    let (mut a, mut b) = (0u64, size);
    while b - a > 1 {
        let k = split_point(b - a);
        if index < a + k {
            out.push((a + k, b));
            b = a + k;
        } else {
            out.push((a, a + k));
            a += k;
        }
    }
    out.reverse();
    Ok(out)
}

/// The leaf ranges whose Merkle tree hashes form the consistency proof between tree sizes
/// `first` and `second`, in RFC 9162 §2.1.4.1 order. Empty when `first` is 0 or equals
/// `second` (nothing to prove).
pub fn consistency_ranges(first: u64, second: u64) -> Result<Vec<(u64, u64)>, ProofError> {
    if second > MAX_TREE_SIZE {
        return Err(ProofError::TooLarge(second));
    }
    if first > second {
        return Err(ProofError::FirstLarger { first, second });
    }
    if first == 0 || first == second {
        return Ok(Vec::new());
    }
    // SUBPROOF(m, D[a:b], whole), iteratively; the path is built from the root down and
    // reversed at the end.
    let mut out = Vec::new();
    let (mut m, mut a, mut b, mut whole) = (first, 0u64, second, true);
    loop {
        let n = b - a;
        if m == n {
            if !whole {
                out.push((a, b));
            }
            break;
        }
        let k = split_point(n);
        if m <= k {
            out.push((a + k, b));
            b = a + k;
        } else {
            out.push((a, a + k));
            m -= k;
            a += k;
            whole = false;
        }
    }
    out.reverse();
    Ok(out)
}

/// The Merkle tree hash of `leaves[start..end]` computed from the leaves, for in-memory use
/// (tests, small trees).
fn range_hash(leaves: &[Hash], start: u64, end: u64) -> Hash {
    root(&leaves[start as usize..end as usize])
}

/// The inclusion path of leaf `index` in the tree of all `leaves`, computed in memory.
pub fn inclusion_path_in_memory(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    Ok(inclusion_ranges(index, leaves.len() as u64)?
        .into_iter()
        .map(|(a, b)| range_hash(leaves, a, b))
        .collect())
}

/// The consistency proof from the first `first` of `leaves` to all of them, in memory.
pub fn consistency_path_in_memory(leaves: &[Hash], first: u64) -> Result<Vec<Hash>, ProofError> {
    Ok(consistency_ranges(first, leaves.len() as u64)?
        .into_iter()
        .map(|(a, b)| range_hash(leaves, a, b))
        .collect())
}

/// Checks that `path` proves leaf hash `leaf` at `index` in the tree of `size` leaves with
/// root `root` (RFC 9162 §2.1.3.2).
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    let expected = inclusion_ranges(index, size)?.len();
    if path.len() != expected {
        return Err(ProofError::PathLength {
            expected,
            found: path.len(),
        });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if snode == 0 {
            return Err(ProofError::RootMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode == 0 && &r == root {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// Checks that `path` proves the tree of `second` leaves with root `second_root` extends
/// the tree of `first` leaves with root `first_root` (RFC 9162 §2.1.4.2). The empty tree
/// is extended by every tree, and a tree by itself, each with an empty path.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    path: &[Hash],
) -> Result<(), ProofError> {
    let expected = consistency_ranges(first, second)?.len();
    if path.len() != expected {
        return Err(ProofError::PathLength {
            expected,
            found: path.len(),
        });
    }
    if first == 0 {
        return if first_root == &empty_root() {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    if first == second {
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // Step 2: when `first` is a power of two its root is the proof's (omitted) first hash.
    let mut hashes: Vec<&Hash> = Vec::with_capacity(path.len() + 1);
    if first.is_power_of_two() {
        hashes.push(first_root);
    }
    hashes.extend(path.iter());
    let (mut fnode, mut snode) = (first - 1, second - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let mut it = hashes.into_iter();
    let Some(start) = it.next() else {
        return Err(ProofError::RootMismatch);
    };
    let (mut fr, mut sr) = (*start, *start);
    for c in it {
        if snode == 0 {
            return Err(ProofError::RootMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if &fr == first_root && &sr == second_root && snode == 0 {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

/// The right edge of a tree: the hashes of its complete subtrees, largest (leftmost) first —
/// one per set bit of the size, so at most 64. Appending a leaf and computing the root need
/// nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn new() -> Frontier {
        Frontier::default()
    }

    /// The subtrees whose hashes make up the frontier of a tree of `size` leaves, in order.
    pub fn subtrees(size: u64) -> Vec<NodeRef> {
        if size == 0 {
            return Vec::new();
        }
        range_subtrees(0, size).unwrap_or_default()
    }

    /// A frontier from its subtree hashes (as [`Frontier::subtrees`] names them); `None` if
    /// their number does not fit `size`.
    pub fn from_parts(size: u64, nodes: Vec<Hash>) -> Option<Frontier> {
        (size <= MAX_TREE_SIZE && nodes.len() == size.count_ones() as usize)
            .then_some(Frontier { size, nodes })
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash. `completed` is called with the leaf and with every interior
    /// node the leaf completes (bottom-up), which the store keeps for proofs.
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(NodeRef, &Hash)) {
        let mut node = leaf;
        let mut at = NodeRef::leaf(self.size);
        completed(at, &node);
        // Each trailing one bit of the old size is a complete left sibling on the frontier.
        while at.index & 1 == 1 {
            let Some(left) = self.nodes.pop() else {
                break; // unreachable: one frontier node per set bit of the size
            };
            node = node_hash(&left, &node);
            at = NodeRef {
                level: at.level + 1,
                index: at.index >> 1,
            };
            completed(at, &node);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The root hash (`MTH`) of the tree.
    pub fn root(&self) -> Hash {
        fold_subtrees(&self.nodes).unwrap_or_else(empty_root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: u64) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash_of_bytes(&i.to_be_bytes()))
            .collect()
    }

    #[test]
    fn node_ids_are_in_order_indices() {
        assert_eq!(NodeRef::leaf(0).id(), 0);
        assert_eq!(NodeRef::leaf(3).id(), 6);
        assert_eq!(NodeRef { level: 1, index: 0 }.id(), 1);
        assert_eq!(NodeRef { level: 1, index: 1 }.id(), 5);
        assert_eq!(NodeRef { level: 2, index: 0 }.id(), 3);
    }

    #[test]
    fn frontier_root_matches_the_recursive_definition() {
        fn mth(l: &[Hash]) -> Hash {
            match l.len() {
                0 => empty_root(),
                1 => l[0],
                n => {
                    let k = split_point(n as u64) as usize;
                    node_hash(&mth(&l[..k]), &mth(&l[k..]))
                }
            }
        }
        let all = leaves(70);
        for n in 0..=70 {
            assert_eq!(root(&all[..n]), mth(&all[..n]), "size {n}");
        }
    }

    #[test]
    fn range_subtrees_refuses_unaligned_ranges() {
        assert_eq!(range_subtrees(1, 3), None);
        assert_eq!(range_subtrees(3, 3), None);
        assert_eq!(
            range_subtrees(4, 7),
            Some(vec![
                NodeRef { level: 1, index: 2 },
                NodeRef { level: 0, index: 6 }
            ])
        );
    }
}
