//! Several whole ledger entries in one control message
//! ([`crate::wire::ControlKind::LEDGER_BATCH`]).
//!
//! While a mesh joins, nearly every datagram is one ledger entry of 200-300
//! bytes going to a neighbour that gets several others in the same
//! instant. A batch carries as many whole entries as fit in
//! [`MAX_MESSAGE_LEN`], so the seal, the datagram and its receive path are
//! paid once for all of them. This module owns the batch layout: a writer
//! that appends encoded entries and an iterator over a received batch's
//! entries. It never verifies anything: each entry is then applied as if it
//! had come alone.
//!
//! ```text
//! 0  flags (bit 0: repair, the entries answer anti-entropy and are not
//!    forwarded; other bits zero)
//! 1  items, each: length u16 (LE, 1..=1197) | whole entry encoding (type 0x01)
//! ```
//!
//! Entries too long for one message (fragments) never travel in a batch.

use super::wire::{DecodeError, MessageType};
use super::{EntryEncoder, MAX_MESSAGE_LEN};

/// Bytes of a batch before its items.
pub const BATCH_HEADER_LEN: usize = 1;
/// Bytes before each item.
pub const ITEM_HEADER_LEN: usize = 2;

const FLAG_REPAIR: u8 = 0x01;

/// Builds a batch in a caller's buffer.
#[derive(Debug)]
pub struct BatchWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
    count: usize,
}

impl<'a> BatchWriter<'a> {
    /// Starts a batch in `buf` (only its first [`MAX_MESSAGE_LEN`] bytes
    /// are used); `repair` marks entries that answer anti-entropy. `None`
    /// if `buf` cannot hold even the header.
    pub fn new(buf: &'a mut [u8], repair: bool) -> Option<Self> {
        let end = buf.len().min(MAX_MESSAGE_LEN);
        let buf = &mut buf[..end];
        *buf.first_mut()? = if repair { FLAG_REPAIR } else { 0 };
        Some(BatchWriter {
            buf,
            len: BATCH_HEADER_LEN,
            count: 0,
        })
    }

    /// Whether an entry of `encoded_len` bytes still fits.
    pub fn fits(&self, encoded_len: usize) -> bool {
        self.len + ITEM_HEADER_LEN + encoded_len <= self.buf.len()
    }

    /// Appends the entry `enc` describes; `false` (and nothing written) if
    /// it does not fit or travels in fragments.
    pub fn push(&mut self, enc: &EntryEncoder<'_>) -> bool {
        let n = enc.encoded_len();
        if enc.messages() != 1 || !self.fits(n) {
            return false;
        }
        let at = self.len + ITEM_HEADER_LEN;
        match enc.emit(0, &mut self.buf[at..at + n]) {
            Ok(written) if written == n => {
                self.buf[self.len..at].copy_from_slice(&(n as u16).to_le_bytes());
                self.len = at + n;
                self.count += 1;
                true
            }
            _ => false,
        }
    }

    /// Entries written so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Length of the batch so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no entry was written.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// A received batch, checked only for its header; its entries come from
/// [`Batch::entries`].
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    repair: bool,
    items: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Reads a batch's header.
    pub fn parse(b: &'a [u8]) -> Result<Self, DecodeError> {
        let (&flags, items) = b.split_first().ok_or(DecodeError::Truncated)?;
        if flags & !FLAG_REPAIR != 0 {
            return Err(DecodeError::Reserved);
        }
        if b.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong);
        }
        Ok(Batch {
            repair: flags & FLAG_REPAIR != 0,
            items,
        })
    }

    /// Whether the entries answer anti-entropy (not to be forwarded).
    pub fn repair(&self) -> bool {
        self.repair
    }

    /// The entry encodings, in order. An item that is cut short, empty or
    /// not a whole entry ends the iteration with an error.
    pub fn entries(&self) -> Entries<'a> {
        Entries { rest: self.items }
    }
}

/// Iterator over a batch's entry encodings.
#[derive(Debug, Clone)]
pub struct Entries<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Entries<'a> {
    type Item = Result<&'a [u8], DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = (|| {
            let len = self.rest.get(..ITEM_HEADER_LEN).ok_or(DecodeError::Truncated)?;
            let len = u16::from_le_bytes([len[0], len[1]]) as usize;
            let body = self
                .rest
                .get(ITEM_HEADER_LEN..ITEM_HEADER_LEN + len)
                .ok_or(DecodeError::Truncated)?;
            match body.first() {
                Some(&t) if t == MessageType::Entry as u8 => {}
                Some(&t) => return Err(DecodeError::UnknownType(t)),
                None => return Err(DecodeError::Truncated),
            }
            self.rest = &self.rest[ITEM_HEADER_LEN + len..];
            Ok(body)
        })();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::ledger::{Ledger, Message};
    use crate::time::Instant;
    use crate::wire::ControlKind;

    fn ledger_with(values: &[&[u8]]) -> (Ledger<16, 4096>, heapless::Vec<crate::ledger::EntryRef, 16>) {
        let mut l = Ledger::<16, 4096>::new();
        let id = Identity::from_bytes(&[7; 64]);
        let mut refs = heapless::Vec::new();
        for (i, v) in values.iter().enumerate() {
            let key = [b'k', b'0' + i as u8];
            let r = l.put(Instant::ZERO, &id, b"services", &key, v, 0).unwrap();
            refs.push(r).unwrap();
        }
        (l, refs)
    }

    #[test]
    fn entries_come_back_in_order_and_decode_alone() {
        let (l, refs) = ledger_with(&[b"one", b"two", b"three"]);
        let mut buf = [0u8; 2000];
        let mut w = BatchWriter::new(&mut buf, true).unwrap();
        for r in &refs {
            assert!(w.push(&l.encoder(*r).unwrap()));
        }
        assert_eq!(w.count(), 3);
        let n = w.len();
        let batch = Batch::parse(&buf[..n]).unwrap();
        assert!(batch.repair());
        let values: heapless::Vec<heapless::Vec<u8, 8>, 4> = batch
            .entries()
            .map(|e| {
                let Message::Entry(p) = Message::decode(ControlKind::LEDGER_DELTA, e.unwrap()).unwrap() else {
                    panic!("not an entry")
                };
                heapless::Vec::from_slice(p.value()).unwrap()
            })
            .collect();
        assert_eq!(values.len(), 3);
        assert_eq!(&values[2][..], b"three");
    }

    #[test]
    fn a_batch_stops_at_the_message_limit() {
        let value = [0x55u8; 300];
        let (l, refs) = ledger_with(&[&value[..]; 8]);
        let mut buf = [0u8; 4000];
        let mut w = BatchWriter::new(&mut buf, false).unwrap();
        let pushed = refs.iter().take_while(|r| w.push(&l.encoder(**r).unwrap())).count();
        // 146 + 8 + 2 + 300 bytes per entry, plus 2: two fit in 1200, not three.
        assert_eq!(pushed, 2);
        assert!(w.len() <= MAX_MESSAGE_LEN);
    }

    #[test]
    fn cut_and_bad_items_end_with_an_error() {
        let (l, refs) = ledger_with(&[b"a", b"b"]);
        let mut buf = [0u8; 1200];
        let mut w = BatchWriter::new(&mut buf, false).unwrap();
        for r in &refs {
            w.push(&l.encoder(*r).unwrap());
        }
        let n = w.len();
        let first_end = BATCH_HEADER_LEN + ITEM_HEADER_LEN + u16::from_le_bytes([buf[1], buf[2]]) as usize;
        for cut in 1..n {
            let b = Batch::parse(&buf[..cut]).unwrap();
            let items: heapless::Vec<_, 4> = b.entries().map(|i| i.is_ok()).collect();
            let expected: &[bool] = match cut {
                1 => &[],
                c if c < first_end => &[false],
                c if c == first_end => &[true],
                _ => &[true, false],
            };
            assert_eq!(&items[..], expected, "cut at {cut}");
        }
        let mut bad = buf;
        bad[3] = 0x11; // the first item's type byte: a digest
        let b = Batch::parse(&bad[..n]).unwrap();
        assert_eq!(b.entries().next(), Some(Err(DecodeError::UnknownType(0x11))));
        assert_eq!(b.entries().count(), 1);
        assert_eq!(Batch::parse(&[0x02]).unwrap_err(), DecodeError::Reserved);
        assert_eq!(Batch::parse(&[]).unwrap_err(), DecodeError::Truncated);
    }
}
