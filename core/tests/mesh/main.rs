//! Several nodes on an ideal in-memory LAN under virtual time: discovery by
//! beacons and by bootstrap hellos, sessions, and overlay IPv6 packets
//! between every pair. (The simulator in `firmware-sim` adds real network
//! behaviour: latency, loss, NATs.)

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use kairos_core::crypto::RustCryptoProvider;
use kairos_core::election::MemberView;
use kairos_core::identity::Identity;
use kairos_core::ledger::wire::range_of;
use kairos_core::ledger::{Ed25519Verifier, Ledger, RANGES};
use kairos_core::node::{
    ipam, sync, Destination, Event, Input, MemberSlot, Node, NodeConfig, Outbound, TunnelSlot, HEADROOM, TAILROOM,
};
use kairos_core::session::DropReason;
use kairos_core::time::{Duration, Instant};
use kairos_core::token::{NetworkKeys, OverlayRange};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type TestLedger = Ledger<256, 65536>;
type TestNode = Node<
    RustCryptoProvider,
    ChaCha20Rng,
    Ed25519Verifier,
    Vec<MemberSlot<RustCryptoProvider>>,
    Vec<TunnelSlot<RustCryptoProvider>>,
    Box<TestLedger>,
    Vec<MemberView>,
    256,
    65536,
>;

struct Lan {
    now: Instant,
    nodes: Vec<TestNode>,
    addrs: Vec<SocketAddr>,
    wire: VecDeque<(usize, SocketAddr, Vec<u8>)>,
    delivered: Vec<Vec<(Vec<u8>, SocketAddr)>>,
    events: Vec<Vec<Event>>,
    drops: Vec<Vec<DropReason>>,
    /// Nodes whose multicast reaches the others.
    multicast: bool,
    /// Every unicast datagram sent: (to, from, bytes).
    sent: Vec<(usize, SocketAddr, Vec<u8>)>,
    /// LAN beacons sent (multicast datagrams), by all nodes.
    beacons: usize,
    /// A node whose datagrams are lost, both ways (unplugged).
    unplugged: Option<usize>,
    /// Nodes behind a port forward (or a NAT that changes ports): the
    /// address the others reach them at and see their datagrams come from.
    mapped: Vec<Option<SocketAddr>>,
    /// Datagrams lost on the way: (from, to, length, how many more).
    lose: Option<(usize, usize, usize, usize)>,
}

fn node(seed: u64, net: &NetworkKeys, config: NodeConfig, capacity: usize) -> TestNode {
    node_with_tunnels(seed, net, config, capacity, capacity)
}

fn node_with_tunnels(seed: u64, net: &NetworkKeys, config: NodeConfig, capacity: usize, tunnels: usize) -> TestNode {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let id = Identity::generate(&mut rng);
    Node::new(
        id,
        net,
        config,
        rng,
        (0..capacity).map(|_| None).collect(),
        (0..tunnels).map(|_| None).collect(),
        Box::default(),
        Ed25519Verifier,
        vec![MemberView::default(); capacity + 1],
        Duration::from_secs(1_800_000_000),
    )
}

impl Lan {
    fn new(n: usize, configure: impl Fn(usize, &mut NodeConfig)) -> Self {
        let net = NetworkKeys::derive(&[1; 32]);
        Self::with_networks(n, |_| net.clone(), configure)
    }

    fn with_networks(n: usize, net: impl Fn(usize) -> NetworkKeys, configure: impl Fn(usize, &mut NodeConfig)) -> Self {
        let addrs: Vec<SocketAddr> = (0..n)
            .map(|i| SocketAddr::new([10, 0, 0, i as u8 + 1].into(), 51820))
            .collect();
        let nodes = (0..n)
            .map(|i| {
                let mut c = NodeConfig::default();
                c.port = 51820;
                configure(i, &mut c);
                node(i as u64 + 100, &net(i), c, 32)
            })
            .collect();
        Lan {
            now: Instant::from_secs(1),
            nodes,
            addrs,
            wire: VecDeque::new(),
            delivered: vec![Vec::new(); n],
            events: vec![Vec::new(); n],
            drops: vec![Vec::new(); n],
            multicast: true,
            sent: Vec::new(),
            beacons: 0,
            unplugged: None,
            mapped: vec![None; n],
            lose: None,
        }
    }

    /// Starts one more node on the LAN now, with the first node's keys;
    /// returns its index.
    fn join(&mut self, configure: impl Fn(&mut NodeConfig)) -> usize {
        let i = self.nodes.len();
        let mut c = NodeConfig::default();
        c.port = 51820;
        configure(&mut c);
        self.nodes
            .push(node(i as u64 + 100, &NetworkKeys::derive(&[1; 32]), c, 32));
        self.addrs.push(SocketAddr::new([10, 0, 0, i as u8 + 1].into(), 51820));
        self.delivered.push(Vec::new());
        self.events.push(Vec::new());
        self.drops.push(Vec::new());
        self.mapped.push(None);
        i
    }

    fn index_of(&self, addr: SocketAddr) -> Option<usize> {
        self.addrs
            .iter()
            .position(|a| *a == addr)
            .or_else(|| self.mapped.iter().position(|m| *m == Some(addr)))
    }

    /// Where node `i`'s datagrams come from, as the others see it.
    fn seen_from(&self, i: usize) -> SocketAddr {
        self.mapped[i].unwrap_or(self.addrs[i])
    }

    fn flush(&mut self) -> bool {
        let mut any = false;
        let mut out = vec![0u8; 2048];
        for i in 0..self.nodes.len() {
            while let Some(t) = self.nodes[i].poll_transmit(self.now, &mut out) {
                any = true;
                let bytes = out[..t.len].to_vec();
                match t.destination {
                    Destination::Unicast(to) => {
                        if let Some(j) = self.index_of(to) {
                            if let Some((from, to, len, n)) = self.lose.as_mut() {
                                if (*from, *to, *len) == (i, j, bytes.len()) && *n > 0 {
                                    *n -= 1;
                                    continue;
                                }
                            }
                            self.sent.push((j, self.seen_from(i), bytes.clone()));
                            self.wire.push_back((j, self.seen_from(i), bytes));
                        }
                    }
                    Destination::LanMulticast => {
                        self.beacons += 1;
                        if self.multicast {
                            for j in 0..self.nodes.len() {
                                self.wire.push_back((j, self.addrs[i], bytes.clone()));
                            }
                        }
                    }
                }
            }
            while let Some(e) = self.nodes[i].poll_event() {
                self.events[i].push(e);
            }
        }
        any
    }

    fn drive(&mut self) {
        for _ in 0..100_000 {
            let sent = self.flush();
            match self.wire.pop_front() {
                Some((to, from, _)) if self.unplugged.is_some_and(|u| u == to || self.seen_from(u) == from) => {}
                Some((to, from, mut bytes)) => {
                    let now = self.now;
                    match self.nodes[to].handle_datagram(now, from, &mut bytes) {
                        Ok(Input::Deliver(p)) => self.delivered[to].push((p.to_vec(), from)),
                        Ok(Input::Consumed) => {}
                        Ok(Input::Send { to: next, datagram }) => {
                            let j = self.index_of(next).expect("relayed to a LAN address");
                            self.wire.push_back((j, self.seen_from(to), datagram.to_vec()));
                        }
                        Err(e) => self.drops[to].push(e),
                    }
                }
                None if !sent => return,
                None => {}
            }
        }
        panic!("the LAN did not go quiet");
    }

    fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        self.drive();
        for _ in 0..1_000_000 {
            let next = self.nodes.iter().filter_map(|n| n.poll_timeout()).min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    for n in &mut self.nodes {
                        n.handle_timeout(self.now);
                    }
                    self.drive();
                }
                _ => {
                    self.now = until;
                    for n in &mut self.nodes {
                        n.handle_timeout(until);
                    }
                    self.drive();
                    return;
                }
            }
        }
        panic!("timers kept firing");
    }

    /// Sends an IPv6 packet from node `a` to node `b`'s overlay address.
    fn send_v6(&mut self, a: usize, b: usize, marker: u8) -> Result<(), DropReason> {
        let src = self.nodes[a].ipv6();
        let dst = self.nodes[b].ipv6();
        let packet = ipv6_packet(src, dst, marker);
        let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
        buf[HEADROOM..][..packet.len()].copy_from_slice(&packet);
        let now = self.now;
        match self.nodes[a].handle_ip_packet(now, &mut buf, packet.len())? {
            Outbound::Datagram { to, datagram } => {
                let j = self.index_of(to).expect("routed to a LAN address");
                self.wire.push_back((j, self.seen_from(a), datagram.to_vec()));
            }
            Outbound::Queued => {}
        }
        Ok(())
    }
}

fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, marker: u8) -> Vec<u8> {
    let mut p = vec![0u8; 48];
    p[0] = 0x60;
    p[4..6].copy_from_slice(&8u16.to_be_bytes());
    p[6] = 253;
    p[7] = 64;
    p[8..24].copy_from_slice(&src.octets());
    p[24..40].copy_from_slice(&dst.octets());
    p[40] = marker;
    p
}

#[test]
fn three_nodes_on_a_lan_find_each_other_and_talk() {
    let mut lan = Lan::new(3, |_, _| {});
    lan.advance(Duration::from_secs(3));
    for i in 0..3 {
        assert_eq!(lan.nodes[i].members().count(), 2, "node {i} knows the others");
        assert!(lan.nodes[i].members().all(|m| m.is_up()), "node {i}: sessions up");
        let ups = lan.events[i].iter().filter(|e| matches!(e, Event::PeerUp(_))).count();
        assert_eq!(ups, 2);
    }
    for a in 0..3 {
        for b in 0..3 {
            if a != b {
                lan.send_v6(a, b, (a * 3 + b) as u8).unwrap();
            }
        }
    }
    lan.drive();
    for b in 0..3 {
        assert_eq!(lan.delivered[b].len(), 2, "node {b} got a packet from each other node");
        for (p, _) in &lan.delivered[b] {
            assert_eq!(&p[24..40], &lan.nodes[b].ipv6().octets());
        }
    }
    assert!(lan.drops.iter().all(|d| d.is_empty()), "{:?}", lan.drops);
}

#[test]
fn bootstrap_hello_without_multicast() {
    // Node 0 is the bootstrap; 1 and 2 know only its endpoint. No beacons.
    let boot = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 51820);
    let mut lan = Lan::new(3, |i, c| {
        c.lan_beacons = false;
        if i > 0 {
            c.bootstrap.push(boot).unwrap();
        }
    });
    lan.multicast = false;
    lan.advance(Duration::from_secs(2));
    assert_eq!(lan.nodes[0].members().count(), 2);
    assert!(lan.nodes[0].members().all(|m| m.is_up()));
    // 1 and 2 learned each other from the ledger (machines entries pushed
    // through the bootstrap), with the endpoint the bootstrap saw.
    assert_eq!(lan.nodes[1].members().count(), 2);
    let two = lan.nodes[2].node_id();
    assert_eq!(lan.nodes[1].member(&two).unwrap().endpoint(), Some(lan.addrs[2]));
    // 1 reaches 0 and 2 over the overlay (1 opened a session with 2 on its
    // own: it keeps up to `neighbors` sessions with the members it knows).
    assert!(lan.nodes[1].member(&two).unwrap().is_up());
    lan.send_v6(1, 0, 7).unwrap();
    lan.send_v6(1, 2, 8).unwrap();
    lan.drive();
    assert_eq!(lan.delivered[0].len(), 1);
    assert_eq!(lan.delivered[2].len(), 1);
    // Once settled, hellos stop and idle traffic is keepalives (25 s, per
    // session: 2 sessions, at most 6), anti-entropy digests (backed off to
    // one per 30 s, and their answers: at most 6), and the election's
    // liveness advertisements (one per 20 s: its own to 2 peers, and each
    // of the other two's forwarded once: 12).
    lan.advance(Duration::from_secs(60));
    let sent = lan.nodes[1].stats().tx_datagrams;
    lan.advance(Duration::from_secs(60));
    let idle = lan.nodes[1].stats().tx_datagrams - sent;
    assert!(idle <= 24, "{idle} datagrams in 60 s idle");
}

/// The top-up of proactive sessions (once a second) asks for no wake-up
/// while it has nothing to do, and runs again when a member it could
/// connect to appears.
#[test]
fn an_idle_node_is_not_woken_for_top_ups_until_a_member_could_take_one() {
    let boot = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 51820);
    let bootstrap = |i: usize, c: &mut NodeConfig| {
        c.lan_beacons = false;
        if i > 0 {
            c.bootstrap.push(boot).unwrap();
        }
    };
    let mut lan = Lan::new(2, bootstrap);
    lan.multicast = false;
    lan.advance(Duration::from_secs(30));
    assert!(lan.nodes[1].members().all(|m| m.is_up()));
    // Fewer sessions than `neighbors`, and no member without one.
    for (i, n) in lan.nodes.iter().enumerate() {
        let maintenance = n.timers().iter().find(|(name, _)| *name == "maintenance").unwrap().1;
        assert_eq!(maintenance, None, "node {i} is woken for top-ups that find nothing");
        let next = n.poll_timeout().expect("keepalives and the election keep timers");
        assert!(
            next > lan.now + Duration::from_secs(1),
            "node {i} wakes at {next:?}, now {:?}",
            lan.now
        );
    }
    // A third member, which node 1 learns of from the ledger only (no
    // beacons, no hello to it): its top-up connects to it. (The newcomer
    // wants one session, which its bootstrap gives it.)
    let two = lan.join(|c| {
        bootstrap(2, c);
        c.neighbors = 1;
    });
    lan.advance(Duration::from_secs(5));
    let id = lan.nodes[two].node_id();
    assert!(
        lan.nodes[1].member(&id).is_some_and(|m| m.is_up()),
        "node 1 topped up its sessions"
    );
}

#[test]
fn bootstrap_through_port_forwards_uses_the_ports_that_answered() {
    // Node 0, the bootstrap, is reached through a port forward at
    // 10.0.0.9:40000; node 1 is behind a NAT that maps its port 51820 to
    // 10.0.0.8:30000. Both announce port 51820, which neither is reachable
    // at: the hello and its reply must leave each at the address they came
    // from, not at the announced port.
    let forward = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)), 40000);
    let nat = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 8)), 30000);
    let mut lan = Lan::new(2, |i, c| {
        c.lan_beacons = false;
        if i == 1 {
            c.bootstrap.push(forward).unwrap();
        }
    });
    lan.multicast = false;
    lan.mapped = vec![Some(forward), Some(nat)];
    lan.advance(Duration::from_secs(2));
    let (zero, one) = (lan.nodes[0].node_id(), lan.nodes[1].node_id());
    let to_zero = lan.nodes[1].member(&zero).expect("1 knows 0");
    let to_one = lan.nodes[0].member(&one).expect("0 knows 1");
    assert!(to_zero.is_up() && to_one.is_up(), "the session is up");
    assert_eq!(to_zero.endpoint(), Some(forward));
    assert_eq!(to_one.endpoint(), Some(nat));
    lan.send_v6(1, 0, 5).unwrap();
    lan.drive();
    assert_eq!(lan.delivered[0].len(), 1);
}

#[test]
fn a_node_with_another_token_learns_nothing() {
    let good = NetworkKeys::derive(&[1; 32]);
    let bad = NetworkKeys::derive(&[2; 32]);
    let mut lan = Lan::with_networks(3, |i| if i == 2 { bad.clone() } else { good.clone() }, |_, _| {});
    lan.advance(Duration::from_secs(10));
    assert_eq!(lan.nodes[2].members().count(), 0, "the outsider learned no member");
    assert_eq!(lan.nodes[0].members().count(), 1, "members ignore the outsider");
    assert!(
        lan.drops[2].iter().all(|d| matches!(d, DropReason::Announce(_))),
        "{:?}",
        lan.drops[2]
    );
}

#[test]
fn spoofed_source_address_is_dropped() {
    let mut lan = Lan::new(3, |_, _| {});
    lan.advance(Duration::from_secs(3));
    // Node 0 sends to 1 a packet claiming to come from node 2.
    let src = lan.nodes[2].ipv6();
    let dst = lan.nodes[1].ipv6();
    let packet = ipv6_packet(src, dst, 9);
    let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
    buf[HEADROOM..][..packet.len()].copy_from_slice(&packet);
    let now = lan.now;
    let Ok(Outbound::Datagram { to, datagram }) = lan.nodes[0].handle_ip_packet(now, &mut buf, packet.len()) else {
        panic!("a session is up")
    };
    let d = datagram.to_vec();
    let from = lan.addrs[0];
    assert_eq!(to, lan.addrs[1]);
    let mut d = d;
    assert_eq!(
        lan.nodes[1].handle_datagram(now, from, &mut d),
        Err(DropReason::SourceMismatch)
    );
}

#[test]
fn unknown_destination_has_no_route() {
    let mut lan = Lan::new(2, |_, _| {});
    lan.advance(Duration::from_secs(3));
    let src = lan.nodes[0].ipv6();
    let mut dst = lan.nodes[1].ipv6().octets();
    dst[15] ^= 1;
    let packet = ipv6_packet(src, dst.into(), 1);
    let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
    buf[HEADROOM..][..packet.len()].copy_from_slice(&packet);
    let now = lan.now;
    assert_eq!(
        lan.nodes[0].handle_ip_packet(now, &mut buf, packet.len()).err(),
        Some(DropReason::NoRoute)
    );
}

#[test]
fn the_first_packet_waits_for_the_handshake() {
    // Sessions are on demand: with `neighbors: 0` nothing is connected until
    // traffic needs it, and the packet that starts the handshake is held.
    let mut lan = Lan::new(2, |_, c| c.neighbors = 0);
    lan.advance(Duration::from_secs(3));
    assert!(lan.nodes[0].members().all(|m| !m.is_up()));
    lan.send_v6(0, 1, 5).unwrap();
    lan.drive();
    assert_eq!(lan.delivered[1].len(), 1, "delivered once the session came up");
    assert_eq!(lan.delivered[1][0].0[40], 5);
    assert_eq!(lan.nodes[0].stats().staged_dropped, 0);
}

#[test]
fn a_node_that_leaves_is_reported_down_at_once() {
    let mut lan = Lan::new(3, |_, _| {});
    lan.advance(Duration::from_secs(3));
    assert!(lan.nodes[0].members().all(|m| m.is_up()));
    let leaving = lan.nodes[2].node_id();
    lan.nodes[2].leave();
    // Deliver what is in flight without letting time pass: the goodbye
    // alone must do it (session timers would take minutes).
    lan.drive();
    for i in 0..2 {
        assert!(
            lan.events[i].contains(&Event::PeerDown(leaving)),
            "node {i} saw it leave: {:?}",
            lan.events[i]
        );
        assert!(!lan.nodes[i].member(&leaving).unwrap().is_up());
        assert_eq!(lan.nodes[i].path(&leaving), None);
    }
    // The two that stay still talk.
    lan.send_v6(0, 1, 9).unwrap();
    lan.drive();
    assert!(lan.delivered[1].iter().any(|(p, _)| p[40] == 9));
}

/// The memory a node spends per peer, as `docs/architecture.md` states it:
/// a member slot, a tunnel in the pool (a host gives every slot one), a
/// view slot for the election, and the
/// peer's four ledger entries (machine record, address claim, role record,
/// advertisement) in the replica.
#[test]
fn memory_per_peer_is_as_documented() {
    use core::mem::size_of;
    let slot = size_of::<MemberSlot<RustCryptoProvider>>();
    let tunnel = size_of::<TunnelSlot<RustCryptoProvider>>();
    let view = size_of::<MemberView>();
    let mut lan = Lan::new(3, |_, _| {});
    lan.advance(Duration::from_secs(5));
    let ledger = lan.nodes[0].ledger();
    // Three nodes, each with its four entries, in every replica.
    assert_eq!(ledger.records(), 12, "four entries per member");
    let (arena, _) = ledger.arena_usage();
    let arena_per_peer = arena / 3;
    std::println!(
        "per peer: member slot {slot} B, tunnel {tunnel} B, view {view} B, ledger arena {arena_per_peer} B + 4 records"
    );
    assert!(arena_per_peer <= 400, "{arena_per_peer}");
    #[cfg(target_pointer_width = "64")]
    assert_eq!((slot, tunnel, view), (408, 2456, 168));
}

/// `n` nodes on a LAN, 20 s after they start; node 0 has a pool of one
/// tunnel (a small device) and one neighbour. Also the network's keys.
fn lan_with_a_pool_of_one(n: usize) -> (Lan, NetworkKeys) {
    let net = NetworkKeys::derive(&[1; 32]);
    let mut lan = Lan::new(n, |_, _| {});
    let mut c = NodeConfig::default();
    c.port = 51820;
    c.neighbors = 1;
    lan.nodes[0] = node_with_tunnels(7, &net, c, 32, 1);
    lan.advance(Duration::from_secs(20));
    (lan, net)
}

/// A node with a pool of one tunnel (a small device) keeps one session at
/// a time: the others' handshakes are refused (`TableFull`), nothing
/// breaks, and it still learns the whole mesh through its one neighbour.
#[test]
fn a_pool_of_one_tunnel_holds_one_session() {
    let (lan, _) = lan_with_a_pool_of_one(4);
    let small = &lan.nodes[0];
    assert_eq!(small.members().count(), 3, "it knows every member");
    assert_eq!(small.members().filter(|m| m.is_up()).count(), 1);
    assert_eq!(small.members().filter(|m| small.tunnel(&m.id()).is_some()).count(), 1);
    assert_eq!(
        small.ledger().records(),
        lan.nodes[1].ledger().records(),
        "the whole ledger"
    );
    assert!(small.ipv4().is_some());
    for i in 1..4 {
        assert_eq!(lan.nodes[i].members().count(), 3);
    }
    // The refusals are counted (`kairos_tunnel_pool_full_total`); the
    // others, with a tunnel per slot, never ran out.
    assert!(small.stats().tunnel_pool_full > 0);
    assert!(lan.nodes[1..].iter().all(|n| n.stats().tunnel_pool_full == 0));
}

/// A small device (its tunnel pool shorter than its member table) gives a
/// quiet session's tunnel to another member only for an initiation that
/// authenticates and is new: one whose payload was tampered with (MAC1
/// made again, as any token holder can) costs nobody their session, and
/// neither does a replay of a genuine one it refused while the pool was
/// busy (its timestamp was spent then).
#[test]
fn an_initiation_that_does_not_authenticate_takes_no_tunnel_from_the_pool() {
    use kairos_core::crypto::{hash, mac};
    use kairos_core::noise::LABEL_MAC1;
    let (mut lan, net) = lan_with_a_pool_of_one(3);
    let up: Vec<_> = lan.nodes[0].members().filter(|m| m.is_up()).map(|m| m.id()).collect();
    assert_eq!(up.len(), 1, "one session in a pool of one");
    let live = up[0];
    let other = (1..3).find(|&i| lan.nodes[i].node_id() != live).unwrap();
    let from = lan.addrs[other];
    let (_, _, captured) = lan
        .sent
        .iter()
        .rev()
        .find(|(to, f, b)| *to == 0 && *f == from && b[0] == 1)
        .cloned()
        .expect("the other member's refused initiations");
    // The live session has been quiet long enough to make room.
    lan.now += Duration::from_secs(6);
    let now = lan.now;
    let mut forged = captured.clone();
    forged[147] ^= 1; // the payload's tag: it no longer opens
    let key = hash(&[LABEL_MAC1, &net.mac_key, lan.nodes[0].identity().static_public()]);
    let m1 = mac(&key, &[&forged[..148]]);
    forged[148..164].copy_from_slice(&m1);
    let evicted = lan.nodes[0].stats().tunnels_evicted;
    assert!(lan.nodes[0].handle_datagram(now, from, &mut forged).is_err());
    assert_eq!(lan.nodes[0].stats().tunnels_evicted, evicted, "no session made room");
    assert!(lan.nodes[0].member(&live).unwrap().is_up());
    let mut replayed = captured.clone();
    assert_eq!(
        lan.nodes[0].handle_datagram(now, from, &mut replayed).map(|_| ()),
        Err(DropReason::ReplayedInitiation)
    );
    assert_eq!(lan.nodes[0].stats().tunnels_evicted, evicted, "no session made room");
    assert!(lan.nodes[0].member(&live).unwrap().is_up());
    // The session could have made room: it is the only one, and quiet.
    assert_eq!(lan.nodes[0].members().filter(|m| m.is_up()).count(), 1);
}

/// A captured initiation replayed later, from anywhere, is refused and
/// changes nothing: the session, the endpoint and the traffic stay as they
/// were. While the session is quiet, a refused stale initiation makes the
/// node start a handshake of its own (that is how a peer restarted with its
/// clock set back gets in again), at most once per retry interval and only
/// to the endpoint it already had.
#[test]
fn a_replayed_initiation_leaves_the_live_session_alone() {
    let mut lan = Lan::new(2, |_, _| {});
    lan.advance(Duration::from_secs(3));
    // The first initiation on the wire.
    let (to, from, initiation) = lan
        .sent
        .iter()
        .find(|(_, _, b)| b[0] == 1)
        .cloned()
        .expect("an initiation");
    let peer = lan.nodes[lan.index_of(from).unwrap()].node_id();
    let up = |lan: &Lan| lan.nodes[to].member(&peer).is_some_and(|m| m.is_up());
    assert!(up(&lan));
    let attacker: SocketAddr = "10.0.0.99:51820".parse().unwrap();
    let (a, b) = (to, lan.index_of(from).unwrap());
    let replay = |lan: &mut Lan| {
        let mut bytes = initiation.clone();
        let now = lan.now;
        lan.nodes[to].handle_datagram(now, attacker, &mut bytes).map(|_| ())
    };
    // What the node sends goes on the wire; its initiations are counted.
    let initiations_sent = |lan: &mut Lan| {
        let mut out = vec![0u8; 2048];
        let mut n = 0;
        while let Some(t) = lan.nodes[to].poll_transmit(lan.now, &mut out) {
            if out[0] == 1 {
                assert_eq!(t.destination, Destination::Unicast(from), "only to the known endpoint");
                n += 1;
            }
            if let Destination::Unicast(dst) = t.destination {
                let j = lan.index_of(dst).unwrap();
                lan.wire.push_back((j, lan.addrs[to], out[..t.len].to_vec()));
            }
        }
        n
    };
    let handshakes = |lan: &Lan| lan.nodes[to].tunnel(&peer).unwrap().stats().handshakes;
    let before = handshakes(&lan);

    // Busy session: refused, nothing else happens.
    assert_eq!(replay(&mut lan), Err(DropReason::ReplayedInitiation));
    assert_eq!(initiations_sent(&mut lan), 0);
    assert_eq!(lan.nodes[to].member(&peer).unwrap().endpoint(), Some(from));

    // Quiet session: a flood of replays makes one handshake of our own.
    lan.now += Duration::from_secs(6);
    for _ in 0..20 {
        assert_eq!(replay(&mut lan), Err(DropReason::ReplayedInitiation));
    }
    assert_eq!(initiations_sent(&mut lan), 1, "once per retry interval");
    assert_eq!(lan.nodes[to].member(&peer).unwrap().endpoint(), Some(from));
    assert!(up(&lan), "the live session is untouched");
    lan.send_v6(a, b, 7).unwrap();
    lan.send_v6(b, a, 8).unwrap();
    lan.drive();
    assert!(lan.delivered[b].iter().any(|(p, _)| p[40] == 7));
    assert!(lan.delivered[a].iter().any(|(p, _)| p[40] == 8));
    // The real peer answers our handshake: a rekey, nothing lost.
    lan.advance(Duration::from_secs(1));
    assert!(up(&lan));
    assert_eq!(handshakes(&lan), before + 1);
}

/// A goodbye drops the peer's tunnel (as a full tunnel pool does when a
/// quiet session makes room), but the newest initiation timestamp the
/// tunnel accepted stays with the member: an initiation captured before it
/// and replayed after it is still refused, and makes no session.
#[test]
fn a_replayed_initiation_is_refused_after_its_tunnel_was_dropped() {
    let mut lan = Lan::new(2, |_, _| {});
    lan.advance(Duration::from_secs(3));
    let (to, from, initiation) = lan
        .sent
        .iter()
        .find(|(_, _, b)| b[0] == 1)
        .cloned()
        .expect("an initiation");
    let b = lan.index_of(from).unwrap();
    let peer = lan.nodes[b].node_id();
    lan.nodes[b].leave();
    lan.drive();
    assert!(lan.nodes[to].tunnel(&peer).is_none(), "the goodbye dropped the tunnel");
    assert!(!lan.nodes[to].member(&peer).unwrap().is_up());
    let attacker: SocketAddr = "10.0.0.99:51820".parse().unwrap();
    let mut bytes = initiation.clone();
    let now = lan.now;
    assert_eq!(
        lan.nodes[to].handle_datagram(now, attacker, &mut bytes).map(|_| ()),
        Err(DropReason::ReplayedInitiation)
    );
    assert!(!lan.nodes[to].member(&peer).unwrap().is_up());
    assert_ne!(lan.nodes[to].member(&peer).unwrap().endpoint(), Some(attacker));
}

/// The core expects a monotonic `now`; a caller whose clock goes backwards
/// must not make it panic, and once time moves on the mesh works again.
#[test]
fn time_running_backwards_neither_panics_nor_stalls() {
    let mut lan = Lan::new(3, |_, _| {});
    lan.advance(Duration::from_secs(5));
    for (a, b, m) in [(0, 1, 1), (1, 2, 2), (2, 0, 3)] {
        lan.send_v6(a, b, m).unwrap();
    }
    lan.advance(Duration::from_secs(1));
    let later = lan.now;
    for back in [
        Duration::from_millis(1),
        Duration::from_secs(10),
        Duration::from_secs(3600),
    ] {
        // Jump back, run a while at the earlier times, then catch up.
        lan.now = Instant::ZERO + later.since_origin().saturating_sub(back);
        lan.advance(Duration::from_secs(2));
        for (a, b, m) in [(0, 1, 4), (1, 2, 5), (2, 0, 6)] {
            let _ = lan.send_v6(a, b, m);
        }
        lan.drive();
        lan.now = later;
        lan.advance(Duration::from_secs(30));
        for (a, b, m) in [(0, 1, 7), (1, 2, 8), (2, 0, 9)] {
            lan.send_v6(a, b, m).unwrap();
        }
        lan.advance(Duration::from_secs(1));
        for (b, m) in [(1, 7), (2, 8), (0, 9)] {
            assert!(
                lan.delivered[b].iter().any(|(p, _)| p[40] == m),
                "back {back:?}: to {b}"
            );
            lan.delivered[b].clear();
        }
        assert!(lan.nodes.iter().all(|n| n.members().filter(|m| m.is_up()).count() == 2));
    }
}

/// Issue 8: a flood of handshake initiations from thousands of spoofed
/// sources, at 10 times the load threshold, by someone holding the token
/// (valid MAC1, the worst case) and by someone without it. Cookie replies
/// engage, the X25519 work the flood costs stays bounded by the threshold,
/// and a member joining in the middle of it still gets its session.
#[test]
fn a_handshake_flood_engages_cookies_and_a_member_still_connects() {
    use kairos_core::noise::{create_initiation, LocalKeys, RemoteKeys, Tai64N, DEFAULT_LOAD_THRESHOLD};
    use kairos_core::wire::{MessageType, INITIATION_LEN};

    let boot = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 51820);
    // Node 0 is flooded; node 1 joins it by bootstrap half-way through.
    let mut lan = Lan::new(2, |i, c| {
        c.lan_beacons = false;
        if i == 1 {
            c.bootstrap.push(boot).unwrap();
        }
    });
    lan.multicast = false;
    let net = NetworkKeys::derive(&[1; 32]);
    let target = *lan.nodes[0].identity().static_public();
    // The attacker's initiations: one identity holding the token, a pool
    // of messages replayed from ever new spoofed addresses (replays cost
    // the responder the same until the replay check, after its X25519).
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let attacker = LocalKeys::new(&Identity::generate(&mut rng), &net);
    let sees = RemoteKeys::new(&attacker, &target).unwrap();
    let pool: Vec<[u8; INITIATION_LEN]> = (0..32u32)
        .map(|k| {
            let mut msg = [0u8; INITIATION_LEN];
            let ts = Tai64N::from_unix(std::time::Duration::from_secs(1_800_000_000 + u64::from(k)));
            create_initiation(&attacker, &sees, ts, k, &mut rng, &mut msg).unwrap();
            msg
        })
        .collect();
    // Someone without the token: the same messages with one bit of MAC1
    // flipped.
    let strangers: Vec<[u8; INITIATION_LEN]> = pool
        .iter()
        .map(|m| {
            let mut m = *m;
            m[INITIATION_LEN - 32] ^= 1;
            m
        })
        .collect();

    let per_ms = (DEFAULT_LOAD_THRESHOLD as usize * 10) / 1000;
    let flood_ms = 3000;
    let mut replies = [0usize; 5];
    let mut sent = 0usize;
    let mut bad_mac1 = 0usize;
    let mut out = vec![0u8; 2048];
    // Node 1 is plugged in a third of the way through: its hellos (every
    // 2 s) then reach node 0 while the flood is on.
    lan.unplugged = Some(1);
    let one = lan.nodes[1].node_id();
    let mut joined_at = None;
    for ms in 0..flood_ms {
        if ms == flood_ms / 3 {
            lan.unplugged = None;
        }
        if joined_at.is_none() && lan.nodes[0].member(&one).is_some_and(|m| m.is_up()) {
            joined_at = Some(ms);
        }
        for k in 0..per_ms {
            let n = sent;
            sent += 1;
            let spoofed = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(198, 18, (n >> 8) as u8, n as u8)),
                40000 + (n >> 16) as u16,
            );
            let mut msg = if k % 2 == 0 {
                pool[n % pool.len()]
            } else {
                strangers[n % pool.len()]
            };
            let now = lan.now;
            match lan.nodes[0].handle_datagram(now, spoofed, &mut msg) {
                Ok(Input::Send { datagram, .. }) => replies[datagram[0] as usize % 5] += 1,
                Err(DropReason::BadMac1) => bad_mac1 += 1,
                _ => {}
            }
            // Whatever it queued for the spoofed sources goes nowhere.
            while let Some(t) = lan.nodes[0].poll_transmit(now, &mut out) {
                if matches!(t.destination, Destination::Unicast(to) if to == spoofed) {
                    replies[out[0] as usize % 5] += 1;
                } else {
                    let j = match t.destination {
                        Destination::Unicast(to) => lan.index_of(to),
                        Destination::LanMulticast => None,
                    };
                    if let Some(j) = j {
                        lan.wire.push_back((j, lan.addrs[0], out[..t.len].to_vec()));
                    }
                }
            }
        }
        lan.advance(Duration::from_millis(1));
    }
    let responses = replies[MessageType::Response as usize];
    let cookies = replies[MessageType::CookieReply as usize];
    // What passed MAC1 and was not sent a cookie reply went on to X25519
    // (a replay is refused only after it).
    let admitted = sent - bad_mac1 - cookies;
    eprintln!(
        "flood: {sent} initiations in {flood_ms} ms: {bad_mac1} refused for MAC1, {cookies} cookie replies, \
         {admitted} admitted to X25519 ({responses} answered, the rest replays)"
    );
    // The strangers' half cost one BLAKE2s each and got no answer.
    assert_eq!(bad_mac1, sent / 2);
    // Cookies engaged: the rest of the member flood got cookie replies.
    assert!(
        cookies >= sent / 2 - DEFAULT_LOAD_THRESHOLD as usize,
        "{cookies} cookie replies of {sent}"
    );
    // X25519 work for the flood: only what got in before the load was
    // noticed, under the threshold's worth of one second.
    assert!(admitted <= DEFAULT_LOAD_THRESHOLD as usize, "{admitted} admitted");
    // Node 1 joined in the middle of it (its initiation got a cookie reply,
    // and its retry with MAC2 was admitted).
    eprintln!("node 1 up on node 0 at {joined_at:?} ms of the flood");
    assert!(
        joined_at.is_some_and(|ms| ms > flood_ms / 3),
        "node 1 did not join during the flood"
    );
    lan.send_v6(1, 0, 9).unwrap();
    lan.drive();
    assert_eq!(lan.delivered[0].len(), 1);
}

/// A member publishes an identity that pairs another member's static key
/// with a signing key of its own (docs/security.md, "Known gaps"): a node
/// then holds two members with that static key. When the owner of the key
/// starts a handshake, it must still land in its own slot, not be dropped
/// as an identity mismatch in the impostor's.
#[test]
fn a_static_key_paired_with_another_signing_key_does_not_lock_its_owner_out() {
    let net = NetworkKeys::derive(&[1; 32]);
    let victim_seed = 101; // node 1 of `Lan::new`
    let victim = Identity::generate(&mut ChaCha20Rng::seed_from_u64(victim_seed));
    // An impostor whose slot on node 0 comes before the victim's (slots
    // follow the node id), so a lookup by static key finds it first.
    let mut checked = 0;
    for attacker_seed in 1000..1100u64 {
        let attacker = Identity::generate(&mut ChaCha20Rng::seed_from_u64(attacker_seed));
        let mut bytes = *victim.to_bytes();
        bytes[32..].copy_from_slice(&attacker.to_bytes()[32..]);
        let impostor = Identity::from_bytes(&bytes);
        let mut lan = Lan::new(3, |_, _| {});
        let mut c = NodeConfig::default();
        c.port = 51820;
        lan.nodes[2] = Node::new(
            impostor,
            &net,
            c,
            ChaCha20Rng::seed_from_u64(attacker_seed),
            (0..32).map(|_| None).collect(),
            (0..32).map(|_| None).collect(),
            Box::default(),
            Ed25519Verifier,
            vec![MemberView::default(); 33],
            Duration::from_secs(1_800_000_000),
        );
        lan.advance(Duration::from_secs(5));
        let (v, x) = (lan.nodes[1].node_id(), lan.nodes[2].node_id());
        let order: Vec<_> = lan.nodes[0].members().map(|m| m.id()).collect();
        let (Some(vi), Some(xi)) = (
            order.iter().position(|id| *id == v),
            order.iter().position(|id| *id == x),
        ) else {
            continue;
        };
        if xi > vi {
            continue;
        }
        checked += 1;
        // The victim restarts (its state lost) with node 0 as its
        // bootstrap: a hello, the reply, then its initiation.
        let mut c = NodeConfig::default();
        c.port = 51820;
        c.lan_beacons = false;
        c.bootstrap.push(lan.addrs[0]).unwrap();
        lan.nodes[1] = node(victim_seed, &net, c, 32);
        let zero = lan.nodes[0].node_id();
        lan.advance(Duration::from_secs(2));
        assert!(
            lan.nodes[1].member(&zero).is_some_and(|m| m.is_up()),
            "the victim is locked out of node 0 (attacker seed {attacker_seed})"
        );
        lan.send_v6(1, 0, 6).unwrap();
        lan.drive();
        assert!(lan.delivered[0].iter().any(|(p, _)| p.get(40) == Some(&6)));
        break;
    }
    assert_eq!(checked, 1, "no attacker seed put the impostor first");
}

#[test]
fn ledger_entries_share_datagrams_with_members_that_read_batches() {
    let mut lan = Lan::new(4, |_, _| {});
    // Node 3 joins late: it learns the entries by anti-entropy.
    lan.unplugged = Some(3);
    lan.advance(Duration::from_secs(3));
    assert!(lan.nodes[..3]
        .iter()
        .all(|n| n.members().filter(|m| m.is_up()).count() == 2));
    let before: Vec<_> = lan.nodes.iter().map(|n| n.stats()).collect();
    let now = lan.now;
    for i in 0..12u8 {
        let value = [i; 100];
        lan.nodes[0]
            .ledger_put(now, b"services", &[b's', b'a' + i], &value, 0)
            .unwrap();
    }
    let writes = |i: usize, lan: &Lan| lan.nodes[i].stats().ledger_writes - before[i].ledger_writes;
    assert_eq!(writes(0, &lan), 12, "the writer counts its own versions");
    lan.advance(Duration::from_secs(2));
    let services = |n: &TestNode| n.ledger().iter_bucket(b"services").count();
    assert!(lan.nodes[..3].iter().all(|n| services(n) == 12));
    assert!(
        (1..3).all(|i| writes(i, &lan) < 12),
        "received entries are not counted as writes"
    );
    let sent = |i: usize, lan: &Lan| {
        let s = lan.nodes[i].stats();
        (
            s.ledger_entries_sent - before[i].ledger_entries_sent,
            s.ledger_batches_sent - before[i].ledger_batches_sent,
        )
    };
    // The writer sends its 12 writes to each of two members in a few
    // batches (about four entries of 256 bytes fit in one), not 24 datagrams.
    let (entries, batches) = sent(0, &lan);
    assert!(entries >= 24, "{entries} entries");
    assert!((2..=8).contains(&batches), "{batches} batches for {entries} entries");

    lan.unplugged = None;
    lan.advance(Duration::from_secs(40));
    assert_eq!(services(&lan.nodes[3]), 12, "the late node caught up");
    let repaired: u64 = (0..3).map(|i| sent(i, &lan).1).sum::<u64>() - batches;
    assert!(
        repaired >= 2,
        "the late node's repairs came batched ({repaired} batches)"
    );
    assert!(lan.drops.iter().all(|d| d.is_empty()), "{:?}", lan.drops);
}

#[test]
fn missing_entries_shown_by_several_summary_pages_are_asked_for_together() {
    let mut lan = Lan::new(3, |_, _| {});
    lan.advance(Duration::from_secs(3));
    let count = 230u8;
    let put = |lan: &mut Lan, i: u8, v: u8| {
        let now = lan.now;
        lan.nodes[0]
            .ledger_put(now, b"services", &[b's', i], &[v; 8], 0)
            .unwrap();
    };
    for i in 0..count {
        put(&mut lan, i, 0);
    }
    lan.advance(Duration::from_secs(2));
    let current = |n: &TestNode, v: u8| {
        n.ledger()
            .iter_bucket(b"services")
            .filter(|e| e.value()[0] == v)
            .count()
    };
    assert_eq!(current(&lan.nodes[2], 0), count as usize);
    // Node 2 misses a new version of one entry in each of the digest's
    // ranges that has one: every range then differs, so the summary lists
    // every record (five pages of 48), each page showing a few missing.
    let mut ranges = [None; RANGES];
    for e in lan.nodes[0].ledger().iter_bucket(b"services") {
        ranges[range_of(e.id().prefix())].get_or_insert(e.key()[1]);
    }
    lan.unplugged = Some(2);
    for i in ranges.into_iter().flatten() {
        put(&mut lan, i, 1);
    }
    // Long enough for the sessions with node 2 to go down: when they come
    // back up, node 2 starts an exchange with each member (besides the
    // members' own exchanges with it, which repair without requests).
    lan.advance(Duration::from_secs(60));
    let changed = current(&lan.nodes[1], 1);
    assert!(changed > 48, "{changed} changed");
    let before = lan.nodes[2].stats();
    lan.unplugged = None;
    lan.advance(Duration::from_secs(40));
    assert_eq!(current(&lan.nodes[2], 1), changed, "node 2 caught up");
    // The wants of the whole exchange go out as one request (up to 64
    // ids), not one per page.
    let requests = lan.nodes[2].stats().ledger_requests_sent - before.ledger_requests_sent;
    assert!((1..=2).contains(&requests), "{requests} requests for {changed} entries");
    assert!(lan.drops.iter().all(|d| d.is_empty()), "{:?}", lan.drops);
}

#[test]
fn nodes_started_together_do_not_exchange_in_lockstep() {
    let n = 6;
    let mut lan = Lan::new(n, |_, _| {});
    lan.advance(Duration::from_secs(3));
    // Node 0 writes every second; every replica hears of it at the same
    // instant, which keeps every node exchanging about once a second.
    let mut last: Vec<u64> = lan.nodes.iter().map(|n| n.stats().ledger_exchanges_started).collect();
    let mut steps: Vec<Vec<u32>> = vec![Vec::new(); n];
    for step in 0..2000u32 {
        if step % 100 == 0 {
            let now = lan.now;
            lan.nodes[0]
                .ledger_put(now, b"services", b"ticker", &step.to_be_bytes(), 0)
                .unwrap();
        }
        lan.advance(Duration::from_millis(10));
        for (i, node) in lan.nodes.iter().enumerate() {
            let started = node.stats().ledger_exchanges_started;
            if started > last[i] {
                steps[i].push(step);
                last[i] = started;
            }
        }
    }
    let total: usize = steps.iter().map(Vec::len).sum();
    assert!(total >= n * 10, "{total} exchanges in 20 s: {steps:?}");
    // In lockstep every exchange would share its 10 ms with the other
    // nodes' exchanges; spread at random over a second, few do.
    let shared = (0..n)
        .flat_map(|i| steps[i].iter().map(move |s| (i, *s)))
        .filter(|(i, s)| (0..n).any(|j| j != *i && steps[j].contains(s)))
        .count();
    assert!(
        shared * 4 < total,
        "{shared} of {total} exchanges share their 10 ms with another node's: {steps:?}"
    );
}

#[test]
fn an_exchange_whose_digest_is_lost_is_started_again_within_seconds() {
    let mut lan = Lan::new(2, |_, _| {});
    // Long enough for the exchanges to back off to one in 15-45 s.
    lan.advance(Duration::from_secs(200));
    let exchanges = |lan: &Lan| lan.nodes[0].stats().ledger_exchanges_started;
    let initiations = lan.nodes[0].stats().initiations_sent;
    // Node 1 is unplugged until node 0 starts an exchange: the digest is
    // lost, and replicas that agree would not answer it anyway.
    lan.unplugged = Some(1);
    let before = exchanges(&lan);
    let start = lan.now;
    while exchanges(&lan) == before {
        assert!(
            lan.now.saturating_since(start) < Duration::from_secs(60),
            "no exchange started"
        );
        lan.advance(Duration::from_millis(50));
    }
    lan.unplugged = None;
    let lost_at = lan.now;
    let before = exchanges(&lan);
    while exchanges(&lan) == before {
        assert!(
            lan.now.saturating_since(lost_at) < Duration::from_secs(60),
            "no exchange after the lost one"
        );
        lan.advance(Duration::from_millis(50));
    }
    assert_eq!(lan.nodes[0].stats().ledger_exchanges_unanswered, 1);
    let retried = lan.now.saturating_since(lost_at);
    assert!(
        retried <= Duration::from_secs(3),
        "the next exchange came {retried:?} after the lost one"
    );
    // The same session all along: the retry is the unanswered exchange's,
    // not a new session's greeting.
    assert_eq!(lan.nodes[0].stats().initiations_sent, initiations);
    assert!(
        lan.events[0].iter().all(|e| !matches!(e, Event::PeerDown(_))),
        "{:?}",
        lan.events[0]
    );
    // Answered exchanges back off again (gaps of about 1, 2, 4, 8, 16 and
    // 30 s), rather than go on every second.
    let before = exchanges(&lan);
    lan.advance(Duration::from_secs(60));
    let more = exchanges(&lan) - before;
    assert!(more <= 8, "{more} exchanges in the minute after the answered one");
}

#[test]
fn a_member_whose_features_were_lost_is_asked_again() {
    // A FEATURES datagram: transport header, kind, four bytes of bits, tag.
    const FEATURES_LEN: usize = 16 + 1 + 4 + 16;
    let mut lan = Lan::new(2, |_, _| {});
    // Node 1's FEATURES are lost, and so is its answer to node 0's first
    // ask.
    lan.lose = Some((1, 0, FEATURES_LEN, 2));
    lan.advance(Duration::from_secs(5));
    assert_eq!(lan.lose.map(|l| l.3), Some(0), "two FEATURES lost");
    // Node 0 asked again with its next exchange: it batches to node 1.
    let now = lan.now;
    for i in 0..8u8 {
        lan.nodes[0]
            .ledger_put(now, b"services", &[b'k', i], &[i; 40], 0)
            .unwrap();
    }
    let before = lan.nodes[0].stats().ledger_batches_sent;
    lan.advance(Duration::from_secs(1));
    assert!(
        lan.nodes[0].stats().ledger_batches_sent > before,
        "node 0 never learnt that node 1 reads batches"
    );
    assert_eq!(lan.nodes[1].ledger().iter_bucket(b"services").count(), 8);
}

/// A range in which nodes 0 and 1 of a [`Lan`] prefer the same address, so
/// a claim made without hearing the other's collides.
fn colliding_range(lan: &Lan) -> OverlayRange {
    let (zero, one) = (lan.nodes[0].node_id(), lan.nodes[1].node_id());
    (24..=30)
        .rev()
        .map(|p| OverlayRange::new(Ipv4Addr::new(10, 1, 0, 0), p).expect("valid range"))
        .find(|r| ipam::preferred_index(r, &zero) == ipam::preferred_index(r, &one))
        .expect("a range where both prefer one address")
}

fn addresses_assigned(events: &[Event]) -> Vec<Ipv4Addr> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::AddressAssigned(a) => Some(*a),
            _ => None,
        })
        .collect()
}

#[test]
fn a_node_waits_for_its_late_bootstrap_before_claiming_and_never_collides() {
    // Node 1 bootstraps from node 0, which is unreachable for its first
    // 1.5 s (a bootstrap node that starts a moment later). Both prefer one
    // address: had node 1 claimed alone after 1 s, it would collide with
    // node 0's claim and one of them would move.
    let probe = Lan::new(2, |_, _| {});
    let range = colliding_range(&probe);
    let bootstrap = SocketAddr::new([10, 0, 0, 1].into(), 51820);
    let mut lan = Lan::new(2, |i, c| {
        c.lan_beacons = false;
        c.overlay = range;
        if i == 1 {
            c.bootstrap.push(bootstrap).unwrap();
        }
    });
    lan.multicast = false;
    lan.unplugged = Some(0);
    lan.advance(Duration::from_millis(1500));
    assert!(lan.nodes[0].ipv4().is_some(), "node 0, alone, claimed");
    assert_eq!(lan.nodes[1].ipv4(), None, "node 1 waits for its bootstrap");
    lan.unplugged = None;
    lan.advance(Duration::from_secs(3));
    let (zero, one) = (addresses_assigned(&lan.events[0]), addresses_assigned(&lan.events[1]));
    assert_eq!(zero.len(), 1, "node 0 never moved: {zero:?}");
    assert_eq!(one.len(), 1, "node 1 claimed once: {one:?}");
    assert_ne!(zero, one);
    assert_eq!(lan.nodes[1].ipv4(), Some(one[0]));
}

#[test]
fn a_node_whose_bootstrap_never_answers_claims_alone_after_a_while() {
    let bootstrap = SocketAddr::new([10, 0, 0, 9].into(), 51820);
    let mut lan = Lan::new(1, |_, c| {
        c.lan_beacons = false;
        c.bootstrap.push(bootstrap).unwrap();
    });
    lan.multicast = false;
    lan.advance(sync::BOOTSTRAP_CLAIM_WAIT - Duration::from_millis(100));
    assert_eq!(lan.nodes[0].ipv4(), None, "still waiting for the bootstrap");
    // Hellos at 0, 0.25, 0.75, 1.75 and 3.75 s: from 250 ms doubling up to
    // the hello interval (2 s).
    assert_eq!(lan.nodes[0].stats().tx_datagrams, 5);
    lan.advance(Duration::from_millis(200));
    assert!(lan.nodes[0].ipv4().is_some(), "claimed alone");
}

#[test]
fn nodes_that_bootstrap_from_each_other_meet_without_a_replayed_announcement() {
    // Each sends a hello at once and answers the other's with a hello reply
    // in the same instant: both are genuine and must be taken as such.
    let mut lan = Lan::new(2, |i, c| {
        c.lan_beacons = false;
        let other = SocketAddr::new([10, 0, 0, 2 - i as u8].into(), 51820);
        c.bootstrap.push(other).unwrap();
    });
    lan.multicast = false;
    lan.advance(Duration::from_secs(2));
    let (zero, one) = (lan.nodes[0].node_id(), lan.nodes[1].node_id());
    assert!(lan.nodes[0].member(&one).is_some_and(|m| m.is_up()));
    assert!(lan.nodes[1].member(&zero).is_some_and(|m| m.is_up()));
    assert!(
        lan.drops
            .iter()
            .flatten()
            .all(|d| *d != DropReason::ReplayedAnnouncement),
        "{:?}",
        lan.drops
    );
    // Nothing is lost here: every initiation is answered. Both ends
    // initiate at once, and each completes its own handshake (the session
    // it answered is superseded), so two handshakes complete.
    let (s0, s1) = (lan.nodes[0].stats(), lan.nodes[1].stats());
    let sent = s0.initiations_sent + s1.initiations_sent;
    let answered = s0.initiations_answered + s1.initiations_answered;
    assert!(sent >= 1);
    assert_eq!(sent, answered);
    assert!(s0.handshakes >= 1 && s1.handshakes >= 1, "{s0:?} {s1:?}");
    assert!(s0.handshakes + s1.handshakes <= 2 * answered);
}

/// A LAN of many members carries a few beacons per interval (a Trickle
/// timer: each member holds its beacon back once it heard three), not one
/// from every member; and a node that starts later still meets the mesh
/// within a second or two, because its first beacon, from a node nobody
/// knows, brings the others' intervals back to one second.
#[test]
fn a_lan_carries_a_few_beacons_per_interval_and_a_newcomer_still_meets_it() {
    use kairos_core::discovery::Trickle;
    let mut lan = Lan::new(12, |_, _| {});
    lan.advance(Duration::from_secs(70));
    assert!(lan.nodes.iter().all(|n| n.members().count() == 11));
    // Intervals are 30 s long by now (1 + 2 + 4 + 8 + 16 s, then 30 s).
    let before = lan.beacons;
    lan.advance(Duration::from_secs(60));
    let sent = lan.beacons - before;
    // One beacon per member and interval would be 24.
    let most = 2 * (usize::from(Trickle::REDUNDANCY) + 1);
    assert!((2..=most).contains(&sent), "{sent} beacons in 60 s");
    let n = lan.join(|_| {});
    let joined = lan.now;
    // Every member has its 8 neighbours: none connects to the newcomer on
    // hearing it, so the newcomer must hear them (their next beacons would
    // otherwise be up to 30 s away).
    while lan.nodes[n].members().all(|m| !m.is_up()) {
        assert!(lan.now < joined + Duration::from_secs(3), "not met within 3 s");
        lan.advance(Duration::from_millis(100));
    }
    eprintln!("newcomer met after {:?}", lan.now - joined);
    lan.advance(Duration::from_secs(10));
    assert_eq!(lan.nodes[n].members().count(), 12);
}
