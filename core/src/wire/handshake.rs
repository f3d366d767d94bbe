//! Handshake initiation and response messages: WireGuard's layout, except
//! that each handshake payload also carries the sender's Ed25519 signing key,
//! so both ends learn each other's whole identity (and node id) in the one
//! round trip.
//!
//! ```text
//! initiation (180 bytes)                     response (124 bytes)
//!   0  type=1, 3 reserved                      0  type=2, 3 reserved
//!   4  sender index (LE u32)                   4  sender index
//!   8  ephemeral public key (32)               8  receiver index
//!  40  AEAD(static key) (32+16)               12  ephemeral public key (32)
//!  88  AEAD(TAI64N || signing key) (44+16)    44  AEAD(signing key) (32+16)
//! 148  mac1 (16)                              92  mac1 (16)
//! 164  mac2 (16)                             108  mac2 (16)
//! ```
//! MAC1 covers every byte before it; MAC2 every byte before it (MAC1 included).

use super::{array, read_u32, Error, MessageType, Result, MAC_LEN};

/// Length of a handshake initiation.
pub const INITIATION_LEN: usize = 180;
/// Length of a handshake response.
pub const RESPONSE_LEN: usize = 124;

mod init_field {
    use core::ops::Range;
    pub const SENDER: Range<usize> = 4..8;
    pub const EPHEMERAL: Range<usize> = 8..40;
    pub const STATIC: Range<usize> = 40..88;
    pub const PAYLOAD: Range<usize> = 88..148;
    pub const MAC1: usize = 148;
    pub const MAC2: usize = 164;
}

mod resp_field {
    use core::ops::Range;
    pub const SENDER: Range<usize> = 4..8;
    pub const RECEIVER: Range<usize> = 8..12;
    pub const EPHEMERAL: Range<usize> = 12..44;
    pub const PAYLOAD: Range<usize> = 44..92;
    pub const MAC1: usize = 92;
    pub const MAC2: usize = 108;
}

fn check(buf: &[u8], ty: MessageType, len: usize) -> Result<()> {
    if MessageType::of(buf)? != ty {
        return Err(Error::UnknownType(buf[0]));
    }
    match buf.len() {
        n if n < len => Err(Error::Truncated),
        n if n > len => Err(Error::TooLong),
        _ => Ok(()),
    }
}

/// A read/write view of a handshake initiation.
#[derive(Debug, Clone)]
pub struct InitiationPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> InitiationPacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        InitiationPacket { buffer }
    }
    /// Wraps a buffer, checking type and exact length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check(buffer.as_ref(), MessageType::Initiation, INITIATION_LEN)?;
        Ok(InitiationPacket { buffer })
    }
    /// The initiator's session index.
    pub fn sender_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), init_field::SENDER.start)
    }
    /// The initiator's ephemeral public key.
    pub fn ephemeral(&self) -> [u8; 32] {
        array(self.buffer.as_ref(), init_field::EPHEMERAL.start)
    }
    /// The sealed static public key of the initiator.
    pub fn encrypted_static(&self) -> &[u8] {
        &self.buffer.as_ref()[init_field::STATIC]
    }
    /// The sealed payload: TAI64N timestamp and signing key.
    pub fn encrypted_payload(&self) -> &[u8] {
        &self.buffer.as_ref()[init_field::PAYLOAD]
    }
    /// MAC1.
    pub fn mac1(&self) -> [u8; MAC_LEN] {
        array(self.buffer.as_ref(), init_field::MAC1)
    }
    /// MAC2.
    pub fn mac2(&self) -> [u8; MAC_LEN] {
        array(self.buffer.as_ref(), init_field::MAC2)
    }
    /// The bytes MAC1 covers.
    pub fn mac1_input(&self) -> &[u8] {
        &self.buffer.as_ref()[..init_field::MAC1]
    }
    /// The bytes MAC2 covers.
    pub fn mac2_input(&self) -> &[u8] {
        &self.buffer.as_ref()[..init_field::MAC2]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> InitiationPacket<T> {
    /// Sets MAC1.
    pub fn set_mac1(&mut self, mac: &[u8; MAC_LEN]) {
        self.buffer.as_mut()[init_field::MAC1..init_field::MAC1 + MAC_LEN].copy_from_slice(mac);
    }
    /// Sets MAC2.
    pub fn set_mac2(&mut self, mac: &[u8; MAC_LEN]) {
        self.buffer.as_mut()[init_field::MAC2..init_field::MAC2 + MAC_LEN].copy_from_slice(mac);
    }
}

/// A handshake initiation, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitiationRepr {
    /// The initiator's session index.
    pub sender_index: u32,
    /// The initiator's ephemeral public key.
    pub ephemeral: [u8; 32],
    /// AEAD of the initiator's static public key.
    pub encrypted_static: [u8; 48],
    /// AEAD of the TAI64N timestamp and the initiator's signing key.
    pub encrypted_payload: [u8; 60],
    /// MAC1.
    pub mac1: [u8; MAC_LEN],
    /// MAC2 (zero when no cookie is held).
    pub mac2: [u8; MAC_LEN],
}

impl InitiationRepr {
    /// Parses a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &InitiationPacket<T>) -> Result<Self> {
        let b = p.buffer.as_ref();
        check(b, MessageType::Initiation, INITIATION_LEN)?;
        Ok(InitiationRepr {
            sender_index: p.sender_index(),
            ephemeral: p.ephemeral(),
            encrypted_static: array(b, init_field::STATIC.start),
            encrypted_payload: array(b, init_field::PAYLOAD.start),
            mac1: p.mac1(),
            mac2: p.mac2(),
        })
    }
    /// The bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        INITIATION_LEN
    }
    /// Writes the message into the first [`INITIATION_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..INITIATION_LEN];
        b[..4].copy_from_slice(&MessageType::Initiation.header());
        b[init_field::SENDER].copy_from_slice(&self.sender_index.to_le_bytes());
        b[init_field::EPHEMERAL].copy_from_slice(&self.ephemeral);
        b[init_field::STATIC].copy_from_slice(&self.encrypted_static);
        b[init_field::PAYLOAD].copy_from_slice(&self.encrypted_payload);
        b[init_field::MAC1..init_field::MAC1 + MAC_LEN].copy_from_slice(&self.mac1);
        b[init_field::MAC2..init_field::MAC2 + MAC_LEN].copy_from_slice(&self.mac2);
    }
}

/// A read/write view of a handshake response.
#[derive(Debug, Clone)]
pub struct ResponsePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ResponsePacket<T> {
    /// Wraps a buffer without checks.
    pub const fn new_unchecked(buffer: T) -> Self {
        ResponsePacket { buffer }
    }
    /// Wraps a buffer, checking type and exact length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        check(buffer.as_ref(), MessageType::Response, RESPONSE_LEN)?;
        Ok(ResponsePacket { buffer })
    }
    /// The responder's session index.
    pub fn sender_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), resp_field::SENDER.start)
    }
    /// The initiator's session index this answers.
    pub fn receiver_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), resp_field::RECEIVER.start)
    }
    /// The responder's ephemeral public key.
    pub fn ephemeral(&self) -> [u8; 32] {
        array(self.buffer.as_ref(), resp_field::EPHEMERAL.start)
    }
    /// The sealed payload: the responder's signing key.
    pub fn encrypted_payload(&self) -> &[u8] {
        &self.buffer.as_ref()[resp_field::PAYLOAD]
    }
    /// MAC1.
    pub fn mac1(&self) -> [u8; MAC_LEN] {
        array(self.buffer.as_ref(), resp_field::MAC1)
    }
    /// MAC2.
    pub fn mac2(&self) -> [u8; MAC_LEN] {
        array(self.buffer.as_ref(), resp_field::MAC2)
    }
    /// The bytes MAC1 covers.
    pub fn mac1_input(&self) -> &[u8] {
        &self.buffer.as_ref()[..resp_field::MAC1]
    }
    /// The bytes MAC2 covers.
    pub fn mac2_input(&self) -> &[u8] {
        &self.buffer.as_ref()[..resp_field::MAC2]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ResponsePacket<T> {
    /// Sets MAC1.
    pub fn set_mac1(&mut self, mac: &[u8; MAC_LEN]) {
        self.buffer.as_mut()[resp_field::MAC1..resp_field::MAC1 + MAC_LEN].copy_from_slice(mac);
    }
    /// Sets MAC2.
    pub fn set_mac2(&mut self, mac: &[u8; MAC_LEN]) {
        self.buffer.as_mut()[resp_field::MAC2..resp_field::MAC2 + MAC_LEN].copy_from_slice(mac);
    }
}

/// A handshake response, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRepr {
    /// The responder's session index.
    pub sender_index: u32,
    /// The initiator's session index this answers.
    pub receiver_index: u32,
    /// The responder's ephemeral public key.
    pub ephemeral: [u8; 32],
    /// AEAD of the responder's signing key.
    pub encrypted_payload: [u8; 48],
    /// MAC1.
    pub mac1: [u8; MAC_LEN],
    /// MAC2.
    pub mac2: [u8; MAC_LEN],
}

impl ResponseRepr {
    /// Parses a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &ResponsePacket<T>) -> Result<Self> {
        let b = p.buffer.as_ref();
        check(b, MessageType::Response, RESPONSE_LEN)?;
        Ok(ResponseRepr {
            sender_index: p.sender_index(),
            receiver_index: p.receiver_index(),
            ephemeral: p.ephemeral(),
            encrypted_payload: array(b, resp_field::PAYLOAD.start),
            mac1: p.mac1(),
            mac2: p.mac2(),
        })
    }
    /// The bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        RESPONSE_LEN
    }
    /// Writes the message into the first [`RESPONSE_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..RESPONSE_LEN];
        b[..4].copy_from_slice(&MessageType::Response.header());
        b[resp_field::SENDER].copy_from_slice(&self.sender_index.to_le_bytes());
        b[resp_field::RECEIVER].copy_from_slice(&self.receiver_index.to_le_bytes());
        b[resp_field::EPHEMERAL].copy_from_slice(&self.ephemeral);
        b[resp_field::PAYLOAD].copy_from_slice(&self.encrypted_payload);
        b[resp_field::MAC1..resp_field::MAC1 + MAC_LEN].copy_from_slice(&self.mac1);
        b[resp_field::MAC2..resp_field::MAC2 + MAC_LEN].copy_from_slice(&self.mac2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initiation_round_trip() {
        let repr = InitiationRepr {
            sender_index: 0x0102_0304,
            ephemeral: [1; 32],
            encrypted_static: [2; 48],
            encrypted_payload: [3; 60],
            mac1: [4; 16],
            mac2: [5; 16],
        };
        let mut buf = [0u8; INITIATION_LEN];
        repr.emit(&mut buf);
        assert_eq!(&buf[..8], &[1, 0, 0, 0, 4, 3, 2, 1]);
        let p = InitiationPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(InitiationRepr::parse(&p).unwrap(), repr);
        assert_eq!(p.mac1_input().len(), 148);
        assert_eq!(p.mac2_input().len(), 164);
        assert_eq!(
            InitiationPacket::new_checked(&buf[..INITIATION_LEN - 1]).unwrap_err(),
            Error::Truncated
        );
        let mut long = [0u8; INITIATION_LEN + 1];
        long[..INITIATION_LEN].copy_from_slice(&buf);
        assert_eq!(InitiationPacket::new_checked(&long[..]).unwrap_err(), Error::TooLong);
        buf[0] = 2;
        assert_eq!(
            InitiationPacket::new_checked(&buf[..]).unwrap_err(),
            Error::UnknownType(2)
        );
    }

    #[test]
    fn response_round_trip() {
        let repr = ResponseRepr {
            sender_index: 7,
            receiver_index: 9,
            ephemeral: [1; 32],
            encrypted_payload: [2; 48],
            mac1: [4; 16],
            mac2: [5; 16],
        };
        let mut buf = [0u8; RESPONSE_LEN];
        repr.emit(&mut buf);
        let mut p = ResponsePacket::new_checked(&mut buf[..]).unwrap();
        assert_eq!(ResponseRepr::parse(&p).unwrap(), repr);
        p.set_mac2(&[0; 16]);
        assert_eq!(p.mac2(), [0; 16]);
        assert_eq!(
            ResponsePacket::new_checked(&buf[..RESPONSE_LEN - 1]).unwrap_err(),
            Error::Truncated
        );
    }
}
