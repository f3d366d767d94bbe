//! The transport data message: the hot path.
//!
//! ```text
//!  0  type=4, 3 reserved
//!  4  receiver index (LE u32)
//!  8  counter (LE u64): the AEAD nonce
//! 16  ChaCha20-Poly1305(payload) then its 16-byte tag
//! ```
//! The payload is sealed in place: a caller that leaves
//! [`TRANSPORT_HEADER_LEN`] bytes of headroom before an IP packet and
//! [`crate::crypto::TAG_LEN`] bytes of tailroom after it never copies it.

use super::{read_u32, Error, MessageType, Result};
use crate::crypto::TAG_LEN;

/// Bytes before the sealed payload.
pub const TRANSPORT_HEADER_LEN: usize = 16;
/// Bytes a transport message adds to its payload (header and tag).
pub const TRANSPORT_OVERHEAD: usize = TRANSPORT_HEADER_LEN + TAG_LEN;

/// A read/write view of a transport message.
#[derive(Debug, Clone)]
pub struct TransportPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TransportPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        TransportPacket { buffer }
    }
    /// Wraps a buffer, checking the type and that a header and tag fit.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if MessageType::of(b)? != MessageType::Transport {
            return Err(Error::UnknownType(b[0]));
        }
        if b.len() < TRANSPORT_OVERHEAD {
            return Err(Error::Truncated);
        }
        Ok(TransportPacket { buffer })
    }
    /// The receiver's session index.
    pub fn receiver_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), 4)
    }
    /// The nonce counter.
    pub fn counter(&self) -> u64 {
        u64::from_le_bytes(super::array(self.buffer.as_ref(), 8))
    }
    /// The sealed payload followed by its tag.
    pub fn sealed(&self) -> &[u8] {
        &self.buffer.as_ref()[TRANSPORT_HEADER_LEN..]
    }
    /// Unwraps the buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TransportPacket<T> {
    /// Writes the header fields.
    pub fn set_header(&mut self, receiver_index: u32, counter: u64) {
        let b = self.buffer.as_mut();
        b[..4].copy_from_slice(&MessageType::Transport.header());
        b[4..8].copy_from_slice(&receiver_index.to_le_bytes());
        b[8..16].copy_from_slice(&counter.to_le_bytes());
    }
    /// The sealed payload followed by its tag, writable.
    pub fn sealed_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[TRANSPORT_HEADER_LEN..]
    }
}

/// A transport message header, parsed (the payload stays in the buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportRepr {
    /// The receiver's session index.
    pub receiver_index: u32,
    /// The nonce counter.
    pub counter: u64,
    /// Length of the plaintext payload.
    pub payload_len: usize,
}

impl TransportRepr {
    /// Parses a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &TransportPacket<T>) -> Result<Self> {
        Ok(TransportRepr {
            receiver_index: p.receiver_index(),
            counter: p.counter(),
            payload_len: p.buffer.as_ref().len() - TRANSPORT_OVERHEAD,
        })
    }
    /// Length of the whole message.
    pub const fn buffer_len(&self) -> usize {
        self.payload_len + TRANSPORT_OVERHEAD
    }
    /// Writes the header (the payload and tag are sealed in place by the session).
    pub fn emit(&self, buf: &mut [u8]) {
        TransportPacket::new_unchecked(buf).set_header(self.receiver_index, self.counter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let repr = TransportRepr {
            receiver_index: 0xdead_beef,
            counter: 1 << 40,
            payload_len: 3,
        };
        let mut buf = [0u8; 3 + TRANSPORT_OVERHEAD];
        repr.emit(&mut buf);
        let p = TransportPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(TransportRepr::parse(&p).unwrap(), repr);
        assert_eq!(p.sealed().len(), 3 + TAG_LEN);
        assert_eq!(TransportPacket::new_checked(&buf[..31]).unwrap_err(), Error::Truncated);
    }
}
