//! The node's part in the role election of its `network_id`: when to run
//! the [`Participant`], writing what it owes to the ledger, and turning
//! outcomes into [`Event::RoleChanged`] and [`Event::RoleRecordChanged`].
//!
//! The rules live in [`crate::election`] (and `docs/roles.md`); this file
//! only schedules them. The election runs when another member's role
//! record or advertisement changes (at most once per [`ELECTION_GAP`], so a
//! large mesh refreshing its advertisements does not rerun it for each
//! one), when the participant asks for it, and at once after
//! [`Node::role_deployed`]. The members are read into the caller-provided
//! view buffer (`W`), whose length must exceed the network's size or
//! majorities cannot be reached (members that do not fit still count).

use heapless::{String, Vec};

use super::{Event, Node};
use crate::crypto::CryptoProvider;
use crate::election::{
    alive_interval, ElectionConfig, ElectionError, ForcedRole, MemberView, Outcome, Participant, Role, RoleRecord,
    MAX_NETWORK_ID_LEN, MAX_RECORD_LEN, ROLES,
};
use crate::identity::NodeId;
use crate::ledger::{Ledger, SignatureVerifier};
use crate::time::{Duration, Instant};
use rand_core::{CryptoRng, RngCore};

use super::member::MemberSlot;
use super::TunnelPool;

/// The shortest gap between two election runs caused by ledger changes.
pub const ELECTION_GAP: Duration = Duration::from_millis(250);

/// The longest gap [`record_gap`] gives.
pub const RECORD_GAP_MAX: Duration = Duration::from_secs(1);

/// The shortest gap between two writes of this node's role record (and
/// between its start and its first write) in a network of `size` members:
/// 5 ms per member, at most [`RECORD_GAP_MAX`]. Steps the participant takes
/// in between (new promises while a joining mesh's views settle, an
/// acceptance) go out together in the next version, so a large mesh carries
/// fewer versions, each to every member; a small one does not wait. Holding
/// a version back is a delayed Paxos message, which the election's safety
/// argument allows (`docs/roles.md`); the record the host persists is
/// always the one written. A new deployment is written at once.
pub fn record_gap(size: usize) -> Duration {
    (Duration::from_millis(5) * size.min(u32::MAX as usize) as u32).min(RECORD_GAP_MAX)
}

/// Which network's election a node takes part in, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleConfig {
    network_id: String<MAX_NETWORK_ID_LEN>,
    forced: Option<ForcedRole>,
    election: ElectionConfig,
}

impl RoleConfig {
    /// Takes part in the election of `network_id` (1 to 64 bytes), with a
    /// forced role (`role: master` / `worker` in the config) or `None`
    /// (`auto`).
    pub fn new(network_id: &str, forced: Option<ForcedRole>, election: ElectionConfig) -> Result<Self, ElectionError> {
        // A node always listens first (`MEET_FIRST`): members that boot
        // together meet before anyone counts a quorum.
        let election = ElectionConfig::new(election.minimum_nodes, election.ha_masters, election.dynamic_roles)?
            .with_meet_first(crate::election::MEET_FIRST);
        let mut id = String::new();
        if network_id.is_empty() || id.push_str(network_id).is_err() {
            return Err(ElectionError::NetworkIdLength);
        }
        Ok(RoleConfig {
            network_id: id,
            forced,
            election,
        })
    }

    /// The `network_id`.
    pub fn network_id(&self) -> &str {
        &self.network_id
    }

    /// The forced role, if any.
    pub fn forced(&self) -> Option<ForcedRole> {
        self.forced
    }

    /// The election settings.
    pub fn election(&self) -> ElectionConfig {
        self.election
    }
}

impl Default for RoleConfig {
    /// Kairos' defaults: network `kairos`, role `auto`, 2 nodes, no HA.
    fn default() -> Self {
        let mut network_id = String::new();
        let _ = network_id.push_str("kairos");
        RoleConfig {
            network_id,
            forced: None,
            // Listens first, as `new` makes every node do.
            election: ElectionConfig::DEFAULT.with_meet_first(crate::election::MEET_FIRST),
        }
    }
}

/// The election state a node holds.
pub(crate) struct Roles<W> {
    config: RoleConfig,
    /// Made at the first run, so its clock starts when the node does.
    participant: Option<Participant>,
    /// The role record the host persisted, until the participant is made.
    restored: Option<Vec<u8, MAX_RECORD_LEN>>,
    views: W,
    outcome: Option<Outcome>,
    role: Option<Role>,
    /// Another member's records changed since the last run.
    dirty: bool,
    next_run: Instant,
    /// When this node last wrote its role record.
    record_written: Option<Instant>,
    /// A record write was held back (see [`record_gap`]): run again then.
    held_until: Option<Instant>,
    /// A new deployment to write: it goes out at once, gap or not.
    deployment_news: bool,
}

impl<W> Roles<W> {
    pub(crate) fn new(config: RoleConfig, views: W) -> Self {
        Roles {
            config,
            participant: None,
            restored: None,
            views,
            outcome: None,
            role: None,
            dirty: true,
            next_run: Instant::ZERO,
            record_written: None,
            held_until: None,
            deployment_news: false,
        }
    }

    /// When the election wants to run next.
    pub(crate) fn poll_timeout(&self) -> Instant {
        let asked = self.participant.as_ref().and_then(|p| p.poll_timeout());
        let mut t = asked.unwrap_or(Instant::FAR_FUTURE);
        if self.dirty || self.participant.is_none() {
            t = t.min(self.next_run);
        }
        if let Some(h) = self.held_until {
            t = t.min(h);
        }
        t
    }

    /// A change of another member's role record or advertisement.
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }
}

impl<P, R, V, S, T, L, W, const E: usize, const A: usize, const Q: usize, const H: usize, const F: usize>
    Node<P, R, V, S, T, L, W, E, A, Q, H, F>
where
    P: CryptoProvider,
    R: RngCore + CryptoRng,
    V: SignatureVerifier,
    S: AsMut<[MemberSlot<P>]> + AsRef<[MemberSlot<P>]>,
    T: TunnelPool<P>,
    L: AsMut<Ledger<E, A>> + AsRef<Ledger<E, A>>,
    W: AsMut<[MemberView]>,
{
    /// Hands back the role record the host persisted (the value of the
    /// last [`Event::RoleRecordChanged`]), before the node handles anything:
    /// it remembers this node's votes and deployment across a restart. A
    /// record of another `network_id` is ignored; a corrupt one is refused.
    pub fn restore_role_record(&mut self, record: &[u8]) -> Result<(), ElectionError> {
        let Some(roles) = self.roles.as_mut() else {
            return Ok(());
        };
        RoleRecord::parse(record).map_err(ElectionError::Restored)?;
        roles.restored = Vec::from_slice(record).ok();
        roles.participant = None;
        Ok(())
    }

    /// This node's role, once the election gives it one (`None`: not taking
    /// part, or nothing decided for it yet).
    pub fn role(&self) -> Option<Role> {
        self.roles.as_ref().and_then(|r| r.role)
    }

    /// The last election outcome: masters, primary, status.
    pub fn election(&self) -> Option<&Outcome> {
        self.roles.as_ref().and_then(|r| r.outcome.as_ref())
    }

    /// The `network_id` this node takes part in, if any.
    pub fn network_id(&self) -> Option<&str> {
        self.roles.as_ref().map(|r| r.config.network_id())
    }

    /// The role k3s should (re)deploy in now, if that changed: a first
    /// deployment, a promotion, a step-down, or a worker following a new
    /// primary. Call [`Self::role_deployed`] once it runs.
    pub fn role_to_deploy(&self) -> Option<Role> {
        let r = self.roles.as_ref()?;
        r.participant.as_ref()?.to_deploy(r.outcome.as_ref()?)
    }

    /// Records that k3s now runs in the role the last outcome gives this
    /// node; the role sticks from now on (see `docs/roles.md`).
    pub fn role_deployed(&mut self, now: Instant) {
        let clock = self.ledger.as_ref().clock();
        let Some(r) = self.roles.as_mut() else { return };
        let (Some(p), Some(o)) = (r.participant.as_mut(), r.outcome.as_ref()) else {
            return;
        };
        if p.deployed(o, clock).is_some() {
            r.next_run = now;
            r.deployment_news = true;
        }
    }

    /// Writes this node's role record (what the host persists) into `out`.
    pub fn role_record(&self, out: &mut [u8; MAX_RECORD_LEN]) -> Option<usize> {
        let r = self.roles.as_ref()?;
        let p = r.participant.as_ref()?;
        p.record().emit(p.network_id(), out).ok()
    }

    /// Runs the election if it is due.
    pub(crate) fn roles_timeout(&mut self, now: Instant) {
        let network_size = self.member_count + 1;
        let Some(r) = self.roles.as_mut() else { return };
        if now < r.poll_timeout() {
            return;
        }
        if r.participant.is_none() {
            let restored = r.restored.take();
            let p = Participant::new(
                self.id,
                r.config.network_id(),
                r.config.forced(),
                r.config.election(),
                restored.as_deref(),
                now,
            );
            // The config and the record were checked when they were given.
            r.participant = p.ok();
            r.record_written = Some(now);
        }
        let Some(p) = r.participant.as_mut() else { return };
        p.set_alive_interval(alive_interval(network_size));
        r.dirty = false;
        r.next_run = now + ELECTION_GAP;
        r.held_until = None;
        let (outcome, writes) = p.run(self.ledger.as_ref(), r.views.as_mut(), now);
        let role = outcome.role_of(&self.id);
        let role_changed = role != r.role;
        r.role = role;
        r.outcome = Some(outcome);
        let hold_until = r
            .record_written
            .map(|t| t + record_gap(network_size))
            .filter(|&t| now < t && !r.deployment_news);
        let mut wrote_record = false;
        let mut wrote = false;
        for w in writes.iter() {
            if w.bucket == ROLES {
                if let Some(t) = hold_until {
                    // The participant keeps the newer state; the run at
                    // `t` writes it (the ledger's copy still differs).
                    r.held_until = Some(t);
                    continue;
                }
                r.record_written = Some(now);
                r.deployment_news = false;
            }
            let Node { ledger, identity, .. } = self;
            match ledger
                .as_mut()
                .put(now, identity, w.bucket.as_bytes(), &w.key, w.value(), w.ttl_secs)
            {
                Ok(_) => {
                    wrote = true;
                    wrote_record |= w.bucket == ROLES;
                }
                Err(_) => self.stats.ledger_refused += 1,
            }
        }
        if wrote {
            self.process_changes(now, None);
        }
        if wrote_record {
            self.push_event(Event::RoleRecordChanged);
        }
        if role_changed {
            self.push_event(Event::RoleChanged(role));
        }
    }

    /// The primary of this node's network, as this node sees it.
    pub fn primary(&self) -> Option<NodeId> {
        self.election().and_then(|o| o.primary()).map(|m| m.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_record_gap_grows_with_the_network_up_to_a_second() {
        assert_eq!(record_gap(1), Duration::from_millis(5));
        assert_eq!(record_gap(3), Duration::from_millis(15));
        assert_eq!(record_gap(100), Duration::from_millis(500));
        assert_eq!(record_gap(200), RECORD_GAP_MAX);
        assert_eq!(record_gap(usize::MAX), RECORD_GAP_MAX);
    }

    #[test]
    fn every_node_meets_first() {
        let made = RoleConfig::new("kairos", None, ElectionConfig::DEFAULT).unwrap();
        assert_eq!(made.election().meet_first, crate::election::MEET_FIRST);
        assert_eq!(RoleConfig::default(), made, "the default is Kairos' own");
    }
}
