//! Faults: lossy, jittery, reordering and duplicating links; NAT mappings
//! that expire; a node whose underlay address changes under it; a node that
//! restarts with its wall clock set back or forward.

use firmware_sim::net::{Faults, LanConfig, LanId, NatConfig, NatKind, PortAllocation};
use firmware_sim::scenario::{Nat, Scenario};
use firmware_sim::world::{World, WALL_AT_ZERO};
use kairos_core::node::{Event, NodeConfig};
use kairos_core::session::DropReason;
use kairos_core::time::{Duration, Instant};

use super::{keys, reach, run_until};

/// 20% loss, up to 200 ms of jitter, 10% of datagrams held back 300 ms
/// (overtaken by later ones), 5% duplicated: on every host's access link,
/// so a datagram between two nodes crosses two such links (36% loss end to
/// end, up to 400 ms of jitter).
fn bad_links() -> Faults {
    Faults::NONE
        .with_loss(0.20)
        .with_jitter(Duration::from_millis(200))
        .with_reorder(0.10, Duration::from_millis(300))
        .with_duplicate(0.05)
}

/// Membership, ledgers, addresses and the master converge through bad links,
/// and then every pair (all 870) exchanges an overlay packet, for several
/// seeds. With seeds 3, 7, 8 and 11 one pair stayed unreachable before
/// relays said `RELAY_REFUSED`: loss had made the relay (the bootstrap,
/// in touch with everyone) reach the destination through a relay itself,
/// it refused to chain, and the sender kept sending into it. In a sweep of
/// seeds 1-16, 2 to 5 failed that way, depending on the build; with the
/// refusal, 0 of 32.
#[test]
fn thirty_nodes_on_bad_links_converge() {
    for seed in [3, 7, 8, 11] {
        let r = Scenario {
            nodes: 30,
            seed,
            faults: bad_links(),
            deadline: Duration::from_secs(300),
            ..Scenario::default()
        }
        .run();
        assert!(r.converged, "seed {seed}: {r:?}");
        assert!(r.converged_at_s.is_some_and(|t| t < 200.0), "seed {seed}: {r:?}");
        assert_eq!((r.duplicate_addresses, r.masters), (0, 1), "seed {seed}: {r:?}");
        assert_eq!((r.reachable_pairs, r.sampled_pairs), (870, 870), "seed {seed}: {r:?}");
    }
}

/// The same behind NATs of every cone kind (a third of the nodes public):
/// direct handshakes that loss ate are not mistaken for blocked paths for
/// good (an initiation through a relay also goes direct, and a direct
/// response moves the pair to the direct path).
#[test]
fn nodes_behind_cone_nats_on_bad_links_converge() {
    let mix = ["none", "full", "restricted", "port"]
        .iter()
        .map(|k| Nat::parse(k).unwrap())
        .collect();
    let r = Scenario {
        nodes: 24,
        seed: 3,
        faults: bad_links(),
        nat_mix: mix,
        deadline: Duration::from_secs(300),
        ..Scenario::default()
    }
    .run();
    assert!(r.converged, "{r:?}");
    assert!(r.converged_at_s.is_some_and(|t| t < 240.0), "{r:?}");
    assert_eq!((r.duplicate_addresses, r.masters), (0, 1), "{r:?}");
    assert_eq!(r.reachable_pairs, r.sampled_pairs, "{r:?}");
}

/// A public node 0 (the bootstrap) and node 1 on `lan`, with a session up
/// and converged.
fn pair_with(lan: impl FnOnce(&mut World) -> LanId) -> World {
    let mut w = World::new(61);
    let public = w.net.add_lan(LanConfig::public());
    let boot = w.add_node(public, &keys(), NodeConfig::default(), 16);
    let boot_ep = w.endpoint(boot);
    let lan = lan(&mut w);
    let mut c = NodeConfig::default();
    c.bootstrap.push(boot_ep).unwrap();
    w.add_node(lan, &keys(), c, 16);
    assert!(run_until(&mut w, Duration::from_secs(20), |w| w.hosts[1]
        .node
        .members()
        .any(|m| m.is_up())));
    assert!(reach(&mut w, 0, 1, 1) && reach(&mut w, 1, 0, 2));
    w
}

/// Sends `a -> b` every `every` for `d`, markers from `first`; returns when
/// each arrived at `b` (in sending order, `None` if it never did).
fn stream(
    w: &mut World,
    a: usize,
    b: usize,
    first: u32,
    every: Duration,
    d: Duration,
) -> Vec<(Instant, Option<Instant>)> {
    let mut sent = vec![];
    let end = w.now() + d;
    let mut marker = first;
    while w.now() < end {
        let _ = w.send_ip(a, b, marker);
        sent.push((w.now(), marker));
        marker += 1;
        w.run_for(every);
    }
    w.run_for(Duration::from_secs(2));
    let src = w.hosts[a].node.ipv6().octets();
    sent.into_iter()
        .map(|(at, m)| {
            let got = w.hosts[b]
                .delivered
                .iter()
                .find(|(_, p)| p[8..24] == src && p[40..44] == m.to_be_bytes())
                .map(|(t, _)| *t);
            (at, got)
        })
        .collect()
}

/// The longest stretch of sending time whose packets were all lost.
fn longest_outage(trace: &[(Instant, Option<Instant>)]) -> Duration {
    let mut worst = Duration::ZERO;
    let mut since: Option<Instant> = None;
    for &(at, got) in trace {
        match (got, since) {
            (None, None) => since = Some(at),
            (Some(_), Some(s)) => {
                worst = worst.max(at - s);
                since = None;
            }
            _ => {}
        }
    }
    if let (Some(s), Some(&(last, _))) = (since, trace.last()) {
        worst = worst.max(last - s + Duration::from_micros(1));
    }
    worst
}

fn handshakes(w: &World, a: usize, b: usize) -> u64 {
    let id = w.id(b);
    w.hosts[a].node.tunnel(&id).unwrap().stats().handshakes
}

/// Whether `a` saw its session with `b` go down, or learned `b` again (a
/// new join) after the first time.
fn went_down(w: &World, a: usize, b: usize) -> bool {
    let id = w.id(b);
    let events = &w.hosts[a].events;
    let discovered = events.iter().filter(|(_, e)| *e == Event::MemberDiscovered(id)).count();
    discovered != 1 || events.iter().any(|(_, e)| *e == Event::PeerDown(id))
}

/// The NAT in front of node 1 loses its mapping (it expired during an idle
/// period, or the NAT rebooted) and hands out a random port for the next
/// one. The public peer's packets die at the NAT until node 1 sends
/// anything (at the latest its 25 s persistent keepalive); that datagram
/// comes from the new port, the peer learns the new endpoint from it
/// (WireGuard's roaming), and traffic resumes in the same session.
#[test]
fn a_session_survives_its_nat_mapping_expiring() {
    let nat = NatConfig::new(NatKind::PortRestrictedCone).with_port_allocation(PortAllocation::Random);
    let mut lan = None;
    let mut w = pair_with(|w| *lan.insert(w.net.add_lan(LanConfig::behind_nat(nat))));
    let lan = lan.unwrap();
    let hs = (handshakes(&w, 0, 1), handshakes(&w, 1, 0));
    let before = w.hosts[0].node.member(&w.id(1)).unwrap().endpoint();
    w.run_for(Duration::from_secs(30));
    w.net.reset_nat(lan, false);
    let drops = w.net.stats().drops.no_mapping;
    let trace = stream(&mut w, 0, 1, 100, Duration::from_millis(250), Duration::from_secs(40));
    let outage = longest_outage(&trace);
    let after = w.hosts[0].node.member(&w.id(1)).unwrap().endpoint();
    assert!(
        w.net.stats().drops.no_mapping > drops,
        "the peer's packets met the dead mapping"
    );
    assert_ne!(before, after, "the mapping came back on another port");
    assert_eq!(after.map(|a| a.ip()), w.net.public_addr(w.hosts[1].host));
    assert!(outage <= Duration::from_secs(26), "outage {outage:?}");
    assert!(trace.iter().rev().take(20).all(|(_, got)| got.is_some()), "{trace:?}");
    assert_eq!((handshakes(&w, 0, 1), handshakes(&w, 1, 0)), hs, "no new handshake");
    assert!(!went_down(&w, 0, 1) && !went_down(&w, 1, 0), "no session went down");
    println!("NAT mapping lost: peer -> node interrupted {outage:?}");
}

/// Node 1 moves from one NAT to another (new public address and port)
/// while both directions stream: its own packets reach the public peer at
/// once from the new endpoint, the peer's answers follow them there, and
/// the session is the same (no handshake, no member rediscovered).
#[test]
fn a_roaming_node_keeps_its_session_with_a_public_peer() {
    let cone = || LanConfig::behind_nat(NatKind::PortRestrictedCone.into());
    let mut w = pair_with(|w| w.net.add_lan(cone()));
    let cafe = w.net.add_lan(cone());
    let old_ep = w.hosts[0].node.member(&w.id(1)).unwrap().endpoint();
    let hs = (handshakes(&w, 0, 1), handshakes(&w, 1, 0));
    // Stream both ways; move after 5 s.
    let every = Duration::from_millis(100);
    let mut traces = (vec![], vec![]);
    for (k, phase) in [Duration::from_secs(5), Duration::from_secs(10)]
        .into_iter()
        .enumerate()
    {
        if k == 1 {
            w.move_node(1, cafe);
        }
        let end = w.now() + phase;
        while w.now() < end {
            let m = w.now().as_micros() as u32;
            let _ = w.send_ip(0, 1, m);
            let _ = w.send_ip(1, 0, m);
            traces.0.push((w.now(), m));
            traces.1.push((w.now(), m));
            w.run_for(every);
        }
    }
    w.run_for(Duration::from_secs(1));
    let arrived = |w: &World, a: usize, b: usize, sent: &[(Instant, u32)]| -> Vec<(Instant, Option<Instant>)> {
        sent.iter()
            .map(|&(at, m)| (at, w.received(a, b, m).then_some(at)))
            .collect()
    };
    let down = longest_outage(&arrived(&w, 0, 1, &traces.0));
    let up = longest_outage(&arrived(&w, 1, 0, &traces.1));
    let new_ep = w.hosts[0].node.member(&w.id(1)).unwrap().endpoint();
    assert_ne!(new_ep, old_ep);
    assert_eq!(new_ep.map(|a| a.ip()), w.net.public_addr(w.hosts[1].host));
    // One round trip at most: the peer answers where the node's next
    // packet came from (100 ms apart here, 40 ms of path each way).
    assert!(up <= Duration::from_millis(200), "node -> peer interrupted {up:?}");
    assert!(down <= Duration::from_millis(300), "peer -> node interrupted {down:?}");
    assert_eq!((handshakes(&w, 0, 1), handshakes(&w, 1, 0)), hs, "no new handshake");
    assert!(!went_down(&w, 0, 1) && !went_down(&w, 1, 0));
    println!("roaming to a public peer: node -> peer {up:?}, peer -> node {down:?}");
}

/// Node 1 crashes and comes back at once with its wall clock `skew` off
/// (`ahead`: later, else earlier); returns how long until it has a session
/// with every other node again and packets flow both ways, and what the
/// others refused from it meanwhile.
fn restart_with_skewed_clock(w: &mut World, skew: Duration, ahead: bool) -> (Duration, Vec<DropReason>) {
    let n = w.hosts.len();
    let refused_before: Vec<usize> = w.hosts.iter().map(|h| h.drops.len()).collect();
    w.crash(1);
    w.run_for(Duration::from_millis(500));
    let wall = if ahead {
        WALL_AT_ZERO + skew
    } else {
        WALL_AT_ZERO - skew
    };
    w.restart_with_clock(1, wall);
    let start = w.now();
    let back = |w: &World| {
        (0..n).filter(|&i| i != 1).all(|i| {
            let (to, from) = (w.id(i), w.id(1));
            w.hosts[1].node.member(&to).is_some_and(|m| m.is_up())
                && w.hosts[i].node.member(&from).is_some_and(|m| m.is_up())
                && w.hosts[i]
                    .node
                    .tunnel(&from)
                    .is_some_and(|t| t.stats().last_handshake >= Some(start))
        })
    };
    let ok = run_until(w, Duration::from_secs(120), back);
    let took = w.now() - start;
    let refused = w
        .hosts
        .iter()
        .zip(refused_before)
        .flat_map(|(h, k)| h.drops[k..].iter().copied())
        .filter(|d| matches!(d, DropReason::ReplayedInitiation | DropReason::ReplayedAnnouncement))
        .collect();
    assert!(ok, "node 1 not back with everyone after {took:?}");
    for i in (0..n).filter(|&i| i != 1) {
        assert!(
            reach(w, 1, i, 900 + i as u32) && reach(w, i, 1, 950 + i as u32),
            "1 <-> {i}"
        );
    }
    (took, refused)
}

/// Three public nodes on one LAN (beacons) and one behind a NAT that knows
/// only the bootstrap.
fn clock_world() -> World {
    let mut w = World::new(71);
    let public = w.net.add_lan(LanConfig::public());
    let boot = w.add_node(public, &keys(), NodeConfig::default(), 16);
    let boot_ep = w.endpoint(boot);
    let home = w.net.add_lan(LanConfig::behind_nat(NatKind::PortRestrictedCone.into()));
    for lan in [home, public, public] {
        let mut c = NodeConfig::default();
        c.bootstrap.push(boot_ep).unwrap();
        w.add_node(lan, &keys(), c, 16);
    }
    assert!(run_until(&mut w, Duration::from_secs(30), |w| w
        .hosts
        .iter()
        .all(|h| h.node.members().filter(|m| m.is_up()).count() == 3)));
    w.run_for(Duration::from_secs(10));
    w
}

/// A node restarted with its wall clock hours behind sends handshake
/// initiations and announcements with timestamps older than the ones its
/// peers last accepted from it, which they must refuse as replays. They
/// answer such a refusal by starting a handshake of their own (at most
/// once per retry interval, and never touching the live session), so the
/// node is back with every peer within one retry.
#[test]
fn a_node_restarted_with_its_clock_set_back_is_accepted_within_one_retry() {
    let mut w = clock_world();
    let (took, refused) = restart_with_skewed_clock(&mut w, Duration::from_secs(3 * 3600), false);
    println!("clock set back 3 h: back with every peer after {took:?}; refused {refused:?}");
    assert!(took <= Duration::from_secs(6), "back after {took:?}");
}

/// Forward then back: the peers' newest timestamp from it is from the
/// future, so the second restart is the one that looks like a replay.
#[test]
fn a_node_restarted_with_its_clock_set_forward_then_back_is_accepted_within_one_retry() {
    let mut w = clock_world();
    let (took, _) = restart_with_skewed_clock(&mut w, Duration::from_secs(24 * 3600), true);
    assert!(took <= Duration::from_secs(6), "ahead: back after {took:?}");
    w.run_for(Duration::from_secs(30));
    let (took, refused) = restart_with_skewed_clock(&mut w, Duration::ZERO, true);
    println!("clock forward 24 h, then right: back with every peer after {took:?}; refused {refused:?}");
    assert!(took <= Duration::from_secs(6), "back after {took:?}");
}

/// Two nodes behind port-restricted NATs with a direct session; node 1
/// moves to another NAT. Its packets now come from an address node 2's NAT
/// never sent to, so that NAT filters them, and node 2's go to the old
/// mapping: the direct path is dead both ways. The public bootstrap sees
/// node 1 at its new address and tells it (`OBSERVED`), node 1 publishes
/// it, and once node 2's session has been silent for 15 s its new
/// handshakes also go to node 1's published endpoints: node 1's NAT lets
/// them in (node 1 has been sending to node 2), node 2's lets the answer
/// back, and the session goes on at the new endpoints (about 15 s apart;
/// it was about 170 s, until the session expired, before).
#[test]
fn a_roaming_node_behind_nats_gets_back_to_its_peer() {
    let cone = || LanConfig::behind_nat(NatKind::PortRestrictedCone.into());
    let mut w = World::new(81);
    let public = w.net.add_lan(LanConfig::public());
    let boot = w.add_node(public, &keys(), NodeConfig::default(), 16);
    let boot_ep = w.endpoint(boot);
    for _ in 0..2 {
        let lan = w.net.add_lan(cone());
        let mut c = NodeConfig::default();
        c.bootstrap.push(boot_ep).unwrap();
        w.add_node(lan, &keys(), c, 16);
    }
    let two = w.id(2);
    assert!(run_until(&mut w, Duration::from_secs(30), |w| matches!(
        w.hosts[1].node.path(&two),
        Some(kairos_core::node::Path::Direct(_))
    )));
    w.run_for(Duration::from_secs(5));
    let cafe = w.net.add_lan(cone());
    let every = Duration::from_millis(250);
    let mut sent = vec![];
    let end = w.now() + Duration::from_secs(60);
    let moved_at = w.now() + Duration::from_secs(5);
    let mut moved = false;
    while w.now() < end {
        if !moved && w.now() >= moved_at {
            w.move_node(1, cafe);
            moved = true;
        }
        let m = w.now().as_micros() as u32;
        let _ = w.send_ip(1, 2, m);
        let _ = w.send_ip(2, 1, m);
        sent.push((w.now(), m));
        w.run_for(every);
    }
    w.run_for(Duration::from_secs(1));
    let arrived = |a: usize, b: usize| -> Vec<(Instant, Option<Instant>)> {
        sent.iter()
            .map(|&(at, m)| (at, w.received(a, b, m).then_some(at)))
            .collect()
    };
    let (there, back) = (longest_outage(&arrived(1, 2)), longest_outage(&arrived(2, 1)));
    println!("roaming between NATed peers: 1 -> 2 interrupted {there:?}, 2 -> 1 {back:?}");
    assert!(
        there <= Duration::from_secs(25) && back <= Duration::from_secs(25),
        "{there:?} {back:?}"
    );
    assert!(arrived(1, 2).iter().rev().take(40).all(|(_, g)| g.is_some()));
    assert!(arrived(2, 1).iter().rev().take(40).all(|(_, g)| g.is_some()));
    assert!(
        !went_down(&w, 1, 2) && !went_down(&w, 2, 1),
        "never rediscovered or down"
    );
}
