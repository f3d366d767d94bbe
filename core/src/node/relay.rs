//! Relaying: reaching a member that no direct path reaches (a symmetric
//! NAT on both sides, say) through a third member both have a session with,
//! still end-to-end encrypted, and moving back to a direct path when one
//! appears.
//!
//! ```text
//! A ──[A-R session: RELAY   | B's id | A-B datagram]──► R
//! R ──[R-B session: RELAYED | A's id | A-B datagram]──► B
//! ```
//! The inner datagram is whatever A's tunnel to B produced (handshake or
//! transport), so R forwards bytes it cannot read. R rewrites the kind and
//! id in place (same size) and reseals for B: no copy.
//!
//! A member's traffic goes through a relay (`Member::via`) once a direct
//! handshake has gone unanswered for [`RELAY_AFTER`]. While relayed, each
//! side probes the member's published endpoints directly every
//! [`UPGRADE_INTERVAL`] (`PATH_PROBE`, sealed in the session); a probe that
//! arrives directly is answered directly (`PATH_PROBE_REPLY`), and a reply
//! that arrives directly proves the path both ways: the member goes direct.
//! The probes of both sides also open their NATs' filters for each other,
//! which is how cone NATs get punched without a coordinator.

use core::net::SocketAddr;

use rand_core::{CryptoRng, RngCore};

use super::{Destination, MemberSlot, Node, Route, Transmit, TunnelSlot};
use crate::crypto::CryptoProvider;
use crate::identity::NodeId;
use crate::ledger::{Ledger, SignatureVerifier};
use crate::session::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::{ControlKind, TRANSPORT_HEADER_LEN};

/// How often the relay checks walk the sessions (at most).
pub const RELAY_TICK: Duration = Duration::from_millis(250);
/// Bytes a relay envelope adds in front of the inner datagram: the outer
/// transport header, the kind byte and a node id.
pub const RELAY_HEADROOM: usize = TRANSPORT_HEADER_LEN + 1 + 16;
/// How long a direct handshake may go unanswered before relaying.
pub const RELAY_AFTER: Duration = Duration::from_secs(2);
/// How often a relayed member's direct endpoints are probed.
pub const UPGRADE_INTERVAL: Duration = Duration::from_secs(10);

impl<P, R, V, S, T, L, W, const E: usize, const A: usize, const Q: usize, const H: usize, const F: usize>
    Node<P, R, V, S, T, L, W, E, A, Q, H, F>
where
    P: CryptoProvider,
    R: RngCore + CryptoRng,
    V: SignatureVerifier,
    S: AsMut<[MemberSlot<P>]> + AsRef<[MemberSlot<P>]>,
    T: AsMut<[TunnelSlot<P>]> + AsRef<[TunnelSlot<P>]>,
    L: AsMut<Ledger<E, A>> + AsRef<Ledger<E, A>>,
    W: AsMut<[crate::election::MemberView]>,
{
    /// Wraps the inner datagram at `out[RELAY_HEADROOM..][..inner_len]` for
    /// `dst` and seals it in the session with the relay in slot `via`.
    pub(crate) fn wrap(
        &mut self,
        now: Instant,
        via: u16,
        kind: ControlKind,
        id: &NodeId,
        out: &mut [u8],
        inner_len: usize,
    ) -> Option<Transmit> {
        out[TRANSPORT_HEADER_LEN] = kind.0;
        out[TRANSPORT_HEADER_LEN + 1..RELAY_HEADROOM].copy_from_slice(&id.0);
        let m = self.members.as_mut().get_mut(via as usize)?.as_mut()?;
        let endpoint = m.endpoint?;
        let sealed = super::pooled(self.tunnels.as_mut(), m.tunnel)?
            .encapsulate(now, out, 1 + 16 + inner_len)
            .ok()?
            .len();
        self.after_tunnel_activity(now, via);
        Some(Transmit {
            destination: Destination::Unicast(endpoint),
            len: sealed,
        })
    }

    /// Sends what the outbox holds for `route`: the datagram is at
    /// `out[RELAY_HEADROOM..][..len]`.
    pub(crate) fn route_out(&mut self, now: Instant, route: Route, out: &mut [u8], len: usize) -> Option<Transmit> {
        match route {
            Route::Direct(destination) => {
                out.copy_within(RELAY_HEADROOM..RELAY_HEADROOM + len, 0);
                Some(Transmit { destination, len })
            }
            Route::Relay { via, dst } => self.wrap(now, via, ControlKind::RELAY, &dst, out, len),
        }
    }

    /// A member we relay for: forward the inner datagram (at
    /// `buf[RELAY_HEADROOM..][..inner_len]`) from the member in `from` to the
    /// member named in the envelope, in place. Returns where to send it.
    pub(crate) fn forward(
        &mut self,
        now: Instant,
        from: u16,
        buf: &mut [u8],
        inner_len: usize,
    ) -> Result<(SocketAddr, usize), DropReason> {
        let dst = NodeId(crate::wire::array(buf, TRANSPORT_HEADER_LEN + 1));
        let src = self.members.as_ref()[from as usize]
            .as_ref()
            .ok_or(DropReason::UnknownIndex)?
            .id;
        let to = self.find(&dst).ok_or(DropReason::NoRoute)?;
        let (up, relayed) = self.members.as_ref()[to as usize]
            .as_ref()
            .map_or((false, false), |m| (m.up, m.via.is_some()));
        if relayed {
            // No chains: this node reaches it only through a relay itself.
            return Err(DropReason::NoRoute);
        }
        if !up {
            // Not in touch with the destination yet: get in touch, and let
            // the sender's retry (its handshake retries every 5 s) find
            // the session up.
            self.connect_on_demand(now, to)?;
            return Err(DropReason::NoSession);
        }
        let t = self
            .wrap(now, to, ControlKind::RELAYED, &src, buf, inner_len)
            .ok_or(DropReason::NoRoute)?;
        let Destination::Unicast(endpoint) = t.destination else {
            return Err(DropReason::NoRoute);
        };
        self.stats.relayed += 1;
        Ok((endpoint, t.len))
    }

    /// Picks a relay for the member in `slot`: a member with a session up,
    /// preferring one we reached as a bootstrap (it is public, and everyone
    /// talks to it).
    pub(crate) fn pick_relay(&self, slot: u16, previous: Option<u16>) -> Option<u16> {
        let mut best: Option<(u8, u16)> = None;
        let mut cursor = self.active_head;
        while let Some(s) = cursor {
            let m = self.members.as_ref()[s as usize].as_ref().expect("active slot");
            cursor = m.next_active;
            if s == slot || !m.up || m.via.is_some() {
                continue;
            }
            // A configured bootstrap first (public, and in touch with
            // everyone: every node keeps its session with its bootstrap),
            // then one that answered a hello; never the relay that just
            // failed.
            let boot = m
                .endpoint
                .is_some_and(|e| self.bootstrap.iter().any(|b| b.endpoint == e));
            let rank = match (Some(s) == previous, boot, m.discovery) {
                (true, _, _) => 3,
                (false, true, _) => 0,
                (false, false, super::Discovery::Hello) => 1,
                (false, false, _) => 2,
            };
            if best.is_none_or(|(r, _)| rank < r) {
                best = Some((rank, s));
            }
        }
        best.map(|(_, s)| s)
    }

    /// Probes every published endpoint of the relayed member in `slot`
    /// directly (`PATH_PROBE` sealed in the session, a fresh nonce), and
    /// the address its last direct datagram came from: a member that has
    /// published none yet (it never heard where others see it: nothing
    /// reached it but handshake responses) would otherwise stay relayed
    /// through a relay that may not reach it either.
    pub(crate) fn probe_direct(&mut self, now: Instant, slot: u16) {
        let nonce = self.rng.next_u64();
        let Some(m) = self.members.as_mut()[slot as usize].as_mut() else {
            return;
        };
        m.next_probe = Some(now + UPGRADE_INTERVAL);
        m.probe_nonce = nonce;
        let mut candidates = m.candidates.clone();
        if let Some(seen) = m.endpoint.filter(|e| !candidates.contains(e)) {
            if candidates.push(seen).is_err() {
                candidates[0] = seen;
            }
        }
        for addr in candidates {
            self.queue(super::sync::Intent::Probe {
                to: slot,
                addr,
                nonce,
                reply: false,
            });
        }
    }

    /// Relays members whose direct handshake went unanswered, and probes the
    /// direct endpoints of relayed members.
    pub(crate) fn relay_timeout(&mut self, now: Instant) {
        // The next handshake to give up on, among those still waiting.
        let mut wake: Option<Instant> = None;
        let mut cursor = self.active_head;
        while let Some(slot) = cursor {
            let (next, wants_relay, wants_probe) = {
                let m = self.members.as_ref()[slot as usize].as_ref().expect("active slot");
                let waited = m
                    .connecting_since
                    .is_some_and(|t| now.saturating_since(t) >= RELAY_AFTER);
                let stuck = !m.up && waited;
                let probe = m.up && m.via.is_some() && m.next_probe.is_none_or(|t| now >= t);
                (m.next_active, stuck, probe)
            };
            cursor = next;
            let waiting = self.members.as_ref()[slot as usize]
                .as_ref()
                .filter(|m| !m.up)
                .and_then(|m| m.connecting_since);
            if let Some(since) = waiting.filter(|_| !wants_relay) {
                let due = since + RELAY_AFTER;
                wake = Some(wake.map_or(due, |w| w.min(due)));
            }
            if wants_relay {
                // First the direct path, then a relay; a relay that does not
                // get through either is replaced by another (or the direct
                // path again) each time RELAY_AFTER passes.
                let current = self.members.as_ref()[slot as usize].as_ref().and_then(|m| m.via);
                if let Some(via) = self.pick_relay(slot, current) {
                    let m = self.members.as_mut()[slot as usize].as_mut().expect("active slot");
                    m.via = Some(via);
                    m.connecting_since = Some(now);
                    if let Some(t) = super::pooled(self.tunnels.as_mut(), m.tunnel) {
                        t.connect_now();
                    }
                    let due = now + RELAY_AFTER;
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                    self.after_tunnel_activity(now, slot);
                }
            }
            if wants_probe {
                // Ask it (through the relay, end to end) to probe us at
                // the same moment, so both NATs open for each other.
                self.queue(super::sync::Intent::Punch { to: slot });
                self.probe_direct(now, slot);
            }
        }
        self.relay_wake = wake;
    }
}
