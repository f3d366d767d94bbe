//! [`Scenario`]: a mesh of N nodes on a simulated topology, run until it
//! converges, and the [`Report`] the `sim` binary prints.
//!
//! Topology: node 0 is on a public LAN (the bootstrap every other node is
//! configured with). Nodes whose NAT kind is "none" share that public LAN
//! (so LAN beacons reach them); every other node sits alone behind its own
//! NAT of the kind drawn round-robin from the mix, like a home router.
//!
//! Nodes are spread round-robin over `networks` network ids (`net0`,
//! `net1`, ...; one network is Kairos' default `kairos`), all on one token.
//!
//! With the environment variable `SIM_PROGRESS` set, a line of progress
//! goes to stderr every 5 simulated seconds.
//!
//! Convergence means: every node knows every other member, every replica
//! holds the same durable ledger entries (the liveness advertisements,
//! rewritten every 20 s by every node, are left out: in a large mesh some
//! are always in flight), every node holds an IPv4 address no other node
//! holds and every node knows every member's address, every node of a network names the same primary and that primary
//! runs as master (the simulation "deploys" k3s at once), and then sampled
//! pairs (all pairs up to 30 nodes, else 200 seeded pairs) exchange an
//! overlay packet.

use std::collections::BTreeSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Instant as WallInstant;

use kairos_core::election::{alive_interval, ElectionConfig, Role, ALIVE};
use kairos_core::identity::NodeId;
use kairos_core::ledger::Ledger;
use kairos_core::node::{NodeConfig, RoleConfig};
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::net::{Faults, LanConfig, LinkConfig, NatConfig, NatKind};
use crate::world::World;

/// What sits between a node and the internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nat {
    /// On the public LAN with the bootstrap node.
    None,
    /// Behind its own NAT of this kind.
    Behind(NatKind),
}

impl Nat {
    /// Parses `none`, `full`, `restricted`, `port`, `symmetric`, `linux`
    /// (a Linux router's conntrack masquerade).
    pub fn parse(s: &str) -> Option<Nat> {
        Some(match s {
            "none" => Nat::None,
            "full" => Nat::Behind(NatKind::FullCone),
            "restricted" => Nat::Behind(NatKind::RestrictedCone),
            "port" => Nat::Behind(NatKind::PortRestrictedCone),
            "symmetric" => Nat::Behind(NatKind::Symmetric),
            "linux" => Nat::Behind(NatKind::LinuxConntrack),
            _ => return None,
        })
    }
}

/// The knobs of a run.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Number of nodes.
    pub nodes: usize,
    /// Seed of the whole run.
    pub seed: u64,
    /// Faults on every host's link to its LAN (its access link: Wi-Fi,
    /// DSL, LTE). A datagram between two nodes crosses two of them, the
    /// sender's and the receiver's, on one LAN or across NATs alike; the
    /// uplinks and the internet core are ideal.
    pub faults: Faults,
    /// NAT kinds, assigned round-robin to nodes 1..N.
    pub nat_mix: Vec<Nat>,
    /// Give up after this much simulated time.
    pub deadline: Duration,
    /// Network ids the nodes are spread over (round-robin).
    pub networks: usize,
    /// Split the nodes into two halves (even and odd indices) at the first
    /// time and heal at the second; convergence counts only after the heal.
    pub partition: Option<(Duration, Duration)>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            nodes: 10,
            seed: 1,
            faults: Faults::NONE,
            nat_mix: vec![Nat::None],
            deadline: Duration::from_secs(120),
            networks: 1,
            partition: None,
        }
    }
}

/// The result of a run (printed as one JSON line by `sim`).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Whether the mesh converged before the deadline.
    pub converged: bool,
    /// Simulated seconds until it did.
    pub converged_at_s: Option<f64>,
    /// Wall-clock seconds the run took.
    pub wall_s: f64,
    /// Wall-clock seconds spent creating the nodes and the network, before
    /// simulated time starts (part of `converged_wall_s` and `wall_s`).
    pub build_wall_s: f64,
    /// Wall-clock seconds until convergence was seen (the join storm: compare
    /// with `converged_at_s`).
    pub converged_wall_s: Option<f64>,
    /// Sampled pairs that exchanged a packet.
    pub reachable_pairs: usize,
    /// Sampled pairs.
    pub sampled_pairs: usize,
    /// Average bytes per second each node sent per peer while idle, over
    /// the 60 s after convergence or two advertisement intervals, whichever
    /// is longer.
    pub idle_bytes_per_peer_per_s: Option<f64>,
    /// Datagrams the network carried in the whole run.
    pub datagrams: u64,
    /// Datagrams the network carried until convergence was seen.
    pub converged_datagrams: Option<u64>,
    /// Until convergence, over all nodes: handshake initiations sent,
    /// initiations answered, handshakes completed (each completes at both
    /// ends, so one session counts twice).
    pub converged_handshakes: Option<[u64; 3]>,
    /// What the nodes did until convergence was seen (see [`Work`]).
    pub converged_work: Option<Work>,
    /// Nodes whose IPv4 address another node also holds, at the end.
    pub duplicate_addresses: usize,
    /// Pairs with a direct session up, at the end.
    pub direct_pairs: usize,
    /// Pairs with a relayed session up, at the end.
    pub relayed_pairs: usize,
    /// Distinct primaries the nodes name, at the end (one per network when
    /// converged).
    pub masters: usize,
    /// Sessions refused or not started because a node's tunnel pool was
    /// full, over all nodes and the whole run (a simulated node has a
    /// tunnel per member slot, as a host does: 0 unless a test gives it
    /// fewer).
    pub tunnel_pool_full: u64,
}

/// The work of a join, over all nodes until convergence: what bounds how
/// fast it can be simulated, since every node's cryptography runs for real.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Work {
    /// Payload bytes of the datagrams the network carried (each sealed by
    /// its sender and opened by its receiver, but beacons).
    pub bytes: u64,
    /// Ledger versions the nodes wrote (each one every replica receives).
    pub ledger_writes: u64,
    /// Ledger entries sent whole (the copies the replicas received).
    pub entries_sent: u64,
    /// X25519 operations (variable base, fixed base) of the whole process,
    /// with the feature `x25519-count`.
    pub x25519: Option<[u64; 2]>,
}

impl Work {
    fn of(w: &World) -> Work {
        let (ledger_writes, entries_sent) = w.hosts.iter().fold((0, 0), |(l, e), h| {
            let s = h.node.stats();
            (l + s.ledger_writes, e + s.ledger_entries_sent)
        });
        #[cfg(feature = "x25519-count")]
        let x25519 = {
            let ops = kairos_core::noise::x25519_count::read();
            Some([ops.variable_base, ops.fixed_base])
        };
        #[cfg(not(feature = "x25519-count"))]
        let x25519 = None;
        Work {
            bytes: w.net.stats().sent_bytes,
            ledger_writes,
            entries_sent,
            x25519,
        }
    }

    fn to_json(self) -> String {
        format!(
            "{{\"bytes\":{},\"ledger_writes\":{},\"entries_sent\":{},\"x25519\":{}}}",
            self.bytes,
            self.ledger_writes,
            self.entries_sent,
            self.x25519.map_or("null".into(), |[v, f]| format!(
                "{{\"variable_base\":{v},\"fixed_base\":{f}}}"
            )),
        )
    }
}

impl Report {
    /// One JSON object.
    pub fn to_json(&self) -> String {
        fn opt(v: Option<f64>) -> String {
            v.map_or("null".into(), |v| format!("{v:.3}"))
        }
        format!(
            "{{\"converged\":{},\"converged_at_s\":{},\"converged_wall_s\":{},\"wall_s\":{:.3},\"build_wall_s\":{:.3},\"reachable_pairs\":{},\"sampled_pairs\":{},\
             \"idle_bytes_per_peer_per_s\":{},\"datagrams\":{},\"converged_datagrams\":{},\"converged_handshakes\":{},\"converged_work\":{},\"duplicate_addresses\":{},\"masters\":{},\
             \"direct_pairs\":{},\"relayed_pairs\":{},\"tunnel_pool_full\":{}}}",
            self.converged,
            opt(self.converged_at_s),
            opt(self.converged_wall_s),
            self.wall_s,
            self.build_wall_s,
            self.reachable_pairs,
            self.sampled_pairs,
            opt(self.idle_bytes_per_peer_per_s),
            self.datagrams,
            self.converged_datagrams.map_or("null".into(), |d| d.to_string()),
            self.converged_handshakes.map_or("null".into(), |[i, a, h]| format!(
                "{{\"initiations\":{i},\"answered\":{a},\"completed\":{h}}}"
            )),
            self.converged_work.map_or("null".into(), Work::to_json),
            self.duplicate_addresses,
            self.masters,
            self.direct_pairs,
            self.relayed_pairs,
            self.tunnel_pool_full,
        )
    }
}

impl Scenario {
    /// Builds the world.
    pub fn build(&self) -> World {
        let mut w = World::new(self.seed);
        let link = |l: LinkConfig| l.with_faults(self.faults);
        let public = w.net.add_lan(LanConfig {
            lan_link: link(LinkConfig::lan()),
            ..LanConfig::public()
        });
        let keys = NetworkKeys::derive(&self.seed.to_le_bytes().repeat(4).try_into().expect("32 bytes"));
        let capacity = self.nodes + 8;
        // EdgeVPN's /24 holds 254 members; larger meshes get a /16.
        let overlay = if self.nodes > 250 { "10.1.0.0/16" } else { "10.1.0.0/24" };
        let base = {
            let mut c = NodeConfig::default();
            c.overlay = overlay.parse().expect("valid range");
            c
        };
        let boot = w.add_node(public, &keys, self.configure(base.clone(), 0), capacity);
        let boot_endpoint = w.endpoint(boot);
        for i in 1..self.nodes {
            let nat = self.nat_mix[(i - 1) % self.nat_mix.len().max(1)];
            let lan = match nat {
                Nat::None => public,
                Nat::Behind(kind) => w.net.add_lan(LanConfig {
                    lan_link: link(LinkConfig::lan()),
                    ..LanConfig::behind_nat(NatConfig::new(kind))
                }),
            };
            let mut config = base.clone();
            config.bootstrap.push(boot_endpoint).expect("one bootstrap");
            w.add_node(lan, &keys, self.configure(config, i), capacity);
        }
        w
    }

    /// Node `i`'s network: Kairos' default with one network, else `net<k>`.
    fn configure(&self, mut config: NodeConfig, i: usize) -> NodeConfig {
        if self.networks > 1 {
            let id = format!("net{}", i % self.networks);
            config.roles = Some(RoleConfig::new(&id, None, ElectionConfig::DEFAULT).expect("a short network id"));
        }
        config
    }

    /// See the module docs.
    pub fn converged(&self, w: &World) -> bool {
        let n = w.hosts.len();
        if !w
            .hosts
            .iter()
            .all(|h| h.node.members().count() == n - 1 && h.node.ipv4().is_some())
        {
            return false;
        }
        if Self::duplicate_addresses(w) != 0 || !self.one_primary_each(w) || !Self::addresses_known(w) {
            return false;
        }
        let first = durable_fingerprint(w.hosts[0].node.ledger());
        w.hosts.iter().all(|h| durable_fingerprint(h.node.ledger()) == first)
    }

    /// Every node knows every member's IPv4 address as that member holds it.
    pub fn addresses_known(w: &World) -> bool {
        let own: std::collections::HashMap<NodeId, _> =
            w.hosts.iter().map(|h| (h.node.node_id(), h.node.ipv4())).collect();
        w.hosts
            .iter()
            .all(|h| h.node.members().all(|m| own.get(&m.id()) == Some(&m.ipv4())))
    }

    /// Every node names a primary of its own network, all nodes of a
    /// network name the same one, and it runs as master.
    fn one_primary_each(&self, w: &World) -> bool {
        let networks = self.networks.max(1);
        (0..networks).all(|k| {
            let mut named = w.hosts.iter().skip(k).step_by(networks).map(|h| h.node.primary());
            let Some(Some(primary)) = named.next() else {
                return false;
            };
            named.all(|p| p == Some(primary))
                && w.hosts
                    .iter()
                    .skip(k)
                    .step_by(networks)
                    .find(|h| h.node.node_id() == primary)
                    .is_some_and(|h| matches!(h.node.role(), Some(Role::Master { .. })))
        })
    }

    /// Splits the nodes into the even and the odd ones.
    pub fn split(w: &mut World) {
        let (even, odd): (Vec<_>, Vec<_>) = w.hosts.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let even: Vec<_> = even.into_iter().map(|(_, h)| h.host).collect();
        let odd: Vec<_> = odd.into_iter().map(|(_, h)| h.host).collect();
        w.net.partition_hosts(&[&even, &odd]);
    }

    /// Distinct primaries the nodes name.
    pub fn masters(w: &World) -> usize {
        w.hosts
            .iter()
            .filter_map(|h| h.node.primary())
            .collect::<BTreeSet<NodeId>>()
            .len()
    }

    /// Nodes whose address another node also holds.
    pub fn duplicate_addresses(w: &World) -> usize {
        let addrs: Vec<_> = w.hosts.iter().filter_map(|h| h.node.ipv4()).collect();
        addrs
            .iter()
            .filter(|a| addrs.iter().filter(|b| b == a).count() > 1)
            .count()
    }

    /// (direct, relayed) pairs with a session up, each pair counted once.
    pub fn paths(w: &World) -> (usize, usize) {
        let (mut direct, mut relayed) = (0, 0);
        for (i, h) in w.hosts.iter().enumerate() {
            for m in h.node.members().filter(|m| m.is_up()) {
                let j = w.hosts.iter().position(|o| o.node.node_id() == m.id()).unwrap_or(0);
                if j > i {
                    if m.is_relayed() {
                        relayed += 1;
                    } else {
                        direct += 1;
                    }
                }
            }
        }
        (direct, relayed)
    }

    /// The pairs to check reachability on.
    pub fn pairs(&self) -> Vec<(usize, usize)> {
        let n = self.nodes;
        if n <= 30 {
            return (0..n)
                .flat_map(|a| (0..n).filter(move |&b| b != a).map(move |b| (a, b)))
                .collect();
        }
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x5eed);
        (0..200)
            .map(|_| {
                let a = rng.next_u32() as usize % n;
                let b = (a + 1 + rng.next_u32() as usize % (n - 1)) % n;
                (a, b)
            })
            .collect()
    }

    /// Runs the scenario.
    pub fn run(&self) -> Report {
        let wall = WallInstant::now();
        let mut w = self.build();
        let build_wall = wall.elapsed().as_secs_f64();
        let step = Duration::from_millis(500);
        let mut converged_at = None;
        let mut converged_wall = None;
        let mut converged_datagrams = None;
        let mut converged_handshakes = None;
        let mut converged_work = None;
        let mut split = self.partition;
        let progress = std::env::var_os("SIM_PROGRESS").is_some();
        while w.now() < Instant::ZERO + self.deadline {
            w.run_for(step);
            if progress && w.now().since_origin().as_millis() % 5000 == 0 {
                let known = w.hosts.iter().map(|h| h.node.members().count()).min().unwrap_or(0);
                let addressed = w.hosts.iter().filter(|h| h.node.ipv4().is_some()).count();
                let [i, a, h] = Self::handshakes(&w);
                eprintln!(
                    "sim: t={:.1}s wall={:.1}s fewest members known={known} with address={addressed} masters={} datagrams={} \
                     initiations={i} answered={a} handshakes={h}",
                    w.now().since_origin().as_secs_f64(),
                    wall.elapsed().as_secs_f64(),
                    Self::masters(&w),
                    w.net.stats().sent_packets,
                );
            }
            if let Some((at, heal)) = split {
                let since = w.now().since_origin();
                if since >= heal {
                    w.net.heal();
                    split = None;
                } else {
                    if since >= at && !w.net.is_partitioned() {
                        Self::split(&mut w);
                    }
                    continue;
                }
            }
            if self.converged(&w) {
                converged_at = Some(w.now());
                converged_wall = Some(wall.elapsed().as_secs_f64());
                converged_datagrams = Some(w.net.stats().sent_packets);
                converged_handshakes = Some(Self::handshakes(&w));
                converged_work = Some(Work::of(&w));
                break;
            }
        }
        let pairs = self.pairs();
        let mut reachable = 0;
        if converged_at.is_some() {
            // Sessions are on demand: the first packet of a pair starts a
            // handshake (and waits for it); send until it arrives, one try
            // every 2 s for up to 30 s.
            let mut pending: Vec<(usize, usize, u32)> =
                pairs.iter().enumerate().map(|(k, &(a, b))| (a, b, k as u32)).collect();
            for _ in 0..15 {
                for &(a, b, m) in &pending {
                    let _ = w.send_ip(a, b, m);
                }
                w.run_for(Duration::from_secs(2));
                pending.retain(|&(a, b, m)| !w.received(a, b, m));
                if pending.is_empty() {
                    break;
                }
            }
            reachable = pairs.len() - pending.len();
        }
        let converged = converged_at.is_some() && reachable == pairs.len();
        let idle = converged.then(|| {
            let before: u64 = w.hosts.iter().map(|h| w.net.host_stats(h.host).sent_bytes).sum();
            // Long enough to include every periodic write (advertisements
            // are rewritten every `alive_interval`, which grows with the mesh).
            let window = Duration::from_secs(60).max(alive_interval(self.nodes) * 2);
            w.run_for(window);
            let after: u64 = w.hosts.iter().map(|h| w.net.host_stats(h.host).sent_bytes).sum();
            let n = w.hosts.len() as f64;
            (after - before) as f64 / window.as_secs_f64() / n / (n - 1.0).max(1.0)
        });
        let (direct_pairs, relayed_pairs) = Self::paths(&w);
        Report {
            duplicate_addresses: Self::duplicate_addresses(&w),
            masters: Self::masters(&w),
            direct_pairs,
            relayed_pairs,
            tunnel_pool_full: w.hosts.iter().map(|h| h.node.stats().tunnel_pool_full).sum(),
            converged,
            converged_at_s: converged_at.map(|t| t.since_origin().as_secs_f64()),
            converged_wall_s: converged_wall,
            wall_s: wall.elapsed().as_secs_f64(),
            build_wall_s: build_wall,
            reachable_pairs: reachable,
            sampled_pairs: pairs.len(),
            idle_bytes_per_peer_per_s: idle,
            datagrams: w.net.stats().sent_packets,
            converged_datagrams,
            converged_handshakes,
            converged_work,
        }
    }

    /// Over all nodes: initiations sent, initiations answered, handshakes
    /// completed.
    fn handshakes(w: &World) -> [u64; 3] {
        w.hosts.iter().fold([0; 3], |[i, a, h], host| {
            let s = host.node.stats();
            [i + s.initiations_sent, a + s.initiations_answered, h + s.handshakes]
        })
    }
}

/// An order-independent hash of the entries a replica holds, leaving out
/// the liveness advertisements (see the module docs).
pub fn durable_fingerprint<const E: usize, const A: usize>(ledger: &Ledger<E, A>) -> u64 {
    ledger
        .iter_all()
        .filter(|e| e.bucket() != ALIVE.as_bytes())
        .map(|e| {
            let mut h = DefaultHasher::new();
            (e.bucket(), e.key(), e.origin_id().0, e.clock()).hash(&mut h);
            h.finish()
        })
        .fold(0, |acc, h| acc ^ h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_lan_converges() {
        let r = Scenario {
            nodes: 6,
            ..Scenario::default()
        }
        .run();
        assert!(r.converged, "{r:?}");
        assert!(r.converged_at_s.unwrap() < 5.0, "{r:?}");
        assert_eq!(r.reachable_pairs, 30);
        assert!(r.to_json().starts_with("{\"converged\":true"));
        // Every node wrote its machines record, address claim, role record
        // and advertisement; every version went to another replica at least.
        let work = r.converged_work.expect("converged");
        assert!(work.ledger_writes >= 6 * 4, "{work:?}");
        assert!(work.entries_sent >= work.ledger_writes, "{work:?}");
        assert!(work.bytes > 0, "{work:?}");
        assert!(r.to_json().contains("\"converged_work\":{\"bytes\":"));
    }
}
