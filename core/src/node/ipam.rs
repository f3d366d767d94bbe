//! Overlay IPv4 address allocation without a server.
//!
//! Every member claims one address of the network's range by writing
//! `addresses/<its node id> = <4 address bytes>` into the ledger (an
//! owner-only bucket, so no one else can move it). A member first tries the
//! address its node id points at (stable across restarts, and spread over
//! the range), then the next free ones. Two members can still claim the same
//! address at the same time (before either saw the other's claim): the
//! conflict is resolved by a rule every member computes alike from the
//! ledger, the **older claim wins** (lower Lamport clock), ties by node id;
//! the loser moves to a free address and says so in an event.
//!
//! This module is the arithmetic and the rule; the node applies them.

use core::net::Ipv4Addr;

use crate::identity::NodeId;
use crate::token::OverlayRange;

/// A claim read from the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The claimed address.
    pub addr: Ipv4Addr,
    /// Who claims it.
    pub owner: NodeId,
    /// The Lamport clock of the claim entry.
    pub clock: u64,
}

impl Claim {
    /// Whether `self` keeps the address against `other` (same address).
    pub fn beats(&self, other: &Claim) -> bool {
        (self.clock, self.owner) < (other.clock, other.owner)
    }
}

/// Usable host addresses of a range: all but the network and broadcast
/// addresses (for prefixes up to /30).
pub fn host_count(range: &OverlayRange) -> u32 {
    match range.prefix_len() {
        32 => 1,
        31 => 2,
        n => (1u32 << (32 - n as u32)) - 2,
    }
}

/// The `n`th usable host address of `range` (`n < host_count`).
pub fn nth_host(range: &OverlayRange, n: u32) -> Ipv4Addr {
    let base = range.network().to_bits();
    let offset = if range.prefix_len() >= 31 { n } else { n + 1 };
    Ipv4Addr::from_bits(base.wrapping_add(offset))
}

/// The index of the address a node prefers: from its id, so it is the same
/// after a restart and spread over the range.
pub fn preferred_index(range: &OverlayRange, id: &NodeId) -> u32 {
    let h = u64::from_be_bytes(crate::wire::array(&id.0, 8));
    (h % host_count(range) as u64) as u32
}

/// The first address from the node's preferred one on that `taken` says is
/// free, or `None` when the range is full.
pub fn choose(range: &OverlayRange, id: &NodeId, mut taken: impl FnMut(Ipv4Addr) -> bool) -> Option<Ipv4Addr> {
    let n = host_count(range);
    let start = preferred_index(range, id);
    (0..n).map(|i| nth_host(range, (start + i) % n)).find(|a| !taken(*a))
}

/// Decodes a claim value (4 address bytes).
pub fn decode(value: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = value.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str) -> OverlayRange {
        s.parse().unwrap()
    }

    #[test]
    fn hosts_skip_network_and_broadcast() {
        let r = range("10.1.0.0/24");
        assert_eq!(host_count(&r), 254);
        assert_eq!(nth_host(&r, 0), Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(nth_host(&r, 253), Ipv4Addr::new(10, 1, 0, 254));
        assert_eq!(host_count(&range("10.0.0.0/31")), 2);
    }

    #[test]
    fn choice_is_stable_and_avoids_taken_addresses() {
        let r = range("10.1.0.0/24");
        let id = NodeId([7; 16]);
        let first = choose(&r, &id, |_| false).unwrap();
        assert_eq!(choose(&r, &id, |_| false), Some(first), "stable");
        let second = choose(&r, &id, |a| a == first).unwrap();
        assert_ne!(first, second);
        assert!(r.contains(second));
        assert_eq!(choose(&r, &id, |_| true), None, "full");
    }

    #[test]
    fn older_claim_wins_then_node_id() {
        let a = Claim {
            addr: Ipv4Addr::new(10, 1, 0, 5),
            owner: NodeId([1; 16]),
            clock: 3,
        };
        let b = Claim {
            owner: NodeId([0; 16]),
            clock: 4,
            ..a
        };
        assert!(a.beats(&b) && !b.beats(&a));
        let c = Claim { clock: 3, ..b };
        assert!(c.beats(&a), "tie on clock: lower node id");
    }
}
