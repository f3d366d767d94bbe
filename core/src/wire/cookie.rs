//! The cookie reply (WireGuard's layout, 64 bytes).
//!
//! ```text
//!  0  type=3, 3 reserved
//!  4  receiver index (LE u32): the index of the message it answers
//!  8  nonce (24)
//! 32  XAEAD(cookie) (16+16)
//! ```

use super::{array, read_u32, Error, MessageType, Result};

/// Length of a cookie reply.
pub const COOKIE_REPLY_LEN: usize = 64;

/// A read view of a cookie reply.
#[derive(Debug, Clone)]
pub struct CookieReplyPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> CookieReplyPacket<T> {
    /// Wraps a buffer, checking type and exact length.
    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        if MessageType::of(b)? != MessageType::CookieReply {
            return Err(Error::UnknownType(b[0]));
        }
        match b.len() {
            n if n < COOKIE_REPLY_LEN => Err(Error::Truncated),
            n if n > COOKIE_REPLY_LEN => Err(Error::TooLong),
            _ => Ok(CookieReplyPacket { buffer }),
        }
    }
    /// The index of the handshake message this answers.
    pub fn receiver_index(&self) -> u32 {
        read_u32(self.buffer.as_ref(), 4)
    }
    /// The XChaCha20 nonce.
    pub fn nonce(&self) -> [u8; 24] {
        array(self.buffer.as_ref(), 8)
    }
    /// The sealed cookie.
    pub fn encrypted_cookie(&self) -> &[u8] {
        &self.buffer.as_ref()[32..64]
    }
}

/// A cookie reply, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieReplyRepr {
    /// The index of the handshake message this answers.
    pub receiver_index: u32,
    /// The XChaCha20 nonce.
    pub nonce: [u8; 24],
    /// XAEAD of the cookie, keyed by the responder's public key, with the
    /// answered message's MAC1 as associated data.
    pub encrypted_cookie: [u8; 32],
}

impl CookieReplyRepr {
    /// Parses a checked packet.
    pub fn parse<T: AsRef<[u8]>>(p: &CookieReplyPacket<T>) -> Result<Self> {
        Ok(CookieReplyRepr {
            receiver_index: p.receiver_index(),
            nonce: p.nonce(),
            encrypted_cookie: array(p.buffer.as_ref(), 32),
        })
    }
    /// The bytes `emit` writes.
    pub const fn buffer_len(&self) -> usize {
        COOKIE_REPLY_LEN
    }
    /// Writes the message into the first [`COOKIE_REPLY_LEN`] bytes of `buf`.
    pub fn emit(&self, buf: &mut [u8]) {
        let b = &mut buf[..COOKIE_REPLY_LEN];
        b[..4].copy_from_slice(&MessageType::CookieReply.header());
        b[4..8].copy_from_slice(&self.receiver_index.to_le_bytes());
        b[8..32].copy_from_slice(&self.nonce);
        b[32..64].copy_from_slice(&self.encrypted_cookie);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let repr = CookieReplyRepr {
            receiver_index: 5,
            nonce: [1; 24],
            encrypted_cookie: [2; 32],
        };
        let mut buf = [0u8; COOKIE_REPLY_LEN];
        repr.emit(&mut buf);
        let p = CookieReplyPacket::new_checked(&buf[..]).unwrap();
        assert_eq!(CookieReplyRepr::parse(&p).unwrap(), repr);
        assert_eq!(
            CookieReplyPacket::new_checked(&buf[..63]).unwrap_err(),
            Error::Truncated
        );
    }
}
