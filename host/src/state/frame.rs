//! The on-disk frame of every state file: a small header (magic, format
//! version, kind, payload length, checksum) in front of the payload, so a
//! torn write, a truncated copy or flipped bits are detected when the file
//! is read instead of being taken for data.
//!
//! ```text
//!  0..4   magic "KMSF" (kairos mesh state file)
//!  4      format version (1)
//!  5      kind: 1 identity, 2 blob
//!  6..8   reserved, zero
//!  8..12  payload length, u32 big-endian
//! 12..28  checksum: the first 16 bytes of
//!         BLAKE2s-256("kairos-mesh state v1" || bytes 0..12 || payload)
//! 28..    payload
//! ```
//!
//! This module encodes and checks frames; it never touches files.

use std::fmt;

use kairos_core::crypto::hash;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 28;
/// Largest payload a frame may carry (64 MiB).
pub const MAX_PAYLOAD: usize = 64 * 1024 * 1024;

const MAGIC: &[u8; 4] = b"KMSF";
const VERSION: u8 = 1;
const CHECKSUM_LEN: usize = 16;
const DOMAIN: &[u8] = b"kairos-mesh state v1";

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The node's identity keys.
    Identity = 1,
    /// An opaque blob (address claim, ledger snapshot, ...).
    Blob = 2,
}

/// Why a file is not a valid frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Shorter than its header or than the length in its header says: an
    /// interrupted copy or a full disk.
    Truncated {
        /// Bytes present.
        found: usize,
        /// Bytes needed.
        needed: usize,
    },
    /// Longer than the length in its header says.
    TrailingBytes {
        /// Bytes present.
        found: usize,
        /// Bytes expected.
        expected: usize,
    },
    /// Does not start with the magic: not a state file of this program.
    NotAStateFile,
    /// A format version this build does not read (written by a newer release?).
    UnsupportedVersion(u8),
    /// A frame of another kind (e.g. a blob copied over the identity file).
    WrongKind,
    /// The header's length exceeds [`MAX_PAYLOAD`].
    TooLarge(u32),
    /// The checksum does not match: the content was damaged.
    ChecksumMismatch,
    /// The frame is sound but its payload has a length its kind never has
    /// (found by the reader of that kind, not by [`decode`]).
    UnexpectedLength {
        /// Payload bytes present.
        found: usize,
        /// Payload bytes the kind has.
        expected: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FrameError::Truncated { found, needed } => {
                write!(
                    f,
                    "truncated: {found} bytes, expected {needed} (an interrupted copy or a full disk?)"
                )
            }
            FrameError::TrailingBytes { found, expected } => {
                write!(f, "{found} bytes where {expected} were expected (extra data appended?)")
            }
            FrameError::NotAStateFile => f.write_str("not a kairos-mesh state file (wrong magic bytes)"),
            FrameError::UnsupportedVersion(v) => {
                write!(f, "format version {v} is not supported (written by a newer release?)")
            }
            FrameError::WrongKind => f.write_str("holds another kind of state (copied over by mistake?)"),
            FrameError::TooLarge(n) => write!(f, "claims a {n}-byte payload, more than any state file holds"),
            FrameError::ChecksumMismatch => f.write_str("checksum does not match: the content is damaged"),
            FrameError::UnexpectedLength { found, expected } => {
                write!(f, "holds {found} bytes where {expected} are expected")
            }
        }
    }
}

impl std::error::Error for FrameError {}

fn checksum(header: &[u8], payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let full = hash(&[DOMAIN, header, payload]);
    let mut out = [0u8; CHECKSUM_LEN];
    out.copy_from_slice(&full[..CHECKSUM_LEN]);
    out
}

/// Frames `payload` (at most [`MAX_PAYLOAD`] bytes).
pub fn encode(kind: Kind, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() <= MAX_PAYLOAD, "state payload too large");
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    let sum = checksum(&out, payload);
    out.extend_from_slice(&sum);
    out.extend_from_slice(payload);
    out
}

/// Checks a frame of `kind` and returns its payload.
pub fn decode(kind: Kind, bytes: &[u8]) -> Result<&[u8], FrameError> {
    // A prefix of the magic (including nothing at all) is a truncated frame.
    if !bytes.starts_with(MAGIC) && !MAGIC.starts_with(bytes) {
        return Err(FrameError::NotAStateFile);
    }
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::Truncated {
            found: bytes.len(),
            needed: HEADER_LEN,
        });
    }
    if bytes[4] != VERSION {
        return Err(FrameError::UnsupportedVersion(bytes[4]));
    }
    if bytes[5] != kind as u8 {
        return Err(FrameError::WrongKind);
    }
    let len = u32::from_be_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::TooLarge(len));
    }
    let expected = HEADER_LEN + len as usize;
    if bytes.len() < expected {
        return Err(FrameError::Truncated {
            found: bytes.len(),
            needed: expected,
        });
    }
    if bytes.len() > expected {
        return Err(FrameError::TrailingBytes {
            found: bytes.len(),
            expected,
        });
    }
    let payload = &bytes[HEADER_LEN..];
    if checksum(&bytes[..12], payload) != bytes[12..HEADER_LEN] {
        return Err(FrameError::ChecksumMismatch);
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for payload in [&b""[..], b"x", &[7u8; 1000]] {
            let f = encode(Kind::Blob, payload);
            assert_eq!(f.len(), HEADER_LEN + payload.len());
            assert_eq!(decode(Kind::Blob, &f), Ok(payload));
        }
    }

    #[test]
    fn every_flipped_bit_is_detected() {
        let f = encode(Kind::Identity, b"sixty-four bytes of keys, more or less");
        for i in 0..f.len() * 8 {
            let mut g = f.clone();
            g[i / 8] ^= 1 << (i % 8);
            assert!(decode(Kind::Identity, &g).is_err(), "bit {i}");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let f = encode(Kind::Blob, b"payload");
        for n in 0..f.len() {
            let e = decode(Kind::Blob, &f[..n]).unwrap_err();
            assert!(
                matches!(e, FrameError::Truncated { found, .. } if found == n),
                "{n}: {e:?}"
            );
        }
    }

    #[test]
    fn names_the_problem() {
        let f = encode(Kind::Blob, b"payload");
        let mut longer = f.clone();
        longer.push(0);
        assert!(matches!(
            decode(Kind::Blob, &longer),
            Err(FrameError::TrailingBytes { .. })
        ));
        assert_eq!(decode(Kind::Identity, &f), Err(FrameError::WrongKind));
        assert_eq!(decode(Kind::Blob, b"{\"json\": true}"), Err(FrameError::NotAStateFile));
        let mut newer = f.clone();
        newer[4] = 9;
        assert_eq!(decode(Kind::Blob, &newer), Err(FrameError::UnsupportedVersion(9)));
        let mut damaged = f;
        *damaged.last_mut().unwrap() ^= 0x55;
        let e = decode(Kind::Blob, &damaged).unwrap_err();
        assert_eq!(e, FrameError::ChecksumMismatch);
        assert!(e.to_string().contains("damaged"));
    }
}
