//! [`Ledger`]: one replica, and the merge rules that make replicas agree.
//!
//! This module owns local writes (Lamport clock, signing), applying received
//! entries (owner rule, version order, signature), expiry and purging, the
//! change journal, reads, and building the messages for one entry. It never
//! sends anything, never reads a clock (every mutating call takes `now`) and
//! never allocates. Storage is `store.rs`; the anti-entropy exchange is
//! `sync.rs`.

use super::buckets;
use super::digest::Digest;
use super::entry::{compare, sign, signed_hash, Entry, EntryId, EntryRef, EntryState, SignatureVerifier};
use super::fragment::EntryEncoder;
use super::store::{Record, Store};
use super::wire::{EntryPacket, EntryRepr, SIGNED_HEADER};
use super::{
    Applied, Change, LedgerError, Scope, MAX_BUCKET_LEN, MAX_CLOCK, MAX_CLOCK_JUMP, MAX_KEY_LEN, MAX_VALUE_LEN, NO_TTL,
    TOMBSTONE_GRACE,
};
use crate::identity::{Identity, NodeId};
use crate::time::{Duration, Instant};

/// A replica of the ledger with room for `ENTRIES` records and `ARENA`
/// bytes of buckets, keys and values. See the module docs.
pub struct Ledger<const ENTRIES: usize, const ARENA: usize> {
    pub(super) store: Store<ENTRIES, ARENA>,
    clock: u64,
    digest: Digest,
    /// No record's deadline is earlier (it may be later: then `expire`
    /// finds nothing and recomputes it).
    next_deadline: Instant,
    changes: ChangeQueue<ENTRIES>,
}

/// Slots with a change not yet reported, first changed first. A slot is
/// queued at most once, so `N` places always suffice; a queued slot whose
/// record was purged (or reported) meanwhile is skipped when popped.
struct ChangeQueue<const N: usize> {
    ring: [u16; N],
    head: usize,
    len: usize,
    queued: [bool; N],
}

impl<const N: usize> ChangeQueue<N> {
    const fn new() -> Self {
        ChangeQueue {
            ring: [0; N],
            head: 0,
            len: 0,
            queued: [false; N],
        }
    }

    fn push(&mut self, slot: u16) {
        let s = slot as usize;
        if s < N && !self.queued[s] && self.len < N {
            self.queued[s] = true;
            self.ring[(self.head + self.len) % N] = slot;
            self.len += 1;
        }
    }

    fn pop(&mut self) -> Option<u16> {
        if self.len == 0 {
            return None;
        }
        let slot = self.ring[self.head];
        self.head = (self.head + 1) % N;
        self.len -= 1;
        self.queued[slot as usize] = false;
        Some(slot)
    }
}

impl<const ENTRIES: usize, const ARENA: usize> core::fmt::Debug for Ledger<ENTRIES, ARENA> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let (arena_used, arena_garbage) = self.arena_usage();
        f.debug_struct("Ledger")
            .field("live", &self.len())
            .field("records", &self.records())
            .field("capacity", &ENTRIES)
            .field("arena_used", &arena_used)
            .field("arena_garbage", &arena_garbage)
            .field("arena", &ARENA)
            .field("clock", &self.clock)
            .finish()
    }
}

impl<const ENTRIES: usize, const ARENA: usize> Default for Ledger<ENTRIES, ARENA> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const ENTRIES: usize, const ARENA: usize> Ledger<ENTRIES, ARENA> {
    /// An empty ledger (usable in a `static`).
    pub const fn new() -> Self {
        Ledger {
            store: Store::new(),
            clock: 0,
            digest: Digest::EMPTY,
            next_deadline: Instant::FAR_FUTURE,
            changes: ChangeQueue::new(),
        }
    }

    /// The Lamport clock: the highest clock written or verified here.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.digest.entries() as usize
    }

    /// Whether there is no live entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records held (live entries, tombstones and expired entries), out of
    /// `ENTRIES`.
    pub fn records(&self) -> usize {
        self.store.len()
    }

    /// Arena bytes in use and bytes a compaction would reclaim, out of
    /// `ARENA`.
    pub fn arena_usage(&self) -> (usize, usize) {
        self.store.arena_usage()
    }

    /// Writes `value` under `(bucket, key)`, signed by `identity`, with a
    /// ttl in seconds ([`NO_TTL`] for none). The new version beats every
    /// version seen so far. Report and push it via [`Self::poll_change`].
    pub fn put(
        &mut self,
        now: Instant,
        identity: &Identity,
        bucket: &[u8],
        key: &[u8],
        value: &[u8],
        ttl_secs: u32,
    ) -> Result<EntryRef, LedgerError> {
        self.write_local(now, identity, false, bucket, key, value, ttl_secs)
    }

    /// Deletes `(bucket, key)` with a tombstone signed by `identity`, even
    /// if no value is known here (another replica may hold one). Deleting a
    /// key whose record is already a tombstone changes nothing.
    pub fn delete(
        &mut self,
        now: Instant,
        identity: &Identity,
        bucket: &[u8],
        key: &[u8],
    ) -> Result<EntryRef, LedgerError> {
        self.write_local(now, identity, true, bucket, key, b"", NO_TTL)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_local(
        &mut self,
        now: Instant,
        identity: &Identity,
        tombstone: bool,
        bucket: &[u8],
        key: &[u8],
        value: &[u8],
        ttl: u32,
    ) -> Result<EntryRef, LedgerError> {
        self.expire(now);
        check_lengths(bucket, key, value)?;
        let origin = identity.public();
        let origin_id = buckets::check_owner(bucket, key, || origin.node_id())?;
        let id = EntryId::of(bucket, key);
        let found = self.store.find(&id);
        if let Ok(pos) = found {
            let slot = self.store.slot_at(pos);
            let existing = self.checked_existing(slot, bucket, key)?;
            if tombstone && existing.is(EntryState::Tombstone) {
                return Ok(EntryRef {
                    slot,
                    tag: existing.tag(),
                });
            }
        }
        if self.clock >= MAX_CLOCK {
            return Err(LedgerError::ClockExhausted);
        }
        let clock = self.clock + 1;
        let repr = EntryRepr {
            tombstone,
            clock,
            ttl,
            origin,
            bucket,
            key,
            value,
            signature: [0; 64],
        };
        let hash = signed_hash(&repr.header()[SIGNED_HEADER], bucket, key, value);
        let signature = sign(identity, &hash);
        let origin_id = origin_id.unwrap_or_else(|| origin.node_id());
        let record = new_record(id, hash, signature, &repr, origin_id);
        let r = self.store_version(now, found, record, [bucket, key, value], true)?;
        self.clock = clock;
        Ok(r)
    }

    /// The record in `slot`, checked to be `(bucket, key)`.
    fn checked_existing(&self, slot: u16, bucket: &[u8], key: &[u8]) -> Result<Record, LedgerError> {
        let e = self.store.entry(slot).ok_or(LedgerError::Stale)?;
        if e.bucket() != bucket || e.key() != key {
            return Err(LedgerError::IdCollision);
        }
        Ok(*e.record)
    }

    /// Applies a received entry (its whole encoding: a `LEDGER_DELTA`
    /// payload of type entry, or the output of a [`Reassembly`](super::Reassembly)).
    ///
    /// Checks, in order: the format, the owner-only rule, the clock jump
    /// ([`MAX_CLOCK_JUMP`](super::MAX_CLOCK_JUMP)), the version order
    /// against what is stored (older or equal: done, see the module docs;
    /// a copy of the stored version is told by its clock, origin and
    /// signature without hashing it), then the signature. A stored entry raises the Lamport clock and is
    /// reported by [`Self::poll_change`].
    pub fn apply(
        &mut self,
        now: Instant,
        verifier: &mut impl SignatureVerifier,
        encoded: &[u8],
    ) -> Result<Applied, LedgerError> {
        self.expire(now);
        let packet = EntryPacket::new_checked(encoded)?;
        let repr = EntryRepr::parse(&packet);
        let id = verifier.entry_id(repr.bucket, repr.key);
        let found = self.store.find(&id);
        let existing = match found {
            Ok(pos) => Some(self.checked_existing(self.store.slot_at(pos), repr.bucket, repr.key)?),
            Err(_) => None,
        };
        let origin_id = match &existing {
            // The stored version of this very key passed the owner-only rule
            // with this origin: no need to derive its id again.
            Some(e) if e.origin == repr.origin => Some(e.origin_id),
            _ => buckets::check_owner(repr.bucket, repr.key, || verifier.node_id(&repr.origin))?,
        };
        if repr.clock > self.clock.saturating_add(MAX_CLOCK_JUMP) {
            return Err(LedgerError::ClockJump);
        }
        // Most received entries are copies of versions already held (gossip
        // delivers each about three times): settle those without hashing.
        // An older clock loses whatever the hash; the same clock, origin and
        // signature is the stored version itself (an Ed25519 signature binds
        // the hash it signs, so a different body under a copied signature
        // is a forgery, which changes nothing here either).
        if let Some(existing) = &existing {
            if repr.clock < existing.clock {
                return Ok(Applied::Older);
            }
            if repr.clock == existing.clock && repr.origin == existing.origin && repr.signature == existing.signature {
                return Ok(Applied::Equal);
            }
        }
        let hash = verifier.signed_hash(packet.signed_header(), repr.bucket, repr.key, repr.value);
        if let Some(existing) = existing {
            match compare(
                (repr.clock, &repr.origin, &hash),
                (existing.clock, &existing.origin, &existing.hash),
            ) {
                core::cmp::Ordering::Less => return Ok(Applied::Older),
                core::cmp::Ordering::Equal => return Ok(Applied::Equal),
                core::cmp::Ordering::Greater => {}
            }
        }
        if !verifier.verify(&repr.origin.signing_key, &hash, &repr.signature) {
            return Err(LedgerError::BadSignature);
        }
        let origin_id = origin_id.unwrap_or_else(|| verifier.node_id(&repr.origin));
        let record = new_record(id, hash, repr.signature, &repr, origin_id);
        let r = self.store_version(now, found, record, [repr.bucket, repr.key, repr.value], false)?;
        self.clock = self.clock.max(repr.clock);
        Ok(if found.is_ok() {
            Applied::Newer(r)
        } else {
            Applied::New(r)
        })
    }

    /// Stores a version that won (or a first version), keeping the digest,
    /// the change count and the next deadline in step.
    fn store_version(
        &mut self,
        now: Instant,
        found: Result<usize, usize>,
        mut record: Record,
        parts: [&[u8]; 3],
        local: bool,
    ) -> Result<EntryRef, LedgerError> {
        record.received = now;
        record.deadline = match record.state {
            Some(EntryState::Live) if record.ttl > 0 => now + Duration::from_secs(record.ttl as u64),
            Some(EntryState::Live) => Instant::FAR_FUTURE,
            _ => now + TOMBSTONE_GRACE,
        };
        record.changed = true;
        record.local = local;
        let slot = match found {
            Ok(pos) => {
                let slot = self.store.slot_at(pos);
                let old = *self.store.record(slot).ok_or(LedgerError::Stale)?;
                self.store.replace(slot, record, parts)?;
                if old.is(EntryState::Live) {
                    self.digest.remove(&old.id, &old.hash);
                }
                slot
            }
            Err(mut pos) => {
                if self.store.len() == ENTRIES {
                    if let Some(evicted) = self.evict_expired() {
                        if evicted < pos {
                            pos -= 1;
                        }
                    }
                }
                self.store.insert(pos, record, parts)?
            }
        };
        if record.is(EntryState::Live) {
            self.digest.add(&record.id, &record.hash);
        }
        self.changes.push(slot);
        self.next_deadline = self.next_deadline.min(record.deadline);
        Ok(EntryRef {
            slot,
            tag: record.tag(),
        })
    }

    /// Removes the expired record closest to its purge; its position.
    fn evict_expired(&mut self) -> Option<usize> {
        let pos = (0..self.store.len())
            .filter(|&p| self.store.at(p).is(EntryState::Expired))
            .min_by_key(|&p| self.store.at(p).deadline)?;
        self.store.remove(pos);
        Some(pos)
    }

    /// Expires live entries whose ttl ran out (they become
    /// [`EntryState::Expired`] and are reported by [`Self::poll_change`]) and
    /// purges tombstones and expired entries past [`TOMBSTONE_GRACE`]. Cheap
    /// when nothing is due.
    pub fn expire(&mut self, now: Instant) {
        if now < self.next_deadline {
            return;
        }
        let mut next = Instant::FAR_FUTURE;
        for pos in 0..self.store.len() {
            let slot = self.store.slot_at(pos);
            let Some(&r) = self.store.record(slot) else { continue };
            if r.is(EntryState::Live) && r.deadline <= now {
                self.digest.remove(&r.id, &r.hash);
                self.store.drop_value(slot);
                let rec = self.store.record_mut(slot);
                rec.state = Some(EntryState::Expired);
                rec.deadline = now + TOMBSTONE_GRACE;
                rec.local = false;
                rec.changed = true;
                self.changes.push(slot);
            }
        }
        self.store.retain(|r| {
            let keep = r.is(EntryState::Live) || r.deadline > now;
            if keep {
                next = next.min(r.deadline);
            }
            keep
        });
        self.next_deadline = next;
    }

    /// When [`Self::expire`] has something to do, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (self.next_deadline != Instant::FAR_FUTURE).then_some(self.next_deadline)
    }

    /// The next change not yet reported, in the order the records first
    /// changed since their last report.
    pub fn poll_change(&mut self) -> Option<Change> {
        while let Some(slot) = self.changes.pop() {
            let Some(r) = self.store.record(slot) else { continue };
            if !r.changed {
                continue;
            }
            let change = Change {
                entry: EntryRef { slot, tag: r.tag() },
                state: r.state?,
                local: r.local,
            };
            self.store.record_mut(slot).changed = false;
            return Some(change);
        }
        None
    }

    /// The live entry under `(bucket, key)`. Reads do not take the time:
    /// an entry whose ttl ran out stays visible until the next
    /// [`Self::expire`] (or mutating call).
    pub fn get(&self, bucket: &[u8], key: &[u8]) -> Option<Entry<'_>> {
        self.find(bucket, key).filter(|e| e.state() == EntryState::Live)
    }

    /// The record under `(bucket, key)` in any state (tombstones and
    /// expired entries included).
    pub fn find(&self, bucket: &[u8], key: &[u8]) -> Option<Entry<'_>> {
        let pos = self.store.find(&EntryId::of(bucket, key)).ok()?;
        let e = self.store.entry(self.store.slot_at(pos))?;
        (e.bucket() == bucket && e.key() == key).then_some(e)
    }

    /// The version an [`EntryRef`] names, if still held.
    pub fn entry(&self, r: EntryRef) -> Option<Entry<'_>> {
        self.store.by_ref(r)
    }

    /// Every live entry, in id order (the same order on every replica, not
    /// alphabetical).
    pub fn iter(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.store.iter().filter(|e| e.state() == EntryState::Live)
    }

    /// Every record, tombstones and expired entries included, in id order.
    pub fn iter_all(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.store.iter()
    }

    /// The live entries of one bucket, in id order.
    pub fn iter_bucket<'a>(&'a self, bucket: &'a [u8]) -> impl Iterator<Item = Entry<'a>> + 'a {
        self.iter().filter(move |e| e.bucket() == bucket)
    }

    /// The live entries of one bucket in storage order: the same entries as
    /// [`Self::iter_bucket`], in an order that depends on this replica's
    /// history (use it where order does not matter; it is much faster on a
    /// large replica).
    pub fn scan_bucket<'a>(&'a self, bucket: &'a [u8]) -> impl Iterator<Item = Entry<'a>> + 'a {
        self.store.scan_bucket(bucket).filter(|e| e.state() == EntryState::Live)
    }

    /// The records of one bucket in any state (tombstones and expired
    /// entries included), in storage order like [`Self::scan_bucket`].
    pub fn scan_bucket_all<'a>(&'a self, bucket: &'a [u8]) -> impl Iterator<Item = Entry<'a>> + 'a {
        self.store.scan_bucket(bucket)
    }

    /// The digest of the live entries, for anti-entropy.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// The digest of the live entries in `scope`: the kept digest for
    /// [`Scope::All`]; for [`Scope::Small`] one computed by a pass over the
    /// records (only exchanges with a small device's replica need it, and
    /// keeping it would cost every replica, the small ones included, a
    /// second digest).
    pub fn digest_in(&self, scope: Scope) -> Digest {
        match scope {
            Scope::All => self.digest,
            Scope::Small => {
                let mut d = Digest::EMPTY;
                for pos in 0..self.store.len() {
                    let r = self.store.at(pos);
                    if r.is(EntryState::Live) && self.store.in_scope(r, Scope::Small) {
                        d.add(&r.id, &r.hash);
                    }
                }
                d
            }
        }
    }

    /// The messages that carry the version `r` names (a live entry or a
    /// tombstone) to a peer.
    pub fn encoder(&self, r: EntryRef) -> Result<EntryEncoder<'_>, LedgerError> {
        let e = self.entry(r).ok_or(LedgerError::Stale)?;
        if e.state() == EntryState::Expired {
            return Err(LedgerError::NotSendable);
        }
        let repr = EntryRepr {
            tombstone: e.state() == EntryState::Tombstone,
            clock: e.clock(),
            ttl: e.ttl(),
            origin: *e.origin(),
            bucket: e.bucket(),
            key: e.key(),
            value: e.value(),
            signature: *e.signature(),
        };
        Ok(EntryEncoder {
            header: repr.header(),
            parts: [e.bucket(), e.key(), e.value()],
            tag: e.record.tag(),
        })
    }
}

fn check_lengths(bucket: &[u8], key: &[u8], value: &[u8]) -> Result<(), LedgerError> {
    if bucket.is_empty() || bucket.len() > MAX_BUCKET_LEN {
        return Err(LedgerError::BucketLength);
    }
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(LedgerError::KeyLength);
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(LedgerError::ValueTooLong);
    }
    Ok(())
}

fn new_record(id: EntryId, hash: [u8; 32], signature: [u8; 64], repr: &EntryRepr<'_>, origin_id: NodeId) -> Record {
    Record {
        id,
        hash,
        signature,
        origin: repr.origin,
        origin_id,
        clock: repr.clock,
        ttl: repr.ttl,
        value_len: repr.value.len() as u16,
        bucket_len: repr.bucket.len() as u8,
        key_len: repr.key.len() as u8,
        state: Some(if repr.tombstone {
            EntryState::Tombstone
        } else {
            EntryState::Live
        }),
        ..Record::EMPTY
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::buckets::{owner_key, ADDRESSES, MACHINES};
    use super::super::fragment::Reassembly;
    use super::super::wire::{DecodeError, Message};
    use super::super::{Ed25519Verifier, MAX_MESSAGE_LEN};
    use super::*;
    use crate::wire::ControlKind;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use std::boxed::Box;
    use std::format;
    use std::vec::Vec;

    /// The ledger size the tests use.
    pub(crate) type Small = Ledger<128, 65536>;

    /// Ed25519 behind a memo cache, as the simulator uses it: verification
    /// is a pure function, so answers can be reused (and debug-build
    /// Ed25519 is slow).
    #[derive(Default)]
    pub(crate) struct MemoVerifier(std::collections::HashMap<VerifyInput, bool>);

    /// Public key, message (a signed hash) and signature.
    type VerifyInput = ([u8; 32], [u8; 32], [u8; 64]);

    impl SignatureVerifier for MemoVerifier {
        fn verify(&mut self, public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
            let Ok(m) = <[u8; 32]>::try_from(message) else {
                return Ed25519Verifier.verify(public, message, signature);
            };
            *self
                .0
                .entry((*public, m, *signature))
                .or_insert_with(|| Ed25519Verifier.verify(public, message, signature))
        }
    }

    pub(crate) fn ident(n: u8) -> Identity {
        Identity::from_bytes(&[n; 64])
    }

    fn t(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    /// The whole encoding of a version (what `apply` takes).
    pub(crate) fn encoded<const E: usize, const A: usize>(l: &Ledger<E, A>, r: EntryRef) -> Vec<u8> {
        let enc = l.encoder(r).unwrap();
        let mut v = enc.header.to_vec();
        for p in enc.parts {
            v.extend_from_slice(p);
        }
        v
    }

    /// A random history written by four nodes that see only some of each
    /// other's writes: conflicting puts, deletes, ttl keys, owner-only keys
    /// and a few values long enough to travel in fragments.
    pub(crate) fn writers(seed: u64, ops: usize) -> Vec<Vec<u8>> {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ids: Vec<Identity> = (0..4)
            .map(|i| ident((seed as u8).wrapping_mul(4).wrapping_add(i + 1)))
            .collect();
        let mut ls: Vec<Box<Small>> = (0..4).map(|_| Box::new(Small::new())).collect();
        let mut out: Vec<Vec<u8>> = Vec::new();
        let now = Instant::ZERO;
        for _ in 0..ops {
            let w = rng.next_u32() as usize % 4;
            let roll = rng.next_u32() % 100;
            let key = format!("key-{}", rng.next_u32() % 64);
            let me = owner_key(&ids[w].node_id());
            let r = if roll < 55 {
                let len = if rng.next_u32() % 10 == 0 {
                    1500 + rng.next_u32() % 2000
                } else {
                    rng.next_u32() % 40
                };
                let value: Vec<u8> = (0..len).map(|_| rng.next_u32() as u8).collect();
                ls[w].put(now, &ids[w], b"kairos", key.as_bytes(), &value, NO_TTL)
            } else if roll < 70 {
                ls[w].delete(now, &ids[w], b"kairos", key.as_bytes())
            } else if roll < 80 {
                let k = format!("{}-uuid", ids[w].node_id());
                ls[w].put(now, &ids[w], b"kairos", k.as_bytes(), b"alive", 3600)
            } else if roll < 90 {
                ls[w].put(now, &ids[w], MACHINES.as_bytes(), &me, key.as_bytes(), NO_TTL)
            } else {
                if !out.is_empty() {
                    let i = rng.next_u32() as usize % out.len();
                    ls[w].apply(now, &mut Ed25519Verifier, &out[i]).unwrap();
                }
                continue;
            };
            let r = r.unwrap();
            out.push(encoded(&ls[w], r));
        }
        out
    }

    #[test]
    fn scan_bucket_holds_what_iter_bucket_holds() {
        let me = ident(1);
        let mut l = Small::new();
        for i in 0..12u8 {
            // Buckets of one length ("aaaa", "bbbb") and of another ("cc").
            let bucket: &[u8] = [&b"aaaa"[..], b"bbbb", b"cc"][i as usize % 3];
            l.put(t(0), &me, bucket, &[b'k', i], &[i], NO_TTL).unwrap();
        }
        l.put(t(1), &me, b"aaaa", b"gone", b"v", 1).unwrap();
        l.delete(t(1), &me, b"aaaa", &[b'k', 0]).unwrap();
        l.expire(t(3));
        for bucket in [&b"aaaa"[..], b"bbbb", b"cc", b"dd", b"aaa"] {
            let mut ordered: std::vec::Vec<_> = l.iter_bucket(bucket).map(|e| e.id()).collect();
            let mut scanned: std::vec::Vec<_> = l.scan_bucket(bucket).map(|e| e.id()).collect();
            ordered.sort();
            scanned.sort();
            assert_eq!(ordered, scanned, "{bucket:?}");
            let all = l.iter_all().filter(|e| e.bucket() == bucket).count();
            assert_eq!(l.scan_bucket_all(bucket).count(), all, "{bucket:?}");
        }
        assert_eq!(l.scan_bucket(b"aaaa").count(), 3);
        assert_eq!(
            l.scan_bucket_all(b"aaaa").count(),
            5,
            "a tombstone and an expired entry"
        );
    }

    #[test]
    fn put_get_and_lamport_clock() {
        let me = ident(1);
        let mut l = Small::new();
        assert!(l.get(b"kairos", b"ip-master").is_none());
        let r = l.put(t(0), &me, b"kairos", b"ip-master", b"10.1.0.1", NO_TTL).unwrap();
        assert_eq!(l.clock(), 1);
        let e = l.get(b"kairos", b"ip-master").unwrap();
        assert_eq!(
            (e.value(), e.clock(), e.ttl(), e.state()),
            (&b"10.1.0.1"[..], 1, 0, EntryState::Live)
        );
        assert_eq!(e.origin_id(), me.node_id());
        assert_eq!(e.entry_ref(), r);
        l.put(t(1), &me, b"kairos", b"ip-master", b"10.1.0.2", NO_TTL).unwrap();
        assert_eq!(l.get(b"kairos", b"ip-master").unwrap().clock(), 2);
        assert!(l.entry(r).is_none(), "the old version's handle is stale");
        l.put(t(1), &me, b"other", b"k", b"v", NO_TTL).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l.iter_bucket(b"kairos").count(), 1);
        assert_eq!(l.iter().count(), 2);
        assert_eq!(l.put(t(1), &me, b"", b"k", b"v", 0), Err(LedgerError::BucketLength));
        assert_eq!(
            l.put(t(1), &me, &[b'b'; 65], b"k", b"v", 0),
            Err(LedgerError::BucketLength)
        );
        assert_eq!(l.put(t(1), &me, b"b", b"", b"v", 0), Err(LedgerError::KeyLength));
        assert_eq!(
            l.put(t(1), &me, b"b", &[b'k'; 129], b"v", 0),
            Err(LedgerError::KeyLength)
        );
        assert_eq!(
            l.put(t(1), &me, b"b", b"k", &[0; 16385], 0),
            Err(LedgerError::ValueTooLong)
        );
        assert_eq!(l.clock(), 3);
        let shown = format!("{l:?}");
        assert!(shown.contains("live: 2") && shown.contains("clock: 3"), "{shown}");
        assert!(format!("{:?}", l.get(b"other", b"k").unwrap()).contains("\"other\""));
    }

    #[test]
    fn last_writer_wins_ties_by_node_id() {
        let (a_id, b_id) = (ident(1), ident(2));
        let mut a = Small::new();
        let mut b = Small::new();
        let ra = a.put(t(0), &a_id, b"kairos", b"leader-auto", b"a", NO_TTL).unwrap();
        let rb = b.put(t(0), &b_id, b"kairos", b"leader-auto", b"b", NO_TTL).unwrap();
        let (ea, eb) = (encoded(&a, ra), encoded(&b, rb));
        let a_res = a.apply(t(1), &mut Ed25519Verifier, &eb).unwrap();
        let b_res = b.apply(t(1), &mut Ed25519Verifier, &ea).unwrap();
        // Both wrote with clock 1: the higher node id wins everywhere.
        let winner: &[u8] = if a_id.node_id() > b_id.node_id() { b"a" } else { b"b" };
        assert_eq!(a.get(b"kairos", b"leader-auto").unwrap().value(), winner);
        assert_eq!(b.get(b"kairos", b"leader-auto").unwrap().value(), winner);
        assert_eq!(a.digest(), b.digest());
        if winner == b"a" {
            assert_eq!(a_res, Applied::Older);
            assert!(matches!(b_res, Applied::Newer(_)));
        } else {
            assert!(matches!(a_res, Applied::Newer(_)));
            assert_eq!(b_res, Applied::Older);
        }
        // Applying either entry again changes nothing.
        for e in [&ea, &eb] {
            assert!(matches!(
                a.apply(t(2), &mut Ed25519Verifier, e),
                Ok(Applied::Older | Applied::Equal)
            ));
        }
        assert!(a.poll_change().is_some_and(|c| c.local));
        assert_eq!(a.poll_change().map(|c| c.local), (winner == b"b").then_some(false));
    }

    #[test]
    fn lamport_clock_advances_on_apply() {
        let (a_id, b_id) = (ident(3), ident(4));
        let mut a = Small::new();
        let mut b = Small::new();
        let mut last = None;
        for i in 0..5u8 {
            last = Some(a.put(t(0), &a_id, b"kairos", b"k", &[i], NO_TTL).unwrap());
        }
        let ea = encoded(&a, last.unwrap());
        assert_eq!(b.apply(t(0), &mut Ed25519Verifier, &ea).map(|_| ()), Ok(()));
        assert_eq!(b.clock(), 5);
        // B's next write beats A's whatever the node ids.
        let rb = b.put(t(0), &b_id, b"kairos", b"k", b"from b", NO_TTL).unwrap();
        assert_eq!(b.get(b"kairos", b"k").unwrap().clock(), 6);
        assert!(matches!(
            a.apply(t(0), &mut Ed25519Verifier, &encoded(&b, rb)),
            Ok(Applied::Newer(_))
        ));
        assert_eq!(a.get(b"kairos", b"k").unwrap().value(), b"from b");
        assert_eq!(a.clock(), 6);
    }

    #[test]
    fn tombstones_beat_older_puts_and_are_purged_after_grace() {
        let w = ident(5);
        let mut writer = Small::new();
        let put = writer.put(t(0), &w, b"kairos", b"k", b"v1", NO_TTL).unwrap();
        let put = encoded(&writer, put);
        let del = writer.delete(t(1), &w, b"kairos", b"k").unwrap();
        let del_bytes = encoded(&writer, del);
        assert!(writer.get(b"kairos", b"k").is_none());
        assert_eq!(writer.find(b"kairos", b"k").unwrap().state(), EntryState::Tombstone);
        assert_eq!(
            writer.delete(t(1), &w, b"kairos", b"k"),
            Ok(del),
            "deleting twice is a no-op"
        );
        assert_eq!(writer.len(), 0);
        assert_eq!(writer.digest(), &Digest::EMPTY);

        // A replica that hears of the delete before the put keeps the key deleted.
        let mut l = Small::new();
        assert!(matches!(
            l.apply(t(10), &mut Ed25519Verifier, &del_bytes),
            Ok(Applied::New(_))
        ));
        assert_eq!(l.apply(t(11), &mut Ed25519Verifier, &put), Ok(Applied::Older));
        assert!(l.get(b"kairos", b"k").is_none());
        assert_eq!(l.poll_timeout(), Some(t(10) + TOMBSTONE_GRACE));
        // Purged after the grace period (from local receipt).
        l.expire(t(9) + TOMBSTONE_GRACE);
        assert_eq!(l.records(), 1);
        l.expire(t(10) + TOMBSTONE_GRACE);
        assert_eq!(l.records(), 0);
        assert_eq!(l.poll_timeout(), None);
        // After that an older put brings the key back: the documented bound.
        assert!(matches!(
            l.apply(t(700), &mut Ed25519Verifier, &put),
            Ok(Applied::New(_))
        ));

        // Deleting a key never seen still writes a tombstone.
        let mut fresh = Small::new();
        fresh.delete(t(0), &w, b"kairos", b"unknown").unwrap();
        assert_eq!(
            fresh.find(b"kairos", b"unknown").unwrap().state(),
            EntryState::Tombstone
        );
    }

    /// Copies of a held version are settled without hashing; a body changed
    /// under a copied signature changes nothing.
    #[test]
    fn copies_of_a_held_version_change_nothing() {
        let w = ident(7);
        let mut a = Small::new();
        let r = a.put(t(1), &w, b"kairos", b"k", b"value", NO_TTL).unwrap();
        let bytes = encoded(&a, r);
        let mut b = Small::new();
        assert!(matches!(
            b.apply(t(2), &mut Ed25519Verifier, &bytes),
            Ok(Applied::New(_))
        ));
        while b.poll_change().is_some() {}
        assert_eq!(b.apply(t(3), &mut Ed25519Verifier, &bytes), Ok(Applied::Equal));
        let mut forged = bytes.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert!(matches!(
            b.apply(t(3), &mut Ed25519Verifier, &forged),
            Ok(Applied::Equal) | Err(LedgerError::BadSignature)
        ));
        assert_eq!(b.get(b"kairos", b"k").unwrap().value(), b"value");
        assert!(b.poll_change().is_none());
        // A newer version wins; the old one is then older.
        let r2 = a.put(t(4), &w, b"kairos", b"k", b"newer", NO_TTL).unwrap();
        assert!(matches!(
            b.apply(t(5), &mut Ed25519Verifier, &encoded(&a, r2)),
            Ok(Applied::Newer(_))
        ));
        assert_eq!(b.apply(t(6), &mut Ed25519Verifier, &bytes), Ok(Applied::Older));
        assert_eq!(b.get(b"kairos", b"k").unwrap().value(), b"newer");
    }

    #[test]
    fn ttl_entries_expire_at_local_receipt_plus_ttl() {
        let w = ident(6);
        let mut a = Small::new();
        let r = a.put(t(100), &w, b"kairos", b"x-uuid", b"alive", 30).unwrap();
        let bytes = encoded(&a, r);
        assert_eq!(a.poll_timeout(), Some(t(130)));
        // Another replica receives it 10 s later and expires it 10 s later.
        let mut b = Small::new();
        b.apply(t(110), &mut Ed25519Verifier, &bytes).unwrap();
        assert_eq!(b.get(b"kairos", b"x-uuid").unwrap().deadline(), Some(t(140)));
        while a.poll_change().is_some() {}
        a.expire(t(129));
        assert!(a.get(b"kairos", b"x-uuid").is_some());
        a.expire(t(130));
        assert!(a.get(b"kairos", b"x-uuid").is_none());
        assert_eq!(a.find(b"kairos", b"x-uuid").unwrap().state(), EntryState::Expired);
        assert_eq!(a.find(b"kairos", b"x-uuid").unwrap().value(), b"");
        assert_eq!(a.digest(), &Digest::EMPTY);
        assert_eq!(
            a.poll_change().map(|c| (c.state, c.local)),
            Some((EntryState::Expired, false))
        );
        assert_eq!(a.encoder(r).err(), Some(LedgerError::NotSendable));
        // The replica that has not expired it yet cannot hand it back.
        assert_eq!(a.apply(t(131), &mut Ed25519Verifier, &bytes), Ok(Applied::Equal));
        assert!(a.get(b"kairos", b"x-uuid").is_none());
        // Re-putting refreshes.
        a.put(t(135), &w, b"kairos", b"x-uuid", b"alive", 30).unwrap();
        assert_eq!(a.get(b"kairos", b"x-uuid").unwrap().deadline(), Some(t(165)));
        // The marker of the old version is gone with it; b expires on its own clock.
        b.expire(t(140));
        assert!(b.get(b"kairos", b"x-uuid").is_none());
        b.expire(t(140) + TOMBSTONE_GRACE);
        assert_eq!(b.records(), 0);
    }

    /// An entry claiming `origin`, signed by `signer`, bypassing every
    /// local check.
    fn forge(origin: &Identity, signer: &Identity, bucket: &[u8], key: &[u8], value: &[u8], clock: u64) -> Vec<u8> {
        let mut repr = EntryRepr {
            tombstone: false,
            clock,
            ttl: 0,
            origin: origin.public(),
            bucket,
            key,
            value,
            signature: [0; 64],
        };
        let hash = signed_hash(&repr.header()[SIGNED_HEADER], bucket, key, value);
        repr.signature = sign(signer, &hash);
        let mut out = std::vec![0u8; repr.buffer_len()];
        repr.emit(&mut out).unwrap();
        out
    }

    #[test]
    fn owner_only_buckets_reject_other_writers() {
        let (owner, intruder) = (ident(7), ident(8));
        let owner_k = owner_key(&owner.node_id());
        let mut l = Small::new();
        // Local writes under someone else's key.
        assert_eq!(
            l.put(t(0), &intruder, MACHINES.as_bytes(), &owner_k, b"evil", NO_TTL),
            Err(LedgerError::NotOwner)
        );
        assert_eq!(
            l.delete(t(0), &intruder, ADDRESSES.as_bytes(), &owner_k),
            Err(LedgerError::NotOwner)
        );
        assert_eq!(
            l.put(t(0), &intruder, b"owner/x", b"anything", b"v", NO_TTL),
            Err(LedgerError::NotOwner)
        );
        let r = l
            .put(t(0), &owner, MACHINES.as_bytes(), &owner_k, b"mine", NO_TTL)
            .unwrap();
        let genuine = encoded(&l, r);

        let mut victim = Small::new();
        victim.apply(t(0), &mut Ed25519Verifier, &genuine).unwrap();
        // A validly signed entry from the intruder for the owner's key.
        let evil = forge(&intruder, &intruder, MACHINES.as_bytes(), &owner_k, b"evil", 99);
        assert_eq!(
            victim.apply(t(0), &mut Ed25519Verifier, &evil),
            Err(LedgerError::NotOwner)
        );
        // The intruder claiming to be the owner: the signature fails.
        let evil = forge(&owner, &intruder, MACHINES.as_bytes(), &owner_k, b"evil", 99);
        assert_eq!(
            victim.apply(t(0), &mut Ed25519Verifier, &evil),
            Err(LedgerError::BadSignature)
        );
        assert_eq!(victim.get(MACHINES.as_bytes(), &owner_k).unwrap().value(), b"mine");
        assert_eq!(victim.clock(), 1);
        // The same forgery in an open bucket is a valid write by the intruder.
        let open = forge(&intruder, &intruder, b"kairos", &owner_k, b"fine", 2);
        assert!(matches!(
            victim.apply(t(0), &mut Ed25519Verifier, &open),
            Ok(Applied::New(_))
        ));
    }

    #[test]
    fn tampered_entries_are_rejected() {
        let (w, other) = (ident(9), ident(10));
        let mut src = Small::new();
        let r = src
            .put(t(0), &w, b"kairos", b"token-nodetoken", b"K10secret", 60)
            .unwrap();
        let good = encoded(&src, r);
        let tamper = |f: &dyn Fn(&mut Vec<u8>)| {
            let mut b = good.clone();
            f(&mut b);
            let mut l = Small::new();
            let res = l.apply(t(0), &mut Ed25519Verifier, &b);
            if res.is_err() {
                assert_eq!(l.records(), 0);
                assert_eq!(l.clock(), 0, "a rejected entry does not move the clock");
            }
            res
        };
        let n = good.len();
        assert_eq!(tamper(&|b| b[n - 1] ^= 1), Err(LedgerError::BadSignature), "value");
        assert_eq!(tamper(&|b| b[2] ^= 4), Err(LedgerError::BadSignature), "clock");
        assert_eq!(tamper(&|b| b[10] ^= 1), Err(LedgerError::BadSignature), "ttl");
        assert_eq!(tamper(&|b| b[100] ^= 1), Err(LedgerError::BadSignature), "signature");
        assert_eq!(
            tamper(&|b| b[1] = 1),
            Err(LedgerError::Malformed(DecodeError::TombstoneWithValue))
        );
        let op = other.public();
        assert_eq!(
            tamper(&|b| b[46..78].copy_from_slice(&op.signing_key)),
            Err(LedgerError::BadSignature),
            "someone else's signing key"
        );
        assert_eq!(
            tamper(&|b| b[14..46].copy_from_slice(&op.static_key)),
            Err(LedgerError::BadSignature),
            "someone else's static key"
        );
        assert!(matches!(tamper(&|_| {}), Ok(Applied::New(_))));
        // A validly signed entry with a clock far ahead.
        let mut l = Small::new();
        let far = forge(&w, &w, b"kairos", b"k", b"v", MAX_CLOCK_JUMP + 1);
        assert_eq!(l.apply(t(0), &mut Ed25519Verifier, &far), Err(LedgerError::ClockJump));
        let near = forge(&w, &w, b"kairos", b"k", b"v", MAX_CLOCK_JUMP);
        assert!(matches!(
            l.apply(t(0), &mut Ed25519Verifier, &near),
            Ok(Applied::New(_))
        ));
        assert_eq!(l.clock(), MAX_CLOCK_JUMP);
    }

    #[test]
    fn malformed_entries_are_errors_at_every_length() {
        let mut src = Small::new();
        let r = src.put(t(0), &ident(11), b"kairos", b"k", b"value", NO_TTL).unwrap();
        let good = encoded(&src, r);
        let mut l = Small::new();
        for n in 0..good.len() {
            assert!(matches!(
                l.apply(t(0), &mut Ed25519Verifier, &good[..n]),
                Err(LedgerError::Malformed(_))
            ));
        }
        let mut long = good.clone();
        long.push(0);
        assert_eq!(
            l.apply(t(0), &mut Ed25519Verifier, &long),
            Err(LedgerError::Malformed(DecodeError::TooLong))
        );
        assert_eq!(l.records(), 0);
    }

    #[test]
    fn arena_compacts_and_reports_full() {
        let w = ident(12);
        let mut l = Ledger::<4, 1024>::new();
        // Three 200-byte values, rewritten: garbage piles up, then compaction.
        for round in 0..4u8 {
            for k in 0..3u8 {
                l.put(t(0), &w, b"b", &[b'k', k], &[round; 200], NO_TTL).unwrap();
            }
        }
        let (live, _) = l.arena_usage();
        assert_eq!(live, 3 * (4 + 1 + 2 + 200));
        for e in l.iter() {
            assert_eq!(e.value(), &[3; 200]);
        }
        // 500 more bytes do not fit even after compaction; nothing changes.
        let clock = l.clock();
        assert_eq!(l.put(t(0), &w, b"b", b"big", &[9; 500], NO_TTL), Err(LedgerError::Full));
        assert_eq!((l.clock(), l.len()), (clock, 3));
        // Replacing a value by a larger one that only fits once the old one is gone.
        l.put(t(0), &w, b"b", b"k\x00", &[7; 400], NO_TTL).unwrap();
        assert_eq!(l.get(b"b", b"k\x00").unwrap().value(), &[7; 400]);
        assert_eq!(l.get(b"b", b"k\x01").unwrap().value(), &[3; 200]);
        // Table full: a fourth key fits, a fifth does not...
        l.put(t(0), &w, b"b", b"4", b"", 5).unwrap();
        assert_eq!(l.put(t(0), &w, b"b", b"5", b"", NO_TTL), Err(LedgerError::Full));
        // ... unless an expired record can be evicted.
        l.expire(t(5));
        assert_eq!(l.records(), 4);
        l.put(t(5), &w, b"b", b"5", b"", NO_TTL).unwrap();
        assert_eq!(l.records(), 4);
        assert!(l.find(b"b", b"4").is_none());
    }

    #[test]
    fn a_kubeconfig_travels_in_fragments() {
        let w = ident(13);
        let kubeconfig: Vec<u8> = (0..16384u32).map(|i| b"apiVersion: v1\n"[(i % 15) as usize]).collect();
        let mut master = Small::new();
        let r = master
            .put(t(0), &w, b"kairos", b"master-kubeconfig", &kubeconfig, NO_TTL)
            .unwrap();
        let enc = master.encoder(r).unwrap();
        assert_eq!(enc.messages(), 14);
        let mut reassembly = Reassembly::<u8, 2>::new();
        let mut worker = Small::new();
        let mut verifier = CountingVerifier(0);
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        for i in (0..enc.messages()).rev() {
            let n = enc.emit(i, &mut buf).unwrap();
            let Message::Fragment(f) = Message::decode(ControlKind::LEDGER_DELTA, &buf[..n]).unwrap() else {
                panic!("expected a fragment")
            };
            if let Some(whole) = reassembly.push(t(0), 7, &f) {
                assert!(matches!(worker.apply(t(0), &mut verifier, whole), Ok(Applied::New(_))));
            }
        }
        assert_eq!(verifier.0, 1, "verified once, when whole");
        assert_eq!(
            worker.get(b"kairos", b"master-kubeconfig").unwrap().value(),
            &kubeconfig[..]
        );
    }

    struct CountingVerifier(usize);
    impl SignatureVerifier for CountingVerifier {
        fn verify(&mut self, public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
            assert_eq!(message.len(), 32);
            self.0 += 1;
            Ed25519Verifier.verify(public, message, signature)
        }
    }

    #[test]
    fn changes_are_journaled_once_per_record() {
        let (a_id, b_id) = (ident(14), ident(15));
        let mut a = Small::new();
        let mut b = Small::new();
        let r1 = a.put(t(0), &a_id, b"kairos", b"one", b"1", NO_TTL).unwrap();
        a.put(t(0), &a_id, b"kairos", b"one", b"2", NO_TTL).unwrap();
        let r3 = a.put(t(0), &a_id, b"kairos", b"two", b"x", NO_TTL).unwrap();
        let rb = b.put(t(0), &b_id, b"kairos", b"three", b"3", NO_TTL).unwrap();
        a.apply(t(0), &mut Ed25519Verifier, &encoded(&b, rb)).unwrap();
        a.delete(t(0), &a_id, b"kairos", b"two").unwrap();
        let mut seen = Vec::new();
        while let Some(c) = a.poll_change() {
            let e = a.entry(c.entry).unwrap();
            seen.push((e.key().to_vec(), c.state, c.local));
        }
        seen.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(
            seen,
            [
                (b"one".to_vec(), EntryState::Live, true),
                (b"three".to_vec(), EntryState::Live, false),
                (b"two".to_vec(), EntryState::Tombstone, true),
            ]
        );
        assert!(a.entry(r1).is_none() && a.entry(r3).is_none());
        assert_eq!(a.poll_change(), None);
        // Equal and older entries are not changes.
        a.apply(t(0), &mut Ed25519Verifier, &encoded(&b, rb)).unwrap();
        assert_eq!(a.poll_change(), None);
    }

    #[test]
    fn changes_come_first_changed_first_and_survive_slot_reuse() {
        let w = ident(16);
        let mut l = Ledger::<3, 1024>::new();
        for k in [b"c", b"a", b"b"] {
            l.put(t(0), &w, b"x", k, b"v", NO_TTL).unwrap();
        }
        // Rewriting `c` does not move it behind the others.
        l.put(t(0), &w, b"x", b"c", b"v2", NO_TTL).unwrap();
        let mut order = Vec::new();
        while let Some(c) = l.poll_change() {
            order.push(l.entry(c.entry).unwrap().key().to_vec());
        }
        assert_eq!(order, [b"c".to_vec(), b"a".to_vec(), b"b".to_vec()]);
        // A tombstone purged before anyone polled, its slot reused at once.
        l.delete(t(0), &w, b"x", b"a").unwrap();
        l.expire(t(0) + TOMBSTONE_GRACE);
        assert_eq!(l.records(), 2);
        l.put(t(700), &w, b"x", b"d", b"v", NO_TTL).unwrap();
        let c = l.poll_change().unwrap();
        assert_eq!(
            (l.entry(c.entry).unwrap().key(), c.state),
            (&b"d"[..], EntryState::Live)
        );
        assert_eq!(l.poll_change(), None);
    }

    #[test]
    fn memory_is_as_documented() {
        use core::mem::size_of;
        assert_eq!(size_of::<super::Record>(), 232);
        let small = size_of::<Ledger<64, 16384>>();
        let large = size_of::<Ledger<1024, 262144>>();
        std::println!("Ledger<64, 16384>: {small} bytes; Ledger<1024, 262144>: {large} bytes");
        // ARENA + 246 per entry + a fixed part under 600 bytes.
        for (size, e, a) in [(small, 64, 16384), (large, 1024, 262144)] {
            assert!(size >= a + 246 * e && size < a + 246 * e + 600, "{size}");
        }
        #[cfg(target_pointer_width = "64")]
        assert_eq!((small, large), (32_720, 514_640));
        let slot = size_of::<Reassembly<u32, 1>>();
        std::println!("Reassembly: {slot} bytes per slot");
        assert_eq!(size_of::<Reassembly<u32, 4>>(), 4 * slot);
        assert!(slot < super::super::wire::MAX_ENTRY_LEN + 64);
        #[cfg(target_pointer_width = "64")]
        assert_eq!(slot, 16_760);
    }
}
