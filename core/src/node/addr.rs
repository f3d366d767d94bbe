//! Overlay addresses that need no coordination: every member's IPv6 unique
//! local address (RFC 4193), derived from the network id and its node id.
//!
//! ```text
//! fd | global id (40 bits) | subnet 0 (16 bits) | interface id (64 bits)
//!      = BLAKE2s("kairos ula" || network id)[..5]    = node id[..8]
//! ```
//! Two members collide only if their node ids share 64 bits, so the
//! addresses are conflict free by construction; the IPv4 addresses, which
//! are scarce, are claimed through the ledger instead.

use core::net::Ipv6Addr;

use crate::crypto::hash;
use crate::identity::NodeId;
use crate::token::NetworkId;

/// The overlay IPv6 prefix of a network (a /64).
pub fn ula_prefix(network: &NetworkId) -> [u8; 8] {
    let h = hash(&[b"kairos ula", network.as_bytes()]);
    let mut p = [0u8; 8];
    p[0] = 0xfd;
    p[1..6].copy_from_slice(&h[..5]);
    p
}

/// A member's overlay IPv6 address.
pub fn ula(prefix: &[u8; 8], node: &NodeId) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a[..8].copy_from_slice(prefix);
    a[8..].copy_from_slice(&node.0[..8]);
    Ipv6Addr::from(a)
}

/// The interface id of an overlay address, if it is in `prefix`.
pub fn interface_id(prefix: &[u8; 8], addr: &Ipv6Addr) -> Option<u64> {
    let o = addr.octets();
    (o[..8] == prefix[..]).then(|| u64::from_be_bytes(crate::wire::array(&o, 8)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ula_is_in_fd00_8_and_maps_back() {
        let p = ula_prefix(&NetworkId([1; 16]));
        assert_eq!(p[0], 0xfd);
        assert_eq!(&p[6..], &[0, 0], "subnet 0");
        let id = NodeId([0xab; 16]);
        let a = ula(&p, &id);
        assert_eq!(interface_id(&p, &a), Some(0xabab_abab_abab_abab));
        let other = ula_prefix(&NetworkId([2; 16]));
        assert_ne!(p, other);
        assert_eq!(interface_id(&other, &a), None);
    }
}
