//! Generated tests of the whole election protocol: members that each run
//! [`elect`] on their own, partially replicated view, under partitions,
//! heals and restarts, with seeded schedules.
//!
//! The replication model is the ledger's: each member's record and
//! advertisement travel between replicas in any order, late or never, the
//! newest version winning; an advertisement is live for [`TTL`] seconds after
//! a replica received it. A partition stops every exchange between its
//! sides. What the tests check is the guarantee `docs/roles.md` states:
//!
//! - **Safety**: in one epoch at most one member ever deploys as primary,
//!   whenever every member that promised or accepted in that epoch was known
//!   to every member that counted a quorum in it (proposed, or deployed).
//!   When members never met, two primaries can happen, and then the
//!   assumption is seen broken.
//! - **Liveness**: a side holding a strict majority elects during a
//!   partition; a side holding half or less never does; after the heal
//!   every member agrees on one deployed primary.
//!
//! Test-only; it never touches a real ledger (`participant.rs` does).

use std::collections::{BTreeMap, BTreeSet};
use std::vec::Vec;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::identity::NodeId;
use crate::time::{Duration, Instant};

/// Seconds an advertisement stays live after a replica received it.
const TTL: u64 = 30;

#[derive(Clone)]
struct Node {
    id: NodeId,
    up: bool,
    side: u8,
    started: u64,
    /// This replica's copy of each member's record: (version, record).
    records: Vec<Option<(u64, RoleRecord)>>,
    /// This replica's copy of each member's advertisement: (version,
    /// received at).
    ads: Vec<Option<(u64, u64)>>,
}

struct Sim {
    rng: ChaCha8Rng,
    config: ElectionConfig,
    /// Percent of records one exchange carries.
    carry: u32,
    nodes: Vec<Node>,
    now: u64,
    /// Who promised or accepted in each epoch.
    took_part: BTreeMap<u32, BTreeSet<usize>>,
    /// Each quorum counted (a proposal, or deploying as primary): the epoch
    /// and the members the counter knew.
    counted: Vec<(u32, BTreeSet<usize>)>,
    /// Who ever deployed as primary, per epoch.
    primaries: BTreeMap<u32, BTreeSet<usize>>,
}

impl Sim {
    /// `n` members with random ids; `known`: each already holds every
    /// member's (empty) record, as after the members met.
    fn new(n: usize, seed: u64, config: ElectionConfig, known: bool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let ids: Vec<NodeId> = (0..n)
            .map(|_| {
                let mut b = [0u8; 16];
                rng.fill_bytes(&mut b);
                NodeId(b)
            })
            .collect();
        let nodes = (0..n)
            .map(|i| Node {
                id: ids[i],
                up: true,
                side: 0,
                started: 0,
                records: (0..n)
                    .map(|j| (known || i == j).then(|| (1, RoleRecord::default())))
                    .collect(),
                ads: std::vec![None; n],
            })
            .collect();
        Sim {
            rng,
            config,
            carry: 50,
            nodes,
            now: 0,
            took_part: BTreeMap::new(),
            counted: Vec::new(),
            primaries: BTreeMap::new(),
        }
    }

    fn view_of(&self, x: usize) -> Vec<MemberView> {
        let node = &self.nodes[x];
        (0..self.nodes.len())
            .filter_map(|j| {
                let (_, record) = node.records[j]?;
                let ad = node.ads[j];
                Some(MemberView {
                    id: self.nodes[j].id,
                    live: j == x || ad.is_some_and(|(_, at)| self.now < at + TTL),
                    last_seen: ad.map(|(_, at)| Instant::from_secs(at)),
                    record,
                })
            })
            .collect()
    }

    fn known(&self, x: usize) -> BTreeSet<usize> {
        (0..self.nodes.len())
            .filter(|&j| self.nodes[x].records[j].is_some())
            .collect()
    }

    fn outcome(&self, x: usize) -> Outcome {
        let members = self.view_of(x);
        let view = View::new(&members, Instant::from_secs(self.nodes[x].started));
        elect(&view, &self.config, Instant::from_secs(self.now))
    }

    fn write(&mut self, x: usize, record: RoleRecord) {
        let v = self.nodes[x].records[x].map_or(1, |(v, _)| v + 1);
        self.nodes[x].records[x] = Some((v, record));
    }

    /// Member `x` advertises, takes its next step and deploys what the
    /// outcome says.
    fn act(&mut self, x: usize) {
        if !self.nodes[x].up {
            return;
        }
        let now = self.now;
        let ad = self.nodes[x].ads[x].map_or(1, |(v, _)| v + 1);
        self.nodes[x].ads[x] = Some((ad, now));
        let id = self.nodes[x].id;
        let members = self.view_of(x);
        let view = View::new(&members, Instant::from_secs(self.nodes[x].started));
        let o = elect(&view, &self.config, Instant::from_secs(now));
        let me = *members.iter().find(|m| m.id == id).unwrap();
        let mut record = me.record;
        let vote = o.vote_for(&me);
        if vote != record.vote {
            let v = vote.unwrap();
            if v.promised.round > 0 || v.accepted.is_some() {
                self.took_part.entry(v.epoch).or_default().insert(x);
            }
            if v.proposal.is_some() && v.proposal != record.vote.filter(|o| o.epoch == v.epoch).and_then(|o| o.proposal)
            {
                self.counted.push((v.epoch, self.known(x)));
            }
            record.vote = vote;
        }
        let role = o.role_of(&id);
        let kind = o.master(&id).map(|m| m.kind);
        let deployed = record.deployment;
        let clock = self.nodes[x].records[x].map_or(0, |(v, _)| v);
        if let Some(d) = o.deployment(&id, clock) {
            let same = deployed.is_some_and(|old| (old.role, old.epoch) == (d.role, d.epoch));
            if role.is_some() && !same && (deployed.is_none() || o.steps_down(&me) || kind.is_some()) {
                if d.role == DeployedAs::Primary {
                    self.primaries.entry(d.epoch).or_default().insert(x);
                    if deployed.is_none_or(|old| old.role != DeployedAs::Primary) {
                        self.counted.push((d.epoch, self.known(x)));
                    }
                }
                record.deployment = Some(d);
            }
        }
        if Some(record) != self.nodes[x].records[x].map(|(_, r)| r) {
            self.write(x, record);
        }
    }

    /// `x` receives some of what `y` holds (each record with probability
    /// `p` percent), if they can talk.
    fn deliver(&mut self, x: usize, y: usize, p: u32) {
        let (a, b) = (&self.nodes[x], &self.nodes[y]);
        if x == y || !a.up || !b.up || a.side != b.side {
            return;
        }
        for j in 0..self.nodes.len() {
            if self.rng.next_u32() % 100 >= p {
                continue;
            }
            let theirs = self.nodes[y].records[j];
            if theirs.map(|(v, _)| v) > self.nodes[x].records[j].map(|(v, _)| v) {
                self.nodes[x].records[j] = theirs;
            }
            let ad = self.nodes[y].ads[j];
            if ad.map(|(v, _)| v) > self.nodes[x].ads[j].map(|(v, _)| v) {
                self.nodes[x].ads[j] = ad.map(|(v, _)| (v, self.now));
            }
        }
    }

    /// `x` receives `y`'s copy of member `j`'s record (and of its
    /// advertisement if `ad`), as one ledger entry travelling alone.
    fn pass(&mut self, x: usize, y: usize, j: usize, ad: bool) {
        let theirs = self.nodes[y].records[j];
        if theirs.map(|(v, _)| v) > self.nodes[x].records[j].map(|(v, _)| v) {
            self.nodes[x].records[j] = theirs;
        }
        let a = self.nodes[y].ads[j];
        if ad && a.map(|(v, _)| v) > self.nodes[x].ads[j].map(|(v, _)| v) {
            self.nodes[x].ads[j] = a.map(|(v, _)| (v, self.now));
        }
    }

    /// One second of random activity.
    fn step(&mut self) {
        self.now += 1;
        let n = self.nodes.len();
        for _ in 0..n {
            let x = self.rng.next_u32() as usize % n;
            if self.rng.next_u32() % 100 < 40 {
                self.act(x);
            } else {
                let y = self.rng.next_u32() as usize % n;
                self.deliver(x, y, self.carry);
            }
        }
    }

    /// Everyone acts and hears everyone on its side, `rounds` times.
    fn settle(&mut self, rounds: usize) {
        let n = self.nodes.len();
        for _ in 0..rounds {
            self.now += 1;
            for x in 0..n {
                self.act(x);
            }
            for x in 0..n {
                for y in 0..n {
                    self.deliver(x, y, 100);
                }
            }
        }
    }

    fn split(&mut self, mask: u32) {
        for (i, node) in self.nodes.iter_mut().enumerate() {
            node.side = (mask >> i & 1) as u8;
        }
    }

    /// A restart: the replica is lost, the member's own record survives
    /// (the host persisted it).
    fn restart(&mut self, x: usize) {
        let node = &mut self.nodes[x];
        let own = node.records[x];
        node.records.iter_mut().for_each(|r| *r = None);
        node.ads.iter_mut().for_each(|a| *a = None);
        node.records[x] = own;
        node.up = true;
        node.started = self.now;
    }

    /// Whether every member that took part in `epoch` was known to every
    /// member that counted a quorum in it.
    fn quorums_intersect(&self, epoch: u32) -> bool {
        let empty = BTreeSet::new();
        let part = self.took_part.get(&epoch).unwrap_or(&empty);
        self.counted
            .iter()
            .filter(|(e, _)| *e == epoch)
            .all(|(_, known)| part.is_subset(known))
    }

    fn primaries(&self, epoch: u32) -> usize {
        self.primaries.get(&epoch).map_or(0, |s| s.len())
    }

    /// The primary every up member agrees on, if they agree on one.
    fn agreed_primary(&self) -> Option<NodeId> {
        let ups: Vec<usize> = (0..self.nodes.len()).filter(|&x| self.nodes[x].up).collect();
        let first = self.outcome(ups[0]);
        let p = first.primary()?.id;
        for &x in &ups {
            let o = self.outcome(x);
            if o.primary().map(|m| m.id) != Some(p) || o.status() != Status::Settled || o.masters().len() != 1 {
                return None;
            }
        }
        Some(p)
    }

    fn index(&self, id: NodeId) -> usize {
        self.nodes.iter().position(|n| n.id == id).unwrap()
    }
}

/// Every split of `n` members, `seeds` schedules each: lossy exchanges, a
/// partition that mostly strikes while the first election runs and lasts
/// long enough for an owner's advertisement to expire, then the heal.
/// Returns how many runs had a primary before the heal.
fn first_primary_is_unique(n: usize, seeds: u64) -> u32 {
    let config = ElectionConfig::DEFAULT;
    let mut elected_during_partition = 0;
    for mask in 0..(1u32 << (n - 1)) {
        for seed in 0..seeds {
            let mut sim = Sim::new(n, seed * 1000 + mask as u64 * 10 + n as u64, config, true);
            sim.carry = [20, 50][seed as usize % 2];
            let start = sim.rng.next_u32() as u64 % [12, 40][seed as usize % 2];
            let heal = start + 1 + sim.rng.next_u32() as u64 % 150;
            for t in 0..200u64 {
                if t == start {
                    // Node 0 always on side 0; the mask places the others.
                    sim.split(mask << 1);
                }
                if t == heal {
                    sim.split(0);
                }
                sim.step();
                if t + 1 == heal && sim.primaries(1) > 0 {
                    elected_during_partition += 1;
                }
            }
            assert!(sim.quorums_intersect(1), "every member knew every other one");
            assert!(
                sim.primaries(1) <= 1,
                "n={n} mask={mask:b} seed={seed}: {:?}",
                sim.primaries
            );
            // Healed: everyone agrees on one deployed primary.
            sim.settle(12);
            assert!(
                sim.agreed_primary().is_some(),
                "n={n} mask={mask:b} seed={seed}: no agreement"
            );
            assert!(sim.primaries(1) == 1 && sim.primaries.len() == 1);
        }
    }
    elected_during_partition
}

#[test]
fn first_primary_is_unique_under_any_partition_of_2_to_5() {
    let elected: u32 = (2..=5).map(|n| first_primary_is_unique(n, 8)).sum();
    // The runs include partitions that struck mid-election and after it.
    assert!(elected > 40, "{elected}");
}

#[test]
fn first_primary_is_unique_under_any_partition_of_6() {
    assert!(first_primary_is_unique(6, 6) > 40);
}

#[test]
fn first_primary_is_unique_under_any_partition_of_7() {
    assert!(first_primary_is_unique(7, 4) > 40);
}

#[test]
fn a_value_accepted_across_the_cut_is_carried_over() {
    // Five members a < b < c < d < e. a's ballot is accepted by a, b and c
    // just before a cut {a, b} | {c, d, e}; d, which never saw a, b or c
    // alive, had started a higher ballot that d and e promised. On its side
    // d gets the promises of c, d, e and must propose a (what c accepted,
    // maybe elected), not the best member it sees.
    for seed in 0..10u64 {
        let mut sim = Sim::new(5, 4000 + seed, ElectionConfig::DEFAULT, true);
        let mut order: Vec<usize> = (0..5).collect();
        order.sort_by_key(|&i| sim.nodes[i].id);
        let [a, b, c, d, e] = [order[0], order[1], order[2], order[3], order[4]];
        sim.now = 1;
        for x in 0..5 {
            sim.act(x);
        }
        for (x, y) in [(a, b), (a, c), (b, c), (d, e)] {
            sim.pass(x, y, y, true);
            sim.pass(y, x, x, true);
        }
        sim.act(a); // starts (1, a)
        for x in [b, c] {
            sim.pass(x, a, a, true);
            sim.act(x); // promise (1, a)
            sim.pass(a, x, x, true);
        }
        // d sees c's promise (record only): it starts (2, d); e promises.
        sim.pass(d, c, c, false);
        sim.act(d);
        sim.pass(e, d, d, true);
        sim.act(e);
        sim.pass(d, e, e, true);
        sim.act(a); // proposes (1, a, a)
        for x in [c, b] {
            sim.pass(x, a, a, true);
            sim.act(x); // accepts
            sim.pass(a, x, x, true);
        }
        sim.act(a); // a quorum accepted a: it deploys
        assert_eq!(sim.primaries(1), 1);
        sim.split(1 << a | 1 << b);
        sim.pass(c, d, d, false);
        sim.act(c); // promises (2, d), reporting (1, a, a)
        sim.pass(d, c, c, false);
        sim.act(d); // a quorum promised (2, d): proposes
        let proposed = sim.nodes[d].records[d].unwrap().1.vote.unwrap().proposal;
        for _ in 0..200 {
            sim.step();
        }
        sim.settle(6);
        assert_eq!(sim.primaries(1), 1, "seed {seed}: {:?}", sim.primaries);
        assert_eq!(proposed.unwrap().candidate, sim.nodes[a].id, "seed {seed}");
        assert!(sim.quorums_intersect(1));
        sim.split(0);
        sim.settle(6);
        assert_eq!(sim.agreed_primary(), Some(sim.nodes[a].id));
    }
}

#[test]
fn a_majority_side_elects_and_a_minority_never_does() {
    let config = ElectionConfig::DEFAULT;
    for n in 2..=7usize {
        for mask in 0..(1u32 << (n - 1)) {
            let mut sim = Sim::new(n, 7 + mask as u64 * 31 + n as u64, config, true);
            sim.split(mask << 1);
            for _ in 0..150 {
                sim.step();
            }
            sim.settle(12);
            let side0 = (0..n).filter(|&i| sim.nodes[i].side == 0).count();
            let winners: Vec<usize> = sim.primaries.get(&1).into_iter().flatten().copied().collect();
            for side in [0u8, 1] {
                let size = if side == 0 { side0 } else { n - side0 };
                let elected = winners.iter().any(|&w| sim.nodes[w].side == side);
                // A strict majority (and at least minimum_nodes) elects;
                // half or less never does.
                let should = size * 2 > n && size >= 2;
                assert_eq!(elected, should, "n={n} mask={mask:b} side {side} of {size}");
            }
            assert!(winners.len() <= 1);
        }
    }
}

#[test]
fn two_primaries_only_when_members_never_met() {
    let config = ElectionConfig::DEFAULT;
    let (mut runs, mut broken, mut doubled) = (0, 0, 0);
    for n in 3..=7usize {
        for seed in 0..100u64 {
            let mut sim = Sim::new(n, seed * 7919 + n as u64, config, false);
            let mask = sim.rng.next_u32() & ((1 << (n - 1)) - 1);
            let start = sim.rng.next_u32() as u64 % 30;
            let heal = start + 1 + sim.rng.next_u32() as u64 % 150;
            for t in 0..220u64 {
                if t == start {
                    sim.split(mask << 1);
                }
                if t == heal {
                    sim.split(0);
                }
                sim.step();
            }
            runs += 1;
            let safe = sim.quorums_intersect(1);
            broken += !safe as u32;
            if sim.primaries(1) > 1 {
                doubled += 1;
                assert!(!safe, "n={n} seed={seed}: two primaries although quorums intersect");
            }
            // Whatever happened, the heal ends with one primary.
            sim.settle(12);
            assert!(sim.agreed_primary().is_some(), "n={n} seed={seed}");
        }
    }
    // The generated runs do reach the case the guarantee excludes.
    assert!(
        broken > 0 && doubled > 0,
        "runs {runs} broken {broken} doubled {doubled}"
    );
}

#[test]
fn halves_with_a_master_each_heal_into_one() {
    let config = ElectionConfig::DEFAULT;
    for seed in 0..20u64 {
        // Two sites that never met: each knows only itself at first and
        // reaches only its own half.
        let mut sim = Sim::new(6, 500 + seed, config, false);
        sim.split(0b111000);
        for _ in 0..60 {
            sim.step();
        }
        sim.settle(12);
        assert_eq!(sim.primaries(1), 2, "seed {seed}: a master on each side");
        let before: BTreeSet<usize> = sim.primaries[&1].clone();
        sim.split(0);
        sim.settle(12);
        let p = sim.agreed_primary().expect("one master after the heal");
        let winner = sim.index(p);
        assert!(before.contains(&winner));
        // The other stepped down: it now records a worker deployment.
        for &loser in before.iter().filter(|&&l| l != winner) {
            let d = sim.nodes[loser].records[loser].unwrap().1.deployment.unwrap();
            assert_eq!(d.role, DeployedAs::Worker, "seed {seed}");
        }
    }
}

#[test]
fn a_partition_after_the_master_exists_changes_nothing_without_dynamic_roles() {
    let config = ElectionConfig::DEFAULT;
    for seed in 0..30u64 {
        let mut sim = Sim::new(5, 900 + seed, config, true);
        sim.settle(12);
        let p = sim.agreed_primary().unwrap();
        let pi = sim.index(p);
        // The master alone on one side for a long time, then the heal.
        sim.split(1 << pi);
        for _ in 0..400 {
            sim.step();
        }
        sim.settle(6);
        assert_eq!(sim.primaries.len(), 1);
        assert_eq!(sim.primaries(1), 1, "seed {seed}: no second master");
        sim.split(0);
        sim.settle(6);
        assert_eq!(sim.agreed_primary(), Some(p));
    }
}

#[test]
fn dynamic_roles_replace_a_gone_master_and_it_steps_down_on_return() {
    let timeout = Duration::from_secs(60);
    let config = ElectionConfig::new(2, 1, Some(timeout)).unwrap();
    for seed in 0..20u64 {
        let mut sim = Sim::new(5, 1300 + seed, config, true);
        sim.settle(12);
        let old = sim.agreed_primary().unwrap();
        let oi = sim.index(old);
        if seed % 2 == 0 {
            // The master stops.
            sim.nodes[oi].up = false;
        } else {
            // A partition isolates the master (with one worker).
            let other = (oi + 1) % 5;
            sim.split(1 << oi | 1 << other);
        }
        for _ in 0..(TTL + timeout.as_secs() + 60) {
            sim.step();
        }
        sim.settle(12);
        assert_eq!(sim.primaries(2), 1, "seed {seed}: replaced once, in epoch 2");
        if seed % 2 == 0 {
            // Workers follow the new primary.
            let new = sim.agreed_primary().expect("the others agree on the new primary");
            assert_ne!(new, old);
            // The old master restarts with its persisted record.
            sim.restart(oi);
        } else {
            sim.split(0);
        }
        sim.settle(12);
        let p = sim.agreed_primary().expect("one master after the return");
        assert_ne!(p, old, "seed {seed}: the replacement wins");
        let d = sim.nodes[oi].records[oi].unwrap().1.deployment.unwrap();
        assert_eq!(d.role, DeployedAs::Worker, "seed {seed}: the old master stepped down");
        assert_eq!(sim.primaries(1), 1);
    }
}

#[test]
fn without_dynamic_roles_a_dead_master_is_never_replaced() {
    let mut sim = Sim::new(5, 77, ElectionConfig::DEFAULT, true);
    sim.settle(12);
    let p = sim.agreed_primary().unwrap();
    let pi = sim.index(p);
    sim.nodes[pi].up = false;
    for _ in 0..2000 {
        sim.step();
    }
    sim.settle(6);
    assert_eq!(sim.primaries.len(), 1);
    for x in (0..5).filter(|&x| x != pi) {
        assert_eq!(sim.outcome(x).primary().unwrap().id, p);
    }
    // Restarted, it keeps its role.
    sim.restart(pi);
    sim.settle(6);
    assert_eq!(sim.agreed_primary(), Some(p));
    assert_eq!(sim.primaries(1), 1);
}

#[test]
fn same_view_same_outcome_in_any_order() {
    let mut rng = ChaCha8Rng::seed_from_u64(42);
    let configs = [
        ElectionConfig::DEFAULT,
        ElectionConfig::new(3, 3, None).unwrap(),
        ElectionConfig::new(1, 2, Some(Duration::from_secs(30))).unwrap(),
    ];
    for case in 0..3000 {
        let n = 1 + rng.next_u32() as usize % 9;
        let pick = |rng: &mut ChaCha8Rng| NodeId([1 + (rng.next_u32() % n as u32) as u8; 16]);
        let ballot = |rng: &mut ChaCha8Rng| Ballot {
            round: rng.next_u32() % 3,
            owner: pick(rng),
        };
        let mut ms: Vec<MemberView> = (0..n)
            .map(|i| {
                let mut m = MemberView::new(NodeId([1 + i as u8; 16]));
                m.live = rng.next_u32() % 4 != 0;
                m.last_seen = (rng.next_u32() % 3 != 0).then(|| Instant::from_secs((rng.next_u32() % 100) as u64));
                m.record.forced = match rng.next_u32() % 6 {
                    0 => Some(ForcedRole::Master),
                    1 => Some(ForcedRole::Worker),
                    _ => None,
                };
                if rng.next_u32() % 3 == 0 {
                    m.record.deployment = Some(Deployment {
                        role: [DeployedAs::Primary, DeployedAs::Server, DeployedAs::Worker]
                            [rng.next_u32() as usize % 3],
                        epoch: rng.next_u32() % 3,
                        since: (rng.next_u32() % 4) as u64,
                    });
                }
                if rng.next_u32() % 3 != 0 {
                    let b = ballot(&mut rng);
                    let c = pick(&mut rng);
                    m.record.vote = Some(Vote {
                        epoch: 1 + rng.next_u32() % 2,
                        promised: b,
                        accepted: (rng.next_u32() % 2 == 0).then_some(Proposal {
                            ballot: b,
                            candidate: c,
                        }),
                        proposal: (rng.next_u32() % 4 == 0).then_some(Proposal {
                            ballot: b,
                            candidate: c,
                        }),
                    });
                }
                m
            })
            .collect();
        let config = configs[case % configs.len()];
        let now = Instant::from_secs(50 + (rng.next_u32() % 100) as u64);
        let a = elect(&View::new(&ms, Instant::ZERO), &config, now);
        let votes: Vec<Option<Vote>> = ms.iter().map(|m| a.vote_for(m)).collect();
        // Shuffle and elect again.
        for i in (1..ms.len()).rev() {
            let j = rng.next_u32() as usize % (i + 1);
            ms.swap(i, j);
        }
        let b = elect(&View::new(&ms, Instant::ZERO), &config, now);
        assert_eq!(a, b, "case {case}");
        for m in &ms {
            let i = (m.id.0[0] - 1) as usize;
            assert_eq!(b.vote_for(m), votes[i], "case {case}");
        }
        // Never two cluster-init masters, never a forced worker as master.
        assert!(a.masters().iter().filter(|m| m.cluster_init).count() <= 1);
        for m in a.masters() {
            let v = ms.iter().find(|x| x.id == m.id).unwrap();
            assert_ne!(v.record.forced, Some(ForcedRole::Worker), "case {case}");
        }
    }
}
