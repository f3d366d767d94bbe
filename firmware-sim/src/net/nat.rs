//! NAT boxes: mapping and filtering tables, port allocation, timeouts and
//! hairpinning, in the terms of RFC 4787.
//!
//! A [`NatBox`] sits between one LAN and the internet with one public IPv4
//! address. Outbound datagrams create or refresh a *mapping* (internal
//! address:port -> external port) and a *permission* for the destination;
//! inbound datagrams need a live mapping on their port and, unless filtering
//! is endpoint-independent, a live permission for their source. The four
//! classic kinds ([`NatKind`]) are combinations of a [`MappingBehavior`] and a
//! [`FilteringBehavior`].
//!
//! Mappings and permissions expire `mapping_timeout` after they were last
//! refreshed. Expiry is a pure function of time: an expired entry behaves
//! exactly like a missing one, and stale entries are swept lazily, so the
//! sweep never changes a result.
//!
//! This module owns translation state. It never schedules, delays or counts
//! datagrams: the router asks it to translate and records what it says.

use std::net::{Ipv4Addr, SocketAddrV4};

use kairos_core::time::{Duration, Instant};
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use super::addr::AddrMap;
use super::stats::DropReason;

/// Default lifetime of an idle mapping (RFC 4787 REQ-5: at least 2 minutes).
pub const DEFAULT_MAPPING_TIMEOUT: Duration = Duration::from_secs(120);

/// The classic NAT kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NatKind {
    /// Endpoint-independent mapping and filtering: once a host has sent from
    /// a port, anyone can reach it through the mapping.
    FullCone,
    /// Endpoint-independent mapping, address-dependent filtering: only
    /// addresses the host sent to (any port) get in.
    RestrictedCone,
    /// Endpoint-independent mapping, address-and-port-dependent filtering:
    /// only the exact address:port pairs the host sent to get in.
    PortRestrictedCone,
    /// Address-and-port-dependent mapping (a new external port per
    /// destination) and address-and-port-dependent filtering.
    Symmetric,
    /// A Linux router that NATs with `masquerade` (most home routers):
    /// port-restricted cone as long as ports do not clash, but the state is
    /// conntrack's, one entry per flow ([`NatConfig::conntrack`]).
    LinuxConntrack,
}

/// How a NAT reuses an external port for one internal address:port (RFC 4787
/// section 4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MappingBehavior {
    /// The same external port for every destination.
    EndpointIndependent,
    /// A new external port per destination address.
    AddressDependent,
    /// A new external port per destination address:port.
    AddressAndPortDependent,
}

/// Which inbound datagrams a NAT lets through a live mapping (RFC 4787
/// section 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FilteringBehavior {
    /// From anyone.
    EndpointIndependent,
    /// From addresses the internal host has sent to through this mapping.
    AddressDependent,
    /// From address:port pairs the internal host has sent to through this
    /// mapping.
    AddressAndPortDependent,
}

/// How a NAT picks the external port of a new mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PortAllocation {
    /// The internal source port if it is free, else a random free port.
    Preserve,
    /// A random free port (from the network's seeded RNG).
    Random,
    /// The next free port after the last one handed out (predictable, as in
    /// many symmetric NATs).
    Sequential,
}

/// External ports a NAT hands out (when not preserving a lower one).
const PORT_RANGE: std::ops::RangeInclusive<u16> = 1024..=65535;

/// The behaviour of one NAT box.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct NatConfig {
    /// How mappings are reused across destinations.
    pub mapping: MappingBehavior,
    /// Which inbound datagrams get through.
    pub filtering: FilteringBehavior,
    /// How external ports are chosen. Default [`PortAllocation::Preserve`].
    pub port_allocation: PortAllocation,
    /// How long an idle mapping or permission lives. Default
    /// [`DEFAULT_MAPPING_TIMEOUT`].
    pub mapping_timeout: Duration,
    /// Whether inbound datagrams refresh the mapping and the permission they
    /// used (outbound ones always do). Default false.
    pub refresh_on_inbound: bool,
    /// Whether a datagram from inside to the NAT's own public address is
    /// looped back (translated as if it came from outside, filters
    /// included). Default true (RFC 4787 REQ-9).
    pub hairpin: bool,
    /// Linux conntrack's state instead of one mapping per internal port:
    /// an entry per flow (internal endpoint, remote endpoint) that keeps
    /// the internal port unless that (external port, remote) pair is taken;
    /// and an inbound datagram that matches no flow is not only dropped but
    /// leaves an unreplied entry for its (external port, remote), as the
    /// router's own conntrack does for a datagram to itself. Such an entry
    /// takes the pair, so a host behind the NAT that then sends to that
    /// remote leaves from another port. Entries never answered live
    /// [`UNREPLIED_TIMEOUT`]. Set by [`NatKind::LinuxConntrack`].
    pub conntrack: bool,
}

/// How long a conntrack entry that was never answered lives (Linux's
/// `nf_conntrack_udp_timeout`, 30 s).
pub const UNREPLIED_TIMEOUT: Duration = Duration::from_secs(30);

impl NatConfig {
    /// A NAT of this kind with the defaults.
    pub const fn new(kind: NatKind) -> Self {
        use FilteringBehavior as F;
        use MappingBehavior as M;
        let (mapping, filtering) = match kind {
            NatKind::FullCone => (M::EndpointIndependent, F::EndpointIndependent),
            NatKind::RestrictedCone => (M::EndpointIndependent, F::AddressDependent),
            NatKind::PortRestrictedCone => (M::EndpointIndependent, F::AddressAndPortDependent),
            NatKind::Symmetric => (M::AddressAndPortDependent, F::AddressAndPortDependent),
            NatKind::LinuxConntrack => (M::AddressAndPortDependent, F::AddressAndPortDependent),
        };
        let conntrack = matches!(kind, NatKind::LinuxConntrack);
        NatConfig {
            mapping,
            filtering,
            port_allocation: PortAllocation::Preserve,
            mapping_timeout: DEFAULT_MAPPING_TIMEOUT,
            // conntrack refreshes an entry on every datagram, either way.
            refresh_on_inbound: conntrack,
            hairpin: true,
            conntrack,
        }
    }
    /// With this mapping behaviour.
    pub const fn with_mapping(mut self, m: MappingBehavior) -> Self {
        self.mapping = m;
        self
    }
    /// With this filtering behaviour.
    pub const fn with_filtering(mut self, f: FilteringBehavior) -> Self {
        self.filtering = f;
        self
    }
    /// With this port allocation.
    pub const fn with_port_allocation(mut self, p: PortAllocation) -> Self {
        self.port_allocation = p;
        self
    }
    /// With this mapping timeout.
    pub const fn with_mapping_timeout(mut self, t: Duration) -> Self {
        self.mapping_timeout = t;
        self
    }
    /// With inbound refresh on or off.
    pub const fn with_refresh_on_inbound(mut self, on: bool) -> Self {
        self.refresh_on_inbound = on;
        self
    }
    /// With hairpinning on or off.
    pub const fn with_hairpin(mut self, on: bool) -> Self {
        self.hairpin = on;
        self
    }
}

impl From<NatKind> for NatConfig {
    fn from(kind: NatKind) -> Self {
        NatConfig::new(kind)
    }
}

/// One mapping: an external port bound to an internal endpoint.
#[derive(Debug, Clone, Copy)]
struct Mapping {
    internal: SocketAddrV4,
    /// The destination part of the mapping key (unspecified for EIM).
    dest: SocketAddrV4,
    created: Instant,
    last_active: Instant,
}

/// A conntrack entry of a [`NatConfig::conntrack`] NAT, keyed by (external
/// port, remote endpoint).
#[derive(Debug, Clone, Copy)]
struct Flow {
    /// The host behind the NAT; `None` for an entry left by an inbound
    /// datagram that matched no flow.
    internal: Option<SocketAddrV4>,
    /// Whether datagrams went both ways (then it lives `mapping_timeout`).
    replied: bool,
    last_active: Instant,
}

/// A NAT's translation state.
#[derive(Debug)]
pub(crate) struct NatBox {
    cfg: NatConfig,
    public_ip: Ipv4Addr,
    /// (internal endpoint, destination key) -> external port.
    outbound: AddrMap<(SocketAddrV4, SocketAddrV4), u16>,
    /// External port -> its mapping.
    inbound: AddrMap<u16, Mapping>,
    /// (external port, remote key) -> when the host last sent there.
    permits: AddrMap<(u16, SocketAddrV4), Instant>,
    /// Conntrack NATs: (external port, remote) -> flow.
    flows: AddrMap<(u16, SocketAddrV4), Flow>,
    /// Conntrack NATs: (internal, remote) -> external port.
    flow_ports: AddrMap<(SocketAddrV4, SocketAddrV4), u16>,
    next_sweep: Instant,
    next_port: u16,
}

impl NatBox {
    pub(crate) fn new(cfg: NatConfig, public_ip: Ipv4Addr) -> Self {
        NatBox {
            cfg,
            public_ip,
            outbound: AddrMap::default(),
            inbound: AddrMap::default(),
            permits: AddrMap::default(),
            flows: AddrMap::default(),
            flow_ports: AddrMap::default(),
            next_sweep: Instant::ZERO + cfg.mapping_timeout,
            next_port: *PORT_RANGE.start(),
        }
    }

    pub(crate) fn public_ip(&self) -> Ipv4Addr {
        self.public_ip
    }

    pub(crate) fn config(&self) -> &NatConfig {
        &self.cfg
    }

    fn live(&self, since: Instant, at: Instant) -> bool {
        at < since + self.cfg.mapping_timeout
    }

    /// The destination part of a mapping key.
    fn mapping_key(&self, dst: SocketAddrV4) -> SocketAddrV4 {
        match self.cfg.mapping {
            MappingBehavior::EndpointIndependent => SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
            MappingBehavior::AddressDependent => SocketAddrV4::new(*dst.ip(), 0),
            MappingBehavior::AddressAndPortDependent => dst,
        }
    }

    /// The remote part of a permission key, or `None` when nothing is filtered.
    fn permit_key(&self, remote: SocketAddrV4) -> Option<SocketAddrV4> {
        match self.cfg.filtering {
            FilteringBehavior::EndpointIndependent => None,
            FilteringBehavior::AddressDependent => Some(SocketAddrV4::new(*remote.ip(), 0)),
            FilteringBehavior::AddressAndPortDependent => Some(remote),
        }
    }

    /// The live mapping's port for (src, dst), if any.
    fn live_port(&self, at: Instant, src: SocketAddrV4, dest: SocketAddrV4) -> Option<u16> {
        let port = *self.outbound.get(&(src, dest))?;
        let m = self.inbound.get(&port)?;
        (m.internal == src && m.dest == dest && self.live(m.last_active, at)).then_some(port)
    }

    /// Whether a conntrack flow is alive at `at`.
    fn flow_live(&self, f: &Flow, at: Instant) -> bool {
        let timeout = if f.replied {
            self.cfg.mapping_timeout
        } else {
            UNREPLIED_TIMEOUT
        };
        at < f.last_active + timeout
    }

    /// The live flow on (external port, remote), if any.
    fn live_flow(&self, at: Instant, port: u16, remote: SocketAddrV4) -> Option<Flow> {
        self.flows
            .get(&(port, remote))
            .copied()
            .filter(|f| self.flow_live(f, at))
    }

    /// The external port of the live flow from `src` to `dst`, if any.
    fn flow_port(&self, at: Instant, src: SocketAddrV4, dst: SocketAddrV4) -> Option<u16> {
        let port = *self.flow_ports.get(&(src, dst))?;
        let f = self.live_flow(at, port, dst)?;
        (f.internal == Some(src)).then_some(port)
    }

    /// [`Self::outbound`] of a conntrack NAT: the flow's port, else the
    /// source port if no live entry holds it towards `dst`, else another.
    fn conntrack_outbound(
        &mut self,
        at: Instant,
        rng: &mut ChaCha8Rng,
        src: SocketAddrV4,
        dst: SocketAddrV4,
    ) -> Result<SocketAddrV4, DropReason> {
        let port = match self.flow_port(at, src, dst) {
            Some(p) => p,
            None => {
                let free = |nat: &Self, p: u16| nat.live_flow(at, p, dst).is_none();
                let (lo, hi) = (*PORT_RANGE.start(), *PORT_RANGE.end());
                let span = (hi - lo) as u32 + 1;
                let preferred = src.port();
                let p = if preferred != 0 && free(self, preferred) {
                    Some(preferred)
                } else {
                    (0..16)
                        .map(|_| lo + (rng.next_u32() % span) as u16)
                        .find(|p| free(self, *p))
                        .or_else(|| (lo..=hi).find(|p| free(self, *p)))
                };
                let p = p.ok_or(DropReason::NatPortsExhausted)?;
                self.flow_ports.insert((src, dst), p);
                p
            }
        };
        let replied = self.live_flow(at, port, dst).is_some_and(|f| f.replied);
        self.flows.insert(
            (port, dst),
            Flow {
                internal: Some(src),
                replied,
                last_active: at,
            },
        );
        Ok(SocketAddrV4::new(self.public_ip, port))
    }

    /// [`Self::inbound`] of a conntrack NAT: only a datagram of a live flow
    /// gets in; any other leaves (or refreshes) an unreplied entry.
    fn conntrack_inbound(
        &mut self,
        at: Instant,
        from: SocketAddrV4,
        ext_port: u16,
    ) -> Result<SocketAddrV4, DropReason> {
        match self.live_flow(at, ext_port, from) {
            Some(Flow {
                internal: Some(internal),
                ..
            }) => {
                self.flows.insert(
                    (ext_port, from),
                    Flow {
                        internal: Some(internal),
                        replied: true,
                        last_active: at,
                    },
                );
                Ok(internal)
            }
            stray => {
                let replied = stray.is_some_and(|f| f.replied);
                self.flows.insert(
                    (ext_port, from),
                    Flow {
                        internal: None,
                        replied,
                        last_active: at,
                    },
                );
                Err(DropReason::NatFilter)
            }
        }
    }

    /// Translates a datagram from `src` (inside) to `dst` (outside) at `at`:
    /// the external source address it leaves with.
    pub(crate) fn outbound(
        &mut self,
        at: Instant,
        rng: &mut ChaCha8Rng,
        src: SocketAddrV4,
        dst: SocketAddrV4,
    ) -> Result<SocketAddrV4, DropReason> {
        self.sweep(at);
        if self.cfg.conntrack {
            return self.conntrack_outbound(at, rng, src, dst);
        }
        let dest = self.mapping_key(dst);
        let port = match self.live_port(at, src, dest) {
            Some(p) => p,
            None => {
                let p = self.allocate(at, rng, src.port())?;
                self.outbound.insert((src, dest), p);
                self.inbound.insert(
                    p,
                    Mapping {
                        internal: src,
                        dest,
                        created: at,
                        last_active: at,
                    },
                );
                p
            }
        };
        if let Some(m) = self.inbound.get_mut(&port) {
            m.last_active = at;
        }
        if let Some(remote) = self.permit_key(dst) {
            self.permits.insert((port, remote), at);
        }
        Ok(SocketAddrV4::new(self.public_ip, port))
    }

    /// Translates a datagram from `from` (outside) to external port
    /// `ext_port` at `at`: the internal endpoint it goes to.
    pub(crate) fn inbound(
        &mut self,
        at: Instant,
        from: SocketAddrV4,
        ext_port: u16,
    ) -> Result<SocketAddrV4, DropReason> {
        self.sweep(at);
        if self.cfg.conntrack {
            return self.conntrack_inbound(at, from, ext_port);
        }
        let timeout = self.cfg.mapping_timeout;
        let Some(m) = self
            .inbound
            .get(&ext_port)
            .copied()
            .filter(|m| at < m.last_active + timeout)
        else {
            return Err(DropReason::NoMapping);
        };
        let permit = self.permit_key(from).map(|k| (ext_port, k));
        if let Some(key) = permit {
            let ok = self
                .permits
                .get(&key)
                .is_some_and(|&t| t >= m.created && at < t + timeout);
            if !ok {
                return Err(DropReason::NatFilter);
            }
        }
        if self.cfg.refresh_on_inbound {
            if let Some(m) = self.inbound.get_mut(&ext_port) {
                m.last_active = at;
            }
            if let Some(key) = permit {
                self.permits.insert(key, at);
            }
        }
        Ok(m.internal)
    }

    /// The external address `src` would leave with towards `dst`, if a live
    /// mapping exists (read-only; for tests and assertions).
    pub(crate) fn mapping_for(&self, at: Instant, src: SocketAddrV4, dst: SocketAddrV4) -> Option<SocketAddrV4> {
        if self.cfg.conntrack {
            return self
                .flow_port(at, src, dst)
                .map(|p| SocketAddrV4::new(self.public_ip, p));
        }
        self.live_port(at, src, self.mapping_key(dst))
            .map(|p| SocketAddrV4::new(self.public_ip, p))
    }

    /// Live mappings at `at`.
    pub(crate) fn live_mappings(&self, at: Instant) -> usize {
        if self.cfg.conntrack {
            return self
                .flows
                .values()
                .filter(|f| f.internal.is_some() && self.flow_live(f, at))
                .count();
        }
        self.inbound.values().filter(|m| self.live(m.last_active, at)).count()
    }

    fn port_free(&self, at: Instant, port: u16) -> bool {
        self.inbound.get(&port).is_none_or(|m| !self.live(m.last_active, at))
    }

    /// Picks a free external port and clears any expired mapping on it.
    fn allocate(&mut self, at: Instant, rng: &mut ChaCha8Rng, preferred: u16) -> Result<u16, DropReason> {
        let (lo, hi) = (*PORT_RANGE.start(), *PORT_RANGE.end());
        let span = (hi - lo) as u32 + 1;
        let start = match self.cfg.port_allocation {
            PortAllocation::Preserve if preferred != 0 && self.port_free(at, preferred) => Some(preferred),
            PortAllocation::Preserve | PortAllocation::Random => {
                // A few random draws, then a scan from the last draw.
                let mut pick = None;
                let mut last = lo;
                for _ in 0..16 {
                    last = lo + (rng.next_u32() % span) as u16;
                    if self.port_free(at, last) {
                        pick = Some(last);
                        break;
                    }
                }
                pick.or_else(|| self.scan(at, last))
            }
            PortAllocation::Sequential => {
                let p = self.scan(at, self.next_port);
                if let Some(p) = p {
                    self.next_port = if p == hi { lo } else { p + 1 };
                }
                p
            }
        };
        let port = start.ok_or(DropReason::NatPortsExhausted)?;
        if let Some(old) = self.inbound.remove(&port) {
            let key = (old.internal, old.dest);
            if self.outbound.get(&key) == Some(&port) {
                self.outbound.remove(&key);
            }
        }
        Ok(port)
    }

    /// The first free port at or after `from`, wrapping around the range.
    fn scan(&self, at: Instant, from: u16) -> Option<u16> {
        let (lo, hi) = (*PORT_RANGE.start(), *PORT_RANGE.end());
        let from = from.clamp(lo, hi);
        (from..=hi).chain(lo..from).find(|&p| self.port_free(at, p))
    }

    /// Drops expired entries, at most once per timeout. Results never depend
    /// on it: every lookup checks expiry itself.
    fn sweep(&mut self, at: Instant) {
        if at < self.next_sweep {
            return;
        }
        self.next_sweep = at + self.cfg.mapping_timeout;
        let timeout = self.cfg.mapping_timeout;
        self.inbound.retain(|_, m| at < m.last_active + timeout);
        let inbound = &self.inbound;
        self.outbound
            .retain(|(src, dest), port| inbound.get(port).is_some_and(|m| m.internal == *src && m.dest == *dest));
        self.permits.retain(|_, t| at < *t + timeout);
        let longest = timeout.max(UNREPLIED_TIMEOUT);
        self.flows.retain(|_, f| at < f.last_active + longest);
        let flows = &self.flows;
        self.flow_ports
            .retain(|(src, dst), port| flows.get(&(*port, *dst)).is_some_and(|f| f.internal == Some(*src)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Delivery, HostId, LanConfig, LinkConfig, Network};
    use super::*;
    use rand_core::SeedableRng;
    use std::net::SocketAddr;

    fn sa(s: &str) -> SocketAddrV4 {
        s.parse().unwrap()
    }

    fn nat(cfg: NatConfig) -> (NatBox, ChaCha8Rng) {
        (
            NatBox::new(cfg, Ipv4Addr::new(203, 0, 113, 9)),
            ChaCha8Rng::seed_from_u64(1),
        )
    }

    const T0: Instant = Instant::ZERO;

    #[test]
    fn endpoint_independent_mapping_reuses_the_port_and_preserves_it() {
        let (mut n, mut r) = nat(NatKind::PortRestrictedCone.into());
        let a = n
            .outbound(T0, &mut r, sa("10.0.1.2:5000"), sa("198.51.100.1:1"))
            .unwrap();
        let b = n
            .outbound(T0, &mut r, sa("10.0.1.2:5000"), sa("198.51.100.2:2"))
            .unwrap();
        assert_eq!(a, sa("203.0.113.9:5000"));
        assert_eq!(a, b);
        // A second host with the same port cannot keep it.
        let c = n
            .outbound(T0, &mut r, sa("10.0.1.3:5000"), sa("198.51.100.1:1"))
            .unwrap();
        assert_ne!(c.port(), 5000);
        assert!(PORT_RANGE.contains(&c.port()));
        assert_eq!(n.live_mappings(T0), 2);
    }

    #[test]
    fn conntrack_keeps_the_port_per_flow_until_a_stray_datagram_takes_it() {
        let (mut n, mut r) = nat(NatKind::LinuxConntrack.into());
        let (a, b) = (sa("10.0.1.2:51820"), sa("10.0.1.3:51820"));
        let (x, y) = (sa("198.51.100.1:51820"), sa("198.51.100.2:51820"));
        // Two hosts keep port 51820 towards different remotes, like EIM.
        assert_eq!(n.outbound(T0, &mut r, a, x).unwrap().port(), 51820);
        assert_eq!(n.outbound(T0, &mut r, b, y).unwrap().port(), 51820);
        assert_ne!(
            n.outbound(T0, &mut r, a, y).unwrap().port(),
            51820,
            "b holds it towards y"
        );
        assert_eq!(n.inbound(T0, x, 51820), Ok(a), "x answers a");
        // A remote nobody sent to is dropped, and its datagram takes
        // (51820, z): a host that now sends to z leaves from another port.
        let z = sa("198.51.100.3:51820");
        assert_eq!(n.inbound(T0, z, 51820), Err(DropReason::NatFilter));
        let moved = n.outbound(T0 + Duration::from_secs(1), &mut r, a, z).unwrap();
        assert_ne!(moved.port(), 51820);
        // The stray entry lives 30 s after z's last datagram; a fresh flow
        // keeps the port again.
        let later = T0 + Duration::from_secs(40);
        let (mut n2, mut r2) = nat(NatKind::LinuxConntrack.into());
        assert!(n2.inbound(T0, z, 51820).is_err());
        assert_ne!(
            n2.outbound(T0 + Duration::from_millis(29_999), &mut r2, a, z)
                .unwrap()
                .port(),
            51820
        );
        let (mut n3, mut r3) = nat(NatKind::LinuxConntrack.into());
        assert!(n3.inbound(T0, z, 51820).is_err());
        assert_eq!(n3.outbound(later, &mut r3, a, z).unwrap().port(), 51820);
    }

    #[test]
    fn symmetric_mapping_is_per_destination() {
        let (mut n, mut r) = nat(NatKind::Symmetric.into());
        let src = sa("10.0.1.2:5000");
        let a = n.outbound(T0, &mut r, src, sa("198.51.100.1:1")).unwrap();
        let b = n.outbound(T0, &mut r, src, sa("198.51.100.1:2")).unwrap();
        let a2 = n.outbound(T0, &mut r, src, sa("198.51.100.1:1")).unwrap();
        assert_eq!(a.port(), 5000, "the first mapping preserves the port");
        assert_ne!(a, b);
        assert_eq!(a, a2);
        let (mut n, mut r) = nat(NatConfig::new(NatKind::Symmetric).with_mapping(MappingBehavior::AddressDependent));
        let a = n.outbound(T0, &mut r, src, sa("198.51.100.1:1")).unwrap();
        let b = n.outbound(T0, &mut r, src, sa("198.51.100.1:2")).unwrap();
        let c = n.outbound(T0, &mut r, src, sa("198.51.100.2:1")).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn sequential_and_random_allocation() {
        let cfg = NatConfig::new(NatKind::Symmetric).with_port_allocation(PortAllocation::Sequential);
        let (mut n, mut r) = nat(cfg);
        let ports: Vec<u16> = (1..=3)
            .map(|i| {
                n.outbound(
                    T0,
                    &mut r,
                    sa("10.0.1.2:5000"),
                    SocketAddrV4::new(Ipv4Addr::new(1, 1, 1, i), 1),
                )
            })
            .map(|a| a.unwrap().port())
            .collect();
        assert_eq!(ports, [1024, 1025, 1026]);

        let cfg = NatConfig::new(NatKind::FullCone).with_port_allocation(PortAllocation::Random);
        let (mut n, mut r) = nat(cfg);
        let a = n.outbound(T0, &mut r, sa("10.0.1.2:5000"), sa("1.1.1.1:1")).unwrap();
        assert_ne!(a.port(), 5000);
        // The same seed picks the same port.
        let (mut n2, mut r2) = nat(cfg);
        assert_eq!(
            n2.outbound(T0, &mut r2, sa("10.0.1.2:5000"), sa("1.1.1.1:1")).unwrap(),
            a
        );
    }

    #[test]
    fn filtering_per_kind() {
        let src = sa("10.0.1.2:5000");
        let peer = sa("198.51.100.1:7000");
        let cases = [
            // kind, same peer, peer other port, other address
            (NatKind::FullCone, [true, true, true]),
            (NatKind::RestrictedCone, [true, true, false]),
            (NatKind::PortRestrictedCone, [true, false, false]),
            (NatKind::Symmetric, [true, false, false]),
        ];
        for (kind, expect) in cases {
            let (mut n, mut r) = nat(kind.into());
            let ext = n.outbound(T0, &mut r, src, peer).unwrap();
            let got = [peer, sa("198.51.100.1:7001"), sa("198.51.100.2:7000")]
                .map(|from| n.inbound(T0, from, ext.port()).is_ok());
            assert_eq!(got, expect, "{kind:?}");
            assert_eq!(n.inbound(T0, peer, ext.port() ^ 1), Err(DropReason::NoMapping));
        }
    }

    #[test]
    fn mappings_expire_unless_refreshed() {
        let t = Duration::from_secs(30);
        let (mut n, mut r) = nat(NatConfig::new(NatKind::PortRestrictedCone).with_mapping_timeout(t));
        let (src, peer) = (sa("10.0.1.2:5000"), sa("198.51.100.1:7000"));
        let ext = n.outbound(T0, &mut r, src, peer).unwrap();
        // Inbound does not refresh by default.
        assert!(n.inbound(T0 + Duration::from_secs(29), peer, ext.port()).is_ok());
        assert_eq!(n.inbound(T0 + t, peer, ext.port()), Err(DropReason::NoMapping));
        assert_eq!(n.mapping_for(T0 + t, src, peer), None);

        let cfg = NatConfig::new(NatKind::PortRestrictedCone)
            .with_mapping_timeout(t)
            .with_refresh_on_inbound(true);
        let (mut n, mut r) = nat(cfg);
        let ext = n.outbound(T0, &mut r, src, peer).unwrap();
        for s in [20, 40, 60] {
            assert!(n.inbound(Instant::from_secs(s), peer, ext.port()).is_ok(), "at {s}s");
        }
        assert_eq!(
            n.inbound(Instant::from_secs(91), peer, ext.port()),
            Err(DropReason::NoMapping)
        );
    }

    #[test]
    fn an_expired_port_handed_to_another_host_keeps_no_old_permission() {
        let t = Duration::from_secs(10);
        let cfg = NatConfig::new(NatKind::PortRestrictedCone).with_mapping_timeout(t);
        let (mut n, mut r) = nat(cfg);
        let peer = sa("198.51.100.1:7000");
        let e1 = n.outbound(T0, &mut r, sa("10.0.1.2:5000"), peer).unwrap();
        let later = Instant::from_secs(10);
        let e2 = n
            .outbound(later, &mut r, sa("10.0.1.3:5000"), sa("198.51.100.9:1"))
            .unwrap();
        assert_eq!(e1, e2, "the preserved port is free again");
        assert_eq!(n.inbound(later, peer, e2.port()), Err(DropReason::NatFilter));
    }

    #[test]
    fn a_full_nat_refuses_new_mappings_until_old_ones_expire() {
        let t = Duration::from_secs(60);
        let cfg = NatConfig::new(NatKind::Symmetric)
            .with_port_allocation(PortAllocation::Sequential)
            .with_mapping_timeout(t);
        let (mut n, mut r) = nat(cfg);
        let src = sa("10.0.1.2:5000");
        let dst = |i: u32| SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 1);
        let ports = PORT_RANGE.len() as u32;
        for i in 0..ports {
            assert!(n.outbound(T0, &mut r, src, dst(i)).is_ok(), "mapping {i}");
        }
        assert_eq!(
            n.outbound(T0, &mut r, src, dst(ports)),
            Err(DropReason::NatPortsExhausted)
        );
        // Existing mappings still work; after the timeout, ports are free again.
        assert!(n.outbound(T0, &mut r, src, dst(7)).is_ok());
        assert!(n.outbound(T0 + t, &mut r, src, dst(ports)).is_ok());
    }

    // ---- The reachability matrix and hole punching, end to end. ----

    /// Everything delivered until the network is quiet.
    fn drain(net: &mut Network) -> Vec<Delivery> {
        std::iter::from_fn(|| net.poll(Instant::FAR_FUTURE)).collect()
    }

    /// Whether a datagram from `from:port` to `to` arrives at `at_host`, sent at `now`.
    fn reaches(net: &mut Network, now: Instant, from: HostId, port: u16, to: SocketAddr, at_host: HostId) -> bool {
        net.send(now, from, port, to, b"probe");
        drain(net).iter().any(|d| d.host == at_host)
    }

    struct Matrix {
        net: Network,
        a: HostId,
        observer: HostId,
        third: HostId,
    }

    fn matrix(kind: NatKind) -> Matrix {
        let mut net = Network::new(11);
        let lan = net.add_lan(LanConfig::behind_nat(kind.into()));
        let a = net.add_host(lan);
        let (lo, lt) = (net.add_lan(LanConfig::public()), net.add_lan(LanConfig::public()));
        let (observer, third) = (net.add_host(lo), net.add_host(lt));
        Matrix {
            net,
            a,
            observer,
            third,
        }
    }

    #[test]
    fn reachability_matrix_of_the_four_kinds() {
        // kind: [observer same port, observer other port, third party]
        let cases = [
            (NatKind::FullCone, [true, true, true]),
            (NatKind::RestrictedCone, [true, true, false]),
            (NatKind::PortRestrictedCone, [true, false, false]),
            (NatKind::Symmetric, [true, false, false]),
        ];
        for (kind, expect) in cases {
            let Matrix {
                mut net,
                a,
                observer,
                third,
            } = matrix(kind);
            let obs = SocketAddr::new(net.host_addr(observer), 3478);
            net.send(Instant::ZERO, a, 5000, obs, b"binding request");
            let seen = drain(&mut net);
            assert_eq!(seen.len(), 1);
            let mapped = seen[0].from;
            assert_eq!(
                mapped.ip(),
                net.public_addr(a).unwrap(),
                "{kind:?}: the observer sees the NAT's address"
            );
            assert_eq!(net.nat_mapping(a, 5000, obs), Some(mapped));
            let t = Instant::from_secs(1);
            let got = [
                reaches(&mut net, t, observer, 3478, mapped, a),
                reaches(&mut net, t, observer, 3479, mapped, a),
                reaches(&mut net, t, third, 3478, mapped, a),
            ];
            assert_eq!(got, expect, "{kind:?}");
            let drops = net.stats().drops;
            assert_eq!(
                drops.nat_filter,
                expect.iter().filter(|ok| !**ok).count() as u64,
                "{kind:?}"
            );

            // What a third party sees after `a` sends to it.
            let to_third = SocketAddr::new(net.host_addr(third), 3478);
            net.send(Instant::from_secs(2), a, 5000, to_third, b"hi");
            let third_sees = drain(&mut net)[0].from;
            assert_eq!(third_sees == mapped, kind != NatKind::Symmetric, "{kind:?}");
        }
    }

    /// Hosts `a` and `b` behind NATs of kinds `x` and `y` that learned their
    /// mappings from a public observer: the network, the hosts, and where
    /// each is to send to reach the other.
    fn met(x: NatKind, y: NatKind) -> (Network, HostId, HostId, SocketAddr, SocketAddr) {
        let mut net = Network::new(5);
        let (lx, ly, ls) = (
            net.add_lan(LanConfig::behind_nat(x.into())),
            net.add_lan(LanConfig::behind_nat(y.into())),
            net.add_lan(LanConfig::public()),
        );
        let (a, b, s) = (net.add_host(lx), net.add_host(ly), net.add_host(ls));
        let obs = SocketAddr::new(net.host_addr(s), 3478);
        net.send(Instant::ZERO, a, 51820, obs, b"a");
        net.send(Instant::ZERO, b, 51820, obs, b"b");
        let seen = drain(&mut net);
        let mapped = |h| seen.iter().find(|d| d.bytes == [h]).unwrap().from;
        (net, a, b, mapped(b'b'), mapped(b'a'))
    }

    /// Two hosts behind NATs of kinds `x` and `y` learn their mappings from a
    /// public observer, then both send to the other's observed mapping at
    /// the same time, a few rounds, each replying to the address it last
    /// heard the other from. Whether both sides heard each other.
    fn punch(x: NatKind, y: NatKind) -> bool {
        // The rendezvous tells each the other's observed mapping.
        let (mut net, a, b, mut a_to, mut b_to) = met(x, y);
        let (mut a_heard, mut b_heard) = (false, false);
        for round in 0..5u64 {
            let now = Instant::from_secs(1) + Duration::from_millis(200 * round);
            net.send(now, a, 51820, a_to, b"punch");
            net.send(now, b, 51820, b_to, b"punch");
            for d in drain(&mut net) {
                if d.host == a {
                    a_heard = true;
                    a_to = d.from;
                } else if d.host == b {
                    b_heard = true;
                    b_to = d.from;
                }
            }
        }
        a_heard && b_heard
    }

    #[test]
    fn cone_to_cone_punch_succeeds() {
        use NatKind::*;
        for (x, y) in [
            (PortRestrictedCone, PortRestrictedCone),
            (RestrictedCone, PortRestrictedCone),
            (FullCone, PortRestrictedCone),
            (RestrictedCone, RestrictedCone),
        ] {
            assert!(punch(x, y), "{x:?} <-> {y:?}");
        }
    }

    /// Two hosts behind Linux NATs: sends that cross in flight get
    /// through; if one side's first datagram reaches the other's router
    /// before that side sent, the router's stray entry moves the late
    /// side's port and both stay filtered (what `nat_cone` shows on real
    /// routers).
    #[test]
    fn conntrack_punch_needs_the_first_sends_to_cross() {
        use NatKind::LinuxConntrack as L;
        assert!(punch(L, L), "simultaneous sends cross");
        let (mut net, a, b, a_to, b_to) = met(L, L);
        // a first; b only once a's datagram has come and gone.
        assert!(!reaches(&mut net, Instant::from_secs(1), a, 51820, a_to, b));
        let heard = (0..5u64).any(|round| {
            let now = Instant::from_secs(2) + Duration::from_millis(200 * round);
            reaches(&mut net, now, b, 51820, b_to, a) | reaches(&mut net, now, a, 51820, a_to, b)
        });
        assert!(!heard, "the stray entry keeps them apart");
    }

    #[test]
    fn symmetric_to_symmetric_punch_fails() {
        assert!(!punch(NatKind::Symmetric, NatKind::Symmetric));
    }

    #[test]
    fn port_restricted_to_symmetric_punch_fails() {
        assert!(!punch(NatKind::PortRestrictedCone, NatKind::Symmetric));
        assert!(!punch(NatKind::Symmetric, NatKind::PortRestrictedCone));
    }

    #[test]
    fn full_cone_to_symmetric_punch_succeeds() {
        assert!(punch(NatKind::FullCone, NatKind::Symmetric));
        assert!(punch(NatKind::Symmetric, NatKind::FullCone));
    }

    #[test]
    fn restricted_cone_to_symmetric_punch_succeeds_with_a_predictable_address() {
        // Address-dependent filtering lets the symmetric side's new port in,
        // because the address is the one the cone side punched towards.
        assert!(punch(NatKind::RestrictedCone, NatKind::Symmetric));
    }

    #[test]
    fn mapping_timeout_closes_the_path_and_keepalives_hold_it_open() {
        let t = Duration::from_secs(120);
        let mut net = Network::new(2);
        let lan = net.add_lan(LanConfig::behind_nat(NatConfig::new(NatKind::PortRestrictedCone)));
        let ls = net.add_lan(LanConfig::public());
        let (a, s) = (net.add_host(lan), net.add_host(ls));
        let obs = SocketAddr::new(net.host_addr(s), 3478);
        net.send(Instant::ZERO, a, 5000, obs, b"hello");
        let mapped = drain(&mut net)[0].from;
        // The mapping was refreshed when the datagram passed the NAT, a LAN hop
        // after it was sent: 119 s later it is still open.
        assert!(reaches(&mut net, Instant::from_secs(119), s, 3478, mapped, a));
        // Inbound traffic does not refresh it: at 120 s plus the uplink it is gone.
        assert!(!reaches(&mut net, Instant::ZERO + t, s, 3478, mapped, a));
        assert_eq!(net.stats().drops.no_mapping, 1);
        assert_eq!(net.nat_mapping(a, 5000, obs), None);

        // Keepalives every 25 s hold a mapping open for ten minutes.
        let mut now = Instant::from_secs(200);
        net.send(now, a, 6000, obs, b"hello");
        let mapped = drain(&mut net)[0].from;
        for _ in 0..24 {
            now += Duration::from_secs(25);
            net.send(now, a, 6000, obs, b"keepalive");
            drain(&mut net);
        }
        assert!(reaches(&mut net, now + Duration::from_secs(100), s, 3478, mapped, a));
    }

    #[test]
    fn inbound_refresh_keeps_a_mapping_alive() {
        let cfg = NatConfig::new(NatKind::FullCone)
            .with_mapping_timeout(Duration::from_secs(30))
            .with_refresh_on_inbound(true);
        let mut net = Network::new(2);
        let (la, ls) = (
            net.add_lan(LanConfig::behind_nat(cfg)),
            net.add_lan(LanConfig::public()),
        );
        let (a, s) = (net.add_host(la), net.add_host(ls));
        net.send(Instant::ZERO, a, 5000, SocketAddr::new(net.host_addr(s), 1), b"x");
        let mapped = drain(&mut net)[0].from;
        for i in 1..=10 {
            assert!(
                reaches(&mut net, Instant::from_secs(20 * i), s, 1, mapped, a),
                "at {}s",
                20 * i
            );
        }
    }

    /// Two hosts behind one NAT, each with a public mapping learnt from an observer.
    fn behind_one_nat(cfg: NatConfig) -> (Network, HostId, HostId, SocketAddr, SocketAddr) {
        let mut net = Network::new(4);
        let lan = net.add_lan(LanConfig::behind_nat(cfg).with_uplink(LinkConfig::uplink()));
        let ls = net.add_lan(LanConfig::public());
        let (a, b, s) = (net.add_host(lan), net.add_host(lan), net.add_host(ls));
        let obs = SocketAddr::new(net.host_addr(s), 3478);
        net.send(Instant::ZERO, a, 5000, obs, b"a");
        net.send(Instant::ZERO, b, 5001, obs, b"b");
        let seen = drain(&mut net);
        let m = |h| seen.iter().find(|d| d.bytes == [h]).unwrap().from;
        let (ma, mb) = (m(b'a'), m(b'b'));
        (net, a, b, ma, mb)
    }

    #[test]
    fn hairpinning_loops_back_with_the_public_source() {
        let (mut net, a, b, ma, mb) = behind_one_nat(NatKind::FullCone.into());
        let now = Instant::from_secs(1);
        net.send(now, a, 5000, mb, b"via the NAT");
        let got = drain(&mut net);
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].host, got[0].dst_port, got[0].from), (b, 5001, ma));
        // It never left the LAN: two LAN hops, no uplink.
        assert_eq!(got[0].at, now + LinkConfig::lan().latency * 2);

        // A port-restricted NAT filters hairpinned traffic like any other.
        let (mut net, a, _b, _ma, mb) = behind_one_nat(NatKind::PortRestrictedCone.into());
        net.send(now, a, 5000, mb, b"unsolicited");
        assert!(drain(&mut net).is_empty());
        assert_eq!(net.stats().drops.nat_filter, 1);
    }

    #[test]
    fn without_hairpinning_the_public_address_is_a_dead_end() {
        let (mut net, a, _b, _ma, mb) = behind_one_nat(NatConfig::new(NatKind::FullCone).with_hairpin(false));
        net.send(Instant::from_secs(1), a, 5000, mb, b"via the NAT");
        assert!(drain(&mut net).is_empty());
        assert_eq!(net.stats().drops.hairpin, 1);
    }
}
