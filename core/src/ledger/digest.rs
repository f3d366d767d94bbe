//! The digest: a fixed-size fingerprint of a replica's live entries that two
//! replicas compare to find which parts of the id space differ.
//!
//! The id space is split into [`RANGES`] ranges by the top 6 bits of an
//! entry's id prefix. Each range's value is the XOR of the first 8 bytes of
//! the signed hash of every live entry in it; the signed hash covers bucket,
//! key, value, clock, ttl and origin, so it names one version. XOR is order
//! independent and its own inverse, so the ledger updates the digest in O(1)
//! on every change and two replicas holding the same versions have the same
//! digest whatever order they learnt them in.
//!
//! Tombstones and expired entries are not in the digest: a replica that
//! purged a tombstone and one that never saw it look the same, and
//! tombstones cannot ping-pong between replicas purging them at different
//! times. They still travel when they beat a live version (see `sync.rs`).
//!
//! This module owns the digest's arithmetic and its encoding. It never
//! decides what to send.
//!
//! The XOR is not collision resistant against a member crafting entries
//! whose hashes cancel: such entries would not be repaired by anti-entropy
//! (they still arrive by push). Members can do worse by writing junk, so
//! this is accepted.

use super::entry::EntryId;
use super::wire::{range_of, DigestPacket, MessageType, DIGEST_LEN, RANGES};

/// A set of digest ranges (bit `i` for range `i`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RangeMask(pub u64);

impl RangeMask {
    /// No range.
    pub const NONE: RangeMask = RangeMask(0);
    /// Every range.
    pub const ALL: RangeMask = RangeMask(u64::MAX);

    /// Whether no range is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// Whether range `i` is set.
    pub fn contains(self, i: usize) -> bool {
        i < RANGES && self.0 & (1 << i) != 0
    }
    /// Number of ranges set.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }
    /// The lowest range set at or after `i`.
    pub fn next_from(self, i: usize) -> Option<usize> {
        if i >= RANGES {
            return None;
        }
        let rest = self.0 >> i;
        (rest != 0).then(|| i + rest.trailing_zeros() as usize)
    }
}

/// Per-range hashes of a replica's live entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    ranges: [u64; RANGES],
    entries: u32,
}

impl Default for Digest {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl Digest {
    /// The digest of an empty ledger.
    pub const EMPTY: Digest = Digest {
        ranges: [0; RANGES],
        entries: 0,
    };

    /// Number of live entries.
    pub fn entries(&self) -> u32 {
        self.entries
    }

    /// The hash of range `i` (0 past the end).
    pub fn range(&self, i: usize) -> u64 {
        self.ranges.get(i).copied().unwrap_or(0)
    }

    /// The ranges in which `self` and `other` differ. If every range hash
    /// matches but the entry counts do not (a hash collision), every range.
    pub fn mismatch(&self, other: &Digest) -> RangeMask {
        let mut mask = 0u64;
        for (i, (a, b)) in self.ranges.iter().zip(other.ranges.iter()).enumerate() {
            if a != b {
                mask |= 1 << i;
            }
        }
        if mask == 0 && self.entries != other.entries {
            return RangeMask::ALL;
        }
        RangeMask(mask)
    }

    /// Reads a checked digest message.
    pub fn parse(p: &DigestPacket<&[u8]>) -> Digest {
        let mut d = Digest {
            ranges: [0; RANGES],
            entries: p.entries(),
        };
        for (i, r) in d.ranges.iter_mut().enumerate() {
            *r = p.range(i).unwrap_or(0);
        }
        d
    }

    /// Length of the encoding ([`DIGEST_LEN`]).
    pub const fn buffer_len(&self) -> usize {
        DIGEST_LEN
    }

    /// Writes the digest message; `None` if `buf` is shorter than
    /// [`DIGEST_LEN`].
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let out = buf.get_mut(..DIGEST_LEN)?;
        out[0] = MessageType::Digest as u8;
        out[1] = 0;
        out[2..6].copy_from_slice(&self.entries.to_le_bytes());
        for (chunk, r) in out[6..].chunks_exact_mut(8).zip(self.ranges.iter()) {
            chunk.copy_from_slice(&r.to_le_bytes());
        }
        Some(DIGEST_LEN)
    }

    /// Adds a live version.
    pub(crate) fn add(&mut self, id: &EntryId, hash: &[u8; 32]) {
        self.toggle(id, hash);
        self.entries += 1;
    }

    /// Removes a live version.
    pub(crate) fn remove(&mut self, id: &EntryId, hash: &[u8; 32]) {
        self.toggle(id, hash);
        self.entries -= 1;
    }

    fn toggle(&mut self, id: &EntryId, hash: &[u8; 32]) {
        self.ranges[range_of(id.prefix())] ^= u64::from_le_bytes(crate::wire::array(hash, 0));
    }
}

#[cfg(test)]
mod tests {
    use super::super::replica::tests::{writers, MemoVerifier, Small};
    use super::*;
    use crate::time::Instant;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn mask_helpers() {
        let m = RangeMask(0b1010_0000);
        assert!(m.contains(5) && m.contains(7) && !m.contains(6) && !m.contains(64));
        assert_eq!(
            (m.next_from(0), m.next_from(6), m.next_from(8)),
            (Some(5), Some(7), None)
        );
        assert_eq!(RangeMask::ALL.next_from(63), Some(63));
        assert_eq!(m.count(), 2);
    }

    #[test]
    fn round_trips_and_finds_differing_ranges() {
        let mut d = Digest::EMPTY;
        let id = EntryId([0x10; 16]);
        d.add(&id, &[7; 32]);
        let mut b = [0u8; DIGEST_LEN];
        assert_eq!(d.emit(&mut b), Some(DIGEST_LEN));
        let back = Digest::parse(&DigestPacket::new_checked(&b[..]).unwrap());
        assert_eq!(back, d);
        assert_eq!(d.mismatch(&Digest::EMPTY), RangeMask(1 << range_of(id.prefix())));
        d.remove(&id, &[7; 32]);
        assert_eq!(d, Digest::EMPTY);
        // Equal hashes, different counts: everything is suspect.
        let mut odd = Digest::EMPTY;
        odd.entries = 1;
        assert_eq!(odd.mismatch(&Digest::EMPTY), RangeMask::ALL);
    }

    /// The same set of signed entries, applied in different orders, gives
    /// the same digest and the same contents (merging commutes).
    #[test]
    fn digest_is_independent_of_order() {
        let entries = writers(11, 40);
        let mut reference: Option<Digest> = None;
        let mut rng = ChaCha20Rng::seed_from_u64(12);
        let mut verifier = MemoVerifier::default();
        for _ in 0..5 {
            let mut order: std::vec::Vec<usize> = (0..entries.len()).collect();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.next_u32() as usize % (i + 1));
            }
            let mut l = Small::new();
            for &i in &order {
                l.apply(Instant::ZERO, &mut verifier, &entries[i]).unwrap();
            }
            match &reference {
                None => reference = Some(*l.digest()),
                Some(d) => assert_eq!(l.digest(), d),
            }
            assert!(l.digest().entries() > 0);
        }
    }
}
