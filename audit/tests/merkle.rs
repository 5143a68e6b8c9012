//! The Merkle tree cross-checked against ct-merkle (an independent RFC 6962 implementation)
//! for many sizes, and RFC 9162's edge cases: roots, inclusion and consistency proofs, and
//! wrong proofs refused.

use audit::Hash;
use audit::merkle::{
    self, consistency_path_in_memory, inclusion_path_in_memory, leaf_hash_of_bytes,
};
use contracts::canonical::sha256;
use sha2::Sha256;

type Reference = ct_merkle::mem_backed_tree::MemoryBackedTree<Sha256, Vec<u8>>;

fn leaf_value(i: u64) -> Vec<u8> {
    format!("leaf {i}").into_bytes()
}

fn leaves(n: u64) -> Vec<Hash> {
    (0..n).map(|i| leaf_hash_of_bytes(&leaf_value(i))).collect()
}

fn reference(n: u64) -> Reference {
    let mut t = Reference::new();
    for i in 0..n {
        t.push(leaf_value(i));
    }
    t
}

fn flat(path: &[Hash]) -> Vec<u8> {
    path.concat()
}

fn ref_root(h: &Hash, n: u64) -> ct_merkle::RootHash<Sha256> {
    ct_merkle::RootHash::new(
        ct_merkle::digest::Output::<Sha256>::try_from(&h[..]).unwrap(),
        n,
    )
}

/// Sizes around every power of two up to 2^10, and a few others.
fn interesting_sizes() -> Vec<u64> {
    let mut s: Vec<u64> = (1..=70).collect();
    for p in 7..=10 {
        let two = 1u64 << p;
        s.extend([two - 1, two, two + 1]);
    }
    s.extend([100, 333, 1000]);
    s.sort_unstable();
    s.dedup();
    s
}

#[test]
fn roots_match_ct_merkle_for_many_sizes() {
    let all = leaves(1025);
    let mut t = Reference::new();
    for n in 1..=1025u64 {
        t.push(leaf_value(n - 1));
        assert_eq!(
            merkle::root(&all[..n as usize]).as_slice(),
            t.root().as_bytes().as_slice(),
            "size {n}"
        );
    }
}

#[test]
fn inclusion_proofs_match_ct_merkle_and_verify_both_ways() {
    let all = leaves(1025);
    for n in interesting_sizes() {
        let t = reference(n);
        let root = merkle::root(&all[..n as usize]);
        assert_eq!(root.as_slice(), t.root().as_bytes().as_slice());
        let indices: Vec<u64> = if n <= 70 {
            (0..n).collect()
        } else {
            vec![0, 1, n / 3, n / 2, n - 2, n - 1]
        };
        for i in indices {
            let mine = inclusion_path_in_memory(&all[..n as usize], i).unwrap();
            let theirs = t.prove_inclusion(i as usize);
            assert_eq!(flat(&mine), theirs.as_bytes(), "size {n} leaf {i}");
            merkle::verify_inclusion(&all[i as usize], i, n, &mine, &root).unwrap();
            let from_mine =
                ct_merkle::InclusionProof::<Sha256>::try_from_bytes(flat(&mine)).unwrap();
            t.root()
                .verify_inclusion(&leaf_value(i), i, &from_mine)
                .unwrap();
        }
    }
}

#[test]
fn consistency_proofs_match_ct_merkle_and_verify_both_ways() {
    let all = leaves(1025);
    for n in interesting_sizes() {
        let t = reference(n);
        let second_root = merkle::root(&all[..n as usize]);
        let firsts: Vec<u64> = if n <= 70 {
            (1..=n).collect()
        } else {
            vec![1, 2, 3, n / 2, n / 2 + 1, n - 1, n]
        };
        for m in firsts {
            let first_root = merkle::root(&all[..m as usize]);
            let mine = consistency_path_in_memory(&all[..n as usize], m).unwrap();
            let theirs = t.prove_consistency((n - m) as usize);
            assert_eq!(flat(&mine), theirs.as_bytes(), "sizes {m} → {n}");
            merkle::verify_consistency(m, n, &first_root, &second_root, &mine).unwrap();
            let from_mine =
                ct_merkle::ConsistencyProof::<Sha256>::try_from_bytes(flat(&mine)).unwrap();
            ref_root(&second_root, n)
                .verify_consistency(&ref_root(&first_root, m), &from_mine)
                .unwrap();
        }
    }
}

#[test]
fn rfc9162_edge_cases() {
    // The empty tree's root is SHA-256 of the empty string.
    assert_eq!(
        hex(&merkle::root(&[])),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(merkle::empty_root(), sha256(b""));
    // One leaf: the root is the leaf hash, SHA-256(0x00 ‖ leaf), and the path is empty.
    let one = leaf_hash_of_bytes(b"");
    assert_eq!(
        hex(&one),
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    );
    assert_eq!(merkle::root(&[one]), one);
    assert!(inclusion_path_in_memory(&[one], 0).unwrap().is_empty());
    merkle::verify_inclusion(&one, 0, 1, &[], &one).unwrap();
    // Two leaves: SHA-256(0x01 ‖ l0 ‖ l1).
    let two = leaves(2);
    let mut buf = vec![1u8];
    buf.extend_from_slice(&two[0]);
    buf.extend_from_slice(&two[1]);
    assert_eq!(merkle::root(&two), sha256(&buf));
    // Consistency from the empty tree and to the same size: empty paths.
    let all = leaves(9);
    let r9 = merkle::root(&all);
    merkle::verify_consistency(0, 9, &merkle::empty_root(), &r9, &[]).unwrap();
    merkle::verify_consistency(9, 9, &r9, &r9, &[]).unwrap();
    // Powers of two ± 1 on both sides of a consistency proof.
    let all = leaves(257);
    for (m, n) in [
        (1, 2),
        (2, 3),
        (3, 4),
        (4, 5),
        (7, 8),
        (8, 9),
        (15, 17),
        (127, 129),
        (128, 256),
        (255, 257),
    ] {
        let path = consistency_path_in_memory(&all[..n], m as u64).unwrap();
        merkle::verify_consistency(
            m as u64,
            n as u64,
            &merkle::root(&all[..m]),
            &merkle::root(&all[..n]),
            &path,
        )
        .unwrap();
    }
}

#[test]
fn wrong_proofs_are_refused() {
    let all = leaves(13);
    let root = merkle::root(&all);
    let path = inclusion_path_in_memory(&all, 5).unwrap();
    // Another leaf, another index, another size, a changed or shortened path.
    assert!(merkle::verify_inclusion(&all[6], 5, 13, &path, &root).is_err());
    assert!(merkle::verify_inclusion(&all[5], 4, 13, &path, &root).is_err());
    assert!(merkle::verify_inclusion(&all[5], 5, 8, &path, &root).is_err());
    assert!(merkle::verify_inclusion(&all[5], 13, 13, &path, &root).is_err());
    let mut bad = path.clone();
    bad[1][0] ^= 1;
    assert!(merkle::verify_inclusion(&all[5], 5, 13, &bad, &root).is_err());
    assert!(merkle::verify_inclusion(&all[5], 5, 13, &path[1..], &root).is_err());
    // A consistency proof does not hold for an altered prefix or swapped roots.
    let c = consistency_path_in_memory(&all, 6).unwrap();
    let r6 = merkle::root(&all[..6]);
    merkle::verify_consistency(6, 13, &r6, &root, &c).unwrap();
    let mut altered = all.clone();
    altered[2][0] ^= 1;
    assert!(merkle::verify_consistency(6, 13, &merkle::root(&altered[..6]), &root, &c).is_err());
    assert!(merkle::verify_consistency(6, 13, &root, &r6, &c).is_err());
    assert!(merkle::verify_consistency(13, 6, &root, &r6, &c).is_err());
}

fn hex(h: &[u8]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}
