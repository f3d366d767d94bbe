//! A deterministic, sans-IO datagram network: hosts on LANs, NAT boxes, an
//! internet core, faulty links and virtual time.
//!
//! The caller drives everything. [`Network::send`] and
//! [`Network::send_multicast`] hand a datagram to the network at a virtual
//! `now`; [`Network::next_event`] says when something next happens;
//! [`Network::poll`] processes what is due and yields [`Delivery`]s. There
//! are no threads, sockets, clocks or sleeps, and every random choice comes
//! from one ChaCha8 stream seeded by [`Network::new`]: the same seed and the
//! same calls give the same deliveries, byte for byte.
//!
//! # Topology
//!
//! ```text
//!  host ─lan_link─┐                              ┌─lan_link─ host
//!  host ─lan_link─┤ LAN ─uplink─ internet ─uplink─┤ NAT ─lan_link─ host
//!                 └ (public addresses)   core     └ (10.a.b.0/24 behind it)
//! ```
//!
//! A datagram travels hop by hop, and each hop is an event: the sender's
//! LAN link to its segment, then (if the destination is not on the LAN) the
//! uplink to the internet core, the destination's uplink to its LAN gateway
//! (where a NAT translates and filters), and the receiver's LAN link. NAT
//! state is read and written when the datagram reaches the NAT, at that
//! virtual time, so two datagrams crossing in flight behave as on a real
//! network (simultaneous open works). Every hop applies its [`LinkConfig`]:
//! latency, MTU and [`Faults`].
//!
//! Two hosts of one LAN see two LAN hops only (default 2 x 250 us); hosts of
//! two LANs see two LAN hops and two uplinks (default 2 x 20 ms more).
//! Multicast stays on the sender's LAN segment.
//!
//! # Addresses
//!
//! IPv4 only. Public addresses are 203.0.113.0/24, then 198.51.100.0/24,
//! then 100.64.0.0/10; private LANs get 10.a.b.0/24 unless configured. These
//! are labels inside the simulation. Ports need no binding: a delivery names
//! the host and destination port, and the caller hands it to whatever
//! listens there.
//!
//! # Partitions and crashes
//!
//! [`Network::partition`] (by LAN) and [`Network::partition_hosts`] put
//! LANs or hosts into groups; hosts of different groups cannot reach each
//! other. Hosts named in no group form one more group together. The check
//! is made when a datagram would be delivered, so a datagram in flight when
//! the partition heals gets through. [`Network::set_host_up`] crashes or
//! revives a host: a down host sends nothing and receives nothing (NAT
//! mappings it made live on until they expire).
//!
//! # Roaming and NAT resets
//!
//! [`Network::move_host`] moves a host to another LAN: it gets a new
//! address there and the old one names nobody (a laptop moving from one
//! network to another). [`Network::reset_nat`] makes a NAT forget every
//! mapping at once (a reboot, or mappings that expired during a long idle
//! period), optionally on a new public address (an ISP renumbering).
//!
//! This module owns the topology, the event queue and routing between hops.
//! It never sends real traffic and never reads the wall clock.

mod addr;
mod lan;
mod link;
mod nat;
mod queue;
mod stats;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use kairos_core::time::Instant;
use rand_chacha::ChaCha8Rng;
use rand_core::SeedableRng;

pub use lan::LanConfig;
pub use link::{Faults, LinkConfig, DEFAULT_LAN_LATENCY, DEFAULT_MTU, DEFAULT_UPLINK_LATENCY, IP_UDP_OVERHEAD};
pub use nat::{FilteringBehavior, MappingBehavior, NatConfig, NatKind, PortAllocation, DEFAULT_MAPPING_TIMEOUT};
pub use stats::{DropReason, Drops, HostStats, NetStats};

use addr::{AddrMap, PublicPool, Subnet};
use lan::{Gateway, Lan};
use link::Hop;
use nat::NatBox;
use queue::EventQueue;

/// A host of the simulated network (one mesh node runs on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostId(u32);

impl HostId {
    /// Hosts are numbered 0, 1, 2, ... in the order they were added.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A LAN segment of the simulated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LanId(u32);

impl LanId {
    /// LANs are numbered 0, 1, 2, ... in the order they were added.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

/// A datagram arriving at a host.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Delivery {
    /// When it arrived (virtual time).
    pub at: Instant,
    /// The receiving host.
    pub host: HostId,
    /// The port it was sent to on that host (after NAT translation).
    pub dst_port: u16,
    /// The source address the receiver sees: the sender's own address on the
    /// same LAN or on the internet, its NAT's mapping otherwise.
    pub from: SocketAddr,
    /// The payload. Hand it back with [`Network::recycle`] to reuse it.
    pub bytes: Vec<u8>,
}

/// Who owns a public address.
#[derive(Debug, Clone, Copy)]
enum PublicOwner {
    Host(HostId),
    Nat(LanId),
}

#[derive(Debug)]
struct Host {
    lan: LanId,
    addr: Ipv4Addr,
    up: bool,
    /// Partition group (0: not named in the current partition).
    group: u32,
    stats: HostStats,
}

/// A datagram in flight, with its addresses as they currently read.
#[derive(Debug)]
struct Packet {
    origin: HostId,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    bytes: Vec<u8>,
}

/// Where a datagram in flight arrives next.
#[derive(Debug, Clone, Copy)]
enum Stage {
    /// At the LAN segment from a local host: delivered locally, hairpinned
    /// or sent up to the internet.
    Segment(LanId),
    /// A multicast at the LAN segment: copied to every other host.
    Multicast(LanId),
    /// At a LAN's gateway from the internet: NAT inbound, then to the host.
    Gateway(LanId),
    /// At the receiving host.
    Host(HostId),
}

/// The links a datagram crosses between two stages: one, or two (the uplinks
/// on either side of the internet core).
#[derive(Debug, Clone, Copy)]
struct Path {
    links: [LinkConfig; 2],
    len: usize,
}

impl Path {
    fn one(link: LinkConfig) -> Self {
        Path {
            links: [link; 2],
            len: 1,
        }
    }
    fn two(first: LinkConfig, second: LinkConfig) -> Self {
        Path {
            links: [first, second],
            len: 2,
        }
    }
    fn links(&self) -> &[LinkConfig] {
        &self.links[..self.len]
    }
}

/// Buffers kept for reuse at most.
const BUFFER_POOL: usize = 4096;

/// The simulated network. See the [module docs](self).
#[derive(Debug)]
pub struct Network {
    rng: ChaCha8Rng,
    /// The latest virtual time seen (sends and processed events).
    now: Instant,
    queue: EventQueue<(Stage, Packet)>,
    lans: Vec<Lan>,
    hosts: Vec<Host>,
    public: AddrMap<Ipv4Addr, PublicOwner>,
    pool: PublicPool,
    auto_subnets: u32,
    partitioned: bool,
    stats: NetStats,
    buffers: Vec<Vec<u8>>,
}

impl Network {
    /// An empty network whose random choices all come from `seed`.
    pub fn new(seed: u64) -> Self {
        Network {
            rng: ChaCha8Rng::seed_from_u64(seed),
            now: Instant::ZERO,
            queue: EventQueue::new(),
            lans: Vec::new(),
            hosts: Vec::new(),
            public: AddrMap::default(),
            pool: PublicPool::default(),
            auto_subnets: 0,
            partitioned: false,
            stats: NetStats::default(),
            buffers: Vec::new(),
        }
    }

    /// Adds a LAN (and its NAT, which gets the next public address).
    ///
    /// # Panics
    /// If `cfg.subnet` has a prefix outside `8..=30`.
    pub fn add_lan(&mut self, cfg: LanConfig) -> LanId {
        let id = LanId(self.lans.len() as u32);
        let gateway = match cfg.nat {
            None => Gateway::Public,
            Some(nat) => {
                let ip = self.pool.allocate();
                self.public.insert(ip, PublicOwner::Nat(id));
                let subnet = match cfg.subnet {
                    Some((addr, prefix)) => Subnet::new(addr, prefix),
                    None => {
                        self.auto_subnets += 1;
                        Subnet::auto(self.auto_subnets - 1)
                    }
                };
                Gateway::Nat {
                    subnet,
                    nat: Box::new(NatBox::new(nat, ip)),
                }
            }
        };
        self.lans.push(Lan {
            lan_link: cfg.lan_link,
            uplink: cfg.uplink,
            gateway,
            hosts: Vec::new(),
            addressed: Vec::new(),
            group: 0,
        });
        id
    }

    /// Adds a host to `lan`: the next public address on a public LAN, the
    /// next address of the subnet behind a NAT.
    ///
    /// # Panics
    /// If the LAN's subnet is full.
    pub fn add_host(&mut self, lan: LanId) -> HostId {
        let id = HostId(self.hosts.len() as u32);
        let addr = self.attach(id, lan);
        self.hosts.push(Host {
            lan,
            addr,
            up: true,
            group: 0,
            stats: HostStats::default(),
        });
        id
    }

    /// Moves `h` to another LAN, as a laptop that leaves one network for
    /// another (or a router that gets a new uplink): it gets a new address
    /// there (public, or behind that LAN's NAT) and its old one names
    /// nobody. Datagrams in flight to the old address are lost; mappings the
    /// host made in its old NAT live on until they expire.
    ///
    /// # Panics
    /// If the new LAN's subnet is full.
    pub fn move_host(&mut self, h: HostId, to: LanId) {
        let host = &self.hosts[h.index()];
        let (from, old) = (host.lan, host.addr);
        let l = &mut self.lans[from.index()];
        l.hosts.retain(|&x| x != h);
        match l.gateway {
            Gateway::Public => {
                self.public.remove(&old);
            }
            Gateway::Nat { .. } => {
                // Addresses behind a NAT go by position: free the slot, keep the others.
                if let Some(slot) = l.addressed.iter_mut().find(|s| **s == Some(h)) {
                    *slot = None;
                }
            }
        }
        let addr = self.attach(h, to);
        let host = &mut self.hosts[h.index()];
        host.lan = to;
        host.addr = addr;
    }

    /// Gives `h` the next address of `lan` and adds it to the LAN's hosts.
    fn attach(&mut self, h: HostId, lan: LanId) -> Ipv4Addr {
        let l = &mut self.lans[lan.index()];
        let addr = match &l.gateway {
            Gateway::Public => {
                let ip = self.pool.allocate();
                self.public.insert(ip, PublicOwner::Host(h));
                ip
            }
            Gateway::Nat { subnet, .. } => {
                assert!(l.addressed.len() < subnet.capacity(), "LAN {lan:?} is full");
                let ip = subnet.host(l.addressed.len());
                l.addressed.push(Some(h));
                ip
            }
        };
        l.hosts.push(h);
        addr
    }

    /// Reboots the NAT in front of `lan`: every mapping and permission is
    /// forgotten at once (a NAT that loses its table, or mappings expired
    /// while the hosts behind it were idle). With `new_public_ip`, the NAT
    /// also comes back on a new public address, as after an ISP renumbers a
    /// home router; its old address then names nobody.
    ///
    /// # Panics
    /// If `lan` is a public LAN.
    pub fn reset_nat(&mut self, lan: LanId, new_public_ip: bool) {
        let ip = new_public_ip.then(|| self.pool.allocate());
        let Gateway::Nat { nat, .. } = &mut self.lans[lan.index()].gateway else {
            panic!("LAN {lan:?} has no NAT");
        };
        let old = nat.public_ip();
        **nat = NatBox::new(*nat.config(), ip.unwrap_or(old));
        if let Some(ip) = ip {
            self.public.remove(&old);
            self.public.insert(ip, PublicOwner::Nat(lan));
        }
    }

    /// The host's own address (public on a public LAN, private behind a NAT).
    pub fn host_addr(&self, h: HostId) -> IpAddr {
        self.hosts[h.index()].addr.into()
    }

    /// The public address of the NAT in front of `h`, or `None` when `h` is
    /// on a public LAN. For test assertions: nodes must discover it.
    pub fn public_addr(&self, h: HostId) -> Option<IpAddr> {
        match &self.lans[self.hosts[h.index()].lan.index()].gateway {
            Gateway::Public => None,
            Gateway::Nat { nat, .. } => Some(nat.public_ip().into()),
        }
    }

    /// The address the internet currently sees for `h`'s port `src_port`
    /// when it sends to `dst`: its own on a public LAN, its NAT's live
    /// mapping (if any) behind one. For test assertions.
    pub fn nat_mapping(&self, h: HostId, src_port: u16, dst: SocketAddr) -> Option<SocketAddr> {
        let host = &self.hosts[h.index()];
        let src = SocketAddrV4::new(host.addr, src_port);
        match &self.lans[host.lan.index()].gateway {
            Gateway::Public => Some(src.into()),
            Gateway::Nat { nat, .. } => match dst {
                SocketAddr::V4(dst) => nat.mapping_for(self.now, src, dst).map(SocketAddr::V4),
                SocketAddr::V6(_) => None,
            },
        }
    }

    /// Live mappings of the NAT in front of `lan` (0 for a public LAN).
    pub fn nat_mappings(&self, lan: LanId) -> usize {
        match &self.lans[lan.index()].gateway {
            Gateway::Public => 0,
            Gateway::Nat { nat, .. } => nat.live_mappings(self.now),
        }
    }

    /// How many hosts have been added (ids are `0..host_count()`).
    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// How many LANs have been added (ids are `0..lan_count()`).
    pub fn lan_count(&self) -> usize {
        self.lans.len()
    }

    /// The LAN `h` is on.
    pub fn lan_of(&self, h: HostId) -> LanId {
        self.hosts[h.index()].lan
    }

    /// The hosts on `lan`, in the order they were added.
    pub fn hosts_on(&self, lan: LanId) -> &[HostId] {
        &self.lans[lan.index()].hosts
    }

    /// Replaces the host-to-segment link of `lan` (for datagrams sent from now on).
    pub fn set_lan_link(&mut self, lan: LanId, link: LinkConfig) {
        self.lans[lan.index()].lan_link = link;
    }

    /// Replaces the uplink of `lan` (for datagrams sent from now on).
    pub fn set_uplink(&mut self, lan: LanId, link: LinkConfig) {
        self.lans[lan.index()].uplink = link;
    }

    /// Sends `bytes` from `h`'s port `src_port` to `dst` at `now`.
    ///
    /// `now` earlier than the latest time the network has seen is taken as
    /// that time: virtual time never runs backwards.
    pub fn send(&mut self, now: Instant, h: HostId, src_port: u16, dst: SocketAddr, bytes: &[u8]) {
        let now = self.advance(now);
        let Some(src) = self.start(h, src_port, bytes.len()) else {
            return;
        };
        let SocketAddr::V4(dst) = dst else {
            self.stats.drops.record(DropReason::UnknownDestination);
            return;
        };
        let lan = self.hosts[h.index()].lan;
        let pkt = Packet {
            origin: h,
            src,
            dst,
            bytes: self.buffer(bytes),
        };
        self.forward(now, self.lans[lan.index()].lan_link, pkt, Stage::Segment(lan));
    }

    /// Multicasts `bytes` from `h`'s port `src_port` to port `dst_port` of
    /// every other host on `h`'s LAN segment (never across a NAT).
    pub fn send_multicast(&mut self, now: Instant, h: HostId, src_port: u16, dst_port: u16, bytes: &[u8]) {
        let now = self.advance(now);
        let Some(src) = self.start(h, src_port, bytes.len()) else {
            return;
        };
        let lan = self.hosts[h.index()].lan;
        let dst = SocketAddrV4::new(Ipv4Addr::BROADCAST, dst_port);
        let pkt = Packet {
            origin: h,
            src,
            dst,
            bytes: self.buffer(bytes),
        };
        self.forward(now, self.lans[lan.index()].lan_link, pkt, Stage::Multicast(lan));
    }

    /// When the next datagram reaches its next hop, if any is in flight.
    /// [`poll`](Self::poll) at that time may still yield nothing (the hop
    /// was not the last one): ask again after polling.
    pub fn next_event(&self) -> Option<Instant> {
        self.queue.next_time()
    }

    /// Moves datagrams along up to `now` and returns the next one delivered,
    /// or `None` when nothing more is due by `now`. Call it until `None`.
    /// Deliveries come in order of their `at`.
    pub fn poll(&mut self, now: Instant) -> Option<Delivery> {
        while let Some((at, (stage, pkt))) = self.queue.pop_due(now) {
            self.now = self.now.max(at);
            if let Some(d) = self.process(at, stage, pkt) {
                return Some(d);
            }
        }
        None
    }

    /// Datagrams (and copies) in flight.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// The latest virtual time the network has seen.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Hands a payload buffer back for reuse by later sends.
    pub fn recycle(&mut self, mut buf: Vec<u8>) {
        if self.buffers.len() < BUFFER_POOL {
            buf.clear();
            self.buffers.push(buf);
        }
    }

    /// Splits the network by LAN: hosts of LANs in different groups cannot
    /// reach each other; LANs in no group form one more group. Replaces any
    /// earlier partition.
    pub fn partition(&mut self, groups: &[&[LanId]]) {
        self.heal();
        for (g, lans) in groups.iter().enumerate() {
            for lan in *lans {
                self.lans[lan.index()].group = g as u32 + 1;
            }
        }
        self.partitioned = true;
    }

    /// Splits the network by host, like [`partition`](Self::partition).
    pub fn partition_hosts(&mut self, groups: &[&[HostId]]) {
        self.heal();
        for (g, hosts) in groups.iter().enumerate() {
            for h in *hosts {
                self.hosts[h.index()].group = g as u32 + 1;
            }
        }
        self.partitioned = true;
    }

    /// Whether a partition is in force.
    pub fn is_partitioned(&self) -> bool {
        self.partitioned
    }

    /// Ends any partition.
    pub fn heal(&mut self) {
        self.lans.iter_mut().for_each(|l| l.group = 0);
        self.hosts.iter_mut().for_each(|h| h.group = 0);
        self.partitioned = false;
    }

    /// Crashes (`false`) or revives (`true`) a host: a down host sends and
    /// receives nothing, including datagrams already in flight to it.
    pub fn set_host_up(&mut self, h: HostId, up: bool) {
        self.hosts[h.index()].up = up;
    }

    /// Whether `h` is up.
    pub fn is_host_up(&self, h: HostId) -> bool {
        self.hosts[h.index()].up
    }

    /// Network-wide counters.
    pub fn stats(&self) -> &NetStats {
        &self.stats
    }

    /// Counters of one host.
    pub fn host_stats(&self, h: HostId) -> &HostStats {
        &self.hosts[h.index()].stats
    }

    // ---- Internals ----

    fn advance(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Counts a datagram `h` sends; its source address if `h` is up.
    fn start(&mut self, h: HostId, src_port: u16, len: usize) -> Option<SocketAddrV4> {
        let host = &mut self.hosts[h.index()];
        host.stats.sent_packets += 1;
        host.stats.sent_bytes += len as u64;
        self.stats.sent_packets += 1;
        self.stats.sent_bytes += len as u64;
        if !host.up {
            self.stats.drops.record(DropReason::HostDown);
            return None;
        }
        Some(SocketAddrV4::new(host.addr, src_port))
    }

    fn buffer(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self.buffers.pop().unwrap_or_default();
        buf.extend_from_slice(bytes);
        buf
    }

    fn drop_packet(&mut self, reason: DropReason, pkt: Packet) {
        self.stats.drops.record(reason);
        self.recycle(pkt.bytes);
    }

    /// Carries `pkt` over `link`; it reaches `next` after the link's delay.
    fn forward(&mut self, at: Instant, link: LinkConfig, pkt: Packet, next: Stage) {
        self.forward_path(at, &[link], pkt, next)
    }

    /// Carries `pkt` over each link of `path` in turn (each applies its own
    /// faults, a copy made on one travels the rest on its own); it reaches
    /// `next` after their delays. The internet core between two uplinks
    /// keeps no state, so it needs no event of its own.
    fn forward_path(&mut self, at: Instant, path: &[LinkConfig], pkt: Packet, next: Stage) {
        let Some((link, rest)) = path.split_first() else {
            self.queue.push(at, (next, pkt));
            return;
        };
        match link.carry(&mut self.rng, pkt.bytes.len()) {
            Hop::Dropped(reason) => self.drop_packet(reason, pkt),
            Hop::Arrive { delay, duplicate } => {
                let copy = duplicate.map(|again| {
                    self.stats.duplicated += 1;
                    (
                        again,
                        Packet {
                            bytes: self.buffer(&pkt.bytes),
                            ..pkt
                        },
                    )
                });
                self.forward_path(at + delay, rest, pkt, next);
                if let Some((again, copy)) = copy {
                    self.forward_path(at + again, rest, copy, next);
                }
            }
        }
    }

    fn process(&mut self, at: Instant, stage: Stage, mut pkt: Packet) -> Option<Delivery> {
        let route = match stage {
            Stage::Segment(lan) => self.route_from_segment(at, lan, &mut pkt),
            Stage::Multicast(lan) => {
                self.fan_out(at, lan, pkt);
                return None;
            }
            Stage::Gateway(lan) => self.route_from_gateway(at, lan, &mut pkt),
            Stage::Host(h) => return self.deliver(at, h, pkt),
        };
        match route {
            Ok((path, next)) => self.forward_path(at, path.links(), pkt, next),
            Err(reason) => self.drop_packet(reason, pkt),
        }
        None
    }

    /// A datagram from a host of `lan` at its segment: to a neighbour, back
    /// through the NAT (hairpin), or out to the internet.
    fn route_from_segment(&mut self, at: Instant, lan: LanId, pkt: &mut Packet) -> Result<(Path, Stage), DropReason> {
        let l = &mut self.lans[lan.index()];
        let dst_ip = *pkt.dst.ip();
        match &mut l.gateway {
            Gateway::Public => match self.public.get(&dst_ip) {
                Some(&PublicOwner::Host(d)) if self.hosts[d.index()].lan == lan => {
                    Ok((Path::one(l.lan_link), Stage::Host(d)))
                }
                _ => {
                    let uplink = l.uplink;
                    self.across_internet(uplink, pkt)
                }
            },
            Gateway::Nat { subnet, nat } => {
                if subnet.contains(dst_ip) {
                    let d = l.private_host(dst_ip).ok_or(DropReason::UnknownDestination)?;
                    Ok((Path::one(l.lan_link), Stage::Host(d)))
                } else if dst_ip == nat.public_ip() {
                    if !nat.config().hairpin {
                        return Err(DropReason::Hairpin);
                    }
                    let ext = nat.outbound(at, &mut self.rng, pkt.src, pkt.dst)?;
                    let internal = nat.inbound(at, ext, pkt.dst.port())?;
                    pkt.src = ext;
                    pkt.dst = internal;
                    let d = l.private_host(*internal.ip()).ok_or(DropReason::UnknownDestination)?;
                    Ok((Path::one(l.lan_link), Stage::Host(d)))
                } else {
                    pkt.src = nat.outbound(at, &mut self.rng, pkt.src, pkt.dst)?;
                    let uplink = l.uplink;
                    self.across_internet(uplink, pkt)
                }
            }
        }
    }

    /// A datagram leaving a LAN over `uplink`: through the internet core and
    /// down the uplink of the LAN that owns its destination address.
    fn across_internet(&self, uplink: LinkConfig, pkt: &Packet) -> Result<(Path, Stage), DropReason> {
        let lan = match self.public.get(pkt.dst.ip()) {
            Some(&PublicOwner::Host(d)) => self.hosts[d.index()].lan,
            Some(&PublicOwner::Nat(lan)) => lan,
            None => return Err(DropReason::UnknownDestination),
        };
        Ok((Path::two(uplink, self.lans[lan.index()].uplink), Stage::Gateway(lan)))
    }

    /// A datagram from the internet at `lan`'s gateway: through the NAT if
    /// any, then to the host.
    fn route_from_gateway(&mut self, at: Instant, lan: LanId, pkt: &mut Packet) -> Result<(Path, Stage), DropReason> {
        let l = &mut self.lans[lan.index()];
        let d = match &mut l.gateway {
            Gateway::Public => match self.public.get(pkt.dst.ip()) {
                Some(&PublicOwner::Host(d)) => d,
                _ => return Err(DropReason::UnknownDestination),
            },
            Gateway::Nat { nat, .. } => {
                pkt.dst = nat.inbound(at, pkt.src, pkt.dst.port())?;
                l.private_host(*pkt.dst.ip()).ok_or(DropReason::UnknownDestination)?
            }
        };
        Ok((Path::one(l.lan_link), Stage::Host(d)))
    }

    /// A multicast at `lan`'s segment: a copy down every other host's link.
    fn fan_out(&mut self, at: Instant, lan: LanId, pkt: Packet) {
        let link = self.lans[lan.index()].lan_link;
        for i in 0..self.lans[lan.index()].hosts.len() {
            let d = self.lans[lan.index()].hosts[i];
            if d != pkt.origin {
                let copy = Packet {
                    bytes: self.buffer(&pkt.bytes),
                    ..pkt
                };
                self.forward(at, link, copy, Stage::Host(d));
            }
        }
        self.recycle(pkt.bytes);
    }

    fn group_of(&self, h: HostId) -> u32 {
        let host = &self.hosts[h.index()];
        if host.group != 0 {
            host.group
        } else {
            self.lans[host.lan.index()].group
        }
    }

    fn deliver(&mut self, at: Instant, h: HostId, pkt: Packet) -> Option<Delivery> {
        if !self.hosts[h.index()].up {
            self.drop_packet(DropReason::HostDown, pkt);
            return None;
        }
        if self.partitioned && self.group_of(pkt.origin) != self.group_of(h) {
            self.drop_packet(DropReason::Partition, pkt);
            return None;
        }
        let len = pkt.bytes.len() as u64;
        let stats = &mut self.hosts[h.index()].stats;
        stats.recv_packets += 1;
        stats.recv_bytes += len;
        self.stats.delivered_packets += 1;
        self.stats.delivered_bytes += len;
        Some(Delivery {
            at,
            host: h,
            dst_port: pkt.dst.port(),
            from: pkt.src.into(),
            bytes: pkt.bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::time::Duration;

    fn drain(net: &mut Network) -> Vec<Delivery> {
        std::iter::from_fn(|| net.poll(Instant::FAR_FUTURE)).collect()
    }

    fn to(net: &Network, h: HostId, port: u16) -> SocketAddr {
        SocketAddr::new(net.host_addr(h), port)
    }

    #[test]
    fn two_hosts_on_one_lan_talk_with_lan_latency_only() {
        let mut net = Network::new(1);
        let lan = net.add_lan(LanConfig::behind_nat(NatKind::Symmetric.into()));
        let (a, b) = (net.add_host(lan), net.add_host(lan));
        assert_eq!(net.host_addr(a), IpAddr::from([10, 0, 1, 2]));
        assert_eq!(net.host_addr(b), IpAddr::from([10, 0, 1, 3]));
        assert_eq!(net.public_addr(a), Some(IpAddr::from([203, 0, 113, 1])));

        let t = Instant::from_millis(3);
        net.send(t, a, 4000, to(&net, b, 5000), b"ping");
        let two_hops = DEFAULT_LAN_LATENCY * 2;
        assert_eq!(net.next_event(), Some(t + DEFAULT_LAN_LATENCY));
        assert_eq!(net.poll(t + DEFAULT_LAN_LATENCY), None, "at the segment, not yet at b");
        assert_eq!(net.poll(t + (two_hops - Duration::from_micros(1))), None);
        let d = net.poll(t + two_hops).expect("delivered");
        assert_eq!(
            d,
            Delivery {
                at: t + two_hops,
                host: b,
                dst_port: 5000,
                from: to(&net, a, 4000),
                bytes: b"ping".to_vec()
            }
        );
        assert_eq!(net.next_event(), None);

        net.send(d.at, b, 5000, d.from, b"pong");
        let r = drain(&mut net);
        assert_eq!(
            (r[0].host, r[0].dst_port, r[0].from, r[0].at),
            (a, 4000, to(&net, b, 5000), d.at + two_hops)
        );
        assert_eq!(net.nat_mappings(lan), 0, "LAN traffic never touches the NAT");
        assert_eq!(net.host_stats(a).sent_packets, 1);
        assert_eq!(net.host_stats(a).recv_bytes, 4);
        assert_eq!(net.host_stats(b).recv_packets, 1);
        assert_eq!(net.stats().delivered_packets, 2);
    }

    #[test]
    fn hosts_on_two_public_lans_see_both_uplinks() {
        let mut net = Network::new(1);
        let (l1, l2) = (net.add_lan(LanConfig::public()), net.add_lan(LanConfig::public()));
        let (a, b) = (net.add_host(l1), net.add_host(l2));
        assert_eq!(net.public_addr(a), None);
        net.send(Instant::ZERO, a, 1, to(&net, b, 2), b"x");
        let d = drain(&mut net).pop().unwrap();
        assert_eq!(d.at, Instant::ZERO + (DEFAULT_LAN_LATENCY + DEFAULT_UPLINK_LATENCY) * 2);
        assert_eq!(d.from, to(&net, a, 1));
    }

    /// A mixed, faulty network and a fixed pattern of traffic: all deliveries.
    fn scenario(seed: u64) -> Vec<(Instant, HostId, u16, SocketAddr, Vec<u8>)> {
        let faulty = LinkConfig::uplink()
            .with_loss(0.2)
            .with_jitter(Duration::from_millis(15))
            .with_duplicate(0.05)
            .with_reorder(0.05, Duration::from_millis(30));
        let mut net = Network::new(seed);
        let lans = [
            net.add_lan(LanConfig::public().with_uplink(faulty)),
            net.add_lan(LanConfig::behind_nat(NatKind::FullCone.into()).with_uplink(faulty)),
            net.add_lan(
                LanConfig::behind_nat(NatConfig::new(NatKind::FullCone).with_port_allocation(PortAllocation::Random))
                    .with_lan_link(LinkConfig::lan().with_jitter(Duration::from_millis(1))),
            ),
        ];
        let hosts: Vec<HostId> = lans.iter().flat_map(|&l| [net.add_host(l), net.add_host(l)]).collect();
        let server = to(&net, hosts[0], 7000);
        let mut out = vec![];
        for i in 0..300u32 {
            let h = hosts[i as usize % hosts.len()];
            let now = Instant::from_millis(i as u64 * 3);
            net.send(now, h, 5000 + (i % 3) as u16, server, &i.to_le_bytes());
            net.send_multicast(now, h, 6000, 6000, &[i as u8]);
            while let Some(d) = net.poll(now) {
                out.push((d.at, d.host, d.dst_port, d.from, d.bytes));
            }
        }
        out.extend(
            drain(&mut net)
                .into_iter()
                .map(|d| (d.at, d.host, d.dst_port, d.from, d.bytes)),
        );
        out
    }

    #[test]
    fn same_seed_same_run_other_seed_other_run() {
        let a = scenario(99);
        assert!(a.len() > 500, "{} deliveries", a.len());
        assert_eq!(a, scenario(99));
        assert_ne!(a, scenario(100));
    }

    #[test]
    fn multicast_reaches_the_lan_and_nothing_beyond() {
        let mut net = Network::new(1);
        let lan = net.add_lan(LanConfig::behind_nat(NatKind::FullCone.into()));
        let other = net.add_lan(LanConfig::behind_nat(NatKind::FullCone.into()));
        let public = net.add_lan(LanConfig::public());
        let (a, b, c) = (net.add_host(lan), net.add_host(lan), net.add_host(lan));
        let (x, p, q) = (net.add_host(other), net.add_host(public), net.add_host(public));
        net.send_multicast(Instant::ZERO, a, 5353, 5354, b"beacon");
        let got = drain(&mut net);
        let mut who: Vec<HostId> = got.iter().map(|d| d.host).collect();
        who.sort();
        assert_eq!(who, [b, c]);
        assert!(got
            .iter()
            .all(|d| d.dst_port == 5354 && d.from == to(&net, a, 5353) && d.bytes == b"beacon"));
        assert_eq!(net.host_stats(x).recv_packets, 0);
        // On a public LAN too.
        net.send_multicast(Instant::from_secs(1), p, 1, 2, b"hi");
        assert_eq!(drain(&mut net).iter().map(|d| d.host).collect::<Vec<_>>(), [q]);
        assert_eq!(net.stats().sent_packets, 2);
        assert_eq!(net.stats().delivered_packets, 3);
    }

    #[test]
    fn private_addresses_do_not_route_across_the_internet() {
        let mut net = Network::new(1);
        let (l1, l2) = (
            net.add_lan(LanConfig::behind_nat(NatKind::FullCone.into())),
            net.add_lan(LanConfig::behind_nat(NatKind::FullCone.into())),
        );
        let (a, b) = (net.add_host(l1), net.add_host(l2));
        net.send(Instant::ZERO, a, 1, to(&net, b, 1), b"x");
        // An unused address of a's own subnet, and an IPv6 destination.
        net.send(Instant::ZERO, a, 1, "10.0.1.99:1".parse().unwrap(), b"x");
        net.send(Instant::ZERO, a, 1, "[2001:db8::1]:1".parse().unwrap(), b"x");
        assert!(drain(&mut net).is_empty());
        assert_eq!(net.stats().drops.unknown_destination, 3);
    }

    #[test]
    fn overlapping_subnets_behind_different_nats_stay_apart() {
        let mut net = Network::new(1);
        let home = LanConfig::behind_nat(NatKind::FullCone.into()).with_subnet(Ipv4Addr::new(192, 168, 1, 0), 24);
        let (l1, l2) = (net.add_lan(home), net.add_lan(home));
        let (a, a2, b) = (net.add_host(l1), net.add_host(l1), net.add_host(l2));
        assert_eq!(net.host_addr(a), net.host_addr(b));
        net.send(Instant::ZERO, a, 1, to(&net, a2, 1), b"x");
        assert_eq!(drain(&mut net)[0].host, a2);
        net.send(Instant::ZERO, b, 1, to(&net, a2, 1), b"x");
        assert!(drain(&mut net).is_empty(), "192.168.1.3 is nobody on b's LAN");
    }

    #[test]
    fn partitions_split_lans_and_heal() {
        let mut net = Network::new(1);
        let (l1, l2, l3) = (
            net.add_lan(LanConfig::public()),
            net.add_lan(LanConfig::behind_nat(NatKind::FullCone.into())),
            net.add_lan(LanConfig::public()),
        );
        let (a, b, c) = (net.add_host(l1), net.add_host(l2), net.add_host(l3));
        let a2 = net.add_host(l1);
        // b opens its full-cone mapping.
        net.send(Instant::ZERO, b, 9, to(&net, a, 9), b"open");
        let mb = drain(&mut net)[0].from;

        net.partition(&[&[l1], &[l2]]);
        let t = Instant::from_secs(1);
        net.send(t, a, 9, mb, b"a->b");
        net.send(t, b, 9, to(&net, a, 9), b"b->a");
        net.send(t, c, 9, mb, b"c->b");
        net.send(t, a, 9, to(&net, a2, 9), b"a->a2");
        net.send(t, a, 9, to(&net, c, 9), b"a->c");
        let got: Vec<Vec<u8>> = drain(&mut net).into_iter().map(|d| d.bytes).collect();
        assert_eq!(got, [b"a->a2".to_vec()], "l3 is in neither group: a third group");
        assert_eq!(net.stats().drops.partition, 4);

        net.heal();
        let t = Instant::from_secs(2);
        net.send(t, a, 9, mb, b"a->b");
        net.send(t, c, 9, to(&net, a, 9), b"c->a");
        assert_eq!(drain(&mut net).len(), 2);
    }

    #[test]
    fn host_partitions_split_a_lan() {
        let mut net = Network::new(1);
        let lan = net.add_lan(LanConfig::behind_nat(NatKind::FullCone.into()));
        let (a, b, c) = (net.add_host(lan), net.add_host(lan), net.add_host(lan));
        net.partition_hosts(&[&[a, b], &[c]]);
        net.send_multicast(Instant::ZERO, a, 1, 1, b"beacon");
        assert_eq!(drain(&mut net).iter().map(|d| d.host).collect::<Vec<_>>(), [b]);
        // A datagram in flight when the partition heals gets through.
        net.send(Instant::from_secs(1), a, 1, to(&net, c, 1), b"x");
        net.heal();
        assert_eq!(drain(&mut net).len(), 1);
    }

    #[test]
    fn a_down_host_neither_sends_nor_receives() {
        let mut net = Network::new(1);
        let (l1, l2) = (net.add_lan(LanConfig::public()), net.add_lan(LanConfig::public()));
        let (a, b) = (net.add_host(l1), net.add_host(l2));
        net.set_host_up(b, false);
        assert!(!net.is_host_up(b));
        net.send(Instant::ZERO, a, 1, to(&net, b, 1), b"to b");
        net.send(Instant::ZERO, b, 1, to(&net, a, 1), b"from b");
        assert!(drain(&mut net).is_empty());
        assert_eq!(net.stats().drops.host_down, 2);
        assert_eq!(net.host_stats(b).sent_packets, 1);

        // Crash while a datagram is in flight: it is lost; after restart all is well.
        net.set_host_up(b, true);
        net.send(Instant::from_secs(1), a, 1, to(&net, b, 1), b"in flight");
        assert!(net.poll(Instant::from_secs(1) + Duration::from_millis(1)).is_none());
        net.set_host_up(b, false);
        assert!(drain(&mut net).is_empty());
        net.set_host_up(b, true);
        net.send(Instant::from_secs(2), a, 1, to(&net, b, 1), b"again");
        assert_eq!(drain(&mut net).len(), 1);
        assert_eq!(net.stats().drops.host_down, 3);
    }

    #[test]
    fn a_moved_host_sends_and_receives_at_its_new_address_only() {
        let mut net = Network::new(1);
        let public = net.add_lan(LanConfig::public());
        let (home, cafe) = (
            net.add_lan(LanConfig::behind_nat(NatKind::PortRestrictedCone.into())),
            net.add_lan(LanConfig::behind_nat(NatKind::PortRestrictedCone.into())),
        );
        let server = net.add_host(public);
        let (laptop, neighbour) = (net.add_host(home), net.add_host(home));
        let server_ep = to(&net, server, 9);
        net.send(Instant::ZERO, laptop, 9, server_ep, b"from home");
        let at_home = drain(&mut net)[0].from;
        assert_eq!(at_home.ip(), net.public_addr(laptop).unwrap());

        net.move_host(laptop, cafe);
        assert_eq!(net.lan_of(laptop), cafe);
        assert_eq!(net.hosts_on(home), [neighbour]);
        assert_eq!(net.hosts_on(cafe), [laptop]);
        let t = Instant::from_secs(1);
        net.send(t, laptop, 9, server_ep, b"from the cafe");
        let d = drain(&mut net).pop().unwrap();
        assert_eq!(d.from.ip(), net.public_addr(laptop).unwrap());
        assert_ne!(d.from, at_home, "a new endpoint");
        // The server answers both: only the new endpoint reaches the laptop.
        net.send(t, server, 9, at_home, b"to the old endpoint");
        net.send(t, server, 9, d.from, b"to the new endpoint");
        let got = drain(&mut net);
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].host, got[0].bytes.as_slice()),
            (laptop, &b"to the new endpoint"[..])
        );
        // Its old private address names nobody; the neighbour keeps its own.
        net.send(t, neighbour, 9, "10.0.1.2:9".parse().unwrap(), b"x");
        net.send(t, neighbour, 9, server_ep, b"y");
        assert_eq!(drain(&mut net).iter().map(|d| d.host).collect::<Vec<_>>(), [server]);
        // Both died at the old private address: the old NAT's live mapping
        // led the server's datagram there too.
        assert_eq!(net.stats().drops.unknown_destination, 2);

        // And from the internet to a public LAN.
        net.move_host(laptop, public);
        assert_eq!(net.public_addr(laptop), None);
        net.send(Instant::from_secs(2), server, 9, to(&net, laptop, 9), b"z");
        assert_eq!(drain(&mut net)[0].host, laptop);
    }

    #[test]
    fn a_reset_nat_forgets_its_mappings_and_may_change_address() {
        let mut net = Network::new(1);
        let public = net.add_lan(LanConfig::public());
        let nat = NatConfig::new(NatKind::FullCone).with_port_allocation(PortAllocation::Random);
        let home = net.add_lan(LanConfig::behind_nat(nat));
        let (server, h) = (net.add_host(public), net.add_host(home));
        let server_ep = to(&net, server, 9);
        net.send(Instant::ZERO, h, 9, server_ep, b"open");
        let first = drain(&mut net)[0].from;
        assert_eq!(net.nat_mappings(home), 1);

        net.reset_nat(home, false);
        assert_eq!(net.nat_mappings(home), 0);
        net.send(Instant::from_secs(1), server, 9, first, b"lost");
        assert!(drain(&mut net).is_empty(), "no mapping any more");
        assert_eq!(net.stats().drops.no_mapping, 1);

        let old_ip = net.public_addr(h).unwrap();
        net.reset_nat(home, true);
        let new_ip = net.public_addr(h).unwrap();
        assert_ne!(old_ip, new_ip);
        net.send(Instant::from_secs(2), h, 9, server_ep, b"again");
        let d = drain(&mut net).pop().unwrap();
        assert_eq!(d.from.ip(), new_ip);
        net.send(Instant::from_secs(2), server, 9, d.from, b"back");
        net.send(
            Instant::from_secs(2),
            server,
            9,
            SocketAddr::new(old_ip, first.port()),
            b"old",
        );
        let got = drain(&mut net);
        assert_eq!(got.iter().map(|d| d.host).collect::<Vec<_>>(), [h]);
        assert_eq!(net.stats().drops.unknown_destination, 1, "the old address is nobody's");
    }

    #[test]
    fn time_never_runs_backwards_and_buffers_are_reused() {
        let mut net = Network::new(1);
        let lan = net.add_lan(LanConfig::public());
        let (a, b) = (net.add_host(lan), net.add_host(lan));
        net.send(Instant::from_secs(5), a, 1, to(&net, b, 1), b"first");
        let d = drain(&mut net).pop().unwrap();
        let (at, ptr) = (d.at, d.bytes.as_ptr());
        net.recycle(d.bytes);
        // A send "in the past" happens now, in the recycled buffer.
        net.send(Instant::from_secs(1), a, 1, to(&net, b, 1), b"second");
        assert!(net.next_event().unwrap() > at);
        let d = drain(&mut net).pop().unwrap();
        assert_eq!((d.bytes.as_slice(), d.bytes.as_ptr()), (&b"second"[..], ptr));
        assert_eq!(net.in_flight(), 0);
    }

    /// A timing run, not a test of correctness:
    /// `cargo test -p firmware-sim --release -- --ignored --nocapture throughput`.
    #[test]
    #[ignore = "timing run; prints datagrams per second"]
    fn throughput() {
        let mut net = Network::new(7);
        let mut hosts = vec![];
        for i in 0..100 {
            let cfg = match i % 4 {
                0 => LanConfig::public(),
                1 => LanConfig::behind_nat(NatKind::FullCone.into()),
                2 => LanConfig::behind_nat(NatKind::PortRestrictedCone.into()),
                _ => LanConfig::behind_nat(NatKind::Symmetric.into()),
            };
            let lan = net.add_lan(cfg.with_uplink(LinkConfig::uplink().with_jitter(Duration::from_millis(5))));
            for _ in 0..10 {
                hosts.push(net.add_host(lan));
            }
        }
        let public: Vec<HostId> = hosts
            .iter()
            .copied()
            .filter(|&h| net.public_addr(h).is_none())
            .collect();
        let payload = [0u8; 200];
        let n = 2_000_000u64;
        let start = std::time::Instant::now();
        let mut now = Instant::ZERO;
        let mut delivered = 0u64;
        for i in 0..n {
            // Every host talks to a public host (through its NAT if it has one),
            // the public host answers to the address it saw.
            let h = hosts[(i * 7919 % hosts.len() as u64) as usize];
            let p = public[(i % public.len() as u64) as usize];
            net.send(now, h, 51820, to(&net, p, 51820), &payload);
            if i % 100 == 0 {
                now += Duration::from_millis(1);
                while let Some(d) = net.poll(now) {
                    delivered += 1;
                    if d.host == p && i % 2 == 0 {
                        net.send(now, d.host, 51820, d.from, &payload);
                    }
                    net.recycle(d.bytes);
                }
            }
        }
        while let Some(d) = net.poll(Instant::FAR_FUTURE) {
            delivered += 1;
            net.recycle(d.bytes);
        }
        let secs = start.elapsed().as_secs_f64();
        let s = net.stats();
        println!(
            "throughput: {} sent, {delivered} delivered, {} dropped in {secs:.2} s of wall time: {:.0} datagrams/s sent+delivered",
            s.sent_packets,
            s.drops.total(),
            s.sent_packets as f64 / secs
        );
    }
}
