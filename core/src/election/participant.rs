//! [`Participant`]: what one node keeps to take part in the election of its
//! `network_id`, and the ledger writes it owes.
//!
//! The node calls [`Participant::run`] when the `owner/roles` or
//! `owner/alive` buckets change and at [`Participant::poll_timeout`]; it
//! puts the returned [`Writes`] and acts on the [`Outcome`]. When k3s runs
//! in the role the outcome gives, it calls [`Participant::deployed`] so the
//! role sticks. The host persists the value of every role-record write
//! ([`Writes::record`]) and hands the last one back to [`Participant::new`]
//! after a restart: a member must never promise or accept twice in one
//! ballot, and its own record is what remembers (the copy other replicas
//! hold is merged in too, once it arrives).
//!
//! This module never writes the ledger itself and never decides anything
//! [`elect`] does not.

use heapless::{String, Vec};

use super::record::{Deployment, ForcedRole, RoleRecord, ALIVE_VALUE, MAX_RECORD_LEN};
use super::rule::{elect, Outcome};
use super::view::{read_members, MemberView, View};
use super::{
    ElectionConfig, ElectionError, Role, ALIVE, ALIVE_INTERVAL, MAX_MASTERS, MAX_NETWORK_ID_LEN, MEMBER_REFRESH,
    MEMBER_TTL_SECS, ROLES,
};
use crate::identity::NodeId;
use crate::ledger::buckets::owner_key;
use crate::ledger::Ledger;
use crate::time::{Duration, Instant};

/// One ledger write the node owes: put `value()` under `(bucket, key)` with
/// `ttl_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    /// [`ROLES`] or [`ALIVE`].
    pub bucket: &'static str,
    /// The node's own id, printable (owner-only buckets).
    pub key: [u8; 26],
    /// The entry's ttl in seconds.
    pub ttl_secs: u32,
    value: Vec<u8, MAX_RECORD_LEN>,
}

impl Write {
    /// The value to write.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

/// The writes one [`Participant::run`] asks for (at most two).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writes {
    record: Option<Write>,
    alive: Option<Write>,
}

impl Writes {
    /// The role record to write (persist [`Participant::record`] too).
    pub fn record(&self) -> Option<&Write> {
        self.record.as_ref()
    }

    /// Every write, the role record first.
    pub fn iter(&self) -> impl Iterator<Item = &Write> {
        self.record.iter().chain(self.alive.iter())
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.record.is_none() && self.alive.is_none()
    }
}

/// A node's part in the election of its `network_id`.
#[derive(Debug, Clone)]
pub struct Participant {
    me: NodeId,
    key: [u8; 26],
    network_id: String<MAX_NETWORK_ID_LEN>,
    config: ElectionConfig,
    record: RoleRecord,
    started: Instant,
    /// When each recent master was last seen live by this node (the
    /// ledger forgets expired advertisements after a while).
    seen: Vec<(NodeId, Instant), MAX_MASTERS>,
    wake: Option<Instant>,
    alive_interval: Duration,
}

impl Participant {
    /// Joins the election of `network_id` at `now`. `restored` is the last
    /// role-record value the host persisted (`None` for a node that never
    /// wrote one); a record of another network (the configuration changed)
    /// is left behind. `forced` is the configured role.
    pub fn new(
        me: NodeId,
        network_id: &str,
        forced: Option<ForcedRole>,
        config: ElectionConfig,
        restored: Option<&[u8]>,
        now: Instant,
    ) -> Result<Self, ElectionError> {
        let config = ElectionConfig::new(config.minimum_nodes, config.ha_masters, config.dynamic_roles)?
            .with_meet_first(config.meet_first);
        let mut id = String::new();
        if network_id.is_empty() || id.push_str(network_id).is_err() {
            return Err(ElectionError::NetworkIdLength);
        }
        let mut record = match restored.map(RoleRecord::parse).transpose() {
            Ok(Some((net, r))) if net == network_id => r,
            Ok(_) => RoleRecord::default(),
            Err(e) => return Err(ElectionError::Restored(e)),
        };
        record.forced = forced;
        Ok(Participant {
            me,
            key: owner_key(&me),
            network_id: id,
            config,
            record,
            started: now,
            seen: Vec::new(),
            wake: Some(now),
            alive_interval: ALIVE_INTERVAL,
        })
    }

    /// This node's record.
    pub fn record(&self) -> &RoleRecord {
        &self.record
    }

    /// The `network_id`.
    pub fn network_id(&self) -> &str {
        &self.network_id
    }

    /// Changes the forced role (a configuration reload); the next run
    /// writes it.
    pub fn set_forced(&mut self, forced: Option<ForcedRole>) {
        self.record.forced = forced;
        self.wake = Some(self.started);
    }

    /// Sets how often the advertisement is rewritten (the node passes
    /// [`super::alive_interval`] of the network's size); its ttl is six of
    /// them.
    pub fn set_alive_interval(&mut self, interval: Duration) {
        self.alive_interval = interval.max(Duration::from_secs(1));
    }

    /// When to run again even if the ledger does not change.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.wake
    }

    /// The role k3s should (re)deploy in now: the outcome gives this node a
    /// role and its record shows no deployment in that role and epoch (a
    /// first deployment, a promotion, a step-down, or a worker following a
    /// new primary). `None`: nothing to change, or wait.
    pub fn to_deploy(&self, outcome: &Outcome) -> Option<Role> {
        let role = outcome.role_of(&self.me)?;
        let d = outcome.deployment(&self.me, 0)?;
        match self.record.deployment {
            Some(old) if (old.role, old.epoch) == (d.role, d.epoch) => None,
            _ => Some(role),
        }
    }

    /// Records that k3s now runs in the role `outcome` gives this node;
    /// `clock` is the ledger's Lamport clock. The deployment, if it changed
    /// the record (a restart in the same role keeps the older one).
    pub fn deployed(&mut self, outcome: &Outcome, clock: u64) -> Option<Deployment> {
        let d = outcome.deployment(&self.me, clock)?;
        if let Some(old) = self.record.deployment {
            if (old.role, old.epoch) == (d.role, d.epoch) {
                return None;
            }
        }
        self.record.deployment = Some(d);
        self.wake = Some(self.started);
        Some(d)
    }

    /// Reads the network's members from `ledger` into `scratch` (its
    /// length bounds the members listed; the rest still count), elects,
    /// updates this node's vote and returns the outcome and what to write.
    pub fn run<const E: usize, const A: usize>(
        &mut self,
        ledger: &Ledger<E, A>,
        scratch: &mut [MemberView],
        now: Instant,
    ) -> (Outcome, Writes) {
        let (mut n, unlisted) = read_members(ledger, &self.network_id, scratch);
        match scratch[..n].iter().position(|m| m.id == self.me) {
            Some(i) => self.record = self.record.merge(&scratch[i].record),
            None if n < scratch.len() => {
                scratch[n] = MemberView::new(self.me);
                n += 1;
            }
            None => {}
        }
        for m in scratch[..n].iter_mut() {
            if m.id == self.me {
                // This node runs: it is live to itself.
                m.record = self.record;
                m.live = true;
                m.last_seen = Some(now);
            } else if let Some(&(_, t)) = self.seen.iter().find(|(id, _)| *id == m.id) {
                m.last_seen = Some(m.last_seen.map_or(t, |l| l.max(t)));
            }
        }
        let view = View {
            members: &scratch[..n],
            unlisted,
            observing_since: self.started,
        };
        let outcome = elect(&view, &self.config, now);
        self.remember_masters(&view, &outcome, now);
        if let Some(me) = view.get(&self.me) {
            self.record.vote = outcome.vote_for(me);
        }
        let writes = self.writes(ledger, now, outcome.recheck_at());
        (outcome, writes)
    }

    fn remember_masters(&mut self, view: &View, outcome: &Outcome, now: Instant) {
        let mut seen = Vec::new();
        for m in outcome.masters() {
            let last = match view.get(&m.id) {
                Some(v) if v.live => Some(now),
                _ => self.seen.iter().find(|(id, _)| *id == m.id).map(|&(_, t)| t),
            };
            if let Some(t) = last {
                // At most MAX_MASTERS masters, so this always fits.
                let _ = seen.push((m.id, t));
            }
        }
        self.seen = seen;
    }

    fn writes<const E: usize, const A: usize>(
        &mut self,
        ledger: &Ledger<E, A>,
        now: Instant,
        recheck: Option<Instant>,
    ) -> Writes {
        let mut out = Writes::default();
        let mut buf = [0u8; MAX_RECORD_LEN];
        // The network id was checked in `new`.
        let len = self.record.emit(&self.network_id, &mut buf).unwrap_or(0);
        let held = ledger.get(ROLES.as_bytes(), &self.key);
        let record_due = held.map(|e| e.received() + MEMBER_REFRESH);
        if held.is_none_or(|e| e.value() != &buf[..len]) || record_due.is_some_and(|t| now >= t) {
            out.record = Some(Write {
                bucket: ROLES,
                key: self.key,
                ttl_secs: MEMBER_TTL_SECS,
                value: Vec::from_slice(&buf[..len]).unwrap_or_default(),
            });
        }
        let alive_due = ledger
            .get(ALIVE.as_bytes(), &self.key)
            .map(|e| e.received() + self.alive_interval);
        if alive_due.is_none_or(|t| now >= t) {
            out.alive = Some(Write {
                bucket: ALIVE,
                key: self.key,
                ttl_secs: super::alive_ttl_secs(self.alive_interval),
                value: Vec::from_slice(ALIVE_VALUE).unwrap_or_default(),
            });
        }
        let next_alive = alive_due.filter(|&t| t > now).unwrap_or(now + self.alive_interval);
        let next_record = record_due.filter(|&t| t > now).unwrap_or(now + MEMBER_REFRESH);
        let wake = next_alive.min(next_record);
        self.wake = Some(recheck.map_or(wake, |r| r.min(wake)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{DeployedAs, RecordError};
    use super::super::Status;
    use super::*;
    use crate::identity::Identity;
    use crate::ledger::{Ed25519Verifier, Ledger};
    use crate::time::Duration;
    use std::boxed::Box;
    use std::vec::Vec as StdVec;

    type Small = Ledger<64, 16384>;

    struct Member {
        identity: Identity,
        ledger: Box<Small>,
        part: Participant,
        outcome: Option<Outcome>,
    }

    fn member(seed: u8, net: &str, config: ElectionConfig, restored: Option<&[u8]>, now: Instant) -> Member {
        let identity = Identity::from_bytes(&[seed; 64]);
        let part = Participant::new(identity.node_id(), net, None, config, restored, now).unwrap();
        Member {
            identity,
            ledger: Box::new(Small::new()),
            part,
            outcome: None,
        }
    }

    /// Every live entry of every ledger, applied to every other.
    fn sync(ms: &mut [Member], now: Instant) {
        let mut all: StdVec<StdVec<u8>> = StdVec::new();
        for m in ms.iter() {
            for e in m.ledger.iter() {
                let enc = m.ledger.encoder(e.entry_ref()).unwrap();
                let mut v = enc.header.to_vec();
                for p in enc.parts {
                    v.extend_from_slice(p);
                }
                all.push(v);
            }
        }
        for m in ms.iter_mut() {
            for e in &all {
                m.ledger.apply(now, &mut Ed25519Verifier, e).unwrap();
            }
        }
    }

    /// Each member runs once and puts what it owes; then all sync.
    fn round(ms: &mut [Member], now: Instant) {
        let mut scratch = [MemberView::default(); 16];
        for m in ms.iter_mut() {
            let (o, w) = m.part.run(&m.ledger, &mut scratch, now);
            for w in w.iter() {
                m.ledger
                    .put(now, &m.identity, w.bucket.as_bytes(), &w.key, w.value(), w.ttl_secs)
                    .unwrap();
            }
            m.outcome = Some(o);
        }
        sync(ms, now);
    }

    /// Members in the role their outcome gives record their deployment.
    fn deploy(ms: &mut [Member]) {
        for m in ms.iter_mut() {
            let o = m.outcome.clone().unwrap();
            let clock = m.ledger.clock();
            if m.part.to_deploy(&o).is_some() {
                assert!(m.part.deployed(&o, clock).is_some());
                assert_eq!(m.part.to_deploy(&o), None);
            }
        }
    }

    fn roles(ms: &[Member]) -> StdVec<Option<Role>> {
        ms.iter()
            .map(|m| m.outcome.as_ref().unwrap().role_of(&m.identity.node_id()))
            .collect()
    }

    #[test]
    fn three_nodes_elect_deploy_and_restart() {
        let config = ElectionConfig::new(2, 2, None).unwrap();
        let t = Instant::from_secs(1);
        let mut ms: StdVec<Member> = (1..=3).map(|i| member(i, "kairos", config, None, t)).collect();
        for _ in 0..6 {
            round(&mut ms, t);
        }
        let init = Some(Role::Master { cluster_init: true });
        assert_eq!(roles(&ms).iter().filter(|r| **r == init).count(), 1);
        assert!(ms
            .iter()
            .all(|m| m.outcome.as_ref().unwrap().status() == Status::Elected));
        deploy(&mut ms);
        round(&mut ms, t);
        // Settled; the second HA seat is taken.
        round(&mut ms, t);
        let o = ms[0].outcome.clone().unwrap();
        assert_eq!(o.status(), Status::Settled);
        assert_eq!(o.masters().len(), 2);
        for m in &ms {
            assert_eq!(m.outcome.as_ref().unwrap(), &o, "every replica agrees");
        }
        let p = o.primary().unwrap().id;
        let pi = ms.iter().position(|m| m.identity.node_id() == p).unwrap();
        assert_eq!(ms[pi].part.record().deployment.unwrap().role, DeployedAs::Primary);

        // The primary restarts with an empty ledger and no persisted record
        // (the worst case): once synced it finds its record again.
        let t2 = Instant::from_secs(60);
        let seed = (pi + 1) as u8;
        ms[pi] = member(seed, "kairos", config, None, t2);
        sync(&mut ms, t2);
        round(&mut ms, t2);
        deploy(&mut ms);
        round(&mut ms, t2);
        let o2 = ms[pi].outcome.clone().unwrap();
        assert_eq!(o2.role_of(&p), init);
        assert_eq!(ms[pi].part.record().deployment.unwrap().role, DeployedAs::Primary);
        let inits = o2.masters().iter().filter(|m| m.cluster_init).count();
        assert_eq!(inits, 1, "no second cluster-init");
        let ids = |o: &Outcome| o.masters().iter().map(|m| m.id).collect::<StdVec<_>>();
        assert_eq!(ids(&o2), ids(&o));
    }

    #[test]
    fn sizes() {
        // Stated in docs/roles.md (x86_64).
        assert_eq!(core::mem::size_of::<MemberView>(), 168);
        assert_eq!(core::mem::size_of::<Outcome>(), 632);
        assert_eq!(core::mem::size_of::<Participant>(), 720);
    }

    #[test]
    fn two_networks_on_one_mesh() {
        let c = ElectionConfig::DEFAULT;
        let t = Instant::from_secs(5);
        let mut ms: StdVec<Member> = (1..=4)
            .map(|i| member(i, if i % 2 == 0 { "a" } else { "b" }, c, None, t))
            .collect();
        for _ in 0..6 {
            round(&mut ms, t);
        }
        let mut primaries: StdVec<NodeId> = ms
            .iter()
            .map(|m| m.outcome.as_ref().unwrap().primary().unwrap().id)
            .collect();
        assert_eq!(primaries[0], primaries[2]);
        assert_eq!(primaries[1], primaries[3]);
        primaries.dedup();
        primaries.sort();
        primaries.dedup();
        assert_eq!(primaries.len(), 2, "one master per network_id");
        let mut scratch = [MemberView::default(); 8];
        let v = super::super::read_view(&ms[0].ledger, "a", t, &mut scratch);
        assert_eq!(v.total(), 2);
    }

    #[test]
    fn writes_are_due_on_change_and_schedule() {
        let c = ElectionConfig::new(1, 1, Some(Duration::from_secs(600))).unwrap();
        let t = Instant::from_secs(10);
        let mut m = member(7, "x", c, None, t);
        let mut scratch = [MemberView::default(); 4];
        let (o, w) = m.part.run(&m.ledger, &mut scratch, t);
        assert_eq!(w.iter().count(), 2);
        assert_eq!(w.record().unwrap().bucket, ROLES);
        // Alone with minimum_nodes 1: it starts a ballot, proposes itself,
        // and is elected; then there is nothing more to write.
        assert!(o.voting());
        assert_eq!(m.part.record().vote.unwrap().promised.owner, m.identity.node_id());
        let mut w = w;
        let mut o = o;
        for _ in 0..4 {
            for w in w.iter() {
                m.ledger
                    .put(t, &m.identity, w.bucket.as_bytes(), &w.key, w.value(), w.ttl_secs)
                    .unwrap();
            }
            (o, w) = m.part.run(&m.ledger, &mut scratch, t);
        }
        assert!(w.is_empty());
        assert_eq!(o.status(), Status::Elected);
        assert_eq!(m.part.poll_timeout(), Some(t + ALIVE_INTERVAL));
        let (_, w) = m.part.run(&m.ledger, &mut scratch, t + ALIVE_INTERVAL);
        assert_eq!(w.iter().map(|w| w.bucket).collect::<StdVec<_>>(), [ALIVE]);
        m.part.set_forced(Some(ForcedRole::Worker));
        let (o, w) = m.part.run(&m.ledger, &mut scratch, t + ALIVE_INTERVAL);
        assert!(w.record().is_some());
        assert_eq!(o.primary(), None, "a forced worker is never master");
        assert_eq!(m.part.network_id(), "x");
        // A persisted record comes back; one of another network does not;
        // a corrupt one is reported.
        let mut buf = [0u8; MAX_RECORD_LEN];
        let n = m.part.record().emit("x", &mut buf).unwrap();
        let id = m.identity.node_id();
        let back = Participant::new(id, "x", None, c, Some(&buf[..n]), t).unwrap();
        assert_eq!(back.record().vote, m.part.record().vote);
        let other = Participant::new(id, "y", None, c, Some(&buf[..n]), t).unwrap();
        assert_eq!(other.record(), &RoleRecord::default());
        let e = Participant::new(id, "x", None, c, Some(&buf[..n - 1]), t);
        assert_eq!(e.unwrap_err(), ElectionError::Restored(RecordError::Length));
        let long = "n".repeat(65);
        let e = Participant::new(m.identity.node_id(), &long, None, c, None, t);
        assert_eq!(e.unwrap_err(), ElectionError::NetworkIdLength);
        let bad = ElectionConfig {
            ha_masters: 0,
            ..ElectionConfig::DEFAULT
        };
        let e = Participant::new(m.identity.node_id(), "x", None, bad, None, t);
        assert_eq!(e.unwrap_err(), ElectionError::HaMasters(0));
    }
}
