//! Address plans of the simulated network, and the hash map type keyed by
//! addresses.
//!
//! Public addresses come from documentation and shared-space ranges
//! (203.0.113.0/24, then 198.51.100.0/24, then 100.64.0.0/10): they are labels
//! inside the simulation, nothing is ever sent to them. Each LAN behind a NAT
//! has a private [`Subnet`] (by default 10.a.b.0/24, one per LAN); the `.1`
//! address is the NAT's inside address, hosts get `.2` onwards.
//!
//! This module owns address arithmetic. It never decides routes.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::Ipv4Addr;

/// Hands out public IPv4 addresses in a fixed order.
#[derive(Debug, Default)]
pub(crate) struct PublicPool {
    next: u32,
}

impl PublicPool {
    /// The next unused public address.
    ///
    /// # Panics
    /// After 4 million addresses (the end of 100.64.0.0/10).
    pub(crate) fn allocate(&mut self) -> Ipv4Addr {
        let i = self.next;
        self.next += 1;
        match i {
            0..=253 => Ipv4Addr::new(203, 0, 113, 1 + i as u8),
            254..=507 => Ipv4Addr::new(198, 51, 100, 1 + (i - 254) as u8),
            _ => {
                // 100.64.0.0/10 with .0 and .255 of each /24 left out.
                let j = i - 508;
                let (net, host) = (j / 254, j % 254 + 1);
                assert!(net < 1 << 14, "public address space of the simulation exhausted");
                Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + (net << 8) + host)
            }
        }
    }
}

/// A private IPv4 subnet of one LAN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// `addr/prefix`, with the host bits of `addr` cleared.
    ///
    /// # Panics
    /// If `prefix` is not in `8..=30`.
    pub(crate) fn new(addr: Ipv4Addr, prefix: u8) -> Self {
        assert!((8..=30).contains(&prefix), "LAN prefix must be /8 ../30, got /{prefix}");
        let mask = u32::MAX << (32 - prefix);
        Subnet {
            base: u32::from(addr) & mask,
            prefix,
        }
    }

    /// The `n`-th automatic LAN subnet: 10.a.b.0/24 with a.b = n + 1.
    pub(crate) fn auto(n: u32) -> Self {
        let n = n + 1;
        assert!(n < 1 << 16, "more than 65535 automatic LAN subnets");
        Subnet::new(Ipv4Addr::new(10, (n >> 8) as u8, n as u8, 0), 24)
    }

    /// How many hosts fit (network, gateway and broadcast addresses left out).
    pub(crate) fn capacity(&self) -> usize {
        (1usize << (32 - self.prefix)) - 3
    }

    /// The address of the `i`-th host.
    pub(crate) fn host(&self, i: usize) -> Ipv4Addr {
        debug_assert!(i < self.capacity());
        Ipv4Addr::from(self.base + 2 + i as u32)
    }

    /// Which host has `ip`, if `ip` is a host address of this subnet.
    pub(crate) fn index_of(&self, ip: Ipv4Addr) -> Option<usize> {
        let off = u32::from(ip).wrapping_sub(self.base);
        let size = 1u32 << (32 - self.prefix);
        (2..size - 1).contains(&off).then(|| (off - 2) as usize)
    }

    /// Whether `ip` is in this subnet at all.
    pub(crate) fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip).wrapping_sub(self.base) < 1u32 << (32 - self.prefix)
    }
}

/// A hash map with a fast, fixed hash (no per-process random keys). Lookups
/// only: nothing may depend on its iteration order.
pub(crate) type AddrMap<K, V> = HashMap<K, V, BuildHasherDefault<FoldHasher>>;

/// The multiply-and-rotate hash of rustc's `FxHasher`: fast on the small
/// integer keys (addresses, ports) of the simulator's tables.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FoldHasher {
    hash: u64,
}

impl FoldHasher {
    const K: u64 = 0xf135_7aea_2e62_a9c5;

    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = self.hash.wrapping_add(word).wrapping_mul(Self::K);
    }
}

impl Hasher for FoldHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits weak; hashbrown indexes by them.
        self.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_pool_walks_the_documentation_ranges_then_shared_space() {
        let mut p = PublicPool::default();
        let all: Vec<Ipv4Addr> = (0..1000).map(|_| p.allocate()).collect();
        assert_eq!(all[0], Ipv4Addr::new(203, 0, 113, 1));
        assert_eq!(all[253], Ipv4Addr::new(203, 0, 113, 254));
        assert_eq!(all[254], Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(all[508], Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(all[508 + 254], Ipv4Addr::new(100, 64, 1, 1));
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len());
    }

    #[test]
    fn subnet_arithmetic() {
        let s = Subnet::auto(0);
        assert_eq!(s, Subnet::new(Ipv4Addr::new(10, 0, 1, 77), 24));
        assert_eq!(s.capacity(), 253);
        assert_eq!(s.host(0), Ipv4Addr::new(10, 0, 1, 2));
        assert_eq!(s.index_of(Ipv4Addr::new(10, 0, 1, 2)), Some(0));
        assert_eq!(s.index_of(Ipv4Addr::new(10, 0, 1, 254)), Some(252));
        assert_eq!(s.index_of(Ipv4Addr::new(10, 0, 1, 1)), None, "the gateway");
        assert_eq!(s.index_of(Ipv4Addr::new(10, 0, 1, 255)), None, "broadcast");
        assert_eq!(s.index_of(Ipv4Addr::new(10, 0, 2, 2)), None);
        assert!(s.contains(Ipv4Addr::new(10, 0, 1, 1)) && !s.contains(Ipv4Addr::new(10, 0, 0, 255)));
        assert_eq!(Subnet::auto(256), Subnet::new(Ipv4Addr::new(10, 1, 1, 0), 24));
        let big = Subnet::new(Ipv4Addr::new(192, 168, 0, 0), 16);
        assert_eq!(big.host(300), Ipv4Addr::new(192, 168, 1, 46));
        assert_eq!(big.index_of(Ipv4Addr::new(192, 168, 1, 46)), Some(300));
    }

    #[test]
    fn fold_hasher_spreads_ports() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<FoldHasher>::default();
        let mut low: Vec<u64> = (0u16..1024).map(|p| b.hash_one(p) & 1023).collect();
        low.sort_unstable();
        low.dedup();
        assert!(low.len() > 500, "{} distinct low-bit buckets", low.len());
    }
}
