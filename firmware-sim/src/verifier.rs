//! [`SharedVerifier`]: the ledger's entry checks, memoized across every
//! simulated node.
//!
//! Every node checks every ledger entry it stores: it derives the entry's
//! id, its origin's node id and the hash the origin signed (BLAKE2s each),
//! and verifies the Ed25519 signature. In a simulation of N nodes each of
//! these is done N times on the same bytes. They are pure functions, so
//! remembering their answers changes nothing a node does, only how long the
//! simulation takes. Hosts use the plain computations
//! ([`Ed25519Verifier`] and the trait's defaults).
//!
//! A memo is keyed by a fast 64-bit hash of its input and keeps the input
//! itself, so a collision is noticed (and computed, not cached) rather than
//! answered wrongly. Nothing is evicted: a run keeps every distinct entry
//! it checked (a few MB for a 1000-node join).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;

use foldhash::fast::FixedState;
use kairos_core::identity::{NodeId, PublicIdentity};
use kairos_core::ledger::{signed_hash, Ed25519Verifier, EntryId, SignatureVerifier};

/// See the module docs. Clones share one memo.
#[derive(Clone, Default)]
pub struct SharedVerifier {
    memo: Rc<RefCell<Memo>>,
    /// Real signature verifications made (cache misses), for tests and
    /// reports.
    pub checks: Rc<Cell<u64>>,
}

#[derive(Default)]
struct Memo {
    verified: HashMap<[u8; 128], bool, FixedState>,
    signed: Parts<[u8; 32]>,
    ids: Parts<EntryId>,
    node_ids: HashMap<[u8; 64], NodeId, FixedState>,
}

/// Answers by the byte strings they were computed from.
struct Parts<T> {
    map: HashMap<u64, (Box<[u8]>, T), FixedState>,
    state: FixedState,
}

impl<T> Default for Parts<T> {
    fn default() -> Self {
        Parts {
            map: HashMap::default(),
            state: FixedState::default(),
        }
    }
}

impl<T: Copy> Parts<T> {
    /// The answer for `parts`, computed by `f` the first time.
    fn get_or(&mut self, parts: &[&[u8]], f: impl FnOnce() -> T) -> T {
        let mut h = self.state.build_hasher();
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        let key = h.finish();
        match self.map.get(&key) {
            Some((kept, answer)) if same(kept, parts) => *answer,
            Some(_) => f(), // a collision: answer without caching
            None => {
                let answer = f();
                let mut kept = Vec::with_capacity(parts.iter().map(|p| 4 + p.len()).sum());
                for p in parts {
                    kept.extend_from_slice(&(p.len() as u32).to_le_bytes());
                    kept.extend_from_slice(p);
                }
                self.map.insert(key, (kept.into_boxed_slice(), answer));
                answer
            }
        }
    }
}

/// Whether `kept` (each part after its length) holds exactly `parts`.
fn same(mut kept: &[u8], parts: &[&[u8]]) -> bool {
    for p in parts {
        let Some((len, rest)) = kept.split_first_chunk::<4>() else {
            return false;
        };
        if u32::from_le_bytes(*len) as usize != p.len() || !rest.starts_with(p) {
            return false;
        }
        kept = &rest[p.len()..];
    }
    kept.is_empty()
}

impl SignatureVerifier for SharedVerifier {
    fn verify(&mut self, public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        if message.len() != 32 {
            // The ledger always signs a 32-byte hash; anything else is
            // checked without the cache.
            return Ed25519Verifier.verify(public, message, signature);
        }
        let mut key = [0u8; 128];
        key[..32].copy_from_slice(public);
        key[32..64].copy_from_slice(message);
        key[64..].copy_from_slice(signature);
        if let Some(&ok) = self.memo.borrow().verified.get(&key) {
            return ok;
        }
        let ok = Ed25519Verifier.verify(public, message, signature);
        self.checks.set(self.checks.get() + 1);
        self.memo.borrow_mut().verified.insert(key, ok);
        ok
    }

    fn signed_hash(&mut self, signed_header: &[u8], bucket: &[u8], key: &[u8], value: &[u8]) -> [u8; 32] {
        self.memo
            .borrow_mut()
            .signed
            .get_or(&[signed_header, bucket, key, value], || {
                signed_hash(signed_header, bucket, key, value)
            })
    }

    fn entry_id(&mut self, bucket: &[u8], key: &[u8]) -> EntryId {
        self.memo
            .borrow_mut()
            .ids
            .get_or(&[bucket, key], || EntryId::of(bucket, key))
    }

    fn node_id(&mut self, origin: &PublicIdentity) -> NodeId {
        let mut key = [0u8; 64];
        key[..32].copy_from_slice(&origin.static_key);
        key[32..].copy_from_slice(&origin.signing_key);
        *self
            .memo
            .borrow_mut()
            .node_ids
            .entry(key)
            .or_insert_with(|| origin.node_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::identity::Identity;
    use kairos_core::ledger::Ledger;
    use kairos_core::time::Instant;

    /// The shared verifier answers exactly as Ed25519 does, checking each
    /// distinct signature once.
    #[test]
    fn memoizes_without_changing_answers() {
        let id = Identity::from_bytes(&[3; 64]);
        let mut ledger: Box<Ledger<16, 4096>> = Box::default();
        let key = id.node_id().to_string();
        let r = ledger
            .put(Instant::ZERO, &id, b"machines", key.as_bytes(), b"v", 0)
            .unwrap();
        let mut encoded = [0u8; 1200];
        let n = ledger.encoder(r).unwrap().emit(0, &mut encoded).unwrap();
        let mut v = SharedVerifier::default();
        for _ in 0..3 {
            let mut replica: Box<Ledger<16, 4096>> = Box::default();
            assert!(replica.apply(Instant::ZERO, &mut v, &encoded[..n]).is_ok());
            assert_eq!(
                replica.iter().next().unwrap().version(),
                ledger.iter().next().unwrap().version()
            );
        }
        assert_eq!(v.checks.get(), 1, "one real check for three replicas");
        let mut bad = encoded;
        bad[n - 1] ^= 1; // the value byte: the signature no longer matches
        let mut replica: Box<Ledger<16, 4096>> = Box::default();
        assert!(replica.apply(Instant::ZERO, &mut v, &bad[..n]).is_err());
        assert_eq!(v.checks.get(), 2);
    }

    #[test]
    fn memoized_hashes_equal_the_computed_ones() {
        let mut v = SharedVerifier::default();
        let origin = Identity::from_bytes(&[5; 64]).public();
        for _ in 0..2 {
            assert_eq!(v.entry_id(b"ab", b"c"), EntryId::of(b"ab", b"c"));
            // The same bytes split differently are another input.
            assert_eq!(v.entry_id(b"a", b"bc"), EntryId::of(b"a", b"bc"));
            assert_eq!(v.node_id(&origin), origin.node_id());
            let h = [7u8; 81];
            assert_eq!(v.signed_hash(&h, b"b", b"k", b"v"), signed_hash(&h, b"b", b"k", b"v"));
            assert_eq!(v.signed_hash(&h, b"b", b"kv", b""), signed_hash(&h, b"b", b"kv", b""));
        }
        assert!(same(&[1, 0, 0, 0, 9], &[&[9]]));
        assert!(!same(&[1, 0, 0, 0, 9], &[&[8]]));
        assert!(!same(&[1, 0, 0, 0, 9, 0], &[&[9]]), "bytes left over");
        assert!(!same(&[2, 0, 0, 0, 9], &[&[9]]), "cut short");
    }

    #[test]
    fn a_collision_is_computed_not_answered_from_the_memo() {
        let mut p: Parts<u8> = Parts::default();
        assert_eq!(p.get_or(&[b"x"], || 1), 1);
        // Forge a collision: another input under the same key.
        let key = *p.map.keys().next().unwrap();
        p.map.insert(key, (vec![1, 0, 0, 0, b'y'].into_boxed_slice(), 9));
        assert_eq!(p.get_or(&[b"x"], || 1), 1);
    }
}
