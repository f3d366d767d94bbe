//! A deterministic two-peer harness (quinn's `Pair`): two tunnels joined by
//! an in-memory wire, on virtual time that jumps to the next timer.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::vec::Vec;

use kairos_core::crypto::CryptoProvider;
use kairos_core::identity::Identity;
use kairos_core::session::{DropReason, Local, Received, Tunnel, TunnelConfig, TunnelEvent};
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;
use kairos_core::wire::{MessageType, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    A,
    B,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

pub struct Peer<P: CryptoProvider> {
    pub local: Local,
    pub tunnel: Tunnel<P>,
    pub addr: SocketAddr,
    /// IP packets delivered to this peer's stack.
    pub delivered: Vec<Vec<u8>>,
    pub keepalives: usize,
    pub events: Vec<TunnelEvent>,
    pub drops: Vec<DropReason>,
}

/// Decides the fate of a datagram on the wire: `true` delivers it.
pub type Filter = Box<dyn FnMut(Side, &[u8]) -> bool>;

pub struct Pair<P: CryptoProvider> {
    pub now: Instant,
    pub a: Peer<P>,
    pub b: Peer<P>,
    /// Datagrams on the wire: (destination, bytes).
    pub wire: VecDeque<(Side, Vec<u8>)>,
    /// Every datagram ever sent: (destination, bytes).
    pub log: Vec<(Side, Vec<u8>)>,
    pub filter: Option<Filter>,
    pub rng: ChaCha20Rng,
}

pub fn network(secret: u8) -> NetworkKeys {
    NetworkKeys::derive(&[secret; 32])
}

fn peer<P: CryptoProvider>(me: u8, them: u8, net: &NetworkKeys, port: u16, config: TunnelConfig) -> Peer<P> {
    let id = Identity::from_bytes(&[me; 64]);
    let other = Identity::from_bytes(&[them; 64]);
    let local = Local::new(&id, net, Duration::from_secs(1_800_000_000));
    let tunnel = Tunnel::new(&local, other.static_public(), config).unwrap();
    Peer {
        local,
        tunnel,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        delivered: Vec::new(),
        keepalives: 0,
        events: Vec::new(),
        drops: Vec::new(),
    }
}

impl<P: CryptoProvider> Pair<P> {
    pub fn new() -> Self {
        Self::with_networks(&network(1), &network(1), TunnelConfig::default())
    }

    pub fn with_networks(net_a: &NetworkKeys, net_b: &NetworkKeys, config: TunnelConfig) -> Self {
        Pair {
            now: Instant::from_secs(1),
            a: peer(1, 2, net_a, 1001, config),
            b: peer(2, 1, net_b, 1002, config),
            wire: VecDeque::new(),
            log: Vec::new(),
            filter: None,
            rng: ChaCha20Rng::seed_from_u64(99),
        }
    }

    pub fn peer(&mut self, side: Side) -> &mut Peer<P> {
        match side {
            Side::A => &mut self.a,
            Side::B => &mut self.b,
        }
    }

    fn put_on_wire(&mut self, to: Side, bytes: Vec<u8>) {
        self.log.push((to, bytes.clone()));
        let pass = match self.filter.as_mut() {
            Some(f) => f(to, &bytes),
            None => true,
        };
        if pass {
            self.wire.push_back((to, bytes));
        }
    }

    /// Sends an IP packet from `side`; returns the tunnel's verdict.
    pub fn send(&mut self, side: Side, ip: &[u8]) -> Result<(), DropReason> {
        let now = self.now;
        let mut buf = vec![0u8; ip.len() + TRANSPORT_OVERHEAD];
        buf[TRANSPORT_HEADER_LEN..][..ip.len()].copy_from_slice(ip);
        let msg = self.peer(side).tunnel.encapsulate(now, &mut buf, ip.len())?.to_vec();
        self.put_on_wire(side.other(), msg);
        Ok(())
    }

    /// Delivers raw bytes to `to` as if from the other side; returns what the
    /// tunnel made of them (replies go back on the wire).
    pub fn inject(&mut self, to: Side, mut bytes: Vec<u8>) -> Result<(), DropReason> {
        let now = self.now;
        let from = self.peer(to.other()).addr;
        let Pair { a, b, rng, .. } = self;
        let peer = match to {
            Side::A => a,
            Side::B => b,
        };
        let result = peer.tunnel.handle_datagram(now, &mut peer.local, rng, from, &mut bytes);
        let mut reply = None;
        match result {
            Ok(Received::Ip(p)) => peer.delivered.push(p.to_vec()),
            Ok(Received::Keepalive) => peer.keepalives += 1,
            Ok(Received::Reply(r)) => reply = Some(r.to_vec()),
            Ok(Received::Control(..)) | Ok(Received::Handshake) => {}
            Err(e) => {
                peer.drops.push(e);
                return Err(e);
            }
        }
        if let Some(r) = reply {
            self.put_on_wire(to.other(), r);
        }
        Ok(())
    }

    fn flush_transmits(&mut self) -> bool {
        let mut any = false;
        for side in [Side::A, Side::B] {
            let now = self.now;
            let Pair { a, b, rng, .. } = self;
            let peer = match side {
                Side::A => a,
                Side::B => b,
            };
            let mut out = [0u8; 256];
            let mut sent = Vec::new();
            while let Some(n) = peer.tunnel.poll_transmit(now, &mut peer.local, rng, &mut out) {
                sent.push(out[..n].to_vec());
            }
            while let Some(e) = peer.tunnel.poll_event() {
                peer.events.push(e);
            }
            for m in sent {
                any = true;
                self.put_on_wire(side.other(), m);
            }
        }
        any
    }

    /// Exchanges datagrams until the wire is quiet at the current time.
    pub fn drive(&mut self) {
        for _ in 0..1000 {
            let sent = self.flush_transmits();
            let Some((to, bytes)) = self.wire.pop_front() else {
                if !sent {
                    return;
                }
                continue;
            };
            let _ = self.inject(to, bytes);
        }
        panic!("the pair did not go quiet");
    }

    /// Runs virtual time forward to `until`, firing every timer on the way.
    pub fn advance_to(&mut self, until: Instant) {
        self.drive();
        for _ in 0..100_000 {
            let next = [self.a.tunnel.poll_timeout(), self.b.tunnel.poll_timeout()]
                .into_iter()
                .flatten()
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.a.tunnel.handle_timeout(now);
                    self.b.tunnel.handle_timeout(now);
                    self.drive();
                }
                _ => {
                    self.now = until;
                    self.a.tunnel.handle_timeout(until);
                    self.b.tunnel.handle_timeout(until);
                    self.drive();
                    return;
                }
            }
        }
        panic!("timers kept firing without time advancing");
    }

    pub fn advance(&mut self, by: Duration) {
        let to = self.now + by;
        self.advance_to(to);
    }

    /// Datagrams of `ty` sent towards `to` so far.
    pub fn sent_of(&self, to: Side, ty: MessageType) -> Vec<Vec<u8>> {
        self.log
            .iter()
            .filter(|(s, m)| *s == to && MessageType::of(m) == Ok(ty))
            .map(|(_, m)| m.clone())
            .collect()
    }
}

/// A small IPv4-looking packet (version nibble 4) with a marker byte.
pub fn ip_packet(marker: u8, len: usize) -> Vec<u8> {
    let mut p = vec![marker; len.max(20)];
    p[0] = 0x45;
    p
}
