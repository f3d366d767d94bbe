//! `node_datagrams`: a whole mesh member (`node::Node`) fed datagrams from a
//! few addresses under advancing time.
//!
//! The node under test has identity `[2; 64]` on the fixture network, a
//! member table of 16 slots, a boxed `Ledger<64, 16384>`, one bootstrap
//! endpoint, LAN beacons and the role election on (`NodeConfig::default()`
//! otherwise), a seeded RNG and the fixture wall clock. Its signature
//! verifier is Ed25519, or (mode byte bit 0) one that accepts every
//! signature so ledger entries made up by the fuzzer reach the store.
//!
//! Next to it runs a peer: the fixture's raw tunnel with identity `[1; 64]`
//! at [`SOURCES`]`[0]`. What the node sends there goes through the peer's
//! tunnel (its replies and timers' output queue up towards the node), so
//! handshakes both ways, real transport messages and control payloads
//! sealed by an authenticated member are as easy to reach as garbage.
//!
//! After the mode byte the input is a list of steps `op byte, time byte,
//! ...`: bits 0-1 of the op byte name the source address, bits 2-4 the
//! operation ([`op`]); the time byte advances the clock
//! ([`crate::input::time_step`]). After every step the node's timers run
//! (`handle_timeout`), `poll_transmit` and `poll_event` are drained, and the
//! peer's timers run.
//!
//! Checks: nothing panics; every datagram the node transmits is a
//! well-framed message of its type (announcements of their length); it
//! delivers only IPv4/IPv6 packets; its ledger stays within its capacity
//! and every record re-encodes ([`crate::ledger_messages::check_ledger`]);
//! `poll_transmit` ends; timers settle (after `handle_timeout(now)` and
//! draining `poll_transmit`, `poll_timeout()` is later than `now`).

use std::collections::VecDeque;
use std::net::{Ipv6Addr, SocketAddr};

use kairos_core::crypto::RustCryptoProvider;
use kairos_core::discovery::{AnnounceKind, AnnounceRepr, ANNOUNCE_LEN};
use kairos_core::election::MemberView;
use kairos_core::identity::{Identity, PublicIdentity};
use kairos_core::ledger::{Ed25519Verifier, SignatureVerifier};
use kairos_core::node::{
    Destination, Event, Input as NodeInput, MemberSlot, NodeConfig, Outbound, TunnelSlot, HEADROOM, TAILROOM,
};
use kairos_core::noise::Tai64N;
use kairos_core::time::Instant;
use kairos_core::wire::{ControlKind, MessageType};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::check::{feed, framing_error, seal, tick, Outcome};
use crate::fixture::{network, Node as Peer, Role, Setup, RESPONDER_ID, START, WALL_AT_ZERO};
use crate::input::{mutate, time_step, Input};
use crate::ledger_messages::{check_ledger, writers, FuzzLedger, ARENA, ENTRIES};
use crate::Stats;

/// Member slots of the node under test.
pub const CAPACITY: usize = 16;
/// Seed of the node's RNG.
pub const NODE_SEED: u64 = 0x6b61_6972_6f73_0010;
/// The node's UDP port.
pub const PORT: u16 = 51820;

/// The node type under test.
pub type FuzzNode = kairos_core::node::Node<
    RustCryptoProvider,
    ChaCha20Rng,
    FuzzVerifier,
    Vec<MemberSlot<RustCryptoProvider>>,
    Vec<TunnelSlot<RustCryptoProvider>>,
    Box<FuzzLedger>,
    Vec<MemberView>,
    ENTRIES,
    ARENA,
>;

/// The addresses datagrams come from: the peer, a LAN neighbour, an IPv6
/// one, and the node's bootstrap endpoint.
pub const SOURCES: [SocketAddr; 4] = [
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 1001),
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 9)), PORT),
    SocketAddr::new(std::net::IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9)), PORT),
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)), PORT),
];

/// The node's own address (where the peer's datagrams come from).
pub const NODE_ADDR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 1)), 1002);

/// The operations (bits 2-4 of the op byte).
pub mod op {
    /// `chunk`: the chunk as a datagram.
    pub const RAW: u8 = 0;
    /// `kind byte, u16 port`: an announcement sealed with the network's
    /// beacon key: kind modulo 3 (beacon, hello, hello reply); bit 2 of
    /// the kind byte: from writer `kind >> 3 & 3` of the ledger target
    /// instead of the peer; bit 7: the previous timestamp again (a replay).
    pub const ANNOUNCE: u8 = 1;
    /// The peer starts a handshake (its initiation is queued).
    pub const CONNECT: u8 = 2;
    /// `chunk`: the peer seals the chunk as a transport payload (queued).
    pub const SEAL: u8 = 3;
    /// `mutation`: the next datagram queued by the peer is delivered after
    /// input-chosen edits ([`crate::input::mutate`]).
    pub const DELIVER: u8 = 4;
    /// `kind byte, chunk`: the peer seals a control envelope (kind modulo
    /// 63 plus 1, then the chunk) (queued).
    pub const CONTROL: u8 = 5;
    /// `chunk`: the node sends an IPv6 packet (the chunk as its payload)
    /// to the peer's overlay address; what it seals goes to the peer.
    pub const IP: u8 = 6;
    /// `flags byte, chunk, chunk`: a local ledger write (bucket, key; the
    /// value is the key) or, with bit 0, a delete; bit 1 with a ttl.
    pub const WRITE: u8 = 7;
}

/// Ed25519, or (for inputs that ask) every signature accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct FuzzVerifier {
    /// Accept every signature.
    pub accept_all: bool,
}

impl SignatureVerifier for FuzzVerifier {
    fn verify(&mut self, public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
        self.accept_all || Ed25519Verifier.verify(public, message, signature)
    }
}

/// A fresh node under test.
pub fn node(accept_all: bool) -> FuzzNode {
    let mut config = NodeConfig::default();
    config.port = PORT;
    config.bootstrap.push(SOURCES[3]).expect("room for one");
    FuzzNode::new(
        Identity::from_bytes(&RESPONDER_ID),
        network(),
        config,
        ChaCha20Rng::seed_from_u64(NODE_SEED),
        (0..CAPACITY).map(|_| None).collect(),
        (0..CAPACITY).map(|_| None).collect(),
        Box::default(),
        FuzzVerifier { accept_all },
        vec![MemberView::default(); CAPACITY + 1],
        WALL_AT_ZERO,
    )
}

/// An announcement of `identity` sealed with the network's beacon key.
pub fn announcement(kind: AnnounceKind, identity: PublicIdentity, port: u16, stamp: u64) -> Vec<u8> {
    let mut ts = [0u8; 12];
    ts[..8].copy_from_slice(&(0x4000_0000_0000_0000 + stamp).to_be_bytes());
    let repr = AnnounceRepr {
        kind,
        identity,
        timestamp: Tai64N(ts),
        port,
    };
    let mut nonce = [0u8; 24];
    nonce[..8].copy_from_slice(&stamp.to_le_bytes());
    let mut out = vec![0u8; ANNOUNCE_LEN];
    repr.seal(&network().beacon_key, &nonce, &mut out);
    out
}

struct State {
    now: Instant,
    node: FuzzNode,
    peer: Peer,
    /// Datagrams the peer sent towards the node, not delivered yet.
    to_node: VecDeque<Vec<u8>>,
    stamp: u64,
    stats: Stats,
}

/// Runs the target on one input.
pub fn run(data: &[u8]) -> Stats {
    let mut input = Input::new(data);
    let mode = input.u8().unwrap_or(0);
    let mut s = State {
        now: START,
        node: node(mode & 1 != 0),
        peer: Peer::new(Role::Initiator, Setup::default()),
        to_node: VecDeque::new(),
        stamp: 0,
        stats: Stats::default(),
    };
    s.settle();
    let mut steps = 0;
    while let Some(opb) = input.u8() {
        steps += 1;
        if steps > 128 {
            break;
        }
        s.now += time_step(input.u8().unwrap_or(0));
        let from = SOURCES[usize::from(opb & 3)];
        match opb >> 2 & 7 {
            op::RAW => {
                let d = input.chunk().unwrap_or_default().to_vec();
                s.deliver(from, d);
            }
            op::ANNOUNCE => {
                let kind = input.u8().unwrap_or(0);
                let port = input.u16().unwrap_or(PORT);
                let identity = if kind & 4 != 0 {
                    writers()[usize::from(kind >> 3 & 3)].public()
                } else {
                    Role::Initiator.identity().public()
                };
                if kind & 0x80 == 0 {
                    s.stamp += 1;
                }
                let k = [AnnounceKind::Beacon, AnnounceKind::Hello, AnnounceKind::HelloReply][usize::from(kind % 3)];
                let d = announcement(k, identity, port, s.stamp);
                s.deliver(from, d);
            }
            op::CONNECT => {
                s.peer.tunnel.connect();
            }
            op::SEAL => {
                let payload = input.chunk().unwrap_or_default();
                s.peer_seal(payload);
            }
            op::DELIVER => {
                if let Some(mut d) = s.to_node.pop_front() {
                    mutate(&mut input, &mut d);
                    s.deliver(from, d);
                }
            }
            op::CONTROL => {
                let kind = input.u8().unwrap_or(0) % 63 + 1;
                let mut payload = vec![kind];
                payload.extend_from_slice(input.chunk().unwrap_or_default());
                debug_assert!(ControlKind::is_valid(kind));
                s.peer_seal(&payload);
            }
            op::IP => {
                let body = input.chunk().unwrap_or_default();
                s.send_ip(body);
            }
            _ => {
                let flags = input.u8().unwrap_or(0);
                let bucket = input.chunk().unwrap_or_default();
                let key = input.chunk().unwrap_or_default();
                let now = s.now;
                let _ = if flags & 1 != 0 {
                    s.node.ledger_delete(now, bucket, key)
                } else {
                    let ttl = if flags & 2 != 0 { 30 } else { 0 };
                    s.node.ledger_put(now, bucket, key, key, ttl)
                };
            }
        }
        s.settle();
    }
    s.stats
}

impl State {
    /// Hands `d` to the node from `from` and checks the result.
    fn deliver(&mut self, from: SocketAddr, mut d: Vec<u8>) {
        self.stats.fed += 1;
        let len = d.len();
        match self.node.handle_datagram(self.now, from, &mut d) {
            Ok(NodeInput::Deliver(p)) => {
                assert!(
                    matches!(p.first(), Some(b) if b >> 4 == 4 || b >> 4 == 6),
                    "delivered a non-IP packet {p:02x?}"
                );
                assert!(p.len() < len);
                self.stats.accepted += 1;
                self.stats.delivered += 1;
            }
            Ok(NodeInput::Send { datagram, .. }) => {
                assert!(datagram.len() <= len + 64, "a relayed datagram grew past its headroom");
                self.stats.accepted += 1;
            }
            Ok(NodeInput::Consumed) => self.stats.accepted += 1,
            Err(_) => {}
        }
    }

    /// The peer seals `payload` (if its session is up) towards the node.
    fn peer_seal(&mut self, payload: &[u8]) {
        if let Ok(msg) = seal(&mut self.peer, self.now, payload) {
            self.queue(msg);
        }
    }

    fn queue(&mut self, d: Vec<u8>) {
        if self.to_node.len() < 64 {
            self.to_node.push_back(d);
        }
    }

    /// The node seals an IPv6 packet to the peer's overlay address.
    fn send_ip(&mut self, body: &[u8]) {
        let peer_id = Role::Initiator.identity().public().node_id();
        let mut packet = vec![0u8; 40];
        packet[0] = 0x60;
        packet[4..6].copy_from_slice(&(body.len() as u16).to_be_bytes());
        packet[6] = 17;
        packet[7] = 64;
        packet[8..24].copy_from_slice(&self.node.ipv6().octets());
        packet[24..40].copy_from_slice(&self.node.member_ipv6(&peer_id).octets());
        packet.extend_from_slice(&body[..body.len().min(1200)]);
        let mut buf = vec![0u8; HEADROOM + packet.len() + TAILROOM];
        buf[HEADROOM..][..packet.len()].copy_from_slice(&packet);
        if let Ok(Outbound::Datagram { to, datagram }) = self.node.handle_ip_packet(self.now, &mut buf, packet.len()) {
            check_transmit(datagram);
            let d = datagram.to_vec();
            self.pass_to_peer(to, &d);
        }
    }

    /// A datagram the node sent to `to`: the peer handles it if it is for
    /// the peer; replies queue towards the node.
    fn pass_to_peer(&mut self, to: SocketAddr, d: &[u8]) {
        if to != SOURCES[0] {
            return;
        }
        let mut ignored = Stats::default();
        if let Outcome::Reply(r) = feed(&mut self.peer, self.now, NODE_ADDR, d, &mut ignored) {
            self.queue(r);
        }
    }

    /// Runs the node's timers, drains its output and events (until its
    /// timers settle), then the peer's timers.
    fn settle(&mut self) {
        let mut out = vec![0u8; 2048];
        for _ in 0..8 {
            self.node.handle_timeout(self.now);
            let mut sent = 0;
            while let Some(t) = self.node.poll_transmit(self.now, &mut out) {
                assert!(t.len <= out.len());
                check_transmit(&out[..t.len]);
                self.stats.replies += 1;
                sent += 1;
                assert!(sent <= 4096, "poll_transmit does not end");
                if let Destination::Unicast(to) = t.destination {
                    let d = out[..t.len].to_vec();
                    self.pass_to_peer(to, &d);
                }
            }
            while let Some(e) = self.node.poll_event() {
                if matches!(e, Event::PeerUp(_)) {
                    self.stats.established += 1;
                }
            }
            check_ledger(self.node.ledger());
            if self.node.poll_timeout().is_none_or(|t| t > self.now) {
                let mut sent = Vec::new();
                tick(&mut self.peer, self.now, &mut sent, &mut Stats::default());
                for d in sent {
                    self.queue(d);
                }
                return;
            }
        }
        panic!(
            "the node's timers do not settle: poll_timeout() = {:?} at {:?}",
            self.node.poll_timeout(),
            self.now
        );
    }
}

/// What a node transmits is a well-framed message of its type.
fn check_transmit(d: &[u8]) {
    match MessageType::of(d) {
        Ok(MessageType::Beacon | MessageType::Hello | MessageType::HelloReply) => {
            assert_eq!(d.len(), ANNOUNCE_LEN, "announcement length");
            assert!(
                AnnounceRepr::open(&network().beacon_key, d).is_ok(),
                "an announcement the network cannot open"
            );
        }
        _ => assert_eq!(
            framing_error(d),
            None,
            "transmitted a malformed {:02x?}",
            &d[..d.len().min(32)]
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Writer;

    fn step(w: &mut Writer, source: u8, op: u8, time: u8) {
        w.u8(source | op << 2).u8(time);
    }

    #[test]
    fn empty_and_garbage() {
        run(&[]);
        run(&[0]);
        run(&[1, 0, 0, 3, 1, 2, 3, 5, 5, 5, 5, 0xff]);
    }

    #[test]
    fn handshake_and_control() {
        let mut w = Writer::new();
        w.u8(1); // accept every signature
        step(&mut w, 0, op::CONNECT, 1);
        step(&mut w, 0, op::DELIVER, 1);
        w.u8(0);
        step(&mut w, 0, op::DELIVER, 1);
        w.u8(0);
        step(&mut w, 0, op::CONTROL, 1);
        w.u8(ControlKind::LEDGER_DIGEST.0 - 1).chunk(&[0x11; 10]);
        step(&mut w, 0, op::DELIVER, 1);
        w.u8(0);
        step(&mut w, 0, op::IP, 1);
        w.chunk(b"hello");
        let stats = run(&w.finish());
        assert!(stats.established >= 1, "{stats:?}");
    }

    #[test]
    fn beacons_make_the_node_connect() {
        let mut w = Writer::new();
        w.u8(0);
        for _ in 0..2 {
            step(&mut w, 0, op::ANNOUNCE, 1);
            w.u8(0).u16(1001);
        }
        for _ in 0..3 {
            step(&mut w, 0, op::DELIVER, 1);
            w.u8(0);
        }
        let stats = run(&w.finish());
        assert!(stats.established >= 1, "{stats:?}");
    }
}
