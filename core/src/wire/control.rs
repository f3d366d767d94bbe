//! The control envelope: how mesh control messages (gossip, ledger sync,
//! hole-punch coordination, path probes, relay) ride inside encrypted
//! transport messages.
//!
//! An envelope is one kind byte followed by the kind's payload. Kind bytes
//! are `0x01..=0x3f`, so their high nibble (0..3) can never be mistaken for
//! the version nibble of an IPv4 (4) or IPv6 (6) packet: data packets need no
//! extra byte. This module owns the envelope only; the payloads are defined
//! by the modules that use them.

use super::{Error, Result};

/// The kind byte of a control envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ControlKind(pub u8);

impl ControlKind {
    /// Membership and endpoint gossip.
    pub const GOSSIP: ControlKind = ControlKind(0x01);
    /// Ledger entries pushed on change.
    pub const LEDGER_DELTA: ControlKind = ControlKind(0x02);
    /// Ledger digest for anti-entropy.
    pub const LEDGER_DIGEST: ControlKind = ControlKind(0x03);
    /// Ask a peer to coordinate a hole punch with a third node.
    pub const PUNCH_REQUEST: ControlKind = ControlKind(0x04);
    /// A coordinator tells a node to punch towards candidates.
    pub const PUNCH_NOTIFY: ControlKind = ControlKind(0x05);
    /// Path liveness and RTT probe.
    pub const PATH_PROBE: ControlKind = ControlKind(0x06);
    /// Answer to a path probe.
    pub const PATH_PROBE_REPLY: ControlKind = ControlKind(0x07);
    /// A datagram for the relay to forward (names its destination; still
    /// end-to-end encrypted between the two ends).
    pub const RELAY: ControlKind = ControlKind(0x08);
    /// A node leaves the mesh.
    pub const GOODBYE: ControlKind = ControlKind(0x09);
    /// "I see you at this address": how a member learns its NAT mappings.
    pub const OBSERVED: ControlKind = ControlKind(0x0a);
    /// A relayed datagram delivered by the relay (names its origin).
    pub const RELAYED: ControlKind = ControlKind(0x0b);
    /// Ledger entries sent by anti-entropy (what a peer's summary or
    /// request showed it lacks): the same payload as `LEDGER_DELTA`, applied
    /// but never forwarded, so a node catching up does not push the whole
    /// ledger on to peers that hold it already.
    pub const LEDGER_REPAIR: ControlKind = ControlKind(0x0c);
    /// "I opened this session for traffic, not as a mesh neighbour": the
    /// receiver does not forward other members' ledger entries along it
    /// (its own writes still come), so a node that talks to many members
    /// is not flooded with everyone's gossip. No payload.
    pub const ON_DEMAND: ControlKind = ControlKind(0x0d);
    /// Several whole ledger entries in one message
    /// ([`crate::ledger::batch`]), sent only to a member that said it reads
    /// them (`FEATURES`): older nodes ignore kinds they do not know.
    pub const LEDGER_BATCH: ControlKind = ControlKind(0x0e);
    /// The protocol features the sender reads, sent when a session comes
    /// up: a `u32` bit set, little endian ([`Features`]). Longer payloads
    /// are read by their first four bytes, so later versions may add more.
    pub const FEATURES: ControlKind = ControlKind(0x0f);
    /// "I cannot relay to this member" (its 16-byte node id): sent by a
    /// relay that reaches the destination of a `RELAY` only through a relay
    /// itself (no chains), so the sender picks another relay instead of
    /// sending into a dead end. Older nodes ignore it.
    pub const RELAY_REFUSED: ControlKind = ControlKind(0x10);

    /// The lowest valid kind byte.
    pub const MIN: u8 = 0x01;
    /// The highest valid kind byte.
    pub const MAX: u8 = 0x3f;

    /// Whether `b` is in the control kind range.
    pub const fn is_valid(b: u8) -> bool {
        b >= Self::MIN && b <= Self::MAX
    }
}

/// The bit set a `FEATURES` message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Features(pub u32);

impl Features {
    /// Reads `LEDGER_BATCH`.
    pub const LEDGER_BATCH: Features = Features(1);
    /// Holds only small ledger entries (see `ledger::Scope`): a small
    /// device. Peers then push it only those and compare only those.
    pub const SMALL_ENTRIES: Features = Features(2);
    /// Answers every ledger digest: with an empty summary page (mask 0)
    /// when the replicas agree. The starter of an exchange that gets no
    /// answer takes it for lost and starts another soon.
    pub const ANSWERS_DIGESTS: Features = Features(4);
    /// The sender has not heard the receiver's `FEATURES` on this session
    /// (it was lost): answer with yours. Older nodes ignore the bit.
    pub const ASK: Features = Features(1 << 31);
    /// What this version reads and does.
    pub const OURS: Features = Features::LEDGER_BATCH.with(Features::ANSWERS_DIGESTS);

    /// Both sets of bits.
    pub const fn with(self, other: Features) -> Features {
        Features(self.0 | other.0)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Features) -> bool {
        self.0 & other.0 == other.0
    }

    /// Reads a `FEATURES` payload (its first four bytes).
    pub fn parse(payload: &[u8]) -> Result<Features> {
        let b = payload.get(..4).ok_or(Error::Truncated)?;
        Ok(Features(u32::from_le_bytes([b[0], b[1], b[2], b[3]])))
    }

    /// Writes the payload into `out`; returns its length (4).
    pub fn emit(self, out: &mut [u8]) -> usize {
        out[..4].copy_from_slice(&self.0.to_le_bytes());
        4
    }
}

/// A read/write view of a control envelope.
#[derive(Debug, Clone)]
pub struct ControlPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ControlPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        ControlPacket { buffer }
    }

    /// Wraps a buffer, checking it holds a kind byte in range.
    pub fn new_checked(buffer: T) -> Result<Self> {
        match buffer.as_ref().first() {
            None => Err(Error::Truncated),
            Some(&b) if ControlKind::is_valid(b) => Ok(ControlPacket { buffer }),
            Some(&b) => Err(Error::UnknownType(b)),
        }
    }

    /// The kind byte.
    pub fn kind(&self) -> ControlKind {
        ControlKind(self.buffer.as_ref()[0])
    }

    /// The kind's payload.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[1..]
    }

    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ControlPacket<T> {
    /// Sets the kind byte.
    pub fn set_kind(&mut self, kind: ControlKind) {
        self.buffer.as_mut()[0] = kind.0;
    }

    /// The payload, writable.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[1..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_never_look_like_ip() {
        for b in ControlKind::MIN..=ControlKind::MAX {
            assert!(b >> 4 != 4 && b >> 4 != 6);
        }
        assert!(!ControlKind::is_valid(0));
        assert!(!ControlKind::is_valid(0x40));
    }

    #[test]
    fn envelope_round_trip() {
        let mut buf = [0u8; 4];
        let mut p = ControlPacket::new_unchecked(&mut buf[..]);
        p.set_kind(ControlKind::PATH_PROBE);
        p.payload_mut().copy_from_slice(&[1, 2, 3]);
        let p = ControlPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.kind(), ControlKind::PATH_PROBE);
        assert_eq!(p.payload(), &[1, 2, 3]);
        assert_eq!(ControlPacket::new_checked(&[][..]).unwrap_err(), Error::Truncated);
        assert_eq!(
            ControlPacket::new_checked(&[0x45][..]).unwrap_err(),
            Error::UnknownType(0x45)
        );
    }
}
