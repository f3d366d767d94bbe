//! A node's long-term identity: its static X25519 key (the Noise handshake)
//! and its Ed25519 signing key (ledger entries), and the printable node id.
//!
//! This module owns key generation (from a caller-supplied RNG), the
//! 64-byte persisted form, and [`NodeId`]. It never touches storage: the host
//! writes [`Identity::to_bytes`] to its state dir with mode 0600.

use core::fmt;

use ed25519_dalek::{SigningKey, VerifyingKey};
use rand_core::{CryptoRng, RngCore};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::crypto::hash;

/// Length of [`Identity::to_bytes`].
pub const IDENTITY_LEN: usize = 64;

/// A node's secret keys. Zeroized on drop (both key types zeroize).
pub struct Identity {
    static_secret: StaticSecret,
    static_public: PublicKey,
    signing: SigningKey,
}

/// The public half of an [`Identity`], as other nodes know it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicIdentity {
    /// The X25519 key the handshake authenticates.
    pub static_key: [u8; 32],
    /// The Ed25519 key that signs the node's ledger entries.
    pub signing_key: [u8; 32],
}

impl Identity {
    /// Generates a fresh identity.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut bytes = Zeroizing::new([0u8; IDENTITY_LEN]);
        rng.fill_bytes(&mut bytes[..]);
        Self::from_bytes(&bytes)
    }

    /// Rebuilds an identity from its persisted form (X25519 secret, then the
    /// Ed25519 seed). Every 64-byte string is a valid identity.
    pub fn from_bytes(bytes: &[u8; IDENTITY_LEN]) -> Self {
        let mut x = Zeroizing::new([0u8; 32]);
        x.copy_from_slice(&bytes[..32]);
        let mut e = Zeroizing::new([0u8; 32]);
        e.copy_from_slice(&bytes[32..]);
        let static_secret = StaticSecret::from(*x);
        let static_public = PublicKey::from(&static_secret);
        Identity {
            static_secret,
            static_public,
            signing: SigningKey::from_bytes(&e),
        }
    }

    /// The persisted form. Keep it secret (mode 0600).
    pub fn to_bytes(&self) -> Zeroizing<[u8; IDENTITY_LEN]> {
        let mut out = Zeroizing::new([0u8; IDENTITY_LEN]);
        out[..32].copy_from_slice(self.static_secret.as_bytes());
        out[32..].copy_from_slice(self.signing.as_bytes());
        out
    }

    /// The public keys.
    pub fn public(&self) -> PublicIdentity {
        PublicIdentity {
            static_key: self.static_public.to_bytes(),
            signing_key: self.signing.verifying_key().to_bytes(),
        }
    }

    /// The node id, derived from both public keys.
    pub fn node_id(&self) -> NodeId {
        self.public().node_id()
    }

    /// The static X25519 secret (for the handshake).
    pub(crate) fn static_secret(&self) -> &StaticSecret {
        &self.static_secret
    }

    /// The static X25519 public key.
    pub fn static_public(&self) -> &[u8; 32] {
        self.static_public.as_bytes()
    }

    /// The Ed25519 signing key (for ledger entries).
    pub fn signing_key(&self) -> &SigningKey {
        &self.signing
    }

    /// The Ed25519 verifying key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("node_id", &self.node_id())
            .finish_non_exhaustive()
    }
}

impl PublicIdentity {
    /// The node id of these keys.
    pub fn node_id(&self) -> NodeId {
        NodeId::of(self)
    }
}

impl fmt::Debug for PublicIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicIdentity({})", self.node_id())
    }
}

/// A node's printable, stable identifier: the first 16 bytes of
/// `BLAKE2s("kairos node id" || static public key || signing public key)`.
///
/// Both keys are bound into the id, so a member cannot pair someone else's
/// static key with its own signing key (or the reverse) under their id.
///
/// Printed as 26 lowercase base32 characters (RFC 4648 alphabet, no
/// padding), short enough for logs and tables and case-insensitive to type.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 16]);

const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

impl NodeId {
    /// The id of the node with these public keys.
    pub fn of(public: &PublicIdentity) -> Self {
        let h = hash(&[b"kairos node id", &public.static_key, &public.signing_key]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&h[..16]);
        NodeId(id)
    }

    /// Writes the 26-character base32 form into `out`.
    pub fn encode(&self, out: &mut [u8; 26]) {
        let mut acc: u32 = 0;
        let mut bits = 0;
        let mut n = 0;
        for &b in &self.0 {
            acc = (acc << 8) | b as u32;
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                out[n] = BASE32[((acc >> bits) & 31) as usize];
                n += 1;
            }
        }
        if bits > 0 {
            out[n] = BASE32[((acc << (5 - bits)) & 31) as usize];
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = [0u8; 26];
        self.encode(&mut s);
        // The alphabet is ASCII.
        f.write_str(core::str::from_utf8(&s).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;
    use std::string::ToString;

    #[test]
    fn round_trips_through_bytes() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let id = Identity::generate(&mut rng);
        let again = Identity::from_bytes(&id.to_bytes());
        assert_eq!(id.public(), again.public());
        assert_eq!(id.node_id(), again.node_id());
        let other = Identity::generate(&mut rng);
        assert_ne!(id.node_id(), other.node_id());
        // Swapping either key changes the id.
        let mut mixed = id.public();
        mixed.signing_key = other.public().signing_key;
        assert_ne!(mixed.node_id(), id.node_id());
        assert_ne!(mixed.node_id(), other.node_id());
    }

    #[test]
    fn node_id_is_base32_of_26_chars() {
        let id = NodeId([0xff; 16]);
        assert_eq!(id.to_string(), "77777777777777777777777774");
        let id = NodeId([0; 16]);
        assert_eq!(id.to_string(), "aaaaaaaaaaaaaaaaaaaaaaaaaa");
    }

    #[test]
    fn x25519_rfc7748_vector() {
        // RFC 7748 section 6.1 (Alice's and Bob's keys and shared secret).
        let a: [u8; 32] = hex::decode("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
            .unwrap()
            .try_into()
            .unwrap();
        let b_pub: [u8; 32] = hex::decode("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
            .unwrap()
            .try_into()
            .unwrap();
        let mut bytes = [0u8; 64];
        bytes[..32].copy_from_slice(&a);
        let alice = Identity::from_bytes(&bytes);
        assert_eq!(
            hex::encode(alice.static_public()),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        let shared = alice.static_secret().diffie_hellman(&PublicKey::from(b_pub));
        assert_eq!(
            hex::encode(shared.as_bytes()),
            "4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742"
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let id = Identity::from_bytes(&[7u8; 64]);
        let s = std::format!("{id:?}");
        assert!(s.contains("node_id"));
        assert!(!s.contains("07, 07"));
    }
}
