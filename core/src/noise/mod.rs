//! The handshake: Noise IKpsk2 in WireGuard's construction, with this
//! project's own protocol label, and its denial-of-service defences.
//!
//! This module owns the handshake state machines ([`handshake`]), the static
//! key material both ends precompute ([`LocalKeys`], [`RemoteKeys`]), MAC1,
//! MAC2 and cookies ([`Admission`], [`CookieJar`]) and TAI64N timestamps.
//! It does not decide when to handshake (that is [`crate::session`]) and
//! never reads a clock or an RNG of its own.

mod cookie;
pub mod handshake;
mod keys;
mod timestamp;

pub use cookie::{Admission, CookieJar, Refusal, COOKIE_LIFETIME, DEFAULT_LOAD_THRESHOLD};
pub use handshake::{
    consume_initiation, create_initiation, HalfInitiation, InitiatorState, Opened, ResponderState, TransportKeys,
};
#[cfg(feature = "x25519-count")]
pub use keys::x25519_count;
pub use keys::{LocalKeys, RemoteKeys};
pub use timestamp::Tai64N;

use core::fmt;

/// The Noise protocol name. The primitives are WireGuard's.
pub const CONSTRUCTION: &[u8] = b"Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
/// This project's protocol identifier, mixed into every handshake, so a
/// WireGuard peer and a Kairos mesh node can never complete one by accident.
pub const IDENTIFIER: &[u8] = b"kairos-mesh v1 handshake";
/// Label of the MAC1 key.
pub const LABEL_MAC1: &[u8] = b"mac1----";
/// Label of the cookie key.
pub const LABEL_COOKIE: &[u8] = b"cookie--";

/// Why a handshake message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// An AEAD in the message did not open: a wrong network token, a message
    /// meant for another node, or tampering.
    Decrypt,
    /// A public key is of low order (an attack or garbage).
    LowOrderKey,
    /// The initiator's static key is not the peer this was checked against.
    UnknownPeer,
    /// A response or cookie reply names an index with no pending handshake.
    UnknownIndex,
    /// A cookie reply arrived with no handshake message outstanding.
    UnexpectedCookie,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::Decrypt => "handshake did not authenticate (wrong token or tampered)",
            HandshakeError::LowOrderKey => "low-order public key",
            HandshakeError::UnknownPeer => "initiator is not the expected peer",
            HandshakeError::UnknownIndex => "no pending handshake with that index",
            HandshakeError::UnexpectedCookie => "cookie reply without a pending handshake",
        })
    }
}

impl core::error::Error for HandshakeError {}
