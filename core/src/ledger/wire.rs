//! The ledger's messages on the wire, in smoltcp's style: a checked
//! `Packet<T>` view per message and a `Repr` where a message is built whole.
//!
//! This module owns the byte layouts, their limits and [`Message::decode`],
//! the one entry point for a received control payload. It never verifies a
//! signature, never touches a [`super::Ledger`] and never allocates; every
//! malformed input is a [`DecodeError`], never a panic.
//!
//! A ledger message is the payload of a control envelope (after the kind
//! byte, see [`crate::wire::control`]). Its first byte is a [`MessageType`];
//! entries and fragments travel as [`ControlKind::LEDGER_DELTA`] (several
//! whole entries also as [`ControlKind::LEDGER_BATCH`], see [`super::batch`]), digests,
//! summaries and requests as [`ControlKind::LEDGER_DIGEST`]. Integers are
//! little endian, except id prefixes: the first 8 bytes of an
//! [`super::EntryId`], read as a big-endian number so that numeric order is
//! the order of the ids.
//!
//! ```text
//! Entry (0x01), 146 + bucket + key + value bytes:
//!   0  type          1  flags (bit 0: tombstone; others zero)
//!   2  clock u64     10 ttl u32 (seconds, 0 = none; 0 for tombstones)
//!  14  origin static key [32]   46 origin signing key [32]
//!  78  bucket len u8 (1..=64)   79 key len u8 (1..=128)
//!  80  value len u16 (<= 16384, 0 for tombstones)
//!  82  Ed25519 signature [64]
//! 146  bucket, key, value
//! Digest (0x11), 518 bytes:
//!   0  type  1 reserved  2 live entries u32  6 64 x range hash u64
//! Summary (0x12), 27 + 24 * count bytes (count <= 48):
//!   0  type  1 reserved  2 range mask u64  10 from (id prefix)  18 to (id prefix)
//!  26  count u8   27  items: id prefix [8], clock u64 (bits 62-63: state:
//!      0 live, 1 tombstone, 2 expired), tag [8] (first 8 bytes of the signed hash)
//! Request (0x13), 2 + 8 * count bytes (1 <= count <= 64):
//!   0  type  1 count  2 id prefixes [8] each
//! Fragment (0x02), 14 + chunk bytes, for an entry over 1200 bytes:
//!   0  type  1 index u8  2 count u8 (2..=15)  3 reserved
//!   4  tag [8] (first 8 bytes of the entry's signed hash)
//!  12  total length of the entry encoding u16
//!  14  bytes index * 1186 .. of the entry encoding (1186, fewer in the last)
//! ```
//!
//! A fragment carries a window of the whole entry encoding, so the entry
//! header travels once; see [`super::FragmentPacket`] and
//! [`super::Reassembly`].

use core::fmt;

use super::fragment::FragmentPacket;
use super::{MAX_BUCKET_LEN, MAX_CLOCK, MAX_KEY_LEN, MAX_MESSAGE_LEN, MAX_VALUE_LEN};
use crate::identity::PublicIdentity;
use crate::wire::ControlKind;

/// Bytes of an entry before its bucket, key and value.
pub const ENTRY_HEADER_LEN: usize = 146;
/// The longest entry encoding (sent in fragments when over [`MAX_MESSAGE_LEN`]).
pub const MAX_ENTRY_LEN: usize = ENTRY_HEADER_LEN + MAX_BUCKET_LEN + MAX_KEY_LEN + MAX_VALUE_LEN;
/// The part of an entry's header covered by its signature: everything
/// between the type byte and the signature.
pub(crate) const SIGNED_HEADER: core::ops::Range<usize> = 1..82;
/// Number of hash ranges in a digest.
pub const RANGES: usize = 64;
/// Length of a digest message.
pub const DIGEST_LEN: usize = 6 + 8 * RANGES;
/// Bytes of a summary before its items.
pub const SUMMARY_HEADER_LEN: usize = 27;
/// Bytes of one summary item.
pub const SUMMARY_ITEM_LEN: usize = 24;
/// The most items one summary message carries.
pub const SUMMARY_MAX_ITEMS: usize = (MAX_MESSAGE_LEN - SUMMARY_HEADER_LEN) / SUMMARY_ITEM_LEN;
/// The most id prefixes one request carries.
pub const REQUEST_MAX_IDS: usize = 64;

const _: () = assert!(SUMMARY_HEADER_LEN + SUMMARY_MAX_ITEMS * SUMMARY_ITEM_LEN <= MAX_MESSAGE_LEN);
const _: () = assert!(DIGEST_LEN <= MAX_MESSAGE_LEN && 2 + 8 * REQUEST_MAX_IDS <= MAX_MESSAGE_LEN);
const _: () = assert!(SUMMARY_MAX_ITEMS <= u8::MAX as usize);
const _: () = assert!(REQUEST_MAX_IDS <= u8::MAX as usize);

const FLAG_TOMBSTONE: u8 = 0x01;
const STATE_SHIFT: u32 = 62;

/// A ledger message could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than its type or its length fields require.
    Truncated,
    /// Longer than its length fields say, or than a message may be.
    TooLong,
    /// The type byte names no ledger message.
    UnknownType(u8),
    /// A message type sent under the wrong control kind.
    WrongKind,
    /// Reserved bits or bytes are not zero.
    Reserved,
    /// A bucket, key, value or count is outside its limits.
    BadLength,
    /// A Lamport clock above [`MAX_CLOCK`].
    ClockOutOfRange,
    /// A tombstone with a value or a ttl.
    TombstoneWithValue,
    /// Summary items out of order or outside the page's bounds or ranges.
    Unordered,
    /// Fragment index, count and total length disagree.
    BadFragment,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("ledger message truncated"),
            DecodeError::TooLong => f.write_str("ledger message longer than it says"),
            DecodeError::UnknownType(t) => write!(f, "unknown ledger message type {t:#04x}"),
            DecodeError::WrongKind => f.write_str("ledger message under the wrong control kind"),
            DecodeError::Reserved => f.write_str("reserved bits are not zero"),
            DecodeError::BadLength => f.write_str("length outside the ledger's limits"),
            DecodeError::ClockOutOfRange => f.write_str("Lamport clock out of range"),
            DecodeError::TombstoneWithValue => f.write_str("tombstone carries a value or a ttl"),
            DecodeError::Unordered => f.write_str("summary items out of order or out of bounds"),
            DecodeError::BadFragment => f.write_str("inconsistent fragment header"),
        }
    }
}

impl core::error::Error for DecodeError {}

/// The first byte of a ledger message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// One whole signed entry.
    Entry = 0x01,
    /// A piece of an entry too long for one datagram.
    Fragment = 0x02,
    /// Per-range hashes for anti-entropy.
    Digest = 0x11,
    /// The versions a replica holds in some ranges.
    Summary = 0x12,
    /// A request for entries by id prefix.
    Request = 0x13,
}

impl MessageType {
    /// Reads a type byte.
    pub fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0x01 => MessageType::Entry,
            0x02 => MessageType::Fragment,
            0x11 => MessageType::Digest,
            0x12 => MessageType::Summary,
            0x13 => MessageType::Request,
            t => return Err(DecodeError::UnknownType(t)),
        })
    }

    /// The control kind this message travels under.
    pub fn control_kind(self) -> ControlKind {
        match self {
            MessageType::Entry | MessageType::Fragment => ControlKind::LEDGER_DELTA,
            _ => ControlKind::LEDGER_DIGEST,
        }
    }
}

/// A decoded ledger message, borrowing the payload.
#[derive(Debug, Clone)]
pub enum Message<'a> {
    /// A whole entry: pass its bytes to [`super::Ledger::apply`].
    Entry(EntryPacket<&'a [u8]>),
    /// A fragment: feed it to a [`super::Reassembly`].
    Fragment(FragmentPacket<&'a [u8]>),
    /// A digest: compare with [`super::Digest::mismatch`].
    Digest(DigestPacket<&'a [u8]>),
    /// A summary page: walk it with [`super::Ledger::reconcile`].
    Summary(SummaryPacket<&'a [u8]>),
    /// A request: answer it with [`super::Ledger::requested`].
    Request(RequestPacket<&'a [u8]>),
}

impl<'a> Message<'a> {
    /// Decodes the payload of a `LEDGER_DELTA` or `LEDGER_DIGEST` control
    /// envelope. Every check of the message's own view is applied; nothing
    /// is verified cryptographically.
    pub fn decode(kind: ControlKind, payload: &'a [u8]) -> Result<Self, DecodeError> {
        let ty = MessageType::from_byte(*payload.first().ok_or(DecodeError::Truncated)?)?;
        if ty.control_kind() != kind {
            return Err(DecodeError::WrongKind);
        }
        if payload.len() > MAX_MESSAGE_LEN {
            return Err(DecodeError::TooLong);
        }
        Ok(match ty {
            MessageType::Entry => Message::Entry(EntryPacket::new_checked(payload)?),
            MessageType::Fragment => Message::Fragment(FragmentPacket::new_checked(payload)?),
            MessageType::Digest => Message::Digest(DigestPacket::new_checked(payload)?),
            MessageType::Summary => Message::Summary(SummaryPacket::new_checked(payload)?),
            MessageType::Request => Message::Request(RequestPacket::new_checked(payload)?),
        })
    }
}

#[inline]
pub(crate) fn u64_le(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(crate::wire::array(b, at))
}

#[inline]
pub(crate) fn u64_be(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(crate::wire::array(b, at))
}

#[inline]
fn u16_le(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(crate::wire::array(b, at))
}

fn check_type(b: &[u8], ty: MessageType) -> Result<(), DecodeError> {
    match b.first() {
        None => Err(DecodeError::Truncated),
        Some(&t) if t == ty as u8 => Ok(()),
        Some(&t) => Err(DecodeError::UnknownType(t)),
    }
}

/// A read-only view of a signed entry (type `0x01`), whole.
#[derive(Debug, Clone)]
pub struct EntryPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EntryPacket<T> {
    /// Wraps a buffer, checking the type, every length and flag, and that the
    /// buffer holds exactly one entry. Entries up to [`MAX_ENTRY_LEN`] are
    /// accepted (a reassembled entry is longer than a datagram).
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        check_type(b, MessageType::Entry)?;
        if b.len() < ENTRY_HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        let p = EntryPacket { buffer };
        let (bl, kl, vl) = (p.bucket_len(), p.key_len(), p.value_len());
        if p.flags() & !FLAG_TOMBSTONE != 0 {
            return Err(DecodeError::Reserved);
        }
        if !(1..=MAX_BUCKET_LEN).contains(&bl) || !(1..=MAX_KEY_LEN).contains(&kl) || vl > MAX_VALUE_LEN {
            return Err(DecodeError::BadLength);
        }
        if p.clock() > MAX_CLOCK {
            return Err(DecodeError::ClockOutOfRange);
        }
        if p.is_tombstone() && (vl != 0 || p.ttl() != 0) {
            return Err(DecodeError::TombstoneWithValue);
        }
        let total = ENTRY_HEADER_LEN + bl + kl + vl;
        let len = p.buffer.as_ref().len();
        if len < total {
            return Err(DecodeError::Truncated);
        }
        if len > total {
            return Err(DecodeError::TooLong);
        }
        Ok(p)
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }
    /// The flags byte.
    pub fn flags(&self) -> u8 {
        self.b()[1]
    }
    /// Whether this entry deletes its key.
    pub fn is_tombstone(&self) -> bool {
        self.flags() & FLAG_TOMBSTONE != 0
    }
    /// The Lamport clock.
    pub fn clock(&self) -> u64 {
        u64_le(self.b(), 2)
    }
    /// The time to live in seconds (0: none).
    pub fn ttl(&self) -> u32 {
        u32::from_le_bytes(crate::wire::array(self.b(), 10))
    }
    /// The origin's public keys.
    pub fn origin(&self) -> PublicIdentity {
        PublicIdentity {
            static_key: crate::wire::array(self.b(), 14),
            signing_key: crate::wire::array(self.b(), 46),
        }
    }
    fn bucket_len(&self) -> usize {
        self.b()[78] as usize
    }
    fn key_len(&self) -> usize {
        self.b()[79] as usize
    }
    fn value_len(&self) -> usize {
        u16_le(self.b(), 80) as usize
    }
    /// The Ed25519 signature.
    pub fn signature(&self) -> [u8; 64] {
        crate::wire::array(self.b(), 82)
    }
    /// The bucket name.
    pub fn bucket(&self) -> &[u8] {
        &self.b()[ENTRY_HEADER_LEN..ENTRY_HEADER_LEN + self.bucket_len()]
    }
    /// The key.
    pub fn key(&self) -> &[u8] {
        let at = ENTRY_HEADER_LEN + self.bucket_len();
        &self.b()[at..at + self.key_len()]
    }
    /// The value (empty for a tombstone).
    pub fn value(&self) -> &[u8] {
        let at = ENTRY_HEADER_LEN + self.bucket_len() + self.key_len();
        &self.b()[at..at + self.value_len()]
    }
    /// The header bytes the signature covers.
    pub(crate) fn signed_header(&self) -> &[u8] {
        &self.b()[SIGNED_HEADER]
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// A signed entry, parsed or to be emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRepr<'a> {
    /// Whether the entry deletes its key.
    pub tombstone: bool,
    /// The Lamport clock.
    pub clock: u64,
    /// Time to live in seconds, 0 for none.
    pub ttl: u32,
    /// The origin's public keys.
    pub origin: PublicIdentity,
    /// Bucket name.
    pub bucket: &'a [u8],
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
    /// Ed25519 signature over the entry's hash (see the [ledger docs](super#signatures)).
    pub signature: [u8; 64],
}

impl<'a> EntryRepr<'a> {
    /// Reads a checked packet.
    pub fn parse(p: &EntryPacket<&'a [u8]>) -> Self {
        let b: &'a [u8] = p.buffer;
        let bl = p.bucket_len();
        let kl = p.key_len();
        let vl = p.value_len();
        let at = ENTRY_HEADER_LEN;
        EntryRepr {
            tombstone: p.is_tombstone(),
            clock: p.clock(),
            ttl: p.ttl(),
            origin: p.origin(),
            bucket: &b[at..at + bl],
            key: &b[at + bl..at + bl + kl],
            value: &b[at + bl + kl..at + bl + kl + vl],
            signature: p.signature(),
        }
    }

    /// Length of the encoding.
    pub fn buffer_len(&self) -> usize {
        ENTRY_HEADER_LEN + self.bucket.len() + self.key.len() + self.value.len()
    }

    /// The fixed-size header (type through signature). Lengths are written
    /// truncated to their fields; callers check limits first.
    pub fn header(&self) -> [u8; ENTRY_HEADER_LEN] {
        let mut h = [0u8; ENTRY_HEADER_LEN];
        h[0] = MessageType::Entry as u8;
        h[1] = if self.tombstone { FLAG_TOMBSTONE } else { 0 };
        h[2..10].copy_from_slice(&self.clock.to_le_bytes());
        h[10..14].copy_from_slice(&self.ttl.to_le_bytes());
        h[14..46].copy_from_slice(&self.origin.static_key);
        h[46..78].copy_from_slice(&self.origin.signing_key);
        h[78] = self.bucket.len() as u8;
        h[79] = self.key.len() as u8;
        h[80..82].copy_from_slice(&(self.value.len() as u16).to_le_bytes());
        h[82..146].copy_from_slice(&self.signature);
        h
    }

    /// Writes the entry into `buf`, returning its length; `None` if `buf` is
    /// shorter than [`Self::buffer_len`].
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        let len = self.buffer_len();
        let out = buf.get_mut(..len)?;
        out[..ENTRY_HEADER_LEN].copy_from_slice(&self.header());
        let mut at = ENTRY_HEADER_LEN;
        for part in [self.bucket, self.key, self.value] {
            out[at..at + part.len()].copy_from_slice(part);
            at += part.len();
        }
        Some(len)
    }
}

/// A read-only view of a digest (type `0x11`).
#[derive(Debug, Clone)]
pub struct DigestPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> DigestPacket<T> {
    /// Wraps a buffer, checking type, reserved byte and length.
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        check_type(b, MessageType::Digest)?;
        if b.len() < DIGEST_LEN {
            return Err(DecodeError::Truncated);
        }
        if b.len() > DIGEST_LEN {
            return Err(DecodeError::TooLong);
        }
        if b[1] != 0 {
            return Err(DecodeError::Reserved);
        }
        Ok(DigestPacket { buffer })
    }
    /// Number of live entries the sender holds.
    pub fn entries(&self) -> u32 {
        u32::from_le_bytes(crate::wire::array(self.buffer.as_ref(), 2))
    }
    /// The hash of range `i`, `None` past [`RANGES`].
    pub fn range(&self, i: usize) -> Option<u64> {
        (i < RANGES).then(|| u64_le(self.buffer.as_ref(), 6 + 8 * i))
    }
}

/// What a summary item says about the sender's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemState {
    /// A live entry (the sender can send it).
    Live,
    /// A tombstone (the sender can send it).
    Tombstone,
    /// An entry that expired at the sender: it knows the version but no
    /// longer has the value.
    Expired,
}

impl ItemState {
    fn bits(self) -> u64 {
        match self {
            ItemState::Live => 0,
            ItemState::Tombstone => 1,
            ItemState::Expired => 2,
        }
    }
    /// Whether the holder can send this version.
    pub fn sendable(self) -> bool {
        self != ItemState::Expired
    }
}

/// One record in a summary: which version of which entry the sender holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryItem {
    /// The entry's id prefix.
    pub id: u64,
    /// The version's Lamport clock.
    pub clock: u64,
    /// Live, tombstone or expired.
    pub state: ItemState,
    /// The first 8 bytes of the version's signed hash: equal tags, equal versions.
    pub tag: [u8; 8],
}

impl SummaryItem {
    pub(crate) fn emit(&self, out: &mut [u8]) {
        out[..8].copy_from_slice(&self.id.to_be_bytes());
        out[8..16].copy_from_slice(&(self.clock | (self.state.bits() << STATE_SHIFT)).to_le_bytes());
        out[16..24].copy_from_slice(&self.tag);
    }

    fn parse(b: &[u8]) -> Result<Self, DecodeError> {
        let field = u64_le(b, 8);
        let state = match field >> STATE_SHIFT {
            0 => ItemState::Live,
            1 => ItemState::Tombstone,
            2 => ItemState::Expired,
            _ => return Err(DecodeError::Reserved),
        };
        let clock = field & MAX_CLOCK;
        Ok(SummaryItem {
            id: u64_be(b, 0),
            clock,
            state,
            tag: crate::wire::array(b, 16),
        })
    }
}

/// The range (`0..RANGES`) an id prefix falls in.
pub const fn range_of(id_prefix: u64) -> usize {
    (id_prefix >> (64 - RANGES.trailing_zeros())) as usize
}

/// A read-only view of a summary page (type `0x12`).
///
/// The page lists every record the sender holds whose id prefix lies in
/// `from..=to` and whose range is in `mask`, sorted by id prefix.
#[derive(Debug, Clone)]
pub struct SummaryPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SummaryPacket<T> {
    /// Wraps a buffer, checking lengths, order and bounds of every item.
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        check_type(b, MessageType::Summary)?;
        if b.len() < SUMMARY_HEADER_LEN {
            return Err(DecodeError::Truncated);
        }
        if b[1] != 0 {
            return Err(DecodeError::Reserved);
        }
        let count = b[26] as usize;
        if count > SUMMARY_MAX_ITEMS {
            return Err(DecodeError::BadLength);
        }
        let total = SUMMARY_HEADER_LEN + count * SUMMARY_ITEM_LEN;
        if b.len() < total {
            return Err(DecodeError::Truncated);
        }
        if b.len() > total {
            return Err(DecodeError::TooLong);
        }
        let p = SummaryPacket { buffer };
        let (mask, from, to) = (p.mask(), p.from(), p.to());
        if from > to {
            return Err(DecodeError::Unordered);
        }
        let mut prev = from;
        for i in 0..count {
            let item = p.try_item(i)?;
            if item.id < prev || item.id > to || mask & (1 << range_of(item.id)) == 0 {
                return Err(DecodeError::Unordered);
            }
            prev = item.id;
        }
        Ok(p)
    }
    /// The ranges summarized (bit `i` for range `i`).
    pub fn mask(&self) -> u64 {
        u64_le(self.buffer.as_ref(), 2)
    }
    /// The lowest id prefix the page covers.
    pub fn from(&self) -> u64 {
        u64_be(self.buffer.as_ref(), 10)
    }
    /// The highest id prefix the page covers.
    pub fn to(&self) -> u64 {
        u64_be(self.buffer.as_ref(), 18)
    }
    /// Number of items.
    pub fn len(&self) -> usize {
        self.buffer.as_ref()[26] as usize
    }
    /// Whether the page lists no item.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn try_item(&self, i: usize) -> Result<SummaryItem, DecodeError> {
        let at = SUMMARY_HEADER_LEN + i * SUMMARY_ITEM_LEN;
        SummaryItem::parse(&self.buffer.as_ref()[at..at + SUMMARY_ITEM_LEN])
    }
    /// Item `i` (`i < len()`), or `None` past the end.
    pub fn item(&self, i: usize) -> Option<SummaryItem> {
        if i < self.len() {
            self.try_item(i).ok()
        } else {
            None
        }
    }
}

/// Writes a summary header; items follow at [`SUMMARY_HEADER_LEN`].
pub(crate) fn emit_summary_header(out: &mut [u8], mask: u64, from: u64, to: u64, count: usize) {
    out[0] = MessageType::Summary as u8;
    out[1] = 0;
    out[2..10].copy_from_slice(&mask.to_le_bytes());
    out[10..18].copy_from_slice(&from.to_be_bytes());
    out[18..26].copy_from_slice(&to.to_be_bytes());
    out[26] = count as u8;
}

/// A read-only view of a request (type `0x13`).
#[derive(Debug, Clone)]
pub struct RequestPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RequestPacket<T> {
    /// Wraps a buffer, checking the count and length.
    pub fn new_checked(buffer: T) -> Result<Self, DecodeError> {
        let b = buffer.as_ref();
        check_type(b, MessageType::Request)?;
        if b.len() < 2 {
            return Err(DecodeError::Truncated);
        }
        let count = b[1] as usize;
        if count == 0 || count > REQUEST_MAX_IDS {
            return Err(DecodeError::BadLength);
        }
        let total = 2 + 8 * count;
        if b.len() < total {
            return Err(DecodeError::Truncated);
        }
        if b.len() > total {
            return Err(DecodeError::TooLong);
        }
        Ok(RequestPacket { buffer })
    }
    /// Number of id prefixes.
    pub fn len(&self) -> usize {
        self.buffer.as_ref()[1] as usize
    }
    /// Always false for a checked packet (a request names at least one id).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Id prefix `i`, `None` past [`Self::len`].
    pub fn id(&self, i: usize) -> Option<u64> {
        (i < self.len()).then(|| u64_be(self.buffer.as_ref(), 2 + 8 * i))
    }
}

/// Builds a request for entries by id prefix.
#[derive(Debug, Clone, Default)]
pub struct RequestRepr {
    ids: heapless::Vec<u64, REQUEST_MAX_IDS>,
}

impl RequestRepr {
    /// An empty request.
    pub const fn new() -> Self {
        RequestRepr {
            ids: heapless::Vec::new(),
        }
    }
    /// Reads a checked request.
    pub fn parse(p: &RequestPacket<&[u8]>) -> Self {
        let mut r = RequestRepr::new();
        for id in (0..p.len()).map_while(|i| p.id(i)) {
            r.push(id);
        }
        r
    }
    /// The id prefixes asked for.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }
    /// Adds an id prefix; `false` if the request is full.
    pub fn push(&mut self, id: u64) -> bool {
        self.ids.push(id).is_ok()
    }
    /// Number of id prefixes.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    /// Whether nothing was asked for (then there is nothing to send).
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
    /// Length of the encoding.
    pub fn buffer_len(&self) -> usize {
        2 + 8 * self.ids.len()
    }
    /// Writes the request; `None` if it is empty or `buf` is too short.
    pub fn emit(&self, buf: &mut [u8]) -> Option<usize> {
        if self.ids.is_empty() {
            return None;
        }
        let out = buf.get_mut(..self.buffer_len())?;
        out[0] = MessageType::Request as u8;
        out[1] = self.ids.len() as u8;
        for (chunk, id) in out[2..].chunks_exact_mut(8).zip(self.ids.iter()) {
            chunk.copy_from_slice(&id.to_be_bytes());
        }
        Some(out.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_entry(buf: &mut [u8]) -> usize {
        let repr = EntryRepr {
            tombstone: false,
            clock: 7,
            ttl: 30,
            origin: PublicIdentity {
                static_key: [1; 32],
                signing_key: [2; 32],
            },
            bucket: b"kairos",
            key: b"ip-master",
            value: b"10.1.0.1",
            signature: [3; 64],
        };
        repr.emit(buf).unwrap()
    }

    /// Every truncation of a valid message is an error, and so is any
    /// trailing byte.
    fn check_truncations(kind: ControlKind, msg: &[u8]) {
        assert!(Message::decode(kind, msg).is_ok());
        for n in 0..msg.len() {
            assert!(
                Message::decode(kind, &msg[..n]).is_err(),
                "prefix of {n} bytes accepted"
            );
        }
        let mut longer = [0u8; MAX_MESSAGE_LEN + 1];
        longer[..msg.len()].copy_from_slice(msg);
        assert!(Message::decode(kind, &longer[..msg.len() + 1]).is_err());
    }

    #[test]
    fn entry_round_trip_and_truncations() {
        let mut buf = [0u8; 512];
        let n = sample_entry(&mut buf);
        assert_eq!(n, ENTRY_HEADER_LEN + 6 + 9 + 8);
        let Message::Entry(p) = Message::decode(ControlKind::LEDGER_DELTA, &buf[..n]).unwrap() else {
            panic!("not an entry")
        };
        let r = EntryRepr::parse(&p);
        assert_eq!(
            (r.bucket, r.key, r.value),
            (&b"kairos"[..], &b"ip-master"[..], &b"10.1.0.1"[..])
        );
        assert_eq!((r.clock, r.ttl, r.tombstone), (7, 30, false));
        assert_eq!(r.signature, [3; 64]);
        assert_eq!(r.buffer_len(), n);
        check_truncations(ControlKind::LEDGER_DELTA, &buf[..n]);
        assert_eq!(
            Message::decode(ControlKind::LEDGER_DIGEST, &buf[..n]).unwrap_err(),
            DecodeError::WrongKind
        );
    }

    #[test]
    fn entry_field_checks() {
        let mut buf = [0u8; 512];
        let n = sample_entry(&mut buf);
        let check = |f: &dyn Fn(&mut [u8]), e: DecodeError| {
            let mut b = buf;
            f(&mut b);
            assert_eq!(EntryPacket::new_checked(&b[..n]).unwrap_err(), e);
        };
        check(&|b| b[1] = 0x02, DecodeError::Reserved);
        check(&|b| b[78] = 0, DecodeError::BadLength);
        check(&|b| b[79] = 129, DecodeError::BadLength);
        check(
            &|b| b[80..82].copy_from_slice(&16385u16.to_le_bytes()),
            DecodeError::BadLength,
        );
        check(&|b| b[9] = 0x40, DecodeError::ClockOutOfRange);
        check(&|b| b[1] = 1, DecodeError::TombstoneWithValue);
        check(&|b| b[0] = 0x7f, DecodeError::UnknownType(0x7f));
        check(&|b| b[79] = 10, DecodeError::Truncated);
        check(&|b| b[79] = 8, DecodeError::TooLong);
    }

    #[test]
    fn digest_checks() {
        let mut d = [0u8; DIGEST_LEN];
        d[0] = MessageType::Digest as u8;
        d[6] = 9;
        check_truncations(ControlKind::LEDGER_DIGEST, &d);
        let Message::Digest(p) = Message::decode(ControlKind::LEDGER_DIGEST, &d).unwrap() else {
            panic!()
        };
        assert_eq!((p.range(0), p.range(RANGES)), (Some(9), None));
        d[1] = 1;
        assert_eq!(DigestPacket::new_checked(&d[..]).unwrap_err(), DecodeError::Reserved);
    }

    #[test]
    fn summary_checks() {
        let mut b = [0u8; SUMMARY_HEADER_LEN + 2 * SUMMARY_ITEM_LEN];
        let mask = u64::MAX;
        emit_summary_header(&mut b, mask, 10, 1000, 2);
        let items = [
            SummaryItem {
                id: 20,
                clock: 5,
                state: ItemState::Live,
                tag: [1; 8],
            },
            SummaryItem {
                id: 900,
                clock: MAX_CLOCK,
                state: ItemState::Expired,
                tag: [2; 8],
            },
        ];
        for (i, it) in items.iter().enumerate() {
            it.emit(&mut b[SUMMARY_HEADER_LEN + i * SUMMARY_ITEM_LEN..]);
        }
        check_truncations(ControlKind::LEDGER_DIGEST, &b);
        let p = SummaryPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.mask(), p.from(), p.to(), p.len()), (mask, 10, 1000, 2));
        assert_eq!(p.item(0), Some(items[0]));
        assert_eq!(p.item(1), Some(items[1]));
        assert_eq!(p.item(2), None);
        // Out of order, out of bounds, outside the mask, bad state bits.
        let mut bad = b;
        items[1].emit(&mut bad[SUMMARY_HEADER_LEN..]);
        items[0].emit(&mut bad[SUMMARY_HEADER_LEN + SUMMARY_ITEM_LEN..]);
        assert_eq!(
            SummaryPacket::new_checked(&bad[..]).unwrap_err(),
            DecodeError::Unordered
        );
        let mut bad = b;
        emit_summary_header(&mut bad, mask, 10, 500, 2);
        assert_eq!(
            SummaryPacket::new_checked(&bad[..]).unwrap_err(),
            DecodeError::Unordered
        );
        let mut bad = b;
        emit_summary_header(&mut bad, 0, 10, 1000, 2);
        assert_eq!(
            SummaryPacket::new_checked(&bad[..]).unwrap_err(),
            DecodeError::Unordered
        );
        let mut bad = b;
        bad[SUMMARY_HEADER_LEN + 15] = 0xc0;
        assert_eq!(SummaryPacket::new_checked(&bad[..]).unwrap_err(), DecodeError::Reserved);
        let mut bad = b;
        bad[26] = SUMMARY_MAX_ITEMS as u8 + 1;
        assert_eq!(
            SummaryPacket::new_checked(&bad[..]).unwrap_err(),
            DecodeError::BadLength
        );
    }

    #[test]
    fn request_round_trip() {
        let mut r = RequestRepr::new();
        assert!(r.emit(&mut [0u8; 64]).is_none());
        for id in [3u64, u64::MAX] {
            assert!(r.push(id));
        }
        let mut b = [0u8; 64];
        let n = r.emit(&mut b).unwrap();
        check_truncations(ControlKind::LEDGER_DIGEST, &b[..n]);
        let p = RequestPacket::new_checked(&b[..n]).unwrap();
        assert_eq!(RequestRepr::parse(&p).ids(), r.ids());
        assert_eq!((p.len(), p.id(0), p.id(1), p.id(2)), (2, Some(3), Some(u64::MAX), None));
        let mut full = RequestRepr::new();
        for id in 0..REQUEST_MAX_IDS as u64 {
            assert!(full.push(id));
        }
        assert!(!full.push(99));
        assert!(full.buffer_len() <= MAX_MESSAGE_LEN);
    }

    #[test]
    fn unknown_and_empty() {
        assert_eq!(
            Message::decode(ControlKind::LEDGER_DELTA, &[]).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            Message::decode(ControlKind::LEDGER_DELTA, &[0x55]).unwrap_err(),
            DecodeError::UnknownType(0x55)
        );
        assert_eq!(range_of(0), 0);
        assert_eq!(range_of(u64::MAX), RANGES - 1);
    }
}
