//! `kairos demo`: two peers in one process, talking over real UDP sockets on
//! loopback (no LAN beacons, nothing leaves the machine). It shows the
//! handshake, echo round trips and a bulk transfer through the encrypted
//! tunnel, with timings and the tunnels' counters.
//!
//! Both peers run on one thread, one step at a time, so the numbers are a
//! lower bound of what one core does for both ends.

use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use clap::Args;
use kairos_core::crypto::DefaultProvider;
use kairos_core::identity::Identity;
use kairos_core::session::{Local, Received, Tunnel, TunnelConfig};
use kairos_core::token::NetworkToken;
use kairos_core::wire::{TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use rand_core::OsRng;

use super::token::TOKEN_ENV;
use super::CliError;
use crate::clock::Clock;

/// Arguments of `kairos demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The network token both peers use (default: KAIROS_TOKEN, else a fresh one).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// Echo round trips to make.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub pings: u32,
    /// Packets in the bulk transfer.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub packets: u32,
    /// Size of each bulk packet (an IPv4 packet, header included).
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u16).range(28..=1420))]
    pub size: u16,
}

pub const LONG_ABOUT: &str = "Run two mesh peers in this process, on UDP sockets bound to \
127.0.0.1 (LAN beacons off: nothing leaves the machine). They complete the Noise IKpsk2 \
handshake with keys derived from the network token, exchange echo packets both ways, and push \
a bulk transfer through the encrypted tunnel. Prints timings and each tunnel's counters.

The token comes from --token, else KAIROS_TOKEN, else a fresh one is generated.";

/// How long any single step may wait for the other peer.
const STEP_TIMEOUT: StdDuration = StdDuration::from_secs(5);
/// Bulk packets in flight at once (kept under the socket buffer).
const WINDOW: u32 = 32;

/// One peer: its socket, local keys and tunnel to the other.
struct Peer {
    name: &'static str,
    socket: UdpSocket,
    local: Local,
    tunnel: Tunnel<DefaultProvider>,
    other: SocketAddr,
    buf: Vec<u8>,
    drops: u64,
}

/// What a step of a peer produced for the caller.
enum Got {
    Ip(Vec<u8>),
    Nothing,
}

impl Peer {
    fn new(
        name: &'static str,
        id: &Identity,
        other: &Identity,
        token: &NetworkToken,
        clock: &Clock,
    ) -> io::Result<Self> {
        let local = Local::new(id, &token.keys(), clock.wall_at_zero());
        let tunnel = Tunnel::new(&local, other.static_public(), TunnelConfig::default())
            .map_err(|e| io::Error::other(format!("peer key refused: {e}")))?;
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        Ok(Peer {
            name,
            socket,
            local,
            tunnel,
            other: "127.0.0.1:9".parse().expect("literal"),
            buf: vec![0u8; 65536],
            drops: 0,
        })
    }

    fn addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("bound socket")
    }

    /// Sends whatever the tunnel's timers want sent.
    fn flush(&mut self, clock: &Clock) -> io::Result<()> {
        let now = clock.now();
        let mut out = [0u8; 256];
        self.tunnel.handle_timeout(now);
        while let Some(n) = self.tunnel.poll_transmit(now, &mut self.local, &mut OsRng, &mut out) {
            self.socket.send_to(&out[..n], self.other)?;
        }
        while let Some(e) = self.tunnel.poll_event() {
            println!("          [{}] {e:?}", self.name);
        }
        Ok(())
    }

    /// Receives one datagram (waiting at most `STEP_TIMEOUT`) and handles it.
    fn step(&mut self, clock: &Clock) -> io::Result<Got> {
        self.socket.set_read_timeout(Some(STEP_TIMEOUT))?;
        let (n, from) = self.socket.recv_from(&mut self.buf)?;
        let now = clock.now();
        let reply = match self
            .tunnel
            .handle_datagram(now, &mut self.local, &mut OsRng, from, &mut self.buf[..n])
        {
            Ok(Received::Ip(p)) => return Ok(Got::Ip(p.to_vec())),
            Ok(Received::Reply(r)) => Some(r.to_vec()),
            Ok(_) => None,
            Err(e) => {
                self.drops += 1;
                eprintln!("  [{}] dropped a datagram: {e}", self.name);
                None
            }
        };
        if let Some(r) = reply {
            self.socket.send_to(&r, from)?;
        }
        self.flush(clock)?;
        Ok(Got::Nothing)
    }

    /// Seals and sends one IP packet.
    fn send(&mut self, clock: &Clock, ip: &[u8]) -> io::Result<()> {
        let mut buf = [0u8; 1500 + TRANSPORT_OVERHEAD];
        buf[TRANSPORT_HEADER_LEN..][..ip.len()].copy_from_slice(ip);
        let msg = self
            .tunnel
            .encapsulate(clock.now(), &mut buf, ip.len())
            .map_err(|e| io::Error::other(format!("{}: cannot send: {e}", self.name)))?;
        self.socket.send_to(msg, self.other)?;
        Ok(())
    }

    /// Handles datagrams until one carries an IP packet.
    fn recv_ip(&mut self, clock: &Clock) -> io::Result<Vec<u8>> {
        let deadline = StdInstant::now() + STEP_TIMEOUT;
        while StdInstant::now() < deadline {
            if let Got::Ip(p) = self.step(clock)? {
                return Ok(p);
            }
        }
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{}: no packet arrived", self.name),
        ))
    }
}

/// A minimal IPv4 packet (protocol 253, "experimentation") with a sequence
/// number, from `src` to `dst`, `len` bytes long.
fn ipv4_packet(src: [u8; 4], dst: [u8; 4], seq: u32, len: usize) -> Vec<u8> {
    let mut p = vec![0u8; len];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    p[8] = 64;
    p[9] = 253;
    p[12..16].copy_from_slice(&src);
    p[16..20].copy_from_slice(&dst);
    let mut sum: u32 = 0;
    for c in p[..20].chunks(2) {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    p[10..12].copy_from_slice(&(!(sum as u16)).to_be_bytes());
    p[20..24].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in p[24..].iter_mut().enumerate() {
        *b = (seq as usize + i) as u8;
    }
    p
}

/// Runs the demo.
pub fn run(args: DemoArgs) -> Result<(), CliError> {
    let token = match args.token.clone().or_else(|| std::env::var(TOKEN_ENV).ok()) {
        Some(t) => NetworkToken::decode(&t)?,
        None => NetworkToken::generate(&mut OsRng),
    };
    demo(&token, &args).map_err(|e| CliError::Other(anyhow::Error::new(e).context("demo failed")))
}

fn demo(token: &NetworkToken, args: &DemoArgs) -> io::Result<()> {
    let clock = Clock::start();
    let mut out = io::stdout().lock();
    let (ida, idb) = (Identity::generate(&mut OsRng), Identity::generate(&mut OsRng));
    let mut a = Peer::new("a", &ida, &idb, token, &clock)?;
    let mut b = Peer::new("b", &idb, &ida, token, &clock)?;
    a.other = b.addr();
    b.other = a.addr();
    writeln!(out, "network   {}", token.network_id())?;
    writeln!(out, "peer a    {}  udp {}", ida.node_id(), a.addr())?;
    writeln!(out, "peer b    {}  udp {}", idb.node_id(), b.addr())?;

    // Handshake: a initiates, b answers, a confirms with a keepalive.
    let t0 = StdInstant::now();
    a.tunnel.connect();
    a.flush(&clock)?;
    b.step(&clock)?; // initiation -> response
    a.step(&clock)?; // response -> keepalive
    b.step(&clock)?; // keepalive confirms b's session
    let now = clock.now();
    if !(a.tunnel.is_established(now) && b.tunnel.is_established(now)) {
        return Err(io::Error::other("the handshake did not complete"));
    }
    writeln!(
        out,
        "handshake {:.2} ms (one round trip, Noise IKpsk2)",
        t0.elapsed().as_secs_f64() * 1e3
    )?;

    // Echo: a -> b, b answers with the addresses swapped.
    let (ip_a, ip_b) = ([10, 1, 0, 1], [10, 1, 0, 2]);
    let mut rtts = Vec::with_capacity(args.pings as usize);
    for seq in 0..args.pings {
        let t = StdInstant::now();
        let ping = ipv4_packet(ip_a, ip_b, seq, 84);
        a.send(&clock, &ping)?;
        let got = b.recv_ip(&clock)?;
        if got != ping {
            return Err(io::Error::other(format!("echo {seq}: b received a different packet")));
        }
        b.send(&clock, &ipv4_packet(ip_b, ip_a, seq, 84))?;
        let back = a.recv_ip(&clock)?;
        if back[20..24] != seq.to_be_bytes() {
            return Err(io::Error::other(format!("echo {seq}: wrong reply")));
        }
        rtts.push(t.elapsed());
    }
    rtts.sort();
    let avg = rtts.iter().sum::<StdDuration>() / rtts.len() as u32;
    writeln!(
        out,
        "echo      {}/{} replies, rtt min {} us, avg {} us, max {} us",
        rtts.len(),
        args.pings,
        rtts[0].as_micros(),
        avg.as_micros(),
        rtts[rtts.len() - 1].as_micros()
    )?;

    // Bulk: a -> b in windows, each packet checked on arrival.
    if args.packets > 0 {
        let size = args.size as usize;
        let t = StdInstant::now();
        let mut sent = 0u32;
        while sent < args.packets {
            let burst = WINDOW.min(args.packets - sent);
            for i in 0..burst {
                a.send(&clock, &ipv4_packet(ip_a, ip_b, sent + i, size))?;
            }
            for i in 0..burst {
                let p = b.recv_ip(&clock)?;
                if p.len() != size || p[20..24] != (sent + i).to_be_bytes() {
                    return Err(io::Error::other(format!("bulk packet {} arrived damaged", sent + i)));
                }
            }
            sent += burst;
        }
        let secs = t.elapsed().as_secs_f64();
        writeln!(
            out,
            "bulk      {} packets x {} B in {:.3} s: {:.2} Gbit/s, {:.0} k packets/s (both ends on one thread)",
            sent,
            size,
            secs,
            sent as f64 * size as f64 * 8.0 / secs / 1e9,
            sent as f64 / secs / 1e3
        )?;
    }

    for p in [&a, &b] {
        let s = p.tunnel.stats();
        writeln!(
            out,
            "stats {}   sent {} packets / {} B, received {} packets / {} B, handshakes {}, dropped {}",
            p.name, s.tx_packets, s.tx_bytes, s.rx_packets, s.rx_bytes, s.handshakes, p.drops
        )?;
    }
    if a.drops + b.drops > 0 {
        return Err(io::Error::other("datagrams were dropped"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv4_header_checksum_verifies() {
        let p = ipv4_packet([10, 1, 0, 1], [10, 1, 0, 2], 7, 60);
        let mut sum: u32 = 0;
        for c in p[..20].chunks(2) {
            sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        assert_eq!(sum, 0xffff);
        assert_eq!(p.len(), 60);
        assert_eq!(p[0] >> 4, 4);
    }
}
