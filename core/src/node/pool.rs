//! [`TunnelPool`]: where a node keeps its members' tunnels.
//!
//! The pool has a fixed number of entries, each free or holding one
//! [`Tunnel`]; a member holds the index of its tunnel's entry. A slice of
//! [`TunnelSlot`]s is a pool (every entry takes a whole tunnel's bytes,
//! used or not: what a device with a few fixed sessions wants); with the
//! `alloc` feature, [`BoxedTunnels`] keeps each tunnel in its own
//! allocation, so an entry without a session costs a pointer (what a host
//! with an entry per member, most of them without a session, wants).
//!
//! This module owns the storage only; which member gets an entry, and
//! which entry makes room for another, is the node's business.

use super::member::TunnelSlot;
use crate::crypto::CryptoProvider;
use crate::session::Tunnel;

/// A fixed number of entries, each free or holding a tunnel.
pub trait TunnelPool<P: CryptoProvider> {
    /// Number of entries.
    fn len(&self) -> usize;

    /// Whether the pool has no entry at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The tunnel in entry `i`, if any.
    fn get(&self, i: usize) -> Option<&Tunnel<P>>;

    /// The tunnel in entry `i`, if any.
    fn get_mut(&mut self, i: usize) -> Option<&mut Tunnel<P>>;

    /// Puts `t` in entry `i` (whatever was there is dropped).
    fn put(&mut self, i: usize, t: Tunnel<P>);

    /// Empties entry `i`, returning its tunnel.
    fn take(&mut self, i: usize) -> Option<Tunnel<P>>;

    /// The first free entry.
    fn free_entry(&self) -> Option<usize> {
        (0..self.len()).find(|&i| self.get(i).is_none())
    }
}

impl<P: CryptoProvider, A: AsMut<[TunnelSlot<P>]> + AsRef<[TunnelSlot<P>]>> TunnelPool<P> for A {
    fn len(&self) -> usize {
        self.as_ref().len()
    }

    fn get(&self, i: usize) -> Option<&Tunnel<P>> {
        self.as_ref().get(i)?.as_ref()
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Tunnel<P>> {
        self.as_mut().get_mut(i)?.as_mut()
    }

    fn put(&mut self, i: usize, t: Tunnel<P>) {
        self.as_mut()[i] = Some(t);
    }

    fn take(&mut self, i: usize) -> Option<Tunnel<P>> {
        self.as_mut().get_mut(i)?.take()
    }

    fn free_entry(&self) -> Option<usize> {
        self.as_ref().iter().position(Option::is_none)
    }
}

/// A pool whose tunnels live in allocations of their own, made when a
/// member gets one and freed when it gives it back: memory follows the
/// sessions, not the member table (a ring tunnel takes about 5.4 KiB; a
/// host's pool has an entry per member slot, up to 4096).
#[cfg(feature = "alloc")]
pub struct BoxedTunnels<P: CryptoProvider> {
    entries: alloc::boxed::Box<[Option<alloc::boxed::Box<Tunnel<P>>>]>,
    /// Every entry below this one is taken.
    free_hint: usize,
}

#[cfg(feature = "alloc")]
impl<P: CryptoProvider> BoxedTunnels<P> {
    /// A pool of `len` free entries.
    pub fn new(len: usize) -> Self {
        BoxedTunnels {
            entries: (0..len).map(|_| None).collect(),
            free_hint: 0,
        }
    }
}

#[cfg(feature = "alloc")]
impl<P: CryptoProvider> TunnelPool<P> for BoxedTunnels<P> {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, i: usize) -> Option<&Tunnel<P>> {
        self.entries.get(i)?.as_deref()
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Tunnel<P>> {
        self.entries.get_mut(i)?.as_deref_mut()
    }

    fn put(&mut self, i: usize, t: Tunnel<P>) {
        match &mut self.entries[i] {
            // Reuse the allocation.
            Some(b) => **b = t,
            e => *e = Some(alloc::boxed::Box::new(t)),
        }
        while self.entries.get(self.free_hint).is_some_and(Option::is_some) {
            self.free_hint += 1;
        }
    }

    fn take(&mut self, i: usize) -> Option<Tunnel<P>> {
        let t = self.entries.get_mut(i)?.take().map(|b| *b);
        if t.is_some() {
            self.free_hint = self.free_hint.min(i);
        }
        t
    }

    fn free_entry(&self) -> Option<usize> {
        (self.free_hint..self.entries.len()).find(|&i| self.entries[i].is_none())
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::crypto::RustCryptoProvider;
    use crate::identity::Identity;
    use crate::session::{Local, Tunnel, TunnelConfig};
    use crate::time::Duration;
    use crate::token::NetworkKeys;

    fn tunnel(seed: u8) -> Tunnel<RustCryptoProvider> {
        let net = NetworkKeys::derive(&[3; 32]);
        let (me, peer) = (Identity::from_bytes(&[1; 64]), Identity::from_bytes(&[2; 64]));
        let local = Local::new(&me, &net, Duration::from_secs(1_800_000_000));
        let config = TunnelConfig {
            index_slot: u32::from(seed),
            persistent_keepalive: None,
        };
        Tunnel::new(&local, &peer.public().static_key, config).unwrap()
    }

    /// The boxed pool and a slice of slots answer alike.
    #[test]
    fn boxed_tunnels_behave_like_a_slice_of_slots() {
        let mut boxed = BoxedTunnels::<RustCryptoProvider>::new(4);
        let mut slots: std::vec::Vec<TunnelSlot<RustCryptoProvider>> = (0..4).map(|_| None).collect();
        for (i, step) in [0usize, 2, 1, 0, 3, 2, 2, 1].into_iter().enumerate() {
            match i % 3 {
                0 | 1 => {
                    let e = boxed.free_entry();
                    assert_eq!(e, slots.free_entry(), "step {i}");
                    if let Some(e) = e {
                        boxed.put(e, tunnel(i as u8));
                        slots.put(e, tunnel(i as u8));
                    }
                }
                _ => {
                    let (a, b) = (boxed.take(step), slots.take(step));
                    assert_eq!(a.is_some(), b.is_some(), "step {i}");
                }
            }
            for e in 0..4 {
                assert_eq!(
                    boxed.get(e).map(|t| t.config().index_slot),
                    slots.get(e).map(|t| t.config().index_slot),
                    "entry {e} after step {i}"
                );
            }
        }
        assert_eq!(boxed.len(), 4);
        assert!(boxed.get_mut(9).is_none() && boxed.take(9).is_none());
    }
}
