//! The bytes on the wire, in smoltcp's style: a zero-copy `Packet<T>` view
//! with `new_checked`, accessors and setters, and a `Repr` with
//! `parse` / `emit` / `buffer_len` where a message is built whole.
//!
//! This module owns framing only: lengths, offsets and type codes. It never
//! decrypts or authenticates anything (that is [`crate::noise`] and
//! [`crate::session`]) and never allocates.
//!
//! Every UDP datagram of the mesh starts with a 4-byte header: a type byte
//! and three reserved zero bytes (WireGuard's layout). The encrypted payload
//! of a transport message is either empty (a keepalive), an IP packet
//! (version nibble 4 or 6), or a control envelope ([`control`]), told apart
//! by its first byte; see [`Payload`].

pub mod control;
mod cookie;
mod handshake;
mod transport;

pub use control::{ControlKind, ControlPacket, Features};
pub use cookie::{CookieReplyPacket, CookieReplyRepr, COOKIE_REPLY_LEN};
pub use handshake::{InitiationPacket, InitiationRepr, ResponsePacket, ResponseRepr, INITIATION_LEN, RESPONSE_LEN};
pub use transport::{TransportPacket, TransportRepr, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

use core::fmt;

/// Length of a MAC1 or MAC2 field.
pub const MAC_LEN: usize = 16;

/// A framing error: the bytes are not a well-formed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// Shorter than the message type requires.
    Truncated,
    /// Longer than the message type allows (handshake messages have a fixed size).
    TooLong,
    /// The type byte names no message this version knows.
    UnknownType(u8),
    /// The reserved header bytes are not zero.
    Reserved,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated => f.write_str("message truncated"),
            Error::TooLong => f.write_str("message longer than its type allows"),
            Error::UnknownType(t) => write!(f, "unknown message type {t}"),
            Error::Reserved => f.write_str("reserved header bytes are not zero"),
        }
    }
}

impl core::error::Error for Error {}

/// Framing result.
pub type Result<T> = core::result::Result<T, Error>;

/// The message types of the mesh's UDP datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// Noise handshake initiation.
    Initiation = 1,
    /// Noise handshake response.
    Response = 2,
    /// Cookie reply to a handshake message sent while the responder is under load.
    CookieReply = 3,
    /// Encrypted transport data.
    Transport = 4,
    /// A sealed LAN beacon ([`crate::discovery`]).
    Beacon = 5,
    /// A sealed hello to a bootstrap endpoint.
    Hello = 6,
    /// The sealed answer to a hello.
    HelloReply = 7,
}

impl MessageType {
    /// Reads and checks the 4-byte header of a datagram.
    pub fn of(datagram: &[u8]) -> Result<MessageType> {
        if datagram.len() < 4 {
            return Err(Error::Truncated);
        }
        if datagram[1..4] != [0, 0, 0] {
            return Err(Error::Reserved);
        }
        match datagram[0] {
            1 => Ok(MessageType::Initiation),
            2 => Ok(MessageType::Response),
            3 => Ok(MessageType::CookieReply),
            4 => Ok(MessageType::Transport),
            5 => Ok(MessageType::Beacon),
            6 => Ok(MessageType::Hello),
            7 => Ok(MessageType::HelloReply),
            t => Err(Error::UnknownType(t)),
        }
    }

    fn header(self) -> [u8; 4] {
        [self as u8, 0, 0, 0]
    }
}

/// What a decrypted transport payload carries, told by its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload<'a> {
    /// An empty payload: a keepalive.
    Keepalive,
    /// An IPv4 packet for the overlay.
    Ipv4(&'a [u8]),
    /// An IPv6 packet for the overlay.
    Ipv6(&'a [u8]),
    /// A control envelope (gossip, ledger, hole punching, relay...).
    Control(ControlKind, &'a [u8]),
}

/// The first byte of a payload matches no known payload kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownPayload(pub u8);

impl fmt::Display for UnknownPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown payload kind (first byte {:#04x})", self.0)
    }
}

impl core::error::Error for UnknownPayload {}

impl<'a> Payload<'a> {
    /// Classifies a decrypted payload.
    pub fn classify(buf: &'a [u8]) -> core::result::Result<Payload<'a>, UnknownPayload> {
        let Some(&first) = buf.first() else {
            return Ok(Payload::Keepalive);
        };
        match first >> 4 {
            4 => Ok(Payload::Ipv4(buf)),
            6 => Ok(Payload::Ipv6(buf)),
            _ => match ControlPacket::new_checked(buf) {
                Ok(p) => Ok(Payload::Control(p.kind(), &buf[1..])),
                Err(_) => Err(UnknownPayload(first)),
            },
        }
    }
}

/// Copies `N` bytes at `at` out of `buf` (which the caller has length-checked).
#[inline]
pub(crate) fn array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&buf[at..at + N]);
    a
}

#[inline]
pub(crate) fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(buf, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_is_checked() {
        assert_eq!(MessageType::of(&[4, 0, 0, 0]), Ok(MessageType::Transport));
        assert_eq!(MessageType::of(&[4, 0, 0]), Err(Error::Truncated));
        assert_eq!(MessageType::of(&[4, 0, 1, 0]), Err(Error::Reserved));
        assert_eq!(MessageType::of(&[7, 0, 0, 0]), Ok(MessageType::HelloReply));
        assert_eq!(MessageType::of(&[9, 0, 0, 0]), Err(Error::UnknownType(9)));
        assert_eq!(MessageType::of(&[0, 0, 0, 0]), Err(Error::UnknownType(0)));
    }

    #[test]
    fn payloads_are_classified() {
        assert_eq!(Payload::classify(&[]), Ok(Payload::Keepalive));
        let v4 = [0x45, 0, 0, 20];
        assert_eq!(Payload::classify(&v4), Ok(Payload::Ipv4(&v4)));
        let v6 = [0x60, 0, 0, 0];
        assert_eq!(Payload::classify(&v6), Ok(Payload::Ipv6(&v6)));
        let c = [ControlKind::GOSSIP.0, 1, 2];
        assert_eq!(
            Payload::classify(&c),
            Ok(Payload::Control(ControlKind::GOSSIP, &[1, 2]))
        );
        assert_eq!(Payload::classify(&[0x00]), Err(UnknownPayload(0)));
        assert_eq!(Payload::classify(&[0xff]), Err(UnknownPayload(0xff)));
    }
}
