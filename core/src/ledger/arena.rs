//! The byte arena that holds every record's bucket, key and value.
//!
//! This module owns one fixed array of `N` bytes and hands out contiguous
//! blobs from its top (bump allocation). A freed blob stays where it is until
//! the next allocation that does not fit above the top; then [`Arena::alloc`]
//! compacts: it slides every blob still in use down over the garbage, in one
//! pass, and tells the owner where its bytes went. It never allocates from
//! the heap and never decides what a blob means.
//!
//! Each blob starts with a 4-byte header (owner slot `u16`, length `u16`)
//! so the compacting pass can walk the arena without any side table; the
//! owner's callback says whether the blob is still its own and how many of
//! its bytes are still in use (a record that dropped its value keeps only the
//! bucket and key).

/// Bytes of bookkeeping in front of every blob.
pub(crate) const BLOB_HEADER: usize = 4;

/// `N` bytes of blobs, allocated from the top and compacted on demand.
pub(crate) struct Arena<const N: usize> {
    bytes: [u8; N],
    /// End of the highest blob.
    top: usize,
    /// Bytes (headers included) of blobs still in use.
    live: usize,
}

impl<const N: usize> Arena<N> {
    /// An empty arena.
    pub(crate) const fn new() -> Self {
        assert!(N <= u32::MAX as usize, "arena offsets are u32");
        Arena {
            bytes: [0; N],
            top: 0,
            live: 0,
        }
    }

    /// Bytes in use, headers included.
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    /// Bytes that a compaction would reclaim.
    pub(crate) fn garbage(&self) -> usize {
        self.top - self.live
    }

    /// Whether a blob of `len` bytes fits once a blob of `freeing` bytes
    /// (0 for none; its length without the header) has been freed.
    pub(crate) fn fits(&self, len: usize, freeing: Option<usize>) -> bool {
        let freed = freeing.map_or(0, |f| f + BLOB_HEADER);
        len <= u16::MAX as usize && self.live - freed + BLOB_HEADER + len <= N
    }

    /// Allocates `len` bytes for `owner` and returns the offset of the data.
    ///
    /// Compacts first if the blob does not fit above the top; `relocate` is
    /// then called for every blob in the arena with its owner, its current
    /// data offset and the offset it moves to, and answers how many of its
    /// bytes are still in use, or `None` if the blob is garbage. `None` from
    /// this function means the blob cannot fit even after compaction.
    pub(crate) fn alloc(
        &mut self,
        owner: u16,
        len: usize,
        relocate: impl FnMut(u16, u32, u32) -> Option<usize>,
    ) -> Option<u32> {
        if !self.fits(len, None) {
            return None;
        }
        if self.top + BLOB_HEADER + len > N {
            self.compact(relocate);
        }
        let at = self.top;
        self.bytes[at..at + 2].copy_from_slice(&owner.to_le_bytes());
        self.bytes[at + 2..at + 4].copy_from_slice(&(len as u16).to_le_bytes());
        self.top += BLOB_HEADER + len;
        self.live += BLOB_HEADER + len;
        Some((at + BLOB_HEADER) as u32)
    }

    /// Marks a blob whose in-use length is `len` as garbage.
    pub(crate) fn free(&mut self, len: usize) {
        self.live -= BLOB_HEADER + len;
    }

    /// Records that a blob's in-use length shrank by `by` bytes (its tail is
    /// garbage from now on).
    pub(crate) fn shrink(&mut self, by: usize) {
        self.live -= by;
    }

    /// `len` bytes of data at `offset`.
    pub(crate) fn get(&self, offset: u32, len: usize) -> &[u8] {
        &self.bytes[offset as usize..offset as usize + len]
    }

    /// `len` writable bytes of data at `offset`.
    pub(crate) fn get_mut(&mut self, offset: u32, len: usize) -> &mut [u8] {
        &mut self.bytes[offset as usize..offset as usize + len]
    }

    /// Slides every blob in use down over the garbage (see [`Self::alloc`]).
    fn compact(&mut self, mut relocate: impl FnMut(u16, u32, u32) -> Option<usize>) {
        let mut read = 0;
        let mut write = 0;
        while read < self.top {
            let owner = u16::from_le_bytes([self.bytes[read], self.bytes[read + 1]]);
            let len = u16::from_le_bytes([self.bytes[read + 2], self.bytes[read + 3]]) as usize;
            let data = read + BLOB_HEADER;
            if let Some(keep) = relocate(owner, data as u32, (write + BLOB_HEADER) as u32) {
                let keep = keep.min(len);
                self.bytes.copy_within(data..data + keep, write + BLOB_HEADER);
                self.bytes[write..write + 2].copy_from_slice(&owner.to_le_bytes());
                self.bytes[write + 2..write + 4].copy_from_slice(&(keep as u16).to_le_bytes());
                write += BLOB_HEADER + keep;
            }
            read = data + len;
        }
        debug_assert_eq!(write, self.live, "arena accounting out of step");
        self.top = write;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A toy owner table: offset and in-use length per slot.
    struct Owners([Option<(u32, usize)>; 8]);

    impl Owners {
        fn relocate(&mut self) -> impl FnMut(u16, u32, u32) -> Option<usize> + '_ {
            |owner, old, new| {
                let slot = self.0.get_mut(owner as usize)?.as_mut()?;
                if slot.0 != old {
                    return None;
                }
                slot.0 = new;
                Some(slot.1)
            }
        }
    }

    #[test]
    fn allocates_frees_and_compacts() {
        let mut a = Arena::<64>::new();
        let mut owners = Owners([None; 8]);
        // Three blobs of 12 bytes (16 with headers) fill 48 of 64 bytes.
        for (slot, fill) in [(0u16, 0xaa), (1, 0xbb), (2, 0xcc)] {
            let off = a.alloc(slot, 12, owners.relocate()).unwrap();
            a.get_mut(off, 12).fill(fill);
            owners.0[slot as usize] = Some((off, 12));
        }
        assert_eq!(a.live(), 48);
        // 16 more do not fit; 12 do (exactly 64).
        assert!(!a.fits(13, None));
        // Free the middle one and shrink the last to 4 bytes in use.
        a.free(12);
        owners.0[1] = None;
        a.shrink(8);
        owners.0[2] = Some((owners.0[2].unwrap().0, 4));
        assert_eq!(a.garbage(), 24);
        // 30 bytes only fit after compaction.
        let off = a.alloc(3, 30, owners.relocate()).unwrap();
        owners.0[3] = Some((off, 30));
        assert_eq!(a.garbage(), 0);
        let (o0, _) = owners.0[0].unwrap();
        let (o2, _) = owners.0[2].unwrap();
        assert_eq!(a.get(o0, 12), &[0xaa; 12]);
        assert_eq!(a.get(o2, 4), &[0xcc; 4]);
        assert_eq!(o2, 16 + BLOB_HEADER as u32);
        assert_eq!(a.live(), 16 + 8 + 34);
        // Full even after compaction.
        assert!(a.alloc(4, 3, owners.relocate()).is_none());
        assert!(a.fits(2, None));
        // A blob that only fits once another is freed.
        assert!(!a.fits(36, None));
        assert!(a.fits(36, Some(30)));
    }
}
