//! RFC 6962 / RFC 9162 Merkle trees over SHA-256: leaf and node hashes,
//! inclusion proof verification (RFC 9162 §2.1.3.2), and a tree that builds
//! roots and audit paths (for fixtures and the Rekor stand-in).

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// `SHA-256(0x00 || data)`: the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    hasher.finalize().into()
}

/// `SHA-256(0x01 || left || right)`: the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// Checks that `proof` leads from the leaf at `index` (hash `leaf`) to
/// `root` in a tree of `tree_size` leaves; every other case (index out of
/// range, a path too short or too long, another root) is a failure with its
/// reason.
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), String> {
    let computed = root_from_inclusion_proof(index, tree_size, leaf, proof)?;
    if &computed != root {
        return Err(format!(
            "the proof leads to root {}, not to the claimed root {}",
            hex::encode(computed),
            hex::encode(root)
        ));
    }
    Ok(())
}

/// The root that `proof` leads to from the leaf at `index` in a tree of
/// `tree_size` leaves, following RFC 9162 §2.1.3.2 step by step; an error
/// when the proof cannot belong to such a tree.
pub fn root_from_inclusion_proof(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, String> {
    if index >= tree_size {
        return Err(format!(
            "leaf index {index} is not below the tree size {tree_size}"
        ));
    }
    let mut f_n = index;
    let mut s_n = tree_size - 1;
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(format!(
                "the proof has {} hashes, more than a tree of {tree_size} needs for leaf {index}",
                proof.len()
            ));
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(format!(
            "the proof has {} hashes, fewer than a tree of {tree_size} needs for leaf {index}",
            proof.len()
        ));
    }
    Ok(r)
}

/// An append-only Merkle tree that keeps its leaf hashes.
#[derive(Debug, Clone, Default)]
pub struct MerkleTree {
    leaves: Vec<Hash>,
}

impl MerkleTree {
    pub fn new() -> Self {
        MerkleTree::default()
    }

    /// Appends a leaf hash; returns its index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        self.leaves.push(leaf);
        (self.leaves.len() - 1) as u64
    }

    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    pub fn leaf(&self, index: u64) -> Option<Hash> {
        self.leaves.get(usize::try_from(index).ok()?).copied()
    }

    /// MTH of the first `size` leaves (`None` if the tree is smaller).
    pub fn root(&self, size: u64) -> Option<Hash> {
        let size = usize::try_from(size).ok()?;
        (size <= self.leaves.len()).then(|| subtree_root(&self.leaves[..size]))
    }

    /// PATH(index, D[size]) (`None` unless `index < size <= len`).
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        let size = usize::try_from(size).ok()?;
        let index = usize::try_from(index).ok()?;
        if index >= size || size > self.leaves.len() {
            return None;
        }
        let mut path = Vec::new();
        audit_path(index, &self.leaves[..size], &mut path);
        Some(path)
    }
}

/// MTH(D[n]) per RFC 6962 §2.1; the empty tree hashes to SHA-256("").
fn subtree_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Sha256::digest([]).into(),
        1 => leaves[0],
        n => {
            let k = split_point(n);
            node_hash(&subtree_root(&leaves[..k]), &subtree_root(&leaves[k..]))
        }
    }
}

/// PATH(m, D[n]) per RFC 6962 §2.1.1, appended leaf to root.
fn audit_path(m: usize, leaves: &[Hash], path: &mut Vec<Hash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split_point(n);
    if m < k {
        audit_path(m, &leaves[..k], path);
        path.push(subtree_root(&leaves[k..]));
    } else {
        audit_path(m - k, &leaves[k..], path);
        path.push(subtree_root(&leaves[..k]));
    }
}

/// The largest power of two smaller than `n` (n > 1).
fn split_point(n: usize) -> usize {
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(n: u64) -> MerkleTree {
        let mut tree = MerkleTree::new();
        for i in 0..n {
            tree.push(leaf_hash(format!("leaf {i}").as_bytes()));
        }
        tree
    }

    /// Root of RFC 6962's 7-leaf example, computed by hand from the figure
    /// in §2.1.3: ((a b) (c d)) ((e f) g).
    #[test]
    fn root_matches_the_rfc_shape() {
        let t = tree(7);
        let l = |i| t.leaf(i).expect("leaf");
        let a_b = node_hash(&l(0), &l(1));
        let c_d = node_hash(&l(2), &l(3));
        let e_f = node_hash(&l(4), &l(5));
        let expected = node_hash(&node_hash(&a_b, &c_d), &node_hash(&e_f, &l(6)));
        assert_eq!(t.root(7), Some(expected));
        // PATH(3, D[7]) = [c, a_b, (e_f g)] per the RFC's example.
        assert_eq!(
            t.inclusion_proof(3, 7),
            Some(vec![l(2), a_b, node_hash(&e_f, &l(6))])
        );
    }

    #[test]
    fn empty_tree_root_is_the_hash_of_nothing() {
        assert_eq!(
            hex::encode(tree(0).root(0).expect("root")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn every_proof_of_every_size_verifies_and_no_other() {
        let t = tree(33);
        for size in 1..=33 {
            let root = t.root(size).expect("root");
            for index in 0..size {
                let leaf = t.leaf(index).expect("leaf");
                let proof = t.inclusion_proof(index, size).expect("proof");
                assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
                // Another index or a bit flip: never accepted. (Another
                // size can share the same path shape and root, e.g. leaf 3
                // of 11 and of 12; the signed checkpoint pins the size.)
                if size > 1 {
                    let other = (index + 1) % size;
                    assert!(verify_inclusion(other, size, &leaf, &proof, &root).is_err());
                }
                assert!(verify_inclusion(index, size * 2 + 1, &leaf, &proof, &root).is_err());
                for i in 0..proof.len() {
                    let mut bad = proof.clone();
                    bad[i][0] ^= 1;
                    assert!(verify_inclusion(index, size, &leaf, &bad, &root).is_err());
                }
            }
        }
    }

    #[test]
    fn rejects_malformed_proofs() {
        let t = tree(5);
        let root = t.root(5).expect("root");
        let leaf = t.leaf(2).expect("leaf");
        let proof = t.inclusion_proof(2, 5).expect("proof");
        let err = verify_inclusion(2, 5, &leaf, &[], &root).expect_err("empty proof");
        assert!(err.contains("fewer"), "{err}");
        let mut long = proof.clone();
        long.push([0; 32]);
        let err = verify_inclusion(2, 5, &leaf, &long, &root).expect_err("long proof");
        assert!(err.contains("more"), "{err}");
        assert!(verify_inclusion(5, 5, &leaf, &proof, &root).is_err());
        assert!(verify_inclusion(0, 0, &leaf, &[], &root).is_err());
        assert!(verify_inclusion(u64::MAX, u64::MAX, &leaf, &proof, &root).is_err());
        // A one-leaf tree: the leaf is the root and the proof is empty.
        let one = tree(1);
        let only = one.leaf(0).expect("leaf");
        assert_eq!(verify_inclusion(0, 1, &only, &[], &only), Ok(()));
    }
}
