//! How an entry travels in datagrams: whole when it fits in
//! [`MAX_MESSAGE_LEN`] bytes, else in fragments that a [`Reassembly`]
//! buffer puts back together.
//!
//! A fragment (type `0x02`) carries a window of the entry's whole encoding
//! (the [`super::wire`] entry layout), so the entry header travels once, in
//! the first fragment:
//!
//! ```text
//!  0  type = 0x02      1  index u8      2  count u8 (2..=15)   3  reserved 0
//!  4  tag [8]: first 8 bytes of the entry's signed hash (names the transfer)
//! 12  total length of the entry encoding, u16
//! 14  bytes index * FRAGMENT_CHUNK .. of the encoding (FRAGMENT_CHUNK of
//!     them, fewer in the last fragment)
//! ```
//!
//! A 16 KiB kubeconfig takes 14 or 15 fragments. Nothing is verified until the entry
//! is whole: the reassembled bytes go to [`super::Ledger::apply`], which
//! checks the signature once.
//!
//! This module owns the fragment layout, [`EntryEncoder`] (the sending side:
//! message `i` of an entry, built straight from the ledger's arena) and
//! [`Reassembly`] (the receiving side). It never verifies and never decides
//! whom to send to.

use super::wire::{DecodeError, MessageType, ENTRY_HEADER_LEN, MAX_ENTRY_LEN};
use super::{LedgerError, MAX_MESSAGE_LEN};
use crate::time::{Duration, Instant};

/// Bytes of a fragment before its chunk.
pub const FRAGMENT_HEADER_LEN: usize = 14;
/// Bytes of the entry encoding per fragment (all but the last).
pub const FRAGMENT_CHUNK: usize = MAX_MESSAGE_LEN - FRAGMENT_HEADER_LEN;
/// The most fragments an entry needs.
pub const MAX_FRAGMENTS: usize = MAX_ENTRY_LEN.div_ceil(FRAGMENT_CHUNK);
/// A partly received entry not completed within this time may be
/// overwritten by another sender's.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(10);

const _: () = assert!(MAX_FRAGMENTS <= 32, "the received-set is a u32");

/// A read-only view of a fragment.
#[derive(Debug, Clone)]
pub struct FragmentPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> FragmentPacket<T> {
    /// Wraps a buffer, checking that index, count, total length and chunk
    /// length agree.
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        match b.first() {
            None => return Err(DecodeError::Truncated),
            Some(&t) if t != MessageType::Fragment as u8 => return Err(DecodeError::UnknownType(t)),
            _ => {}
        }
        if b.len() < FRAGMENT_HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        if b[3] != 0 {
            return Err(DecodeError::Reserved);
        }
        let p = FragmentPacket { buffer };
        let (index, count, total) = (p.index() as usize, p.count() as usize, p.total_len());
        if total > MAX_ENTRY_LEN || count < 2 || count != total.div_ceil(FRAGMENT_CHUNK) || index >= count {
            return Err(DecodeError::BadFragment);
        }
        let want = (total - index * FRAGMENT_CHUNK).min(FRAGMENT_CHUNK);
        let have = p.buffer.as_ref().len() - FRAGMENT_HEADER_LEN;
        if have < want {
            return Err(DecodeError::Truncated);
        }
        if have > want {
            return Err(DecodeError::TooLong);
        }
        Ok(p)
    }
    /// Which fragment this is.
    pub fn index(&self) -> u8 {
        self.buffer.as_ref()[1]
    }
    /// How many fragments the entry has.
    pub fn count(&self) -> u8 {
        self.buffer.as_ref()[2]
    }
    /// The entry's tag (first 8 bytes of its signed hash).
    pub fn tag(&self) -> [u8; 8] {
        crate::wire::array(self.buffer.as_ref(), 4)
    }
    /// Length of the whole entry encoding.
    pub fn total_len(&self) -> usize {
        u16::from_le_bytes(crate::wire::array(self.buffer.as_ref(), 12)) as usize
    }
    /// This fragment's bytes of the encoding.
    pub fn chunk(&self) -> &[u8] {
        &self.buffer.as_ref()[FRAGMENT_HEADER_LEN..]
    }
}

/// Copies bytes `offset..offset + out.len()` of the concatenation of
/// `parts` into `out`.
fn copy_window(parts: &[&[u8]], mut offset: usize, out: &mut [u8]) {
    let mut at = 0;
    for part in parts {
        if offset >= part.len() {
            offset -= part.len();
            continue;
        }
        let n = (part.len() - offset).min(out.len() - at);
        out[at..at + n].copy_from_slice(&part[offset..offset + n]);
        at += n;
        offset = 0;
        if at == out.len() {
            break;
        }
    }
}

/// The messages that carry one entry, built on demand from the ledger
/// (see [`super::Ledger::encoder`]).
#[derive(Clone, Copy)]
pub struct EntryEncoder<'a> {
    pub(crate) header: [u8; ENTRY_HEADER_LEN],
    pub(crate) parts: [&'a [u8]; 3],
    pub(crate) tag: [u8; 8],
}

impl core::fmt::Debug for EntryEncoder<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("EntryEncoder")
            .field("encoded_len", &self.encoded_len())
            .field("messages", &self.messages())
            .finish()
    }
}

impl EntryEncoder<'_> {
    /// Length of the whole entry encoding.
    pub fn encoded_len(&self) -> usize {
        ENTRY_HEADER_LEN + self.parts.iter().map(|p| p.len()).sum::<usize>()
    }

    /// Whether the entry is in `scope`.
    pub fn in_scope(&self, scope: super::Scope) -> bool {
        scope.holds(self.parts[0], self.encoded_len())
    }

    /// How many messages carry the entry: 1 (a whole entry) or the number
    /// of fragments.
    pub fn messages(&self) -> usize {
        let len = self.encoded_len();
        if len <= MAX_MESSAGE_LEN {
            1
        } else {
            len.div_ceil(FRAGMENT_CHUNK)
        }
    }

    /// Writes message `index` (`< messages()`) into `out` and returns its
    /// length (at most [`MAX_MESSAGE_LEN`]). Send it as a
    /// [`crate::wire::ControlKind::LEDGER_DELTA`] payload.
    pub fn emit(&self, index: usize, out: &mut [u8]) -> Result<usize, LedgerError> {
        let count = self.messages();
        if index >= count {
            return Err(LedgerError::NoSuchMessage);
        }
        let total = self.encoded_len();
        let parts = [&self.header[..], self.parts[0], self.parts[1], self.parts[2]];
        if count == 1 {
            let out = out.get_mut(..total).ok_or(LedgerError::BufferTooSmall)?;
            copy_window(&parts, 0, out);
            return Ok(total);
        }
        let offset = index * FRAGMENT_CHUNK;
        let len = FRAGMENT_HEADER_LEN + (total - offset).min(FRAGMENT_CHUNK);
        let out = out.get_mut(..len).ok_or(LedgerError::BufferTooSmall)?;
        out[0] = MessageType::Fragment as u8;
        out[1] = index as u8;
        out[2] = count as u8;
        out[3] = 0;
        out[4..12].copy_from_slice(&self.tag);
        out[12..14].copy_from_slice(&(total as u16).to_le_bytes());
        copy_window(&parts, offset, &mut out[FRAGMENT_HEADER_LEN..]);
        Ok(len)
    }
}

struct Slot<S, const LEN: usize> {
    sender: Option<S>,
    tag: [u8; 8],
    total: usize,
    count: u8,
    /// Bit `i`: fragment `i` received.
    have: u32,
    started: Instant,
    buf: [u8; LEN],
}

impl<S, const LEN: usize> Slot<S, LEN> {
    const EMPTY: Slot<S, LEN> = Slot {
        sender: None,
        tag: [0; 8],
        total: 0,
        count: 0,
        have: 0,
        started: Instant::ZERO,
        buf: [0; LEN],
    };
}

/// Puts fragmented entries back together: at most one entry in progress per
/// sender, in at most `SLOTS` slots of `LEN` bytes each (by default
/// [`MAX_ENTRY_LEN`], 16.7 KiB; `size_of` is `SLOTS * (LEN + 40)` bytes or
/// so). The fragments of an entry longer than `LEN` are ignored: a small
/// device whose ledger has no room for such an entry anyway need not hold
/// buffers for it.
///
/// `S` names a sender (the Node's peer handle). A fragment of a different
/// entry from the same sender restarts its slot; when all slots are busy
/// with other senders, a slot idle past [`REASSEMBLY_TIMEOUT`], else the
/// oldest, is taken over. A lost fragment therefore costs the entry, which
/// anti-entropy repairs; nothing here needs a timer.
pub struct Reassembly<S, const SLOTS: usize, const LEN: usize = MAX_ENTRY_LEN> {
    slots: [Slot<S, LEN>; SLOTS],
}

impl<S: Copy + PartialEq, const SLOTS: usize, const LEN: usize> core::fmt::Debug for Reassembly<S, SLOTS, LEN> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Reassembly")
            .field("in_progress", &self.in_progress())
            .field("slots", &SLOTS)
            .finish()
    }
}

impl<S: Copy + PartialEq, const SLOTS: usize, const LEN: usize> Default for Reassembly<S, SLOTS, LEN> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Copy + PartialEq, const SLOTS: usize, const LEN: usize> Reassembly<S, SLOTS, LEN> {
    /// Empty slots.
    pub const fn new() -> Self {
        Reassembly {
            slots: [Slot::EMPTY; SLOTS],
        }
    }

    /// Entries in progress.
    pub fn in_progress(&self) -> usize {
        self.slots.iter().filter(|s| s.sender.is_some()).count()
    }

    /// Adds a fragment from `sender`. Returns the whole entry encoding once
    /// the last missing fragment arrives (pass it to
    /// [`super::Ledger::apply`]); duplicates are ignored.
    pub fn push(&mut self, now: Instant, sender: S, fragment: &FragmentPacket<&[u8]>) -> Option<&[u8]> {
        let (tag, total, count) = (fragment.tag(), fragment.total_len(), fragment.count());
        if SLOTS == 0 || total > LEN {
            return None;
        }
        let i = match self.slots.iter().position(|s| s.sender == Some(sender)) {
            Some(i) => i,
            None => self.take_slot(now),
        };
        let slot = &mut self.slots[i];
        if slot.sender != Some(sender) || slot.tag != tag || slot.total != total || slot.count != count {
            slot.sender = Some(sender);
            slot.tag = tag;
            slot.total = total;
            slot.count = count;
            slot.have = 0;
            slot.started = now;
        }
        let bit = 1u32 << fragment.index();
        if slot.have & bit != 0 {
            return None;
        }
        let offset = fragment.index() as usize * FRAGMENT_CHUNK;
        let chunk = fragment.chunk();
        slot.buf[offset..offset + chunk.len()].copy_from_slice(chunk);
        slot.have |= bit;
        if slot.have.count_ones() == count as u32 {
            slot.sender = None;
            return Some(&slot.buf[..total]);
        }
        None
    }

    /// A free slot, else one idle too long, else the oldest.
    fn take_slot(&self, now: Instant) -> usize {
        let idle = |s: &Slot<S, LEN>| s.sender.is_none() || s.started + REASSEMBLY_TIMEOUT <= now;
        if let Some(i) = self.slots.iter().position(idle) {
            return i;
        }
        (0..SLOTS).min_by_key(|&i| self.slots[i].started).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::super::wire::Message;
    use super::*;
    use crate::wire::ControlKind;

    fn encoder(value: &[u8]) -> EntryEncoder<'_> {
        let mut header = [0u8; ENTRY_HEADER_LEN];
        header[0] = MessageType::Entry as u8;
        EntryEncoder {
            header,
            parts: [b"bucket", b"key", value],
            tag: [9; 8],
        }
    }

    #[test]
    fn small_entries_travel_whole() {
        let e = encoder(b"v");
        assert_eq!(e.messages(), 1);
        let mut out = [0u8; MAX_MESSAGE_LEN];
        let n = e.emit(0, &mut out).unwrap();
        assert_eq!(n, ENTRY_HEADER_LEN + 10);
        assert_eq!(&out[ENTRY_HEADER_LEN..n], b"bucketkeyv");
        assert_eq!(e.emit(1, &mut out), Err(LedgerError::NoSuchMessage));
        assert_eq!(e.emit(0, &mut out[..10]), Err(LedgerError::BufferTooSmall));
    }

    #[test]
    fn fragments_reassemble_in_any_order() {
        let value: std::vec::Vec<u8> = (0..16384u32).map(|i| (i * 7) as u8).collect();
        let e = encoder(&value);
        assert_eq!(e.messages(), 14);
        let mut msgs = std::vec::Vec::new();
        for i in 0..e.messages() {
            let mut out = [0u8; MAX_MESSAGE_LEN];
            let n = e.emit(i, &mut out).unwrap();
            assert!(n <= MAX_MESSAGE_LEN);
            msgs.push(out[..n].to_vec());
        }
        let mut r = Reassembly::<u8, 2>::new();
        let now = Instant::from_secs(1);
        // Reverse order, with a duplicate and an interleaved other sender.
        let mut done = None;
        for (k, m) in msgs.iter().rev().enumerate() {
            let Message::Fragment(f) = Message::decode(ControlKind::LEDGER_DELTA, m).unwrap() else {
                panic!()
            };
            if k == 3 {
                assert!(r.push(now, 1, &f).is_none());
                assert!(r.push(now, 2, &f).is_none());
                assert_eq!(r.in_progress(), 2);
            }
            if let Some(whole) = r.push(now, 1, &f) {
                done = Some(whole.to_vec());
            }
        }
        let whole = done.expect("reassembled");
        assert_eq!(whole.len(), e.encoded_len());
        assert_eq!(&whole[ENTRY_HEADER_LEN + 9..], &value[..]);
        assert_eq!(r.in_progress(), 1);
    }

    #[test]
    fn slots_are_bounded_and_taken_over() {
        let value = [5u8; 3000];
        let e = encoder(&value);
        let mut out = [0u8; MAX_MESSAGE_LEN];
        let n = e.emit(0, &mut out).unwrap();
        let f = FragmentPacket::new_checked(&out[..n]).unwrap();
        let mut r = Reassembly::<u32, 2>::new();
        let t0 = Instant::from_secs(100);
        r.push(t0, 1, &f);
        r.push(t0 + Duration::from_secs(1), 2, &f);
        // A third sender takes the oldest slot (sender 1's).
        r.push(t0 + Duration::from_secs(2), 3, &f);
        assert_eq!(r.in_progress(), 2);
        assert!(r.slots.iter().all(|s| s.sender != Some(1)));
    }

    #[test]
    fn entries_longer_than_the_slots_are_ignored() {
        let mut out = [0u8; MAX_MESSAGE_LEN];
        let mut r = Reassembly::<u8, 1, 2048>::new();
        let now = Instant::from_secs(1);
        let long = encoder(&[5u8; 3000]);
        for i in 0..long.messages() {
            let n = long.emit(i, &mut out).unwrap();
            let f = FragmentPacket::new_checked(&out[..n]).unwrap();
            assert!(r.push(now, 1, &f).is_none());
            assert_eq!(r.in_progress(), 0, "no slot taken for it");
        }
        let short = encoder(&[6u8; 1500]);
        assert!(short.messages() > 1 && short.encoded_len() <= 2048);
        let mut whole = None;
        for i in 0..short.messages() {
            let n = short.emit(i, &mut out).unwrap();
            let f = FragmentPacket::new_checked(&out[..n]).unwrap();
            whole = r.push(now, 1, &f).map(|w| w.len());
        }
        assert_eq!(whole, Some(short.encoded_len()));
    }

    #[test]
    fn bad_fragments_are_errors() {
        let value = [5u8; 3000];
        let e = encoder(&value);
        let mut out = [0u8; MAX_MESSAGE_LEN];
        for i in 0..e.messages() {
            let n = e.emit(i, &mut out).unwrap();
            assert!(FragmentPacket::new_checked(&out[..n]).is_ok());
            for cut in 0..n {
                assert!(FragmentPacket::new_checked(&out[..cut]).is_err());
            }
        }
        let n = e.emit(0, &mut out).unwrap();
        let check = |f: &dyn Fn(&mut [u8]), err: DecodeError| {
            let mut b = out;
            f(&mut b);
            assert_eq!(FragmentPacket::new_checked(&b[..n]).unwrap_err(), err);
        };
        check(&|b| b[3] = 1, DecodeError::Reserved);
        check(&|b| b[1] = 3, DecodeError::BadFragment);
        check(&|b| b[2] = 4, DecodeError::BadFragment);
        check(
            &|b| b[12..14].copy_from_slice(&60000u16.to_le_bytes()),
            DecodeError::BadFragment,
        );
        check(
            &|b| b[12..14].copy_from_slice(&1000u16.to_le_bytes()),
            DecodeError::BadFragment,
        );
        check(&|b| b[2] = 1, DecodeError::BadFragment);
        // The last fragment claims a full chunk.
        let n_last = e.emit(2, &mut out).unwrap();
        assert_eq!(
            FragmentPacket::new_checked(&out[..n_last + 1]).unwrap_err(),
            DecodeError::TooLong
        );
    }
}
