//! The static key material of both ends of a handshake, precomputed once.
//!
//! [`LocalKeys`] is the local node's side: its static X25519 key, the
//! network's PSK and MAC key, and the hashes a responder needs for every
//! initiation. [`RemoteKeys`] is one peer's side as the local node sees it,
//! including the precomputed static-static Diffie-Hellman, so a handshake
//! costs the X25519 operations it must and no more.

use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::{HandshakeError, CONSTRUCTION, IDENTIFIER, LABEL_COOKIE, LABEL_MAC1};
use crate::crypto::hash;
use crate::identity::Identity;
use crate::token::NetworkKeys;

/// The local node's handshake keys. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct LocalKeys {
    pub(crate) secret: StaticSecret,
    pub(crate) public: [u8; 32],
    /// The node's Ed25519 public key, sent inside every handshake.
    pub(crate) signing_public: [u8; 32],
    pub(crate) psk: [u8; 32],
    /// The network's MAC key, mixed into every MAC1 key.
    pub(crate) mac_key: [u8; 32],
    /// `HASH(LABEL_MAC1 || mac_key || public)`: checks MAC1 on messages to us.
    pub(crate) mac1_key: [u8; 32],
    /// `HASH(LABEL_COOKIE || public)`: seals our cookie replies.
    pub(crate) cookie_key: [u8; 32],
    /// The chaining key and hash after the pre-message `s_r` (our own key).
    pub(crate) initial_chaining_key: [u8; 32],
    pub(crate) initial_hash: [u8; 32],
}

impl LocalKeys {
    /// Precomputes the local keys from the node's identity and the network keys.
    pub fn new(identity: &Identity, network: &NetworkKeys) -> Self {
        let secret = identity.static_secret().clone();
        let public = *identity.static_public();
        let (initial_chaining_key, initial_hash) = initial_state(&public);
        LocalKeys {
            secret,
            public,
            signing_public: identity.public().signing_key,
            psk: network.psk,
            mac_key: network.mac_key,
            mac1_key: mac1_key(&network.mac_key, &public),
            cookie_key: hash(&[LABEL_COOKIE, &public]),
            initial_chaining_key,
            initial_hash,
        }
    }

    /// The local static public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }
}

/// One peer's handshake keys, as the local node sees it. Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct RemoteKeys {
    pub(crate) public: [u8; 32],
    /// `DH(local static, remote static)`, computed once.
    pub(crate) static_static: [u8; 32],
    /// MAC1 key for messages we send to this peer.
    pub(crate) mac1_key: [u8; 32],
    /// Opens cookie replies from this peer.
    pub(crate) cookie_key: [u8; 32],
    pub(crate) initial_chaining_key: [u8; 32],
    pub(crate) initial_hash: [u8; 32],
}

impl RemoteKeys {
    /// Precomputes a peer's keys. Fails for a low-order public key, with which
    /// no handshake could be authenticated.
    pub fn new(local: &LocalKeys, remote_public: &[u8; 32]) -> Result<Self, HandshakeError> {
        let static_static = dh(&local.secret, remote_public)?;
        let (initial_chaining_key, initial_hash) = initial_state(remote_public);
        Ok(RemoteKeys {
            public: *remote_public,
            static_static,
            mac1_key: mac1_key(&local.mac_key, remote_public),
            cookie_key: hash(&[LABEL_COOKIE, remote_public]),
            initial_chaining_key,
            initial_hash,
        })
    }

    /// The peer's static public key.
    pub fn public(&self) -> &[u8; 32] {
        &self.public
    }
}

fn mac1_key(network_mac_key: &[u8; 32], responder: &[u8; 32]) -> [u8; 32] {
    hash(&[LABEL_MAC1, network_mac_key, responder])
}

/// `C = HASH(CONSTRUCTION)`, `H = HASH(HASH(C || IDENTIFIER) || s_r)`.
fn initial_state(responder: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let c = hash(&[CONSTRUCTION]);
    let h = hash(&[&c, IDENTIFIER]);
    (c, hash(&[&h, responder]))
}

/// X25519, refusing results that a low-order point forces to zero.
pub(crate) fn dh(secret: &StaticSecret, public: &[u8; 32]) -> Result<[u8; 32], HandshakeError> {
    #[cfg(feature = "x25519-count")]
    x25519_count::VARIABLE_BASE.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    let shared = secret.diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(HandshakeError::LowOrderKey);
    }
    Ok(shared.to_bytes())
}

/// The public key of `secret`: X25519 of the base point (with
/// x25519-dalek's precomputed tables, a fraction of a [`dh`]).
pub(crate) fn public_key(secret: &StaticSecret) -> [u8; 32] {
    #[cfg(feature = "x25519-count")]
    x25519_count::FIXED_BASE.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    PublicKey::from(secret).to_bytes()
}

/// Counters of the X25519 operations the handshake code did, for the
/// handshake benchmark (feature `x25519-count`, off in every build but the
/// core's own tests and benchmarks: process-wide atomics).
#[cfg(feature = "x25519-count")]
pub mod x25519_count {
    use core::sync::atomic::{AtomicU64, Ordering};

    pub(crate) static VARIABLE_BASE: AtomicU64 = AtomicU64::new(0);
    pub(crate) static FIXED_BASE: AtomicU64 = AtomicU64::new(0);

    /// X25519 operations done so far in this process.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct X25519Ops {
        /// Diffie-Hellman with a peer's point (static or ephemeral).
        pub variable_base: u64,
        /// Public keys of fresh ephemeral secrets (the base point).
        pub fixed_base: u64,
    }

    /// The counts so far.
    pub fn read() -> X25519Ops {
        X25519Ops {
            variable_base: VARIABLE_BASE.load(Ordering::Relaxed),
            fixed_base: FIXED_BASE.load(Ordering::Relaxed),
        }
    }
}
