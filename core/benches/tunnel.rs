//! Seal + open per core: one IP packet sealed by tunnel A and opened by tunnel
//! B counts as one operation, for 64, 512 and 1420-byte IPv4 packets, with
//! kairos on the RustCrypto and the ring providers and with boringtun 0.7's
//! `Tunn` (the reference the project compares against), in the same binary
//! and the same run.
//!
//! ```text
//! cargo bench -p kairos-core --features ring --bench tunnel            # full run (~15 s)
//! cargo bench -p kairos-core --features ring --bench tunnel -- --quick # short run (~3 s)
//! ```
//!
//! `KAIROS_BENCH_QUICK=1` is the same as `--quick`. Run without `--bench`
//! (as `cargo test --benches` does), the binary only checks that every
//! implementation round-trips a few packets, and prints no numbers.
//!
//! Method: after a handshake, each implementation is warmed up and an
//! iteration count is picked so that one round takes about 20 ms (10 ms with
//! `--quick`); the count then stays fixed. Short rounds keep each pair of
//! rounds compared below close in time. Rounds of the implementations are interleaved, so that
//! a noisy neighbour slows them alike; the table gives the median rate over
//! the rounds, and the ratio to boringtun is the median of the per-round
//! ratios (each against boringtun's round just before or after). Every
//! operation checks the decrypted length; every round checks the payload
//! bytes and the receive counters.
//!
//! A fourth row, ring's ChaCha20-Poly1305 alone in place (no header, no
//! replay window), is the ceiling both tunnels can reach with ring.
//! Arguments that do not start with `--` keep only the implementations whose
//! name contains one of them (for profiling: `-- --quick "kairos ring"`).
//!
//! Each implementation uses its natural API: kairos seals and opens in place
//! (the plaintext is back in the buffer after each open), boringtun copies the
//! payload into the datagram when sealing and the datagram into the output
//! buffer when opening. Both use ring's ChaCha20-Poly1305 underneath when
//! kairos has the ring provider.

mod common;

use common::{bench_args, median, print_cpu};
use std::fmt::Write as _;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use kairos_core::crypto::{CryptoProvider, RingProvider, RustCryptoProvider};
use kairos_core::identity::Identity;
use kairos_core::session::{Local, Received, Tunnel, TunnelConfig};
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;
use kairos_core::wire::{TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

/// IP packet sizes (whole IPv4 packets, header included).
const SIZES: [usize; 3] = [64, 512, 1420];

struct Settings {
    /// Warm-up (and calibration) time per implementation and size.
    warmup: StdDuration,
    /// Target duration of one round.
    round: StdDuration,
    /// Rounds per implementation and size.
    rounds: usize,
}

const FULL: Settings = Settings {
    warmup: StdDuration::from_millis(150),
    round: StdDuration::from_millis(20),
    rounds: 45,
};

const QUICK: Settings = Settings {
    warmup: StdDuration::from_millis(40),
    round: StdDuration::from_millis(10),
    rounds: 15,
};

/// The x25519 secrets of the two ends (kairos identities start with them).
const SECRET_A: [u8; 32] = [1; 32];
const SECRET_B: [u8; 32] = [2; 32];

/// A valid-looking IPv4/UDP packet of `len` bytes from 10.0.0.1 to 10.0.0.2
/// (boringtun reads the total length and source address from the header).
fn ipv4_packet(len: usize) -> Vec<u8> {
    assert!((20..=usize::from(u16::MAX)).contains(&len));
    let mut p: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
    let header: [u8; 20] = [
        0x45, 0, 0, 0, // version 4, IHL 5, TOS, total length (below)
        0x12, 0x34, 0x40, 0, // id, don't fragment
        64, 17, 0, 0, // TTL, UDP, checksum (below)
        10, 0, 0, 1, // source
        10, 0, 0, 2, // destination
    ];
    p[..20].copy_from_slice(&header);
    p[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    let sum: u32 = p[..20]
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    let folded = (sum & 0xffff) + (sum >> 16);
    let folded = (folded & 0xffff) + (folded >> 16);
    p[10..12].copy_from_slice(&(!(folded as u16)).to_be_bytes());
    p
}

/// One implementation carrying packets from A to B.
trait Pipe {
    /// Seals one packet on A and opens it on B; returns the length B got.
    fn roundtrip(&mut self) -> usize;

    /// The packet B got last.
    fn delivered(&self) -> &[u8];

    /// Packets B has authenticated so far.
    fn received(&self) -> u64;

    /// `iters` round trips (monomorphized per implementation).
    fn run(&mut self, iters: u64, len: usize) {
        for _ in 0..iters {
            let n = black_box(self.roundtrip());
            assert_eq!(n, len, "wrong decrypted length");
        }
    }
}

struct End<P: CryptoProvider> {
    local: Local,
    tunnel: Tunnel<P>,
}

struct Kairos<P: CryptoProvider> {
    a: End<P>,
    b: End<P>,
    rng: ChaCha20Rng,
    now: Instant,
    from_a: SocketAddr,
    len: usize,
    /// `TRANSPORT_HEADER_LEN` + payload + tag; the payload is sealed and
    /// opened in place, so it is the plaintext again after every round trip.
    buf: Vec<u8>,
}

impl<P: CryptoProvider> Kairos<P> {
    fn new(payload: &[u8]) -> Self {
        let net = NetworkKeys::derive(&[7; 32]);
        let wall = Duration::from_secs(1_800_000_000);
        let mut id_a = [0xa1; 64];
        id_a[..32].copy_from_slice(&SECRET_A);
        let mut id_b = [0xb2; 64];
        id_b[..32].copy_from_slice(&SECRET_B);
        let (id_a, id_b) = (Identity::from_bytes(&id_a), Identity::from_bytes(&id_b));
        let end = |me: &Identity, them: &Identity| {
            let local = Local::new(me, &net, wall);
            let tunnel = Tunnel::new(&local, them.static_public(), TunnelConfig::default()).expect("tunnel");
            End { local, tunnel }
        };
        let mut buf = vec![0u8; payload.len() + TRANSPORT_OVERHEAD];
        buf[TRANSPORT_HEADER_LEN..][..payload.len()].copy_from_slice(payload);
        let mut pipe = Kairos {
            a: end(&id_a, &id_b),
            b: end(&id_b, &id_a),
            rng: ChaCha20Rng::seed_from_u64(42),
            now: Instant::from_secs(1),
            from_a: SocketAddr::from(([192, 0, 2, 1], 51820)),
            len: payload.len(),
            buf,
        };
        pipe.handshake();
        pipe
    }

    /// A initiates; datagrams go back and forth until the wire is quiet (the
    /// initiator's keepalive confirms the session to B).
    fn handshake(&mut self) {
        let Kairos {
            a, b, rng, now, from_a, ..
        } = self;
        let from_b = SocketAddr::from(([192, 0, 2, 2], 51820));
        a.tunnel.connect();
        // (to B?, bytes)
        let mut wire: Vec<(bool, Vec<u8>)> = Vec::new();
        for _ in 0..16 {
            let mut out = [0u8; 256];
            for (to_b, end) in [(true, &mut *a), (false, &mut *b)] {
                while let Some(n) = end.tunnel.poll_transmit(*now, &mut end.local, rng, &mut out) {
                    wire.push((to_b, out[..n].to_vec()));
                }
            }
            if wire.is_empty() {
                break;
            }
            for (to_b, mut bytes) in std::mem::take(&mut wire) {
                let (end, from) = if to_b { (&mut *b, *from_a) } else { (&mut *a, from_b) };
                match end.tunnel.handle_datagram(*now, &mut end.local, rng, from, &mut bytes) {
                    Ok(Received::Reply(r)) => wire.push((!to_b, r.to_vec())),
                    Ok(Received::Handshake | Received::Keepalive) => {}
                    other => panic!("unexpected during the handshake: {other:?}"),
                }
            }
        }
        assert!(a.tunnel.is_established(*now) && b.tunnel.is_established(*now));
    }
}

impl<P: CryptoProvider> Pipe for Kairos<P> {
    #[inline]
    fn roundtrip(&mut self) -> usize {
        let msg = self
            .a
            .tunnel
            .encapsulate(self.now, &mut self.buf, self.len)
            .expect("seal");
        match self
            .b
            .tunnel
            .handle_datagram(self.now, &mut self.b.local, &mut self.rng, self.from_a, msg)
        {
            Ok(Received::Ip(ip)) => ip.len(),
            other => panic!("open: {other:?}"),
        }
    }

    fn delivered(&self) -> &[u8] {
        &self.buf[TRANSPORT_HEADER_LEN..][..self.len]
    }

    fn received(&self) -> u64 {
        // Data packets only: the handshake's confirming keepalive also counts.
        self.b.tunnel.stats().rx_packets - 1
    }
}

struct Boringtun {
    a: Tunn,
    b: Tunn,
    payload: Vec<u8>,
    /// The sealed datagram.
    wire: Vec<u8>,
    /// B's output.
    out: Vec<u8>,
}

impl Boringtun {
    fn new(payload: &[u8]) -> Self {
        let (sk_a, sk_b) = (StaticSecret::from(SECRET_A), StaticSecret::from(SECRET_B));
        let (pk_a, pk_b) = (PublicKey::from(&sk_a), PublicKey::from(&sk_b));
        let mut pipe = Boringtun {
            a: Tunn::new(sk_a, pk_b, None, None, 1, None),
            b: Tunn::new(sk_b, pk_a, None, None, 2, None),
            payload: payload.to_vec(),
            wire: vec![0u8; payload.len() + 32],
            out: vec![0u8; payload.len() + 32],
        };
        pipe.handshake();
        pipe
    }

    /// A initiates; each `WriteToNetwork` goes to the other side, and after
    /// one from `decapsulate` the queue is flushed with empty datagrams, as
    /// boringtun's docs ask.
    fn handshake(&mut self) {
        let mut buf = vec![0u8; 2048];
        let init = match self.a.format_handshake_initiation(&mut buf, false) {
            TunnResult::WriteToNetwork(p) => p.to_vec(),
            other => panic!("initiation: {other:?}"),
        };
        let mut wire = vec![(true, init)];
        let mut hops = 0;
        while let Some((to_b, datagram)) = wire.pop() {
            hops += 1;
            assert!(hops < 16, "boringtun handshake did not settle");
            let end = if to_b { &mut self.b } else { &mut self.a };
            let mut input: &[u8] = &datagram;
            loop {
                match end.decapsulate(None, input, &mut buf) {
                    TunnResult::WriteToNetwork(p) => wire.push((!to_b, p.to_vec())),
                    TunnResult::Done => break,
                    other => panic!("unexpected during the handshake: {other:?}"),
                }
                input = &[];
            }
        }
        assert!(self.a.time_since_last_handshake().is_some());
        assert!(self.b.time_since_last_handshake().is_some());
    }
}

impl Pipe for Boringtun {
    #[inline]
    fn roundtrip(&mut self) -> usize {
        let n = match self.a.encapsulate(&self.payload, &mut self.wire) {
            TunnResult::WriteToNetwork(p) => p.len(),
            other => panic!("seal: {other:?}"),
        };
        match self.b.decapsulate(None, &self.wire[..n], &mut self.out) {
            TunnResult::WriteToTunnelV4(ip, _) => ip.len(),
            other => panic!("open: {other:?}"),
        }
    }

    fn delivered(&self) -> &[u8] {
        &self.out[..self.payload.len()]
    }

    fn received(&self) -> u64 {
        // Payload bytes B accepted (the handshake's keepalive carried none).
        (self.b.stats().2 / self.payload.len()) as u64
    }
}

/// ring's ChaCha20-Poly1305 alone, in place, with WireGuard's nonces: no
/// header, no replay window, no tunnel. The ceiling for both tunnels.
struct RawRing {
    send: LessSafeKey,
    recv: LessSafeKey,
    counter: u64,
    /// Payload + tag.
    buf: Vec<u8>,
    len: usize,
    received: u64,
}

impl RawRing {
    fn new(payload: &[u8]) -> Self {
        let key = |k: &[u8; 32]| LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, k).expect("key"));
        let mut buf = vec![0u8; payload.len() + 16];
        buf[..payload.len()].copy_from_slice(payload);
        RawRing {
            send: key(&[9; 32]),
            recv: key(&[9; 32]),
            counter: 0,
            buf,
            len: payload.len(),
            received: 0,
        }
    }
}

fn wg_nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

impl Pipe for RawRing {
    #[inline]
    fn roundtrip(&mut self) -> usize {
        let counter = self.counter;
        self.counter += 1;
        let (body, tag_out) = self.buf.split_at_mut(self.len);
        let tag = self
            .send
            .seal_in_place_separate_tag(wg_nonce(counter), Aad::empty(), body)
            .expect("seal");
        tag_out.copy_from_slice(tag.as_ref());
        let plain = self
            .recv
            .open_in_place(wg_nonce(counter), Aad::empty(), &mut self.buf)
            .expect("open");
        self.received += 1;
        plain.len()
    }

    fn delivered(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn received(&self) -> u64 {
        self.received
    }
}

struct Contender {
    name: &'static str,
    pipe: Box<dyn Pipe>,
    iters: u64,
    rates: Vec<f64>,
    done: u64,
}

impl Contender {
    fn new(name: &'static str, pipe: Box<dyn Pipe>) -> Self {
        Contender {
            name,
            pipe,
            iters: 0,
            rates: Vec::new(),
            done: 0,
        }
    }

    /// Runs `iters` round trips, checks what arrived, returns the seconds.
    fn round(&mut self, iters: u64, payload: &[u8]) -> f64 {
        let start = StdInstant::now();
        self.pipe.run(iters, payload.len());
        let secs = start.elapsed().as_secs_f64();
        self.done += iters;
        assert_eq!(self.pipe.delivered(), payload, "{}: payload corrupted", self.name);
        assert_eq!(self.pipe.received(), self.done, "{}: receive counter", self.name);
        secs
    }

    /// Runs for at least `warmup`, then picks the round's iteration count.
    fn calibrate(&mut self, s: &Settings, payload: &[u8]) {
        let (mut iters, mut spent, mut total) = (64u64, 0.0, 0u64);
        while spent < s.warmup.as_secs_f64() {
            spent += self.round(iters, payload);
            total += iters;
            iters *= 2;
        }
        let per_sec = total as f64 / spent;
        self.iters = ((per_sec * s.round.as_secs_f64()) as u64).max(100);
    }

    fn median(&self) -> f64 {
        median(&self.rates)
    }

    fn spread(&self) -> (f64, f64) {
        let min = self.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = self.rates.iter().copied().fold(0.0, f64::max);
        (min, max)
    }
}

const BORINGTUN: &str = "boringtun 0.7";
const KAIROS_RING: &str = "kairos ring";

/// The implementations whose names contain one of `filters` (all if none).
fn contenders(payload: &[u8], filters: &[String]) -> Vec<Contender> {
    let all = vec![
        Contender::new(
            "kairos RustCrypto",
            Box::new(Kairos::<RustCryptoProvider>::new(payload)),
        ),
        Contender::new(KAIROS_RING, Box::new(Kairos::<RingProvider>::new(payload))),
        Contender::new(BORINGTUN, Box::new(Boringtun::new(payload))),
        Contender::new("ring AEAD alone (ceiling)", Box::new(RawRing::new(payload))),
    ];
    all.into_iter()
        .filter(|c| filters.is_empty() || filters.iter().any(|f| c.name.contains(f.as_str())))
        .collect()
}

/// Without `--bench`: a few packets through each implementation, no timing.
fn smoke() {
    for len in SIZES {
        let payload = ipv4_packet(len);
        for mut c in contenders(&payload, &[]) {
            c.round(1000, &payload);
        }
    }
    println!("tunnel bench: every implementation round-trips 64, 512 and 1420-byte packets (smoke run, no timing)");
}

fn main() {
    let Some((quick, filters)) = bench_args() else {
        smoke();
        return;
    };
    let s = if quick { QUICK } else { FULL };
    let started = StdInstant::now();

    println!(
        "seal on A + open on B per packet, one core; {} rounds of ~{} ms per implementation and size, median{}",
        s.rounds,
        s.round.as_millis(),
        if quick { " (quick)" } else { "" }
    );
    print_cpu();
    println!();
    let mut table = String::new();
    table.push_str("| IP packet | implementation | M packets/s | Gbit/s | vs boringtun | rounds min–max (M/s) |\n");
    table.push_str("|---:|---|---:|---:|---:|---:|\n");
    let mut ring_1420 = None;
    for len in SIZES {
        let payload = ipv4_packet(len);
        let mut cs = contenders(&payload, &filters);
        for c in &mut cs {
            c.calibrate(&s, &payload);
        }
        for _ in 0..s.rounds {
            for c in &mut cs {
                let secs = c.round(c.iters, &payload);
                c.rates.push(c.iters as f64 / secs);
            }
        }
        // Each round's rate over boringtun's in the same round (they ran
        // back to back), then the median: steadier than a ratio of medians
        // when the machine's load drifts.
        let reference = cs.iter().find(|c| c.name == BORINGTUN).map(|c| c.rates.clone());
        for c in &cs {
            let rate = c.median();
            let (min, max) = c.spread();
            let ratio = reference.as_ref().map(|r| {
                let paired: Vec<f64> = c.rates.iter().zip(r).map(|(x, b)| x / b).collect();
                median(&paired)
            });
            if len == 1420 && c.name == KAIROS_RING {
                ring_1420 = ratio;
            }
            writeln!(
                table,
                "| {len} B | {} | {:.3} | {:.2} | {} | {:.3}–{:.3} |",
                c.name,
                rate / 1e6,
                rate * (len * 8) as f64 / 1e9,
                ratio.map_or("–".into(), |r| format!("{r:.2}x")),
                min / 1e6,
                max / 1e6,
            )
            .expect("write to a String");
        }
    }
    print!("{table}");
    println!();
    if let Some(ratio) = ring_1420 {
        println!(
            "goal (kairos ring >= 1.0x boringtun at 1420 B): {} ({ratio:.2}x)",
            if ratio >= 1.0 { "met" } else { "NOT met" }
        );
    }
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
}
