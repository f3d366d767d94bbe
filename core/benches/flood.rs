//! What a handshake flood costs a node (issue 8): initiations from ever new
//! spoofed source addresses fed to a whole `Node` (ring provider), in three
//! kinds, each timed separately:
//!
//! - **no token**: MAC1 is wrong; the node refuses it after one BLAKE2s;
//! - **token, no cookie**: MAC1 is right and the node is under load, so it
//!   answers with a cookie reply (one BLAKE2s for MAC1, one for the cookie,
//!   one XChaCha20-Poly1305 seal) and does no X25519;
//! - **admitted**: the node is not under load (a second node, fed 500
//!   messages per simulated second, under the threshold) and goes on to
//!   X25519; the messages are replays, so it
//!   stops after decrypting the initiator's static key and timestamp (two
//!   of the four X25519 operations a full answer costs).
//!
//! Each kind runs for rounds of about 20 ms; the report gives the median
//! cost per message and the rate one core can absorb. A flood at rate R
//! costs a node R x (cost of its kind); with cookies engaged above
//! `DEFAULT_LOAD_THRESHOLD` (1000/s), admitted work is capped at that rate.

mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use common::{bench_args, median, print_cpu};
use kairos_core::crypto::RingProvider;
use kairos_core::election::MemberView;
use kairos_core::identity::Identity;
use kairos_core::ledger::{Ed25519Verifier, Ledger};
use kairos_core::node::{Input, MemberSlot, Node, NodeConfig, TunnelSlot};
use kairos_core::noise::{create_initiation, LocalKeys, RemoteKeys, Tai64N, DEFAULT_LOAD_THRESHOLD};
use kairos_core::session::DropReason;
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;
use kairos_core::wire::{COOKIE_REPLY_LEN, INITIATION_LEN};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

type BenchNode = Node<
    RingProvider,
    ChaCha20Rng,
    Ed25519Verifier,
    Vec<MemberSlot<RingProvider>>,
    Vec<TunnelSlot<RingProvider>>,
    Box<Ledger<256, 65536>>,
    Vec<MemberView>,
    256,
    65536,
>;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    NoToken,
    NoCookie,
    Admitted,
}

fn node(net: &NetworkKeys, seed: u64) -> BenchNode {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let id = Identity::generate(&mut rng);
    Node::new(
        id,
        net,
        NodeConfig::default(),
        rng,
        (0..32).map(|_| None).collect(),
        (0..32).map(|_| None).collect(),
        Box::default(),
        Ed25519Verifier,
        vec![MemberView::default(); 33],
        Duration::from_secs(1_800_000_000),
    )
}

/// Feeds `msgs` (round robin) to `node` from new spoofed addresses for
/// `round`; returns (messages, seconds).
/// `warm`: the node may not be under load yet (anything goes).
fn flood(
    node: &mut BenchNode,
    now: &mut Instant,
    msgs: &[[u8; INITIATION_LEN]],
    kind: Kind,
    round: StdDuration,
    seq: &mut u32,
    warm: bool,
) -> (u64, f64) {
    let start = StdInstant::now();
    let mut n = 0u64;
    let mut out = [0u8; 256];
    while start.elapsed() < round {
        for _ in 0..64 {
            *seq = seq.wrapping_add(1);
            let s = *seq;
            let from = SocketAddr::new(
                IpAddr::V4(Ipv4Addr::new(198, 18, (s >> 8) as u8, s as u8)),
                1024 + (s >> 16) as u16,
            );
            let mut m = msgs[s as usize % msgs.len()];
            // Under load: ten messages per simulated millisecond, far
            // above the threshold. Admitted: one per 2 ms, under it.
            if kind == Kind::Admitted {
                *now += Duration::from_millis(2);
            } else if s % 10 == 0 {
                *now += Duration::from_millis(1);
            }
            let r = node.handle_datagram(*now, from, &mut m);
            let mut cookie_reply = matches!(&r, Ok(Input::Send { datagram, .. }) if datagram[0] == 3);
            while let Some(t) = node.poll_transmit(*now, &mut out) {
                cookie_reply |= t.len == COOKIE_REPLY_LEN && out[0] == 3;
            }
            match (kind, &r) {
                (Kind::NoToken, Err(DropReason::BadMac1)) => {}
                (Kind::NoCookie, Ok(_)) if cookie_reply => {}
                (Kind::Admitted, Err(DropReason::ReplayedInitiation)) | (Kind::Admitted, Ok(_)) => {}
                _ if warm => {}
                _ => panic!("{kind:?}: unexpected {r:?}"),
            }
            black_box(&r);
            n += 1;
        }
    }
    (n, start.elapsed().as_secs_f64())
}

fn main() {
    // Without --bench (`cargo test --benches`): one short round of each
    // kind, which still checks every message gets the answer its kind
    // should.
    let args = bench_args();
    let (rounds, round) = match &args {
        None => (1, StdDuration::from_millis(1)),
        Some((true, _)) => (10, StdDuration::from_millis(10)),
        Some((false, _)) => (40, StdDuration::from_millis(20)),
    };
    let net = NetworkKeys::derive(&[7; 32]);
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let attacker = LocalKeys::new(&Identity::generate(&mut rng), &net);
    let mut clocks = [Instant::from_secs(10); 2];
    let mut nodes = [node(&net, 1), node(&net, 2)];
    let target = *nodes[0].identity().static_public();
    let admitted_target = *nodes[1].identity().static_public();
    let make = |target: &[u8; 32], rng: &mut ChaCha20Rng| -> Vec<[u8; INITIATION_LEN]> {
        let sees = RemoteKeys::new(&attacker, target).expect("key");
        (0..16u32)
            .map(|k| {
                let mut msg = [0u8; INITIATION_LEN];
                let ts = Tai64N::from_unix(std::time::Duration::from_secs(1_800_000_000 + u64::from(k)));
                create_initiation(&attacker, &sees, ts, k, rng, &mut msg).expect("initiation");
                msg
            })
            .collect()
    };
    let member = make(&target, &mut rng);
    let stranger: Vec<_> = member
        .iter()
        .map(|m| {
            let mut m = *m;
            m[INITIATION_LEN - 32] ^= 1;
            m
        })
        .collect();
    // Replays once the first of each has been answered.
    let admitted = make(&admitted_target, &mut rng);
    let mut seq = 0u32;
    let kinds = [(Kind::NoToken, 0usize), (Kind::NoCookie, 0), (Kind::Admitted, 1)];
    // Warm up: puts node 0 under load, answers the admitted pool once.
    for &(kind, i) in &kinds {
        let msgs = match kind {
            Kind::NoToken => &stranger,
            Kind::NoCookie => &member,
            Kind::Admitted => &admitted,
        };
        flood(
            &mut nodes[i],
            &mut clocks[i],
            msgs,
            kind,
            StdDuration::from_millis(50),
            &mut seq,
            true,
        );
    }
    let mut costs: [Vec<f64>; 3] = Default::default();
    for _ in 0..rounds {
        for (j, &(kind, i)) in kinds.iter().enumerate() {
            let msgs = match kind {
                Kind::NoToken => &stranger,
                Kind::NoCookie => &member,
                Kind::Admitted => &admitted,
            };
            let (n, secs) = flood(&mut nodes[i], &mut clocks[i], msgs, kind, round, &mut seq, false);
            costs[j].push(secs * 1e9 / n as f64);
        }
    }
    if args.is_none() {
        println!("flood bench: refused without the token, cookie replies under load, admitted below it (smoke run, no timing)");
        return;
    }
    print_cpu();
    println!("handshake flood from spoofed sources, whole Node, ring provider; {rounds} rounds of {round:?} per kind");
    println!("| kind | ns per message | messages/s one core absorbs |");
    println!("|---|---:|---:|");
    for (j, name) in [
        "no token (bad MAC1)",
        "token, under load: cookie reply",
        "admitted (X25519, replay refused)",
    ]
    .iter()
    .enumerate()
    {
        let ns = median(&costs[j]);
        println!("| {name} | {ns:.0} | {:.0} |", 1e9 / ns);
    }
    let cookie = median(&costs[1]);
    let admitted = median(&costs[2]);
    println!(
        "a flood of 100 000 initiations/s with the token costs {:.1}% of a core under load (cookies), {:.0}% without them",
        100_000.0 * cookie / 1e7,
        100_000.0 * admitted / 1e7
    );
    println!(
        "with cookies engaged above {DEFAULT_LOAD_THRESHOLD}/s, X25519 work is capped at that rate: {:.1}% of a core",
        f64::from(DEFAULT_LOAD_THRESHOLD) * admitted / 1e7
    );
}
