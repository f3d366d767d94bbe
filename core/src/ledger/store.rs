//! Storage of records: a fixed table of [`Record`]s, an index that keeps
//! them sorted by [`EntryId`], and the [`Arena`] that holds their bytes.
//!
//! This module owns where a record lives: slot allocation, the sorted order
//! (binary search by id, contiguous digest ranges), and moving bytes in and
//! out of the arena. It never compares versions, verifies signatures or
//! touches the digest; the ledger decides, the store keeps.
//!
//! A record's bytes are one arena blob: bucket, then key, then value. A
//! record that loses its value (tombstone or expiry) keeps bucket and key.

use super::arena::Arena;
use super::entry::{Entry, EntryId, EntryRef, EntryState};
use super::LedgerError;
use crate::identity::{NodeId, PublicIdentity};
use crate::time::Instant;

/// Offset of a record whose blob is being replaced.
const NO_OFFSET: u32 = u32::MAX;

/// One version of one entry, as this replica keeps it.
#[derive(Clone, Copy)]
pub(crate) struct Record {
    pub(crate) id: EntryId,
    /// The signed hash (see `entry.rs`).
    pub(crate) hash: [u8; 32],
    pub(crate) signature: [u8; 64],
    pub(crate) origin: PublicIdentity,
    /// The origin's node id, derived once (reads of it are frequent).
    pub(crate) origin_id: NodeId,
    pub(crate) clock: u64,
    /// When this replica stored the version.
    pub(crate) received: Instant,
    /// Expiry of a live entry with a ttl, purge time of a tombstone or
    /// expired entry, else `FAR_FUTURE`.
    pub(crate) deadline: Instant,
    pub(crate) ttl: u32,
    /// Arena offset of bucket, key and value.
    pub(crate) offset: u32,
    pub(crate) value_len: u16,
    pub(crate) bucket_len: u8,
    pub(crate) key_len: u8,
    /// `None`: the slot is free.
    pub(crate) state: Option<EntryState>,
    /// Not yet reported by `poll_change`.
    pub(crate) changed: bool,
    /// The last change came from a local write.
    pub(crate) local: bool,
}

impl Record {
    pub(crate) const EMPTY: Record = Record {
        id: EntryId([0; 16]),
        hash: [0; 32],
        signature: [0; 64],
        origin: PublicIdentity {
            static_key: [0; 32],
            signing_key: [0; 32],
        },
        origin_id: NodeId([0; 16]),
        clock: 0,
        received: Instant::ZERO,
        deadline: Instant::FAR_FUTURE,
        ttl: 0,
        offset: NO_OFFSET,
        value_len: 0,
        bucket_len: 0,
        key_len: 0,
        state: None,
        changed: false,
        local: false,
    };

    /// Bytes of its blob in use.
    pub(crate) fn used_len(&self) -> usize {
        self.bucket_len as usize + self.key_len as usize + self.value_len as usize
    }

    /// The first 8 bytes of the signed hash: names the version in
    /// [`EntryRef`]s, summaries and the digest.
    pub(crate) fn tag(&self) -> [u8; 8] {
        crate::wire::array(&self.hash, 0)
    }

    pub(crate) fn is(&self, state: EntryState) -> bool {
        self.state == Some(state)
    }
}

/// `ENTRIES` records and `ARENA` bytes for their contents.
pub(crate) struct Store<const ENTRIES: usize, const ARENA: usize> {
    records: [Record; ENTRIES],
    /// Slots of the records in use, sorted by id.
    order: [u16; ENTRIES],
    /// The id prefix of the record at each position of `order`: binary
    /// searches read this compact copy (64 KiB for 8192 entries) instead of
    /// a record per step, each a cache miss on a large replica.
    prefixes: [u64; ENTRIES],
    /// The bucket length of the record in each slot, 0 if the slot is free:
    /// [`Self::scan_bucket`] filters on it without touching the records.
    bucket_lens: [u8; ENTRIES],
    len: usize,
    /// Every slot below this one is in use.
    free_hint: usize,
    /// No slot at or above this one has been used (bounds storage-order scans).
    high: usize,
    arena: Arena<ARENA>,
}

impl<const ENTRIES: usize, const ARENA: usize> Store<ENTRIES, ARENA> {
    pub(crate) const fn new() -> Self {
        assert!(ENTRIES <= u16::MAX as usize, "slots are u16");
        Store {
            records: [Record::EMPTY; ENTRIES],
            order: [0; ENTRIES],
            prefixes: [0; ENTRIES],
            bucket_lens: [0; ENTRIES],
            len: 0,
            free_hint: 0,
            high: 0,
            arena: Arena::new(),
        }
    }

    /// Records in use.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Arena bytes in use and reclaimable.
    pub(crate) fn arena_usage(&self) -> (usize, usize) {
        (self.arena.live(), self.arena.garbage())
    }

    /// Position in id order of `id`, or where it would go.
    pub(crate) fn find(&self, id: &EntryId) -> Result<usize, usize> {
        let prefix = id.prefix();
        let mut pos = self.lower_bound(prefix);
        // Ids sharing the prefix (rare) are in id order from there.
        while pos < self.len && self.prefixes[pos] == prefix {
            match self.records[self.order[pos] as usize].id.cmp(id) {
                core::cmp::Ordering::Less => pos += 1,
                core::cmp::Ordering::Equal => return Ok(pos),
                core::cmp::Ordering::Greater => break,
            }
        }
        Err(pos)
    }

    /// The first position whose id prefix is at least `prefix`.
    pub(crate) fn lower_bound(&self, prefix: u64) -> usize {
        self.prefixes[..self.len].partition_point(|&p| p < prefix)
    }

    /// The slot at position `pos` (`pos < len()`).
    pub(crate) fn slot_at(&self, pos: usize) -> u16 {
        self.order[pos]
    }

    /// The record at position `pos` (`pos < len()`).
    pub(crate) fn at(&self, pos: usize) -> &Record {
        &self.records[self.order[pos] as usize]
    }

    /// Whether `record` (one of this store's) is in `scope`.
    pub(crate) fn in_scope(&self, record: &Record, scope: super::Scope) -> bool {
        scope == super::Scope::All
            || scope.holds(
                self.arena.get(record.offset, record.bucket_len as usize),
                super::wire::ENTRY_HEADER_LEN + record.used_len(),
            )
    }

    /// The record in `slot` (maybe free).
    pub(crate) fn record(&self, slot: u16) -> Option<&Record> {
        self.records.get(slot as usize).filter(|r| r.state.is_some())
    }

    /// The record in `slot`, writable (the caller keeps id and lengths).
    pub(crate) fn record_mut(&mut self, slot: u16) -> &mut Record {
        &mut self.records[slot as usize]
    }

    /// A view of the record in `slot`, if in use.
    pub(crate) fn entry(&self, slot: u16) -> Option<Entry<'_>> {
        let record = self.record(slot)?;
        Some(Entry {
            record,
            bytes: self.arena.get(record.offset, record.used_len()),
            slot,
        })
    }

    /// The view an [`EntryRef`] names, if that version is still here.
    pub(crate) fn by_ref(&self, r: EntryRef) -> Option<Entry<'_>> {
        self.entry(r.slot).filter(|e| e.record.tag() == r.tag)
    }

    /// Views of all records in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.order[..self.len].iter().filter_map(|&s| self.entry(s))
    }

    /// Views of the records of `bucket` (any state) in storage order, not id
    /// order: a pass over the record table that reads a record's bytes only
    /// when its bucket length matches, instead of a walk in id order that
    /// jumps around the table (a cache miss per record on a large replica).
    pub(crate) fn scan_bucket<'a>(&'a self, bucket: &'a [u8]) -> impl Iterator<Item = Entry<'a>> + 'a {
        self.bucket_lens[..self.high]
            .iter()
            .enumerate()
            .filter(move |(_, &len)| len as usize == bucket.len())
            .filter_map(move |(slot, _)| self.entry(slot as u16))
            .filter(move |e| e.bucket() == bucket)
    }

    /// Inserts a record at position `pos` (from [`Self::find`]) with the
    /// blob `parts` (bucket, key, value). [`LedgerError::Full`] if there is
    /// no free slot or the bytes do not fit even after compaction.
    pub(crate) fn insert(&mut self, pos: usize, mut record: Record, parts: [&[u8]; 3]) -> Result<u16, LedgerError> {
        if self.len == ENTRIES {
            return Err(LedgerError::Full);
        }
        let slot = (self.free_hint..ENTRIES)
            .find(|&i| self.records[i].state.is_none())
            .ok_or(LedgerError::Full)? as u16;
        let len = parts.iter().map(|p| p.len()).sum();
        if !self.arena.fits(len, None) {
            return Err(LedgerError::Full);
        }
        record.offset = self.alloc(slot, parts)?;
        self.records[slot as usize] = record;
        self.bucket_lens[slot as usize] = record.bucket_len;
        self.free_hint = slot as usize + 1;
        self.high = self.high.max(slot as usize + 1);
        self.order.copy_within(pos..self.len, pos + 1);
        self.order[pos] = slot;
        self.prefixes.copy_within(pos..self.len, pos + 1);
        self.prefixes[pos] = record.id.prefix();
        self.len += 1;
        Ok(slot)
    }

    /// Replaces the record in `slot` and its blob. On
    /// [`LedgerError::Full`] nothing changed.
    pub(crate) fn replace(&mut self, slot: u16, mut record: Record, parts: [&[u8]; 3]) -> Result<(), LedgerError> {
        let old_len = self.records[slot as usize].used_len();
        let len = parts.iter().map(|p| p.len()).sum();
        if !self.arena.fits(len, Some(old_len)) {
            return Err(LedgerError::Full);
        }
        self.arena.free(old_len);
        // The old blob is garbage from here on: a compaction drops it.
        self.records[slot as usize].offset = NO_OFFSET;
        record.offset = self.alloc(slot, parts)?;
        self.records[slot as usize] = record;
        Ok(())
    }

    /// Allocates and fills a blob; the caller checked that it fits.
    fn alloc(&mut self, slot: u16, parts: [&[u8]; 3]) -> Result<u32, LedgerError> {
        let len = parts.iter().map(|p| p.len()).sum();
        let records = &mut self.records;
        let offset = self
            .arena
            .alloc(slot, len, |owner, old, new| {
                let r = records.get_mut(owner as usize)?;
                if r.state.is_none() || r.offset != old {
                    return None;
                }
                r.offset = new;
                Some(r.used_len())
            })
            .ok_or(LedgerError::Full)?;
        let out = self.arena.get_mut(offset, len);
        let mut at = 0;
        for p in parts {
            out[at..at + p.len()].copy_from_slice(p);
            at += p.len();
        }
        Ok(offset)
    }

    /// Drops the value of the record in `slot`, keeping bucket and key.
    pub(crate) fn drop_value(&mut self, slot: u16) {
        let r = &mut self.records[slot as usize];
        self.arena.shrink(r.value_len as usize);
        r.value_len = 0;
    }

    /// Removes the record at position `pos`.
    pub(crate) fn remove(&mut self, pos: usize) {
        let slot = self.order[pos] as usize;
        self.arena.free(self.records[slot].used_len());
        self.records[slot] = Record::EMPTY;
        self.bucket_lens[slot] = 0;
        self.free_hint = self.free_hint.min(slot);
        self.order.copy_within(pos + 1..self.len, pos);
        self.prefixes.copy_within(pos + 1..self.len, pos);
        self.len -= 1;
    }

    /// Removes every record for which `keep` answers false.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Record) -> bool) {
        let mut write = 0;
        for read in 0..self.len {
            let slot = self.order[read] as usize;
            if keep(&self.records[slot]) {
                self.order[write] = slot as u16;
                self.prefixes[write] = self.prefixes[read];
                write += 1;
            } else {
                self.arena.free(self.records[slot].used_len());
                self.records[slot] = Record::EMPTY;
                self.bucket_lens[slot] = 0;
                self.free_hint = self.free_hint.min(slot);
            }
        }
        self.len = write;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(bucket: &[u8], key: &[u8], value: &[u8]) -> Record {
        Record {
            id: EntryId::of(bucket, key),
            bucket_len: bucket.len() as u8,
            key_len: key.len() as u8,
            value_len: value.len() as u16,
            state: Some(EntryState::Live),
            ..Record::EMPTY
        }
    }

    fn put<const E: usize, const A: usize>(s: &mut Store<E, A>, key: &[u8], value: &[u8]) -> Result<u16, LedgerError> {
        let r = record(b"b", key, value);
        match s.find(&r.id) {
            Ok(pos) => {
                let slot = s.slot_at(pos);
                s.replace(slot, r, [b"b", key, value]).map(|_| slot)
            }
            Err(pos) => s.insert(pos, r, [b"b", key, value]),
        }
    }

    /// Ids that share their 8-byte prefix are still found and kept in id
    /// order (the binary search runs on prefixes).
    #[test]
    fn ids_sharing_a_prefix() {
        let mut s = Store::<16, 1024>::new();
        let id = |p: u8, tail: u8| {
            let mut b = [0u8; 16];
            b[7] = p;
            b[15] = tail;
            EntryId(b)
        };
        let ids = [id(2, 5), id(1, 0), id(2, 1), id(3, 0), id(2, 9), id(2, 3)];
        for i in ids {
            let r = Record {
                id: i,
                state: Some(EntryState::Live),
                ..Record::EMPTY
            };
            let pos = s.find(&i).unwrap_err();
            s.insert(pos, r, [b"", b"", b""]).unwrap();
        }
        let mut sorted = ids;
        sorted.sort();
        let order: std::vec::Vec<_> = s.iter().map(|e| e.id()).collect();
        assert_eq!(order, sorted);
        for (pos, i) in sorted.iter().enumerate() {
            assert_eq!(s.find(i), Ok(pos));
        }
        assert_eq!(s.find(&id(2, 4)), Err(3));
        assert_eq!(s.find(&id(2, 10)), Err(5));
        assert_eq!(s.lower_bound(id(2, 0).prefix()), 1);
        s.remove(2);
        assert_eq!(s.find(&id(2, 9)), Ok(3));
        s.retain(|r| r.id != id(1, 0));
        assert_eq!(s.find(&id(2, 1)), Ok(0));
        assert_eq!(s.find(&id(3, 0)), Ok(3));
    }

    #[test]
    fn keeps_id_order_and_bytes_through_compaction() {
        let mut s = Store::<8, 256>::new();
        for i in 0..6u8 {
            put(&mut s, &[b'k', i], &[i; 20]).unwrap();
        }
        let ids: std::vec::Vec<_> = s.iter().map(|e| e.id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        // 6 blobs of 4 + 23 bytes = 162. Rewriting three keys with 40 bytes
        // needs compaction along the way.
        for i in 0..3u8 {
            put(&mut s, &[b'k', i], &[0xf0 | i; 40]).unwrap();
        }
        assert_eq!(s.arena_usage().0, 3 * 27 + 3 * 47);
        for e in s.iter() {
            let i = e.key()[1];
            assert_eq!(e.bucket(), b"b");
            let (byte, len) = if i < 3 { (0xf0 | i, 40) } else { (i, 20) };
            assert_eq!(e.value().len(), len);
            assert!(e.value().iter().all(|&b| b == byte));
        }
        // Too big even after compaction: nothing changes.
        assert_eq!(put(&mut s, b"k\x00", &[1; 80]), Err(LedgerError::Full));
        assert_eq!(s.iter().find(|e| e.key() == b"k\x00").unwrap().value(), &[0xf0; 40]);
        // Dropping values and removing records frees room.
        let pos = s.find(&EntryId::of(b"b", b"k\x00")).unwrap();
        let slot = s.slot_at(pos);
        s.drop_value(slot);
        s.remove(s.find(&EntryId::of(b"b", b"k\x01")).unwrap());
        assert_eq!(s.len(), 5);
        assert_eq!(s.entry(slot).unwrap().value(), b"");
        put(&mut s, b"new", &[7; 90]).unwrap();
        s.retain(|r| r.value_len != 90);
        assert_eq!(s.len(), 5);
        // Table full.
        for i in 10..13u8 {
            put(&mut s, &[b'k', i], b"").unwrap();
        }
        assert_eq!(put(&mut s, b"one more", b""), Err(LedgerError::Full));
    }
}
