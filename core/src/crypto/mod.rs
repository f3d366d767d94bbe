//! The cryptographic primitives of the mesh, and the provider seam for the
//! transport AEAD.
//!
//! This module owns the Noise/WireGuard building blocks (`HASH`, `MAC`,
//! `HMAC`, `KDF_n` over BLAKE2s; ChaCha20-Poly1305 with a 64-bit counter
//! nonce; XChaCha20-Poly1305 for cookies; X25519) and the [`CryptoProvider`]
//! trait that lets a host swap in a faster transport AEAD (the `ring`
//! feature) while every no_std target keeps the pure-Rust default.
//!
//! It never allocates and never reads randomness itself: callers pass keys
//! and nonces in. Handshake-time primitives are always RustCrypto (they run a
//! few times per two minutes per peer); only the per-packet AEAD is behind the
//! provider.

mod primitives;
#[cfg(feature = "ring")]
mod ring;
mod rustcrypto;

#[cfg(feature = "ring")]
pub use self::ring::{RingCompactKey, RingCompactProvider, RingKey, RingProvider};
pub use primitives::{aead_open, aead_seal, hash, hmac, kdf1, kdf2, kdf3, mac, xaead_open, xaead_seal, Hasher};
pub use rustcrypto::{RustCryptoKey, RustCryptoProvider};

use core::fmt;

/// Length of a Poly1305 authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of a symmetric key, a hash, and an X25519 key.
pub const KEY_LEN: usize = 32;

/// An AEAD open failed: the ciphertext or its tag was not produced by the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenError;

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("authentication tag mismatch")
    }
}

impl core::error::Error for OpenError {}

/// A ChaCha20-Poly1305 key ready for the packet path.
///
/// The nonce is always 32 zero bits followed by the little-endian `counter`,
/// as in WireGuard. Both operations work in place on the caller's buffer.
pub trait AeadKey {
    /// Encrypts `buf` in place and returns the tag.
    fn seal_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN];
    /// Decrypts `buf` in place if `tag` authenticates it; on failure the
    /// contents of `buf` are unspecified.
    fn open_in_place(&self, counter: u64, aad: &[u8], buf: &mut [u8], tag: &[u8; TAG_LEN]) -> Result<(), OpenError>;
}

/// Where transport keys come from (as in rustls, a small trait the host picks
/// an implementation of).
///
/// [`RustCryptoProvider`] builds for any target; [`RingProvider`] (feature
/// `ring`) uses ring's assembly and is about 3.5x faster on x86_64.
pub trait CryptoProvider {
    /// The expanded key type kept by a session for its lifetime.
    type Key: AeadKey;
    /// Expands a 32-byte key.
    fn aead_key(key: &[u8; KEY_LEN]) -> Self::Key;
}

/// The provider the host uses when nothing else is chosen: ring when the
/// `ring` feature is on, otherwise RustCrypto.
#[cfg(feature = "ring")]
pub type DefaultProvider = RingProvider;
/// The provider the host uses when nothing else is chosen: ring when the
/// `ring` feature is on, otherwise RustCrypto.
#[cfg(not(feature = "ring"))]
pub type DefaultProvider = RustCryptoProvider;

#[inline]
pub(crate) fn counter_nonce(counter: u64) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    nonce[4..].copy_from_slice(&counter.to_le_bytes());
    nonce
}
