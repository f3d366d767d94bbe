//! Mesh scenarios on the simulated network: what a user relies on, end to
//! end through the core's `Node`, on virtual time.

use firmware_sim::net::{Faults, HostId, LanConfig, NatConfig, NatKind};
use firmware_sim::scenario::{durable_fingerprint, Nat, Scenario};
use firmware_sim::world::World;
use kairos_core::election::Role;
use kairos_core::identity::NodeId;
use kairos_core::ledger::buckets::ADDRESSES;
use kairos_core::ledger::LedgerError;
use kairos_core::node::{Event, NodeConfig, Path};
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;

mod embedded;
mod faults;

fn keys() -> NetworkKeys {
    NetworkKeys::derive(&[42; 32])
}

/// Runs until `done` holds, checking every 100 ms, for at most `limit`.
fn run_until(w: &mut World, limit: Duration, done: impl Fn(&World) -> bool) -> bool {
    let end = w.now() + limit;
    while w.now() < end {
        w.run_for(Duration::from_millis(100));
        if done(w) {
            return true;
        }
    }
    false
}

/// Sends `a -> b` until it arrives (sessions are made on demand).
fn reach(w: &mut World, a: usize, b: usize, marker: u32) -> bool {
    for _ in 0..5 {
        let _ = w.send_ip(a, b, marker);
        w.run_for(Duration::from_secs(2));
        if w.received(a, b, marker) {
            return true;
        }
    }
    false
}

/// A public bootstrap node and `kinds.len()` nodes, each behind its own NAT.
fn behind_nats(seed: u64, kinds: &[NatKind]) -> World {
    let mut w = World::new(seed);
    let public = w.net.add_lan(LanConfig::public());
    let boot = w.add_node(public, &keys(), NodeConfig::default(), 16);
    let boot_ep = w.endpoint(boot);
    for &kind in kinds {
        let lan = w.net.add_lan(LanConfig::behind_nat(NatConfig::new(kind)));
        let mut c = NodeConfig::default();
        c.bootstrap.push(boot_ep).unwrap();
        w.add_node(lan, &keys(), c, 16);
    }
    w
}

#[test]
fn three_nodes_on_a_lan() {
    let r = Scenario {
        nodes: 3,
        seed: 7,
        ..Scenario::default()
    }
    .run();
    assert!(r.converged, "{r:?}");
    // Convergence includes the master: nobody starts a ballot in its first
    // `MEET_FIRST` (2 s); one round of votes follows.
    assert!(r.converged_at_s.unwrap() <= 3.0, "{r:?}");
    assert_eq!((r.direct_pairs, r.relayed_pairs, r.duplicate_addresses), (3, 0, 0));
}

#[test]
fn two_nodes_behind_cone_nats_end_direct() {
    let mut w = behind_nats(3, &[NatKind::PortRestrictedCone, NatKind::PortRestrictedCone]);
    assert!(run_until(&mut w, Duration::from_secs(20), |w| w.hosts[1]
        .node
        .members()
        .count()
        == 2));
    assert!(reach(&mut w, 1, 2, 1) && reach(&mut w, 2, 1, 2));
    let two = w.id(2);
    let m = w.hosts[1].node.member(&two).unwrap();
    assert!(m.is_up() && !m.is_relayed(), "punched through: a direct session");
    assert_eq!(
        m.endpoint().map(|e| e.ip()),
        w.net.public_addr(w.hosts[2].host),
        "at the peer's NAT"
    );
}

/// Only one side sends, so its handshake dies at the other's NAT and the
/// pair starts relayed; both sides then probe each other's endpoints at
/// once (each asks the other through the relay, and answers a probe that
/// got through with its own), which moves them to the direct path within
/// seconds.
#[test]
fn a_relayed_pair_behind_cone_nats_is_punched_to_direct() {
    let mut w = World::new(6);
    let public = w.net.add_lan(LanConfig::public());
    let boot = w.add_node(public, &keys(), NodeConfig::default(), 16);
    let boot_ep = w.endpoint(boot);
    for _ in 0..2 {
        let lan = w
            .net
            .add_lan(LanConfig::behind_nat(NatConfig::new(NatKind::PortRestrictedCone)));
        let mut c = NodeConfig::default();
        c.bootstrap.push(boot_ep).unwrap();
        c.neighbors = 1; // the bootstrap only: no proactive session between them
        w.add_node(lan, &keys(), c, 16);
    }
    assert!(run_until(&mut w, Duration::from_secs(20), |w| w.hosts[1]
        .node
        .members()
        .count()
        == 2));
    let (one, two) = (w.id(1), w.id(2));
    assert!(
        w.hosts[1].node.member(&two).is_some_and(|m| !m.is_up()),
        "no session yet"
    );
    assert!(reach(&mut w, 1, 2, 1), "first through the relay");
    let started = w.now();
    let direct = |w: &World| {
        matches!(w.hosts[1].node.path(&two), Some(Path::Direct(_)))
            && matches!(w.hosts[2].node.path(&one), Some(Path::Direct(_)))
    };
    assert!(
        run_until(&mut w, Duration::from_secs(6), direct),
        "still relayed at {:?}",
        w.now()
    );
    assert!(w.now() - started <= Duration::from_secs(6));
    // It did start relayed: the move to the direct path was reported.
    assert!(w.hosts[1].events.iter().any(|(_, e)| *e == Event::PathChanged(two)));
    assert!(reach(&mut w, 2, 1, 2) && reach(&mut w, 1, 2, 3));
}

#[test]
fn two_nodes_behind_symmetric_nats_end_relayed_and_talk() {
    let mut w = behind_nats(4, &[NatKind::Symmetric, NatKind::Symmetric]);
    assert!(run_until(&mut w, Duration::from_secs(20), |w| w.hosts[1]
        .node
        .members()
        .count()
        == 2));
    assert!(reach(&mut w, 1, 2, 1), "1 -> 2 through the relay");
    assert!(reach(&mut w, 2, 1, 2), "2 -> 1 through the relay");
    let two = w.id(2);
    assert!(w.hosts[1].node.member(&two).unwrap().is_relayed());
    assert!(w.hosts[0].node.stats().relayed > 0, "the bootstrap relayed");
}

/// Membership, ledgers, addresses and the master converge through 10% loss
/// on every link, and then every sampled pair reaches the other.
#[test]
fn fifty_nodes_with_ten_percent_loss_converge() {
    let r = Scenario {
        nodes: 50,
        seed: 11,
        faults: Faults::NONE.with_loss(0.10),
        deadline: Duration::from_secs(120),
        ..Scenario::default()
    }
    .run();
    assert!(r.converged, "{r:?}");
    assert!(r.converged_at_s.is_some_and(|t| t < 60.0), "{r:?}");
    assert_eq!((r.duplicate_addresses, r.masters), (0, 1));
    assert_eq!(r.reachable_pairs, r.sampled_pairs, "{r:?}");
}

#[test]
fn every_nat_kind_converges() {
    let mix = ["none", "full", "restricted", "port", "symmetric"]
        .iter()
        .map(|k| Nat::parse(k).unwrap())
        .collect();
    let r = Scenario {
        nodes: 11,
        seed: 5,
        nat_mix: mix,
        ..Scenario::default()
    }
    .run();
    assert!(r.converged, "{r:?}");
    assert!(r.relayed_pairs > 0 && r.direct_pairs > 0, "{r:?}");
}

#[test]
fn same_seed_same_run() {
    let run = |seed| {
        let mut r = Scenario {
            nodes: 12,
            seed,
            faults: Faults::NONE.with_loss(0.05),
            ..Scenario::default()
        }
        .run();
        r.wall_s = 0.0;
        r.build_wall_s = 0.0;
        r.converged_wall_s = r.converged_wall_s.map(|_| 0.0);
        r
    };
    assert_eq!(run(9), run(9));
}

#[test]
fn a_restarted_node_gets_its_address_back() {
    let mut w = World::new(21);
    let lan = w.net.add_lan(LanConfig::public());
    for _ in 0..5 {
        w.add_node(lan, &keys(), NodeConfig::default(), 16);
    }
    assert!(run_until(&mut w, Duration::from_secs(10), |w| w
        .hosts
        .iter()
        .all(|h| h.node.ipv4().is_some())));
    let before = w.hosts[3].node.ipv4().unwrap();
    w.crash(3);
    w.run_for(Duration::from_secs(30));
    w.restart(3);
    assert!(run_until(&mut w, Duration::from_secs(10), |w| w.hosts[3]
        .node
        .ipv4()
        .is_some()));
    assert_eq!(w.hosts[3].node.ipv4(), Some(before));
    assert!(reach(&mut w, 0, 3, 77));
}

#[test]
fn a_node_with_another_token_joins_nothing() {
    let mut w = World::new(31);
    let lan = w.net.add_lan(LanConfig::public());
    for _ in 0..3 {
        w.add_node(lan, &keys(), NodeConfig::default(), 16);
    }
    let outsider = w.add_node(lan, &NetworkKeys::derive(&[9; 32]), NodeConfig::default(), 16);
    w.run_for(Duration::from_secs(30));
    assert_eq!(w.hosts[outsider].node.members().count(), 0);
    let own = w.id(outsider);
    let ledger = w.hosts[outsider].node.ledger();
    assert!(ledger.len() >= 2, "it still keeps its own records");
    assert!(ledger.iter_all().all(|e| e.origin_id() == own), "only its own entries");
    assert_eq!(w.hosts[outsider].node.primary(), None, "it elects nobody: it is alone");
    for i in 0..3 {
        assert_eq!(w.hosts[i].node.members().count(), 2, "members never list the outsider");
    }
}

#[test]
fn owner_only_entries_cannot_be_written_for_someone_else() {
    let mut w = World::new(41);
    let lan = w.net.add_lan(LanConfig::public());
    for _ in 0..2 {
        w.add_node(lan, &keys(), NodeConfig::default(), 16);
    }
    w.run_for(Duration::from_secs(5));
    let victim = w.id(1).to_string();
    let now = w.now();
    let r = w.hosts[0]
        .node
        .ledger_put(now, ADDRESSES.as_bytes(), victim.as_bytes(), &[10, 1, 0, 9], 0);
    assert_eq!(r, Err(LedgerError::NotOwner));
    let held = w.hosts[1]
        .node
        .ledger()
        .get(ADDRESSES.as_bytes(), victim.as_bytes())
        .map(|e| e.value().to_vec());
    assert_ne!(held, Some(vec![10, 1, 0, 9]));
}

/// Two halves that never met each elect (and deploy) their own master; at
/// the heal one master remains, the other steps down, and every address is
/// unique.
#[test]
fn a_partition_with_a_master_on_each_side_heals_into_one() {
    let mut w = World::new(51);
    let lan = w.net.add_lan(LanConfig::public());
    for _ in 0..10 {
        w.add_node(lan, &keys(), NodeConfig::default(), 16);
    }
    // Split before anyone claims an address: each half allocates alone.
    let (a, b): (Vec<HostId>, Vec<HostId>) = (0..10).map(|i| w.hosts[i].host).partition(|h| h.index() % 2 == 0);
    w.net.partition_hosts(&[&a, &b]);
    w.run_for(Duration::from_secs(20));
    let masters = |w: &World| -> Vec<NodeId> {
        w.hosts
            .iter()
            .filter(|h| matches!(h.node.role(), Some(Role::Master { .. })))
            .map(|h| h.node.node_id())
            .collect()
    };
    let before = masters(&w);
    assert_eq!(before.len(), 2, "one master on each side");
    assert_eq!(Scenario::masters(&w), 2);
    w.net.heal();
    let converged = |w: &World| {
        let d = durable_fingerprint(w.hosts[0].node.ledger());
        w.hosts
            .iter()
            .all(|h| durable_fingerprint(h.node.ledger()) == d && h.node.members().count() == 9)
            && Scenario::duplicate_addresses(w) == 0
            && w.hosts.iter().all(|h| h.node.ipv4().is_some())
            && Scenario::masters(w) == 1
            && masters(w).len() == 1
    };
    assert!(
        run_until(&mut w, Duration::from_secs(60), converged),
        "healed by {:?}",
        w.now()
    );
    assert!(w.now() < Instant::from_secs(80));
    let winner = masters(&w)[0];
    assert!(before.contains(&winner), "one of the two deployed masters stays");
    assert!(w.hosts.iter().all(|h| h.node.primary() == Some(winner)));
}

/// `n` nodes on one LAN, all with the overlay range `10.1.0.0/prefix`.
fn lan_in_range(seed: u64, n: usize, prefix: u8) -> World {
    let mut w = World::new(seed);
    let lan = w.net.add_lan(LanConfig::public());
    let range = kairos_core::token::OverlayRange::new(std::net::Ipv4Addr::new(10, 1, 0, 0), prefix).unwrap();
    for _ in 0..n {
        let mut c = NodeConfig::default();
        c.overlay = range;
        w.add_node(lan, &keys(), c, 128);
    }
    w
}

/// Two halves of a crowded range (100 nodes, 126 addresses) each allocate
/// alone; after the heal every node learns the other half's claims at
/// once, and every address that both halves gave out keeps one holder:
/// one of its two holders moves, every other node keeps its address, and
/// every node knows every member's address as that member holds it.
#[test]
fn a_crowded_range_split_in_two_heals_without_a_shared_address() {
    let mut w = lan_in_range(61, 100, 25);
    let (a, b): (Vec<HostId>, Vec<HostId>) = (0..100).map(|i| w.hosts[i].host).partition(|h| h.index() % 2 == 0);
    w.net.partition_hosts(&[&a, &b]);
    let half = |i: usize| w.hosts[i].host.index() % 2;
    let halves: Vec<usize> = (0..100).map(half).collect();
    // Each half settled on its own: everyone addressed, no address twice
    // within a half.
    let settled_alone = |w: &World| {
        (0..100).all(|i| {
            w.hosts[i].node.ipv4().is_some()
                && (0..100)
                    .all(|j| j == i || halves[j] != halves[i] || w.hosts[j].node.ipv4() != w.hosts[i].node.ipv4())
        })
    };
    assert!(run_until(&mut w, Duration::from_secs(30), settled_alone));
    let before: Vec<_> = (0..100).map(|i| w.hosts[i].node.ipv4().unwrap()).collect();
    let shared_with = |i: usize| (0..100).find(|&j| j != i && before[j] == before[i]);
    let shared = (0..100).filter(|&i| shared_with(i).is_some()).count() / 2;
    assert!(shared >= 5, "both halves gave out some addresses alike: {shared}");
    w.net.heal();
    let settled = |w: &World| {
        w.hosts
            .iter()
            .all(|h| h.node.members().count() == 99 && h.node.ipv4().is_some())
            && Scenario::duplicate_addresses(w) == 0
            && Scenario::addresses_known(w)
    };
    assert!(
        run_until(&mut w, Duration::from_secs(60), settled),
        "at {:?}: {} nodes share an address, the fewest members known {:?}",
        w.now(),
        Scenario::duplicate_addresses(&w),
        w.hosts.iter().map(|h| h.node.members().count()).min()
    );
    for i in 0..100 {
        let now = w.hosts[i].node.ipv4().unwrap();
        match shared_with(i) {
            None => assert_eq!(now, before[i], "node {i} held an address of its own and kept it"),
            Some(j) => {
                let after_j = w.hosts[j].node.ipv4().unwrap();
                assert!(
                    (now == before[i]) != (after_j == before[j]),
                    "exactly one of nodes {i} and {j}, which shared {}, moved",
                    before[i]
                );
            }
        }
    }
}

/// Member tables that hold one address twice: for each node, its members'
/// addresses and its own, counted beyond the first of each.
fn addresses_held_twice_in_a_table(w: &World) -> usize {
    w.hosts
        .iter()
        .map(|h| {
            let mut addrs: Vec<_> = h.node.members().filter_map(|m| m.ipv4()).collect();
            addrs.extend(h.node.ipv4());
            let n = addrs.len();
            addrs.sort();
            addrs.dedup();
            n - addrs.len()
        })
        .sum()
}

/// Three thirds of an oversubscribed range (60 nodes, 14 addresses) each
/// give out every address; after the heal most addresses have three
/// claims, and a node settles dozens of lost claims in one window. Every
/// member that lost its address gives it up: no member table holds an
/// address twice (with a cap on the losers looked at per window, some
/// tables kept the old holder beside the winner for good).
#[test]
fn an_oversubscribed_range_split_in_three_heals_with_one_holder_per_address() {
    let mut w = lan_in_range(103, 60, 28);
    let hosts: Vec<HostId> = (0..60).map(|i| w.hosts[i].host).collect();
    let third = |k: usize| -> Vec<HostId> { hosts.iter().copied().filter(|h| h.index() % 3 == k).collect() };
    let (a, b, c) = (third(0), third(1), third(2));
    w.net.partition_hosts(&[&a, &b, &c]);
    w.run_for(Duration::from_secs(40));
    assert_eq!(addresses_held_twice_in_a_table(&w), 0, "each third settled alone");
    let shared = Scenario::duplicate_addresses(&w);
    assert!(
        shared >= 28,
        "the thirds gave out addresses alike: {shared} nodes share one"
    );
    w.net.heal();
    let one_holder = |w: &World| {
        w.hosts.iter().all(|h| h.node.members().count() == 59)
            && addresses_held_twice_in_a_table(w) == 0
            && Scenario::duplicate_addresses(w) == 0
    };
    assert!(
        run_until(&mut w, Duration::from_secs(60), one_holder),
        "{} addresses held twice in member tables, {} nodes share one",
        addresses_held_twice_in_a_table(&w),
        Scenario::duplicate_addresses(&w)
    );
    // And it stays so.
    w.run_for(Duration::from_secs(30));
    assert_eq!(addresses_held_twice_in_a_table(&w), 0);
    assert_eq!(
        w.hosts.iter().filter(|h| h.node.ipv4().is_some()).count(),
        14,
        "every address of the range is held"
    );
}

/// A node that opens sessions to every member for traffic (a k3s server,
/// say) is not sent a copy of every forwarded ledger entry along them: it
/// receives about as much idle gossip as any other node, and still keeps
/// its ledger equal to everyone's.
#[test]
fn a_node_talking_to_everyone_is_not_flooded_with_gossip() {
    const N: usize = 24;
    let mut w = World::new(5);
    let lan = w.net.add_lan(LanConfig::public());
    for _ in 0..N {
        w.add_node(lan, &keys(), NodeConfig::default(), N + 4);
    }
    let all_known = |w: &World| (0..N).all(|i| w.hosts[i].node.members().count() == N - 1);
    assert!(run_until(&mut w, Duration::from_secs(60), all_known));
    // The hub (node 0) talks to every member: sessions beyond its
    // neighbours are made on demand.
    for b in 1..N {
        assert!(reach(&mut w, 0, b, 7000 + b as u32), "0 -> {b}");
    }
    let hub_sessions = w.hosts[0].node.members().filter(|m| m.is_up()).count();
    assert_eq!(hub_sessions, N - 1);
    w.run_for(Duration::from_secs(20));
    let before: Vec<u64> = w.hosts.iter().map(|h| h.node.stats().rx_datagrams).collect();
    // Idle; on-demand sessions outlive this window (about 3 minutes).
    w.run_for(Duration::from_secs(60));
    let got: Vec<u64> = w
        .hosts
        .iter()
        .zip(&before)
        .map(|(h, b)| h.node.stats().rx_datagrams - b)
        .collect();
    let mut others = got[1..].to_vec();
    others.sort_unstable();
    let median = others[others.len() / 2];
    // Every node gets each member's liveness advertisements (one per
    // member per 20 s), so nobody gets less than that.
    assert!(median >= 3 * (N as u64 - 1), "{got:?}");
    // Forwarded along every on-demand session, the hub would get about a
    // third of every forwarder's copies: 3-4x the median here.
    assert!(got[0] <= median * 2, "hub {} vs median {median}: {got:?}", got[0]);
    let hub_sessions = w.hosts[0].node.members().filter(|m| m.is_up()).count();
    assert_eq!(hub_sessions, N - 1, "the hub's sessions outlived the window");
    // Advertisements keep changing the ledgers; between two of them all
    // are equal again.
    let equal = |w: &World| {
        let digest = w.hosts[0].node.ledger().digest();
        (1..N).all(|i| w.hosts[i].node.ledger().digest().mismatch(digest).is_empty())
    };
    assert!(run_until(&mut w, Duration::from_secs(30), equal), "ledgers never equal");
    eprintln!(
        "idle datagrams received in 60 s: hub {}, median of the others {median}",
        got[0]
    );
}

/// Two nodes behind Linux routers (conntrack `masquerade`, most home
/// routers) end on a direct path, for several seeds. The first datagram
/// one side sends to the other's public endpoint must not arrive before
/// the other has sent towards it (the router would keep an entry that moves
/// the late side's port), so the two sides' punches are timed to cross.
#[test]
fn two_nodes_behind_linux_nats_end_direct() {
    for seed in 1..=6 {
        let mut w = behind_nats(seed, &[NatKind::LinuxConntrack, NatKind::LinuxConntrack]);
        assert!(run_until(&mut w, Duration::from_secs(20), |w| w.hosts[1]
            .node
            .members()
            .count()
            == 2));
        assert!(
            reach(&mut w, 1, 2, 1) && reach(&mut w, 2, 1, 2),
            "seed {seed}: they talk"
        );
        let (one, two) = (w.id(1), w.id(2));
        let direct = |w: &World| {
            matches!(w.hosts[1].node.path(&two), Some(Path::Direct(_)))
                && matches!(w.hosts[2].node.path(&one), Some(Path::Direct(_)))
        };
        assert!(
            run_until(&mut w, Duration::from_secs(120), direct),
            "seed {seed}: still relayed at {:?}",
            w.now()
        );
        assert!(reach(&mut w, 1, 2, 3) && reach(&mut w, 2, 1, 4));
        eprintln!("seed {seed}: direct at {:?}", w.now());
    }
}

/// Six nodes behind six Linux routers: every pair that traffic connects
/// ends direct.
#[test]
fn six_nodes_behind_linux_nats_all_end_direct() {
    let mut w = behind_nats(9, &[NatKind::LinuxConntrack; 6]);
    assert!(run_until(&mut w, Duration::from_secs(20), |w| w.hosts[1..]
        .iter()
        .all(|h| h.node.members().count() == 6)));
    let mut marker = 0;
    for a in 1..=6 {
        for b in 1..=6 {
            if a != b {
                marker += 1;
                assert!(reach(&mut w, a, b, marker), "{a} -> {b}");
            }
        }
    }
    let all_direct = |w: &World| {
        (1..=6).all(|a| {
            (1..=6)
                .filter(|b| *b != a)
                .all(|b| matches!(w.hosts[a].node.path(&w.id(b)), Some(Path::Direct(_))))
        })
    };
    assert!(
        run_until(&mut w, Duration::from_secs(200), all_direct),
        "still relayed at {:?}",
        w.now()
    );
    eprintln!("all 30 directions direct at {:?}", w.now());
}
