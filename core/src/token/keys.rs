//! [`NetworkKeys`]: everything the mesh uses that comes from a token's secret,
//! and [`NetworkId`], the public name of a network.
//!
//! The network secret itself never goes on the wire and is used for nothing
//! but this derivation. Each key is `KDF1(secret, label)` (the WireGuard HKDF
//! over HMAC-BLAKE2s, [`crate::crypto::kdf1`]) with its own label, so knowing
//! one derived value (the public network id, say) tells nothing about the
//! others. Changing a label changes every network: the known-answer test at
//! the bottom of this file pins them.

use core::fmt;

use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::crypto::kdf1;

/// Label of [`NetworkKeys::psk`].
const LABEL_PSK: &[u8] = b"kairos-mesh v1 noise psk";
/// Label of [`NetworkKeys::mac_key`].
const LABEL_MAC: &[u8] = b"kairos-mesh v1 mac1 key";
/// Label of [`NetworkKeys::beacon_key`].
const LABEL_BEACON: &[u8] = b"kairos-mesh v1 lan beacon key";
/// Label of [`NetworkKeys::network_id`].
const LABEL_NETWORK_ID: &[u8] = b"kairos-mesh v1 network id";

/// The keys of one network, derived from its token's 32-byte secret.
///
/// Zeroized on drop; `Debug` shows only the public [`NetworkId`].
#[derive(Clone)]
#[non_exhaustive]
pub struct NetworkKeys {
    /// The Noise IKpsk2 pre-shared key: only token holders complete a handshake.
    pub psk: [u8; 32],
    /// Mixed into MAC1, so a non-member cannot produce a handshake that a
    /// member spends a Diffie-Hellman on.
    pub mac_key: [u8; 32],
    /// Seals LAN discovery beacons, so they say nothing to non-members.
    pub beacon_key: [u8; 32],
    /// The public identifier of the network (printable, loggable).
    pub network_id: NetworkId,
}

impl NetworkKeys {
    /// Derives every key from a network secret.
    pub fn derive(secret: &[u8; 32]) -> NetworkKeys {
        let mut id = kdf1(secret, LABEL_NETWORK_ID);
        let mut network_id = [0u8; 16];
        network_id.copy_from_slice(&id[..16]);
        id.zeroize();
        NetworkKeys {
            psk: kdf1(secret, LABEL_PSK),
            mac_key: kdf1(secret, LABEL_MAC),
            beacon_key: kdf1(secret, LABEL_BEACON),
            network_id: NetworkId(network_id),
        }
    }
}

impl Drop for NetworkKeys {
    fn drop(&mut self) {
        self.psk.zeroize();
        self.mac_key.zeroize();
        self.beacon_key.zeroize();
    }
}

impl ZeroizeOnDrop for NetworkKeys {}

impl fmt::Debug for NetworkKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkKeys")
            .field("network_id", &self.network_id)
            .field("psk", &"<redacted>")
            .field("mac_key", &"<redacted>")
            .field("beacon_key", &"<redacted>")
            .finish()
    }
}

/// The public identifier of a network: 16 bytes derived from its secret,
/// printed as 32 lowercase hex digits.
///
/// Not to be confused with the Kairos config's `network_id` (a cluster name
/// such as `"kairos"`), which selects one of several clusters sharing a network.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetworkId(pub [u8; 16]);

impl NetworkId {
    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::ToString;

    fn secret() -> [u8; 32] {
        core::array::from_fn(|i| i as u8)
    }

    #[test]
    fn keys_are_distinct() {
        let k = NetworkKeys::derive(&secret());
        let parts: [&[u8]; 5] = [&k.psk, &k.mac_key, &k.beacon_key, &k.network_id.0, &secret()];
        for (i, a) in parts.iter().enumerate() {
            for b in &parts[i + 1..] {
                assert_ne!(&a[..16], &b[..16], "two derived values share bytes");
            }
        }
    }

    #[test]
    fn keys_are_stable_and_depend_on_the_secret() {
        let a = NetworkKeys::derive(&secret());
        let b = NetworkKeys::derive(&secret());
        assert_eq!(
            (a.psk, a.mac_key, a.beacon_key, a.network_id),
            (b.psk, b.mac_key, b.beacon_key, b.network_id)
        );
        let mut other = secret();
        other[31] ^= 1;
        let c = NetworkKeys::derive(&other);
        assert_ne!(a.psk, c.psk);
        assert_ne!(a.mac_key, c.mac_key);
        assert_ne!(a.beacon_key, c.beacon_key);
        assert_ne!(a.network_id, c.network_id);
    }

    /// Known answers for the secret 00 01 .. 1f, computed independently
    /// (Python: hmac + hashlib.blake2s, HKDF as in WireGuard). If this fails, every
    /// existing network changes identity and keys: only ever update it with a
    /// new token version.
    #[test]
    fn known_answer() {
        let k = NetworkKeys::derive(&secret());
        assert_eq!(
            hex::encode(k.psk),
            "76b7d7d8e3e8905e7680bb9050c7df651cb201150c1e86cd6d9df56987ad1d15"
        );
        assert_eq!(
            hex::encode(k.mac_key),
            "3613b2ba5a587fa3fc9cb152e5d60e6893ec4602e4bf982f6508a5c9f03cda7d"
        );
        assert_eq!(
            hex::encode(k.beacon_key),
            "567923ebedae26a6f8876d668c928891dad0a2611e16ea185dfe1402e1d8c927"
        );
        assert_eq!(k.network_id.to_string(), "445a064b13d5562ba3507873594177d6");
    }

    #[test]
    fn debug_redacts_secrets() {
        let k = NetworkKeys::derive(&[0xab; 32]);
        let dbg = format!("{k:?}");
        assert!(dbg.contains("<redacted>"));
        assert!(dbg.contains(&k.network_id.to_string()));
        for key in [k.psk, k.mac_key, k.beacon_key] {
            assert!(!dbg.contains(&hex::encode(&key[..4])), "{dbg}");
        }
        assert_eq!(
            format!("{:?}", NetworkId([0x0f; 16])),
            format!("NetworkId({})", "0f".repeat(16))
        );
    }
}
