//! One ledger entry: its identity, its version order, its signature, and the
//! read-only [`Entry`] view a caller gets from the [`super::Ledger`].
//!
//! This module owns what makes an entry self-verifying:
//!
//! - [`EntryId`]: the first 16 bytes of
//!   `BLAKE2s("kairos ledger id" || bucket length (1 byte) || bucket || key)`.
//!   The ledger keeps its records sorted by id; its first 8 bytes (the *id
//!   prefix*, a big-endian `u64`) place an entry in a digest range.
//! - The *signed hash*: `BLAKE2s("kairos ledger entry v1" || header || bucket
//!   || key || value)`, where `header` is bytes 1..82 of the entry's wire
//!   encoding (flags, clock, ttl, origin static key, origin signing key,
//!   bucket, key and value lengths; see [`super::wire`]). The origin signs
//!   these 32 bytes with Ed25519, so a [`SignatureVerifier`] always gets a
//!   32-byte message and nothing is concatenated or allocated to check one.
//! - [`Version`]: last writer wins by `(clock, origin node id)`, then by the
//!   signed hash, so that two different entries are never equal and every
//!   replica picks the same winner.
//!
//! It never stores entries (that is `store.rs`) and never decides whether to
//! accept one (that is the ledger).

use core::cmp::Ordering;

use ed25519_dalek::{Signature, Signer, VerifyingKey};

use super::store::Record;
use crate::crypto::{hash, Hasher};
use crate::identity::{Identity, NodeId, PublicIdentity};
use crate::time::Instant;

const ID_DOMAIN: &[u8] = b"kairos ledger id";
const ENTRY_DOMAIN: &[u8] = b"kairos ledger entry v1";

/// Which key an entry is for: a hash of its bucket and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EntryId(pub [u8; 16]);

impl EntryId {
    /// The id of `(bucket, key)`. The bucket's length is hashed too, so
    /// `("ab", "c")` and `("a", "bc")` differ.
    pub fn of(bucket: &[u8], key: &[u8]) -> Self {
        let h = hash(&[ID_DOMAIN, &[bucket.len() as u8], bucket, key]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        EntryId(id)
    }

    /// The first 8 bytes as a big-endian number: the order of ids, and what
    /// summaries and requests carry.
    pub fn prefix(&self) -> u64 {
        u64::from_be_bytes(crate::wire::array(&self.0, 0))
    }
}

/// The hash an entry's origin signs (see the module docs): `signed_header`
/// is bytes 1..82 of the entry's encoding.
pub fn signed_hash(signed_header: &[u8], bucket: &[u8], key: &[u8], value: &[u8]) -> [u8; 32] {
    let mut h = Hasher::new();
    for part in [ENTRY_DOMAIN, signed_header, bucket, key, value] {
        h.update(part);
    }
    h.finish()
}

/// Signs a signed hash with a node's Ed25519 key.
pub(crate) fn sign(identity: &Identity, hash: &[u8; 32]) -> [u8; 64] {
    identity.signing_key().sign(hash).to_bytes()
}

/// Checks received ledger entries: their Ed25519 signatures, and the
/// hashes that name them, tie them to their origin and are signed.
///
/// Each method is a pure function of its arguments, behind a trait so that
/// a caller that checks the same entries many times (the simulator runs a
/// thousand replicas, and each gets every entry) can put a memo cache in
/// front; every method but [`Self::verify`] has the plain computation as
/// its default. `message` is always the 32-byte signed hash of an entry.
///
/// An implementation must answer exactly as these functions do: the
/// ledger trusts `node_id` for the owner-only rule and `entry_id` for
/// finding an entry's record as much as it trusts `verify` for signatures.
pub trait SignatureVerifier {
    /// Whether `signature` is `public`'s signature of `message`.
    fn verify(&mut self, public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool;

    /// [`signed_hash`] of an entry.
    fn signed_hash(&mut self, signed_header: &[u8], bucket: &[u8], key: &[u8], value: &[u8]) -> [u8; 32] {
        signed_hash(signed_header, bucket, key, value)
    }

    /// [`EntryId::of`] `(bucket, key)`.
    fn entry_id(&mut self, bucket: &[u8], key: &[u8]) -> EntryId {
        EntryId::of(bucket, key)
    }

    /// [`PublicIdentity::node_id`] of an entry's origin.
    fn node_id(&mut self, origin: &PublicIdentity) -> NodeId {
        origin.node_id()
    }
}

impl<V: SignatureVerifier + ?Sized> SignatureVerifier for &mut V {
    fn verify(&mut self, public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        (**self).verify(public, message, signature)
    }

    fn signed_hash(&mut self, signed_header: &[u8], bucket: &[u8], key: &[u8], value: &[u8]) -> [u8; 32] {
        (**self).signed_hash(signed_header, bucket, key, value)
    }

    fn entry_id(&mut self, bucket: &[u8], key: &[u8]) -> EntryId {
        (**self).entry_id(bucket, key)
    }

    fn node_id(&mut self, origin: &PublicIdentity) -> NodeId {
        (**self).node_id(origin)
    }
}

/// Ed25519 with ed25519-dalek's `verify_strict` (rejects small-order keys
/// and non-canonical signatures, so one entry has one valid signature form
/// per key).
#[derive(Debug, Clone, Copy, Default)]
pub struct Ed25519Verifier;

impl SignatureVerifier for Ed25519Verifier {
    fn verify(&mut self, public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        match VerifyingKey::from_bytes(public) {
            Ok(key) => key.verify_strict(message, &Signature::from_bytes(signature)).is_ok(),
            Err(_) => false,
        }
    }
}

/// The order in which writes win: higher clock, then higher origin node id,
/// then higher signed hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Lamport clock of the write.
    pub clock: u64,
    /// The writer.
    pub origin: NodeId,
    /// The signed hash (ties only between two writes the same origin signed
    /// with the same clock).
    pub hash: [u8; 32],
}

/// Compares two versions like [`Version`]'s `Ord`, but derives node ids
/// only when the clocks tie (a BLAKE2s each).
pub(crate) fn compare(a: (u64, &PublicIdentity, &[u8; 32]), b: (u64, &PublicIdentity, &[u8; 32])) -> Ordering {
    a.0.cmp(&b.0)
        .then_with(|| {
            if a.1 == b.1 {
                Ordering::Equal
            } else {
                a.1.node_id().cmp(&b.1.node_id())
            }
        })
        .then_with(|| a.2.cmp(b.2))
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryState {
    /// A value, visible to reads and in the digest.
    Live,
    /// A signed delete: hidden from reads, kept (with its version) for
    /// [`super::TOMBSTONE_GRACE`] so an older write cannot bring the key back.
    Tombstone,
    /// A value whose ttl ran out here: the value is dropped, the version is
    /// kept for [`super::TOMBSTONE_GRACE`] so a replica that expires it later
    /// cannot hand it back. Local only: never sent.
    Expired,
}

/// A handle to one version of one entry in a ledger: valid until that
/// record is replaced or purged (then lookups with it answer `None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EntryRef {
    pub(crate) slot: u16,
    pub(crate) tag: [u8; 8],
}

/// A read-only view of a record in the ledger.
#[derive(Clone, Copy)]
pub struct Entry<'a> {
    pub(crate) record: &'a Record,
    pub(crate) bytes: &'a [u8],
    pub(crate) slot: u16,
}

impl<'a> Entry<'a> {
    /// The bucket name.
    pub fn bucket(&self) -> &'a [u8] {
        &self.bytes[..self.record.bucket_len as usize]
    }
    /// The key.
    pub fn key(&self) -> &'a [u8] {
        let b = self.record.bucket_len as usize;
        &self.bytes[b..b + self.record.key_len as usize]
    }
    /// The value (empty for tombstones and expired entries).
    pub fn value(&self) -> &'a [u8] {
        let at = self.record.bucket_len as usize + self.record.key_len as usize;
        &self.bytes[at..at + self.record.value_len as usize]
    }
    /// Live, tombstone or expired.
    pub fn state(&self) -> EntryState {
        self.record.state.unwrap_or(EntryState::Expired)
    }
    /// The Lamport clock of the write.
    pub fn clock(&self) -> u64 {
        self.record.clock
    }
    /// The ttl the origin signed, in seconds (0: none).
    pub fn ttl(&self) -> u32 {
        self.record.ttl
    }
    /// The writer's public keys.
    pub fn origin(&self) -> &'a PublicIdentity {
        &self.record.origin
    }
    /// The writer's node id.
    pub fn origin_id(&self) -> NodeId {
        self.record.origin_id
    }
    /// When this replica stored this version.
    pub fn received(&self) -> Instant {
        self.record.received
    }
    /// When this replica expires (live entry with a ttl) or purges
    /// (tombstone, expired entry) the record; `None` for a live entry
    /// without ttl.
    pub fn deadline(&self) -> Option<Instant> {
        (self.record.deadline != Instant::FAR_FUTURE).then_some(self.record.deadline)
    }
    /// The version.
    pub fn version(&self) -> Version {
        Version {
            clock: self.record.clock,
            origin: self.origin_id(),
            hash: self.record.hash,
        }
    }
    /// The entry's id.
    pub fn id(&self) -> EntryId {
        self.record.id
    }
    /// The origin's signature of the signed hash.
    pub fn signature(&self) -> &'a [u8; 64] {
        &self.record.signature
    }
    /// A handle to this version.
    pub fn entry_ref(&self) -> EntryRef {
        EntryRef {
            slot: self.slot,
            tag: self.record.tag(),
        }
    }
}

impl core::fmt::Debug for Entry<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Entry")
            .field("bucket", &crate::ledger::buckets::Printable(self.bucket()))
            .field("key", &crate::ledger::buckets::Printable(self.key()))
            .field("value_len", &self.value().len())
            .field("state", &self.state())
            .field("clock", &self.clock())
            .field("origin", &self.origin_id())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_bind_the_bucket_boundary() {
        assert_ne!(EntryId::of(b"ab", b"c"), EntryId::of(b"a", b"bc"));
        assert_eq!(
            EntryId::of(b"kairos", b"ip-master"),
            EntryId::of(b"kairos", b"ip-master")
        );
        let id = EntryId([0x80, 1, 2, 3, 4, 5, 6, 7, 9, 9, 9, 9, 9, 9, 9, 9]);
        assert_eq!(id.prefix(), 0x8001_0203_0405_0607);
    }

    #[test]
    fn signatures_verify_and_tampering_fails() {
        let id = Identity::from_bytes(&[5; 64]);
        let other = Identity::from_bytes(&[6; 64]);
        let h = signed_hash(&[1; 81], b"b", b"k", b"v");
        let sig = sign(&id, &h);
        let key = id.public().signing_key;
        let mut v = Ed25519Verifier;
        assert!(v.verify(&key, &h, &sig));
        let h2 = signed_hash(&[1; 81], b"b", b"k", b"w");
        assert!(!v.verify(&key, &h2, &sig));
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(!v.verify(&key, &h, &bad));
        assert!(!v.verify(&other.public().signing_key, &h, &sig));
        // Not a curve point: rejected, not a panic.
        let mut nonsense = [0xffu8; 32];
        nonsense[31] = 0x7f;
        assert!(!v.verify(&nonsense, &h, &sig));
    }

    #[test]
    fn versions_order_by_clock_then_node_id_then_hash() {
        let a = Identity::from_bytes(&[1; 64]).public();
        let b = Identity::from_bytes(&[2; 64]).public();
        let (lo, hi) = if a.node_id() < b.node_id() { (a, b) } else { (b, a) };
        let h0 = [0u8; 32];
        let h1 = [1u8; 32];
        assert_eq!(compare((2, &lo, &h0), (1, &hi, &h1)), Ordering::Greater);
        assert_eq!(compare((1, &lo, &h1), (1, &hi, &h0)), Ordering::Less);
        assert_eq!(compare((1, &hi, &h1), (1, &hi, &h0)), Ordering::Greater);
        assert_eq!(compare((1, &hi, &h0), (1, &hi, &h0)), Ordering::Equal);
        let v = |c, p: &PublicIdentity, h| Version {
            clock: c,
            origin: p.node_id(),
            hash: h,
        };
        assert!(v(1, &lo, h1) < v(1, &hi, h0));
        assert!(v(2, &lo, h0) > v(1, &hi, h1));
    }
}
