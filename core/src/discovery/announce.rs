//! Announcements: how a node tells others on its LAN or at a bootstrap
//! endpoint who it is, so they can start the IK handshake (which needs the
//! responder's static key).
//!
//! ```text
//!  0  type (5 beacon, 6 hello, 7 hello reply), 3 reserved zero bytes
//!  4  nonce (24, random)
//! 28  XChaCha20-Poly1305(beacon key, nonce, aad = bytes 0..4):
//!       static key (32) | signing key (32) | TAI64N timestamp (12) | port (2, BE) | flags (2)
//! 124 end
//! ```
//! The beacon key is derived from the network token, so a non-member can
//! neither read an announcement (it learns no key, no port, no member) nor
//! forge one. The timestamp lets a receiver ignore replays: it keeps the
//! newest timestamp per sender, so a sender makes each of its
//! announcements strictly newer than the last, even within one whitened
//! interval (`Local::announce_timestamp`). `port` is the sender's mesh UDP port (a
//! multicast beacon may leave from another socket).
//!
//! This module owns the format and its sealing. It never decides when to
//! announce (that is [`crate::node`]).

use core::fmt;

use crate::crypto::{xaead_open, xaead_seal, TAG_LEN};
use crate::identity::PublicIdentity;
use crate::noise::Tai64N;
use crate::wire::{self, MessageType};

/// Length of every announcement.
pub const ANNOUNCE_LEN: usize = 4 + 24 + PLAIN_LEN + TAG_LEN;
const PLAIN_LEN: usize = 32 + 32 + 12 + 2 + 2;

/// What an announcement asks of the receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceKind {
    /// A periodic LAN multicast beacon: no answer expected.
    Beacon,
    /// A unicast hello to a bootstrap endpoint: answer with a hello reply.
    Hello,
    /// The answer to a hello.
    HelloReply,
}

impl AnnounceKind {
    fn message_type(self) -> MessageType {
        match self {
            AnnounceKind::Beacon => MessageType::Beacon,
            AnnounceKind::Hello => MessageType::Hello,
            AnnounceKind::HelloReply => MessageType::HelloReply,
        }
    }
}

/// An announcement that did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceError {
    /// Not a well-formed announcement.
    Malformed(wire::Error),
    /// Sealed with another key: another network, or forged.
    Decrypt,
}

impl fmt::Display for AnnounceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AnnounceError::Malformed(e) => write!(f, "malformed announcement: {e}"),
            AnnounceError::Decrypt => f.write_str("announcement from another network (or forged)"),
        }
    }
}

impl core::error::Error for AnnounceError {}

/// An announcement, opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnnounceRepr {
    /// Beacon, hello or hello reply.
    pub kind: AnnounceKind,
    /// The sender's public keys.
    pub identity: PublicIdentity,
    /// When it was sent, by the sender's clock.
    pub timestamp: Tai64N,
    /// The sender's mesh UDP port.
    pub port: u16,
}

impl AnnounceRepr {
    /// Seals the announcement into `out[..ANNOUNCE_LEN]` and returns the length.
    pub fn seal(&self, beacon_key: &[u8; 32], nonce: &[u8; 24], out: &mut [u8]) -> usize {
        let out = &mut out[..ANNOUNCE_LEN];
        out[..4].copy_from_slice(&[self.kind.message_type() as u8, 0, 0, 0]);
        out[4..28].copy_from_slice(nonce);
        let mut plain = [0u8; PLAIN_LEN];
        plain[..32].copy_from_slice(&self.identity.static_key);
        plain[32..64].copy_from_slice(&self.identity.signing_key);
        plain[64..76].copy_from_slice(&self.timestamp.0);
        plain[76..78].copy_from_slice(&self.port.to_be_bytes());
        let (header, rest) = out.split_at_mut(28);
        xaead_seal(beacon_key, nonce, &header[..4], &plain, rest);
        ANNOUNCE_LEN
    }

    /// Opens an announcement sealed with `beacon_key`.
    pub fn open(beacon_key: &[u8; 32], datagram: &[u8]) -> Result<Self, AnnounceError> {
        let kind = match MessageType::of(datagram).map_err(AnnounceError::Malformed)? {
            MessageType::Beacon => AnnounceKind::Beacon,
            MessageType::Hello => AnnounceKind::Hello,
            MessageType::HelloReply => AnnounceKind::HelloReply,
            _ => return Err(AnnounceError::Malformed(wire::Error::UnknownType(datagram[0]))),
        };
        match datagram.len() {
            n if n < ANNOUNCE_LEN => return Err(AnnounceError::Malformed(wire::Error::Truncated)),
            n if n > ANNOUNCE_LEN => return Err(AnnounceError::Malformed(wire::Error::TooLong)),
            _ => {}
        }
        let nonce: [u8; 24] = wire::array(datagram, 4);
        let mut plain = [0u8; PLAIN_LEN];
        xaead_open(beacon_key, &nonce, &datagram[..4], &datagram[28..], &mut plain)
            .map_err(|_| AnnounceError::Decrypt)?;
        Ok(AnnounceRepr {
            kind,
            identity: PublicIdentity {
                static_key: wire::array(&plain, 0),
                signing_key: wire::array(&plain, 32),
            },
            timestamp: Tai64N(wire::array(&plain, 64)),
            port: u16::from_be_bytes([plain[76], plain[77]]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::time::Duration;

    fn sample(kind: AnnounceKind) -> AnnounceRepr {
        AnnounceRepr {
            kind,
            identity: Identity::from_bytes(&[3; 64]).public(),
            timestamp: Tai64N::from_unix(Duration::from_secs(1_800_000_000)),
            port: 51820,
        }
    }

    #[test]
    fn round_trip_each_kind() {
        for kind in [AnnounceKind::Beacon, AnnounceKind::Hello, AnnounceKind::HelloReply] {
            let a = sample(kind);
            let mut buf = [0u8; ANNOUNCE_LEN];
            assert_eq!(a.seal(&[7; 32], &[1; 24], &mut buf), ANNOUNCE_LEN);
            assert_eq!(AnnounceRepr::open(&[7; 32], &buf), Ok(a));
        }
    }

    #[test]
    fn other_networks_and_tampering_learn_nothing() {
        let mut buf = [0u8; ANNOUNCE_LEN];
        sample(AnnounceKind::Beacon).seal(&[7; 32], &[1; 24], &mut buf);
        assert_eq!(AnnounceRepr::open(&[8; 32], &buf), Err(AnnounceError::Decrypt));
        // No plaintext key material on the wire.
        let key = Identity::from_bytes(&[3; 64]).public().static_key;
        assert!(!buf.windows(8).any(|w| w == &key[..8]));
        for i in 0..ANNOUNCE_LEN {
            let mut bad = buf;
            bad[i] ^= 0x20;
            assert!(AnnounceRepr::open(&[7; 32], &bad).is_err(), "byte {i}");
        }
        // The type byte is authenticated: a beacon cannot be replayed as a hello.
        let mut as_hello = buf;
        as_hello[0] = MessageType::Hello as u8;
        assert_eq!(AnnounceRepr::open(&[7; 32], &as_hello), Err(AnnounceError::Decrypt));
        for n in 0..ANNOUNCE_LEN {
            assert!(AnnounceRepr::open(&[7; 32], &buf[..n]).is_err());
        }
    }
}
