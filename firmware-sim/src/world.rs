//! [`World`]: many `kairos-core` [`Node`]s on one simulated [`Network`],
//! driven on virtual time.
//!
//! The world owns the nodes, hands each datagram the network delivers to
//! the node on that host, sends whatever the nodes want sent, and fires
//! node timers in time order (a heap of each node's `poll_timeout`, with
//! stale entries skipped). Every random choice comes from seeds: the same
//! seed and the same calls give the same run.
//!
//! It never decides anything a node should decide: it only moves bytes and
//! time, as the host's driver does with real sockets and clocks.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{Ipv6Addr, SocketAddr};

use kairos_core::crypto::RingCompactProvider;
use kairos_core::election::{MemberView, MAX_RECORD_LEN};
use kairos_core::identity::{Identity, NodeId};
use kairos_core::ledger::Ledger;
use kairos_core::node::{
    BoxedTunnels, Destination, Event, Input, MemberSlot, Node, NodeConfig, Outbound, HEADROOM, TAILROOM,
};
use kairos_core::session::DropReason;
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use std::collections::HashMap;

use crate::embedded::EmbeddedHost;
use crate::net::{HostId, LanId, Network};
pub use crate::verifier::SharedVerifier;

/// The crypto provider simulated nodes use: ring's ChaCha20-Poly1305, as
/// hosts use, with keys kept unexpanded (a tunnel takes 2.3 KiB instead of
/// 5.5, and each node has one per member slot; the same bytes on the
/// wire). The embedded member keeps the no_std RustCrypto one.
pub type Provider = RingCompactProvider;
/// Ledger entries a simulated node holds at most.
pub const LEDGER_ENTRIES: usize = 8192;
/// Bytes of ledger storage per simulated node.
pub const LEDGER_ARENA: usize = 512 * 1024;
/// A simulated node's ledger.
pub type SimLedger = Ledger<LEDGER_ENTRIES, LEDGER_ARENA>;
/// A simulated node.
pub type SimNode = Node<
    Provider,
    ChaCha20Rng,
    SharedVerifier,
    Box<[MemberSlot<Provider>]>,
    BoxedTunnels<Provider>,
    Box<SimLedger>,
    Box<[MemberView]>,
    LEDGER_ENTRIES,
    LEDGER_ARENA,
>;

/// The UDP port every simulated node listens on.
pub const PORT: u16 = 51820;
/// The wall-clock time at virtual `Instant::ZERO` (2027-01-15): every node's
/// clock reads this plus the virtual time, unless it was restarted with
/// [`World::restart_with_clock`].
pub const WALL_AT_ZERO: Duration = Duration::from_secs(1_800_000_000);

/// One node and the host it runs on.
pub struct SimHost {
    /// The network host.
    pub host: HostId,
    /// The node.
    pub node: SimNode,
    /// Events the node reported, with when.
    pub events: Vec<(Instant, Event)>,
    /// Overlay IP packets delivered to this node's stack: (when, packet).
    pub delivered: Vec<(Instant, Vec<u8>)>,
    /// Datagrams the node refused, by reason.
    pub drops: Vec<DropReason>,
    /// The timer entry in the heap that is current for this node.
    timer: Option<Instant>,
    /// What the node needs to start again after a crash: its identity (its
    /// "state dir") and its configuration.
    identity: [u8; 64],
    network: NetworkKeys,
    config: NodeConfig,
    capacity: usize,
    /// The role record the node last asked to persist (its state dir).
    role_record: Option<Vec<u8>>,
}

/// See the module docs.
pub struct World {
    /// The network.
    pub net: Network,
    /// The nodes, in the order they were added.
    pub hosts: Vec<SimHost>,
    /// The embedded nodes (no_std firmware on embassy-net), in the order
    /// they were added.
    pub embedded: Vec<EmbeddedHost>,
    embedded_by_host: Vec<Option<usize>>,
    now: Instant,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    by_host: Vec<Option<usize>>,
    seed: u64,
    buf: Vec<u8>,
    /// The verifier every node shares (see [`SharedVerifier`]).
    pub verifier: SharedVerifier,
}

impl World {
    /// An empty world; `seed` drives the network and every node's RNG.
    pub fn new(seed: u64) -> Self {
        World {
            net: Network::new(seed),
            hosts: Vec::new(),
            embedded: Vec::new(),
            embedded_by_host: Vec::new(),
            now: Instant::ZERO,
            timers: BinaryHeap::new(),
            by_host: Vec::new(),
            seed,
            buf: vec![0u8; 65536],
            verifier: SharedVerifier::default(),
        }
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Adds a node on a new host of `lan`, with `capacity` member slots.
    /// Its port is set to [`PORT`]. Returns the node's index.
    pub fn add_node(&mut self, lan: LanId, network: &NetworkKeys, mut config: NodeConfig, capacity: usize) -> usize {
        let index = self.hosts.len();
        let mut rng = ChaCha20Rng::seed_from_u64(self.seed ^ (0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index as u64 + 1)));
        let identity = Identity::generate(&mut rng);
        config.port = PORT;
        let saved = *identity.to_bytes();
        let node = self.start_node(identity, network, config.clone(), rng, capacity, WALL_AT_ZERO);
        let host = self.net.add_host(lan);
        if self.by_host.len() <= host.index() {
            self.by_host.resize(host.index() + 1, None);
        }
        self.by_host[host.index()] = Some(index);
        self.hosts.push(SimHost {
            host,
            node,
            events: Vec::new(),
            delivered: Vec::new(),
            drops: Vec::new(),
            timer: None,
            identity: saved,
            network: network.clone(),
            config,
            capacity,
            role_record: None,
        });
        self.reschedule(index);
        index
    }

    /// Adds an embedded node (the `kairos-embedded` firmware on
    /// embassy-net; see [`crate::embedded`]) on a new host of `lan`, with
    /// `config` (its port, beacons and roles are the firmware's). Returns
    /// its index in [`World::embedded`].
    pub fn add_embedded(&mut self, lan: LanId, network: &NetworkKeys, config: NodeConfig) -> usize {
        let index = self.embedded.len();
        let seed = self.seed ^ 0x5bd1_e995_u64.wrapping_mul(index as u64 + 1).rotate_left(17);
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let identity = Identity::generate(&mut rng);
        let host = self.net.add_host(lan);
        let addr = self.net.host_addr(host);
        if self.embedded_by_host.len() <= host.index() {
            self.embedded_by_host.resize(host.index() + 1, None);
        }
        self.embedded_by_host[host.index()] = Some(index);
        let e = EmbeddedHost::start(self.now, host, addr, identity, network, config, seed);
        self.embedded.push(e);
        self.flush_embedded(index);
        index
    }

    /// Sends what embedded node `j` transmitted while it started.
    fn flush_embedded(&mut self, j: usize) {
        let now = self.now;
        self.embedded[j].run(&mut self.net, now);
    }

    fn start_node(
        &self,
        identity: Identity,
        network: &NetworkKeys,
        config: NodeConfig,
        rng: ChaCha20Rng,
        capacity: usize,
        wall_at_zero: Duration,
    ) -> SimNode {
        let slots: Box<[MemberSlot<Provider>]> = (0..capacity).map(|_| None).collect();
        Node::new(
            identity,
            network,
            config,
            rng,
            slots,
            // A tunnel per member slot, allocated as its session starts.
            BoxedTunnels::new(capacity),
            Box::default(),
            self.verifier.clone(),
            vec![MemberView::default(); capacity + 1].into_boxed_slice(),
            wall_at_zero,
        )
    }

    /// Crashes node `i`: its host stops sending and receiving, and
    /// everything the node held in memory is lost.
    pub fn crash(&mut self, i: usize) {
        self.net.set_host_up(self.hosts[i].host, false);
    }

    /// Starts node `i` again after a crash, with the same identity and role
    /// record (what it keeps on disk) and an empty ledger: it learns the
    /// rest from the mesh.
    pub fn restart(&mut self, i: usize) {
        self.restart_with_clock(i, WALL_AT_ZERO);
    }

    /// Starts node `i` again after a crash, like [`restart`](Self::restart),
    /// with its wall clock reading `wall_at_zero` plus the virtual time: a
    /// machine whose clock was set back (or forward) while it was down. The
    /// node reads the wall clock once, at start, as the host does; its
    /// monotonic time is the world's.
    pub fn restart_with_clock(&mut self, i: usize, wall_at_zero: Duration) {
        let h = &self.hosts[i];
        let identity = Identity::from_bytes(&h.identity);
        let rng = ChaCha20Rng::seed_from_u64(self.seed ^ self.now.as_micros() ^ i as u64);
        let mut node = self.start_node(
            identity,
            &h.network.clone(),
            h.config.clone(),
            rng,
            h.capacity,
            wall_at_zero,
        );
        if let Some(record) = &h.role_record {
            node.restore_role_record(record).expect("the node wrote it");
        }
        self.hosts[i].node = node;
        self.hosts[i].timer = None;
        self.net.set_host_up(self.hosts[i].host, true);
        self.reschedule(i);
    }

    /// Moves node `i`'s host to another LAN (see
    /// [`Network::move_host`]): its underlay address changes under a
    /// running node, which is told nothing, as a host's driver is not.
    pub fn move_node(&mut self, i: usize, to: LanId) {
        self.net.move_host(self.hosts[i].host, to);
    }

    /// The UDP endpoint other nodes use for node `i` from outside its LAN
    /// (its NAT's address if it has one; the port is the node's own, which a
    /// NAT may or may not keep).
    pub fn endpoint(&self, i: usize) -> SocketAddr {
        let h = self.hosts[i].host;
        SocketAddr::new(self.net.public_addr(h).unwrap_or_else(|| self.net.host_addr(h)), PORT)
    }

    /// Node `i`'s id.
    pub fn id(&self, i: usize) -> NodeId {
        self.hosts[i].node.node_id()
    }

    /// Runs until virtual time `until`.
    pub fn run_until(&mut self, until: Instant) {
        // Timer firings per node at the current instant (many nodes may
        // legitimately fire at one instant; one node firing over and over
        // without time moving is a bug).
        let mut spins: HashMap<usize, u32> = HashMap::new();
        let mut spin_instant = self.now;
        loop {
            let net_next = self.net.next_event();
            let timer_next = self.timers.peek().map(|Reverse((t, _))| *t);
            let embedded_next = self.embedded.iter().filter_map(|e| e.wake).min();
            let Some(next) = [net_next, timer_next, embedded_next].into_iter().flatten().min() else {
                break;
            };
            if next > until {
                break;
            }
            self.now = self.now.max(next);
            if net_next == Some(next) {
                while let Some(d) = self.net.poll(self.now) {
                    let Some(i) = self.by_host.get(d.host.index()).copied().flatten() else {
                        match self.embedded_by_host.get(d.host.index()).copied().flatten() {
                            Some(j) => self.embedded[j].deliver(&mut self.net, d),
                            None => self.net.recycle(d.bytes),
                        }
                        continue;
                    };
                    let mut bytes = d.bytes;
                    let now = self.now;
                    let h = &mut self.hosts[i];
                    match h.node.handle_datagram(now, d.from, &mut bytes) {
                        Ok(Input::Deliver(p)) => h.delivered.push((now, p.to_vec())),
                        Ok(Input::Consumed) => {}
                        Ok(Input::Send { to, datagram }) => {
                            let host = h.host;
                            self.net.send(now, host, PORT, to, datagram);
                        }
                        Err(e) => h.drops.push(e),
                    }
                    self.net.recycle(bytes);
                    self.flush(i);
                }
            } else if embedded_next == Some(next) {
                let now = self.now;
                for e in &mut self.embedded {
                    if e.wake.is_some_and(|t| t <= now) {
                        e.run(&mut self.net, now);
                    }
                }
            } else {
                let Reverse((t, i)) = self.timers.pop().expect("peeked");
                if self.hosts[i].timer != Some(t) {
                    continue; // stale entry
                }
                // A node whose timer never moves past `now` would spin here
                // forever: catch it as the bug it is.
                if t != spin_instant {
                    spins.clear();
                    spin_instant = t;
                }
                let n = spins.entry(i).or_insert(0);
                *n += 1;
                assert!(
                    *n < 10_000,
                    "node {i} keeps asking for a timer at {t:?}: its poll_timeout never advances; timers: {:?}",
                    self.hosts[i].node.timers()
                );
                self.hosts[i].timer = None;
                let now = self.now;
                self.hosts[i].node.handle_timeout(now);
                self.flush(i);
            }
        }
        self.now = self.now.max(until);
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    /// Sends whatever node `i` wants sent, collects its events, and
    /// reschedules its timer.
    fn flush(&mut self, i: usize) {
        let now = self.now;
        let World { net, hosts, buf, .. } = self;
        let h = &mut hosts[i];
        while let Some(t) = h.node.poll_transmit(now, buf) {
            match t.destination {
                Destination::Unicast(to) => net.send(now, h.host, PORT, to, &buf[..t.len]),
                Destination::LanMulticast => net.send_multicast(now, h.host, PORT, PORT, &buf[..t.len]),
            }
        }
        while let Some(e) = h.node.poll_event() {
            if e == Event::RoleRecordChanged {
                let mut record = [0u8; MAX_RECORD_LEN];
                h.role_record = h.node.role_record(&mut record).map(|n| record[..n].to_vec());
            }
            h.events.push((now, e));
        }
        // k3s starts at once in the simulation: the role sticks (and the
        // record it writes goes out at the next timer).
        if h.node.role_to_deploy().is_some() {
            h.node.role_deployed(now);
        }
        self.reschedule(i);
    }

    fn reschedule(&mut self, i: usize) {
        let t = self.hosts[i].node.poll_timeout();
        if t != self.hosts[i].timer {
            self.hosts[i].timer = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t.max(self.now), i)));
                self.hosts[i].timer = Some(t.max(self.now));
            }
        }
    }

    /// Sends an overlay IPv6 packet from node `a` to node `b` (`marker` in its
    /// payload). The packet may be refused (no route, no session yet).
    pub fn send_ip(&mut self, a: usize, b: usize, marker: u32) -> Result<(), DropReason> {
        let src = self.hosts[a].node.ipv6();
        let dst = self.hosts[b].node.ipv6();
        self.send_packet(a, &ipv6_packet(src, dst, marker))
    }

    /// Hands the overlay IP `packet` to node `a`, as its local stack would
    /// (`handle_ip_packet`), and sends the datagram it makes. The packet may
    /// be refused (no route) or held (no session yet).
    pub fn send_packet(&mut self, a: usize, packet: &[u8]) -> Result<(), DropReason> {
        let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
        buf[HEADROOM..][..packet.len()].copy_from_slice(packet);
        let now = self.now;
        let h = &mut self.hosts[a];
        let result = match h.node.handle_ip_packet(now, &mut buf, packet.len()) {
            Ok(Outbound::Datagram { to, datagram }) => Ok(Some((to, datagram.to_vec()))),
            Ok(Outbound::Queued) => Ok(None),
            Err(e) => Err(e),
        };
        let host = h.host;
        if let Ok(Some((to, datagram))) = &result {
            self.net.send(now, host, PORT, *to, datagram);
        }
        self.flush(a);
        result.map(|_| ())
    }

    /// Whether node `b` received the packet `send_ip(a, b, marker)` sent.
    pub fn received(&self, a: usize, b: usize, marker: u32) -> bool {
        let src = self.hosts[a].node.ipv6().octets();
        self.hosts[b]
            .delivered
            .iter()
            .any(|(_, p)| p[8..24] == src && p[40..44] == marker.to_be_bytes())
    }
}

/// A minimal IPv6 packet (next header 253, "experimentation") carrying `marker`.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, marker: u32) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&8u16.to_be_bytes());
    p[6] = 253;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40..44].copy_from_slice(&marker.to_be_bytes());
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::LanConfig;

    fn lan_world(seed: u64, n: usize) -> World {
        let mut w = World::new(seed);
        let lan = w.net.add_lan(LanConfig::public());
        let keys = NetworkKeys::derive(&[7; 32]);
        for _ in 0..n {
            w.add_node(lan, &keys, NodeConfig::default(), n + 4);
        }
        w
    }

    #[test]
    fn lan_nodes_discover_each_other_and_exchange_packets() {
        let mut w = lan_world(1, 5);
        w.run_for(Duration::from_secs(5));
        for i in 0..5 {
            assert_eq!(w.hosts[i].node.members().count(), 4, "node {i}");
        }
        for a in 0..5 {
            for b in 0..5 {
                if a != b {
                    let _ = w.send_ip(a, b, (a * 10 + b) as u32);
                }
            }
        }
        w.run_for(Duration::from_secs(1));
        // Sessions are on demand: a refused first packet starts a handshake;
        // send again once it is up.
        for a in 0..5 {
            for b in 0..5 {
                if a != b && !w.received(a, b, (a * 10 + b) as u32) {
                    w.send_ip(a, b, (a * 10 + b) as u32).unwrap();
                }
            }
        }
        w.run_for(Duration::from_secs(1));
        for a in 0..5 {
            for b in 0..5 {
                assert!(a == b || w.received(a, b, (a * 10 + b) as u32), "{a} -> {b}");
            }
        }
    }

    #[test]
    fn same_seed_same_run() {
        let trace = |seed| {
            let mut w = lan_world(seed, 4);
            w.run_for(Duration::from_secs(20));
            w.hosts.iter().map(|h| h.events.clone()).collect::<Vec<_>>()
        };
        assert_eq!(trace(3), trace(3));
        assert_ne!(trace(3), trace(4));
    }
}
