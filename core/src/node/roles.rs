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

/// The shortest gap between two election runs caused by ledger changes.
pub const ELECTION_GAP: Duration = Duration::from_millis(250);

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
        let election = ElectionConfig::new(election.minimum_nodes, election.ha_masters, election.dynamic_roles)?;
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
            election: ElectionConfig::DEFAULT,
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
        }
    }

    /// When the election wants to run next.
    pub(crate) fn poll_timeout(&self) -> Instant {
        let asked = self.participant.as_ref().and_then(|p| p.poll_timeout());
        let mut t = asked.unwrap_or(Instant::FAR_FUTURE);
        if self.dirty || self.participant.is_none() {
            t = t.min(self.next_run);
        }
        t
    }

    /// A change of another member's role record or advertisement.
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }
}

impl<P, R, V, S, L, W, const E: usize, const A: usize> Node<P, R, V, S, L, W, E, A>
where
    P: CryptoProvider,
    R: RngCore + CryptoRng,
    V: SignatureVerifier,
    S: AsMut<[MemberSlot<P>]> + AsRef<[MemberSlot<P>]>,
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
        }
        let Some(p) = r.participant.as_mut() else { return };
        p.set_alive_interval(alive_interval(network_size));
        r.dirty = false;
        r.next_run = now + ELECTION_GAP;
        let (outcome, writes) = p.run(self.ledger.as_ref(), r.views.as_mut(), now);
        let role = outcome.role_of(&self.id);
        let role_changed = role != r.role;
        r.role = role;
        r.outcome = Some(outcome);
        let mut wrote_record = false;
        for w in writes.iter() {
            let Node { ledger, identity, .. } = self;
            match ledger
                .as_mut()
                .put(now, identity, w.bucket.as_bytes(), &w.key, w.value(), w.ttl_secs)
            {
                Ok(_) => wrote_record |= w.bucket == ROLES,
                Err(_) => self.stats.ledger_refused += 1,
            }
        }
        if !writes.is_empty() {
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
