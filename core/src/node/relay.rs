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
//! handshake has gone unanswered for [`RELAY_AFTER`]. While relayed, the
//! two sides probe each other's published endpoints directly
//! (`PATH_PROBE`, sealed in the session); a probe that arrives directly is
//! answered directly (`PATH_PROBE_REPLY`), and a reply that arrives
//! directly proves the path both ways: the member goes direct. The probes
//! of both sides also open their NATs' filters for each other, which is
//! how cone NATs get punched without a coordinator.
//!
//! **Timed punches.** The probes must cross: a Linux router (conntrack
//! `masquerade`, most home routers) that gets a probe before its own host
//! has sent anything to the prober keeps an entry for it, and the host's
//! own datagrams to the prober then leave from another port, which the
//! prober's router filters. So the side with the lower node id leads, the
//! way libp2p's DCUtR does: it sends `PUNCH_REQUEST` (step 1) through the
//! relay; the other answers at once with `PUNCH_NOTIFY`; the leader, now
//! knowing the relay path's round trip, sends `PUNCH_REQUEST` (step 2)
//! and probes half a round trip later, when step 2 arrives and the other
//! probes. Before the timed attempts come [`PUNCH_QUICK_TRIES`] quick ones
//! from both sides, 10 s apart, as soon as the pair is relayed: each side
//! probes and asks the other to probe at once. They get most pairs direct
//! within seconds, on lossy links too. Then the gaps are [`PUNCH_QUIET`],
//! longer than conntrack keeps an unanswered entry (any direct datagram in
//! between would keep the routers' entries alive), and later grow to
//! [`PUNCH_GAP_MAX`] ([`punch_gap`]). An older node answers any `PUNCH_REQUEST` by
//! probing at once and never sends `PUNCH_NOTIFY`; the leader then probes
//! after [`PUNCH_REPLY_WAIT`].

use core::net::SocketAddr;

use rand_core::{CryptoRng, RngCore};

use super::{Destination, MemberSlot, Node, Route, Transmit, TunnelPool};
use crate::crypto::CryptoProvider;
use crate::identity::NodeId;
use crate::ledger::{Ledger, SignatureVerifier};
use crate::session::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::{ControlKind, TRANSPORT_HEADER_LEN};

/// How often the relay checks walk the sessions (at most).
pub const RELAY_TICK: Duration = Duration::from_millis(250);
/// How soon a member stuck without a member to relay through is looked at
/// again.
const NO_RELAY_RETRY: Duration = Duration::from_secs(1);
/// Bytes a relay envelope adds in front of the inner datagram: the outer
/// transport header, the kind byte and a node id.
pub const RELAY_HEADROOM: usize = TRANSPORT_HEADER_LEN + 1 + 16;
/// How long a direct handshake may go unanswered before relaying.
pub const RELAY_AFTER: Duration = Duration::from_secs(2);
/// How long a probe nonce stays the one a reply must carry.
pub const UPGRADE_INTERVAL: Duration = Duration::from_secs(10);
/// The wait before a timed punch attempt: longer than Linux conntrack
/// keeps an entry nobody answered (`nf_conntrack_udp_timeout`, 30 s), plus
/// the two sides' quick attempts being up to [`UPGRADE_INTERVAL`] apart.
pub const PUNCH_QUIET: Duration = Duration::from_secs(45);
/// The longest wait between punch attempts.
pub const PUNCH_GAP_MAX: Duration = Duration::from_secs(280);
/// How long the leader waits for `PUNCH_NOTIFY` before probing anyway.
pub const PUNCH_REPLY_WAIT: Duration = Duration::from_secs(2);
/// Quick punch attempts, [`UPGRADE_INTERVAL`] apart, that both sides make
/// (each probes and asks the other to probe at once) before the timed
/// ones: they get most pairs direct within seconds, on lossy links too,
/// but between two Linux routers they keep the stray entries alive.
pub const PUNCH_QUICK_TRIES: u16 = 4;

/// The wait after punch attempt `tries` (0 for the first) before the next:
/// [`UPGRADE_INTERVAL`] between the quick ones, then [`PUNCH_QUIET`] three
/// times, then twice as long each time up to [`PUNCH_GAP_MAX`].
pub fn punch_gap(tries: u16) -> Duration {
    let quick = PUNCH_QUICK_TRIES - 1;
    match tries {
        t if t < quick => UPGRADE_INTERVAL,
        t if t < quick + 3 => PUNCH_QUIET,
        t => {
            let doublings = u32::from(t - quick - 2).min(4);
            (PUNCH_QUIET * (1 << doublings)).min(PUNCH_GAP_MAX)
        }
    }
}

impl<P, R, V, S, T, L, W, const E: usize, const A: usize, const Q: usize, const H: usize, const F: usize>
    Node<P, R, V, S, T, L, W, E, A, Q, H, F>
where
    P: CryptoProvider,
    R: RngCore + CryptoRng,
    V: SignatureVerifier,
    S: AsMut<[MemberSlot<P>]> + AsRef<[MemberSlot<P>]>,
    T: TunnelPool<P>,
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
        let sealed = super::pooled(&mut self.tunnels, m.tunnel)?
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
            // Say so, so the sender picks another relay; and since that
            // may be loss that ate a handshake, try the direct path now.
            let refusal = super::sync::Intent::RelayRefused { to: from, dst };
            let queued = self
                .sync
                .intents
                .iter()
                .any(|i| matches!(i, super::sync::Intent::RelayRefused { to, dst: d } if *to == from && *d == dst));
            if !queued {
                self.queue(refusal);
            }
            self.probe_hinted(now, to);
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

    /// The relay in `relay` cannot reach member `dst` (`RELAY_REFUSED`):
    /// if it is our relay to `dst`, move to another (the refusing one is
    /// picked last, so two bad relays are tried in turn) and probe the
    /// direct path.
    pub(crate) fn relay_refused(&mut self, now: Instant, relay: u16, dst: &NodeId) {
        let Some(slot) = self.find(dst) else { return };
        let ours = self.members.as_ref()[slot as usize]
            .as_ref()
            .is_some_and(|m| m.via == Some(relay));
        if !ours {
            return;
        }
        if let Some(next) = self.pick_relay(slot, Some(relay)).filter(|&r| r != relay) {
            let m = self.members.as_mut()[slot as usize].as_mut().expect("found slot");
            m.via = Some(next);
            let (up, id) = (m.up, m.id);
            if up {
                self.push_event(super::Event::PathChanged(id));
            }
            self.mark_pending(slot);
        }
        self.probe_hinted(now, slot);
    }

    /// Probes the relayed member in `slot` directly outside its punch
    /// schedule (which stays as it was), once between two scheduled
    /// attempts of either side and never during a timed punch: something
    /// hinted that the direct path may work, or is needed.
    pub(crate) fn probe_hinted(&mut self, now: Instant, slot: u16) {
        let Some(m) = self.members.as_mut()[slot as usize].as_mut() else {
            return;
        };
        if !m.up || m.via.is_none() || m.punch != super::member::Punch::Idle || m.hinted {
            return;
        }
        m.hinted = true;
        let planned = m.next_probe;
        self.probe_direct(now, slot);
        self.keep_next_probe(slot, planned);
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
                // Both sides make the quick attempts; the lower id leads
                // the timed ones.
                let probe = m.up && m.via.is_some() && (m.punch_tries < PUNCH_QUICK_TRIES || self.id < m.id);
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
                    if let Some(t) = super::pooled(&mut self.tunnels, m.tunnel) {
                        t.connect_now();
                    }
                    let due = now + RELAY_AFTER;
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                    self.after_tunnel_activity(now, slot);
                } else {
                    // No member to relay through yet: look again in a
                    // second (one may come up meanwhile).
                    let due = now + NO_RELAY_RETRY;
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                }
            }
            if wants_probe {
                if let Some(due) = self.punch_step(now, slot) {
                    wake = Some(wake.map_or(due, |w| w.min(due)));
                }
            }
        }
        self.relay_wake = wake;
    }

    /// Moves the punch this node leads with the relayed member in `slot`
    /// on (see the module docs); returns when it needs to be called again.
    fn punch_step(&mut self, now: Instant, slot: u16) -> Option<Instant> {
        use super::member::Punch;
        let nonce = self.rng.next_u64();
        let m = self.members.as_mut()[slot as usize].as_mut()?;
        let tries = m.punch_tries;
        let at = m.next_probe.unwrap_or(now);
        if m.punch == Punch::Idle && now >= at {
            // A scheduled attempt: a hint may probe once more after it.
            m.hinted = false;
        }
        let (probe, step) = match m.punch {
            Punch::Idle if now < at => return Some(at),
            // A quick attempt: ask it (through the relay, end to end) to
            // probe us, and probe now.
            Punch::Idle if tries < PUNCH_QUICK_TRIES => (true, 0),
            Punch::Idle => {
                m.punch = Punch::Waiting;
                m.next_probe = Some(now);
                m.probe_nonce = nonce;
                (false, 1)
            }
            // No answer: an older node (it probed when asked), or lost.
            Punch::Waiting if now >= at + PUNCH_REPLY_WAIT => (true, u8::MAX),
            Punch::Waiting => return Some(at + PUNCH_REPLY_WAIT),
            Punch::ProbeAt if now >= at => (true, u8::MAX),
            Punch::ProbeAt => return Some(at),
        };
        if step <= 1 {
            m.punch_tries = tries.saturating_add(1);
            self.queue(super::sync::Intent::Punch { to: slot, step, nonce });
        }
        if !probe {
            return Some(now + PUNCH_REPLY_WAIT);
        }
        // Probes out; the next attempt after this one's gap.
        let next = Some(now + punch_gap(self.members.as_ref()[slot as usize].as_ref()?.punch_tries - 1));
        if let Some(m) = self.members.as_mut()[slot as usize].as_mut() {
            m.punch = Punch::Idle;
        }
        self.probe_direct(now, slot);
        self.keep_next_probe(slot, next);
        next
    }

    /// Puts back the attempt's gap that `probe_direct` replaced.
    fn keep_next_probe(&mut self, slot: u16, next: Option<Instant>) {
        if let Some(m) = self.members.as_mut()[slot as usize].as_mut() {
            m.next_probe = next;
        }
    }

    /// The member in `slot` is ready for the timed punch `nonce` we lead:
    /// tell it to probe, and probe when that reaches it, half the round
    /// trip through the relay from now.
    pub(crate) fn punch_ready(&mut self, now: Instant, slot: u16, nonce: u64) {
        use super::member::Punch;
        let Some(m) = self.members.as_mut()[slot as usize].as_mut() else {
            return;
        };
        if m.punch != Punch::Waiting || m.probe_nonce != nonce || !m.up || m.via.is_none() {
            return;
        }
        let sent = m.next_probe.unwrap_or(now);
        let at = now + now.saturating_since(sent) / 2;
        m.punch = Punch::ProbeAt;
        m.next_probe = Some(at);
        self.queue(super::sync::Intent::Punch {
            to: slot,
            step: 2,
            nonce,
        });
        self.relay_wake = Some(self.relay_wake.map_or(at, |w| w.min(at)));
    }
}
