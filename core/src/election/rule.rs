//! The election rule: [`elect`] turns a [`View`] into the [`Outcome`] every
//! replica with the same view computes.
//!
//! In order (the reasons are in `docs/roles.md`):
//!
//! 1. **Forced roles win.** Without HA, if any member is forced to be a
//!    master, the forced masters are the masters (each a primary; more than
//!    one is a configuration conflict the operator made) and nothing is
//!    elected. A forced worker is never a master. With HA, forced masters
//!    are masters too, and the `cluster-init` primary is still elected
//!    (forced masters are proposed first).
//! 2. **Claims.** A member that recorded a primary deployment, and a
//!    candidate a quorum accepted in some epoch (`ballot.rs`), claim to be
//!    the primary. The best claim wins: the higher epoch, then a deployed
//!    one, then the older deployment (lower Lamport clock), then the lower
//!    node id. Every other deployed primary steps down.
//! 3. **No claim:** the election of the highest epoch voted in (at least 1;
//!    the next one if that epoch's result can only be a member that may not
//!    be master) is open: members promise and accept, and once
//!    `minimum_nodes` members are live, ballots are started and proposals
//!    made. [`Outcome::vote_for`] is a member's next step.
//! 4. **Dynamic roles**, without HA: a primary (not forced) gone longer than
//!    the timeout opens the election of the next epoch; until it is decided
//!    the gone primary stays the master. Without dynamic roles nobody is
//!    ever gone.
//! 5. **HA:** the primary is the only `cluster-init` master (there is no
//!    second primary election with HA); forced masters, then deployed
//!    servers (sticky; with dynamic roles not while gone), then the best
//!    live eligible members fill `ha_masters` seats once the primary has
//!    deployed.
//!
//! A member is *gone* when its advertisement is not live and the timeout
//! has passed since it was last seen (or since the replica started
//! watching, whichever is later). Everything else is a pure function of
//! the view: no order, clock or randomness enters.

use core::cmp::Reverse;

use heapless::Vec;

use super::ballot::{best_candidate, proposer, rank, step, tally, Election};
use super::record::{DeployedAs, Deployment, ForcedRole, Vote};
use super::view::{MemberView, View};
use super::{ElectionConfig, Role, MAX_MASTERS};
use crate::identity::NodeId;
use crate::time::{Duration, Instant};

/// A master in an [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Master {
    /// Its node id.
    pub id: NodeId,
    /// [`DeployedAs::Primary`] (starts the cluster) or
    /// [`DeployedAs::Server`] (joins the primary).
    pub kind: DeployedAs,
    /// Starts the cluster with `--cluster-init` (the HA primary).
    pub cluster_init: bool,
    /// Forced by its configuration.
    pub forced: bool,
    /// Has recorded a deployment in this role.
    pub deployed: bool,
}

/// Why no primary is settled yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Wait {
    /// Fewer live members than `minimum_nodes`.
    TooFewLive {
        /// Live members.
        live: u32,
        /// `minimum_nodes`.
        minimum: u32,
    },
    /// Ballots are under way.
    Voting {
        /// The election.
        epoch: u32,
        /// The highest ballot's round (0: none started yet).
        round: u32,
        /// Members that promised the highest ballot.
        promised: u32,
        /// The candidate accepted by the most members, if any.
        leader: Option<NodeId>,
        /// Its acceptances.
        accepted: u32,
        /// Promises or acceptances needed (a strict majority of members).
        quorum: u32,
    },
    /// No live member may become master (all forced workers).
    NoCandidate,
    /// This member started less than [`ElectionConfig::meet_first`] ago: it
    /// promises and accepts but starts no ballot and proposes nothing yet.
    Meeting,
}

/// How long a starting node only listens before it starts ballots or
/// proposes ([`ElectionConfig::meet_first`] of every node): members that boot together on a LAN hear each other's second
/// beacon a second after starting, and a member that counted a quorum
/// among the one or two it met first could be elected beside another
/// (the safety argument holds among members that know each other).
pub const MEET_FIRST: Duration = Duration::from_secs(2);

/// Where the election stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// The primary has deployed.
    Settled,
    /// A primary is chosen and should deploy now.
    Elected,
    /// No primary yet.
    Waiting(Wait),
    /// The primary is gone past the dynamic-roles timeout; its replacement
    /// is being elected (the gone primary stays listed until then).
    Replacing(Wait),
}

/// What the election decided, as every replica with the same view decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    masters: Vec<Master, MAX_MASTERS>,
    primary: Option<NodeId>,
    primary_deployed: bool,
    epoch: u32,
    status: Status,
    election: Option<Election>,
    recheck_at: Option<Instant>,
    overflow: bool,
}

impl Outcome {
    const fn waiting(wait: Wait) -> Self {
        Outcome {
            masters: Vec::new(),
            primary: None,
            primary_deployed: false,
            epoch: 0,
            status: Status::Waiting(wait),
            election: None,
            recheck_at: None,
            overflow: false,
        }
    }

    /// The masters: the one to join first (the primary, or with HA a live
    /// server when the primary is gone), then forced, sticky and newly
    /// chosen servers.
    pub fn masters(&self) -> &[Master] {
        &self.masters
    }

    /// The master workers and joining servers use (`K3S_URL`,
    /// `ip-master`), if any.
    pub fn primary(&self) -> Option<&Master> {
        self.masters.first()
    }

    /// The role of a member of the view. A master knows its role as soon as
    /// it is chosen; everyone else is a worker once the primary has
    /// deployed, and `None` before (with HA, seats are handed out only then,
    /// and a worker has nothing to join before).
    pub fn role_of(&self, id: &NodeId) -> Option<Role> {
        match self.master(id) {
            Some(m) => Some(Role::Master {
                cluster_init: m.cluster_init,
            }),
            None => self.primary_deployed.then_some(Role::Worker),
        }
    }

    /// The master entry of `id`, if it is one.
    pub fn master(&self, id: &NodeId) -> Option<&Master> {
        self.masters.iter().find(|m| m.id == *id)
    }

    /// Where the election stands.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The epoch of the primary (0 before the first).
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Whether an election is open (or its winner has not deployed yet):
    /// members should take their next step ([`Self::vote_for`]).
    pub fn voting(&self) -> bool {
        self.election.is_some()
    }

    /// The vote state `me` (a member of the view) should hold after its next
    /// step: promise the highest ballot, accept the highest proposal, start
    /// a ballot or propose when it is its turn. Its current state when no
    /// election is open.
    pub fn vote_for(&self, me: &MemberView) -> Option<Vote> {
        match &self.election {
            Some(el) => step(el, me),
            None => me.record.vote,
        }
    }

    /// Whether `m` runs a k3s server the outcome does not keep (a losing
    /// primary, a replaced one, or one whose forced role is now worker): it
    /// must leave its cluster and redeploy as [`Self::role_of`] says.
    pub fn steps_down(&self, m: &MemberView) -> bool {
        match m.record.deployment {
            Some(d) if d.role.is_master() && self.primary.is_some() => {
                self.master(&m.id).is_none_or(|x| x.kind != d.role)
            }
            _ => false,
        }
    }

    /// The deployment `id` records once k3s runs in the role the outcome
    /// gives it; `since` is the ledger's Lamport clock at that moment.
    pub fn deployment(&self, id: &NodeId, since: u64) -> Option<Deployment> {
        self.role_of(id)?;
        let role = self.master(id).map_or(DeployedAs::Worker, |m| m.kind);
        Some(Deployment {
            role,
            epoch: self.epoch,
            since,
        })
    }

    /// When time alone may change the outcome (a master becoming gone).
    pub fn recheck_at(&self) -> Option<Instant> {
        self.recheck_at
    }

    /// More masters than [`MAX_MASTERS`]: the list is cut.
    pub fn overflow(&self) -> bool {
        self.overflow
    }

    fn push(&mut self, m: Master) {
        if self.masters.iter().all(|x| x.id != m.id) && self.masters.push(m).is_err() {
            self.overflow = true;
        }
    }

    fn recheck(&mut self, at: Instant) {
        self.recheck_at = Some(self.recheck_at.map_or(at, |r| r.min(at)));
    }
}

/// A claim to be the primary.
#[derive(Debug, Clone, Copy)]
struct Claim {
    id: NodeId,
    epoch: u32,
    since: Option<u64>,
}

impl Claim {
    /// Lower wins: higher epoch, deployed, older, lower id.
    fn key(&self) -> (Reverse<u32>, bool, u64, NodeId) {
        (
            Reverse(self.epoch),
            self.since.is_none(),
            self.since.unwrap_or(0),
            self.id,
        )
    }
}

/// The best claim to be the primary.
fn best_claim(view: &View, config: &ElectionConfig) -> Option<Claim> {
    let dynamic = config.dynamic_roles.is_some();
    let mut best: Option<Claim> = None;
    let mut offer = |c: Claim| {
        if best.is_none_or(|b| c.key() < b.key()) {
            best = Some(c);
        }
    };
    for m in view.members {
        // With HA a primary whose cluster exists keeps its claim even when
        // forced to be a worker (it is not listed): no second cluster-init.
        let primary = m.record.deployment.filter(|d| d.role == DeployedAs::Primary);
        if let Some(d) = primary.filter(|_| config.ha() || m.record.forced != Some(ForcedRole::Worker)) {
            offer(Claim {
                id: m.id,
                epoch: d.epoch,
                since: Some(d.since),
            });
        }
    }
    // The winner of each epoch anyone votes in, each epoch counted once.
    for (i, m) in view.members.iter().enumerate() {
        let Some(v) = m.record.vote else { continue };
        let seen = view.members[..i]
            .iter()
            .any(|p| p.record.vote.is_some_and(|pv| pv.epoch == v.epoch));
        if seen {
            continue;
        }
        let Some(w) = tally(view, v.epoch).winner.map(|p| p.candidate) else {
            continue;
        };
        let wm = view.get(&w);
        if wm.is_some_and(|wm| !wm.eligible(dynamic)) {
            continue;
        }
        let since = wm
            .and_then(|wm| wm.record.deployment)
            .filter(|d| d.role == DeployedAs::Primary && d.epoch == v.epoch)
            .map(|d| d.since);
        offer(Claim {
            id: w,
            epoch: v.epoch,
            since,
        });
    }
    best
}

/// When `id` is (or will be) gone, or `None` while it is live or without
/// dynamic roles. A member never seen counts from when the replica started
/// watching.
fn gone_at(view: &View, id: &NodeId, config: &ElectionConfig) -> Option<Instant> {
    let timeout = config.dynamic_roles?;
    let m = view.get(id);
    if m.is_some_and(|m| m.live) {
        return None;
    }
    let seen = m.and_then(|m| m.last_seen).unwrap_or(view.observing_since);
    Some(seen.max(view.observing_since) + timeout)
}

/// Computes the outcome of `view` at `now`.
pub fn elect(view: &View, config: &ElectionConfig, now: Instant) -> Outcome {
    if !config.ha() && view.members.iter().any(|m| m.forced_master()) {
        return forced_primaries(view, config);
    }
    let dynamic = config.dynamic_roles.is_some();
    let top_epoch = view
        .members
        .iter()
        .filter_map(|m| m.record.vote)
        .map(|v| v.epoch)
        .max()
        .unwrap_or(1)
        .max(1);
    let Some(p) = best_claim(view, config) else {
        // An epoch whose only possible result is a member that may not be
        // master (its forced role changed) is void: elect in the next.
        let t = tally(view, top_epoch);
        let void = |c: Option<NodeId>| c.and_then(|c| view.get(&c)).is_some_and(|m| !m.eligible(dynamic));
        let void = void(t.winner.map(|w| w.candidate)) || void(t.constraint);
        let mut o = Outcome::waiting(Wait::NoCandidate);
        open(&mut o, view, config, top_epoch + void as u32, false, now);
        return o;
    };
    let mut o = Outcome::waiting(Wait::NoCandidate);
    o.primary = Some(p.id);
    o.primary_deployed = p.since.is_some();
    o.epoch = p.epoch;
    o.status = if p.since.is_some() {
        Status::Settled
    } else {
        Status::Elected
    };
    if p.since.is_none() {
        // Elected, not deployed yet: members keep accepting, so the
        // majority holds while new members join.
        o.election = Some(Election {
            tally: tally(view, p.epoch),
            best: None,
            proposer: None,
            owner_live: true,
            drive: false,
        });
    }
    let p_view = view.get(&p.id);
    let forced = p_view.is_some_and(|m| m.forced_master());
    let gone = match gone_at(view, &p.id, config).filter(|_| !forced) {
        Some(at) if now >= at => true,
        Some(at) => {
            o.recheck(at);
            false
        }
        None => false,
    };
    let primary = Master {
        id: p.id,
        kind: DeployedAs::Primary,
        cluster_init: config.ha(),
        forced,
        deployed: p.since.is_some(),
    };
    if !config.ha() {
        o.push(primary);
        if gone {
            open(&mut o, view, config, (p.epoch + 1).max(top_epoch), true, now);
        }
        return o;
    }
    // With HA a primary forced to be a worker keeps the claim, not the seat.
    let unseated = p_view.is_some_and(|m| m.record.forced == Some(ForcedRole::Worker));
    if !gone && !unseated {
        o.push(primary);
    }
    seat_servers(&mut o, view, config, now, p.since.is_some());
    o
}

/// Without HA, forced masters are the masters; none is elected.
fn forced_primaries(view: &View, config: &ElectionConfig) -> Outcome {
    let mut o = Outcome::waiting(Wait::NoCandidate);
    let deployed = |m: &MemberView| m.record.deployment.filter(|d| d.role == DeployedAs::Primary);
    for m in view.members.iter().filter(|m| m.forced_master()) {
        o.push(Master {
            id: m.id,
            kind: DeployedAs::Primary,
            cluster_init: false,
            forced: true,
            deployed: deployed(m).is_some(),
        });
    }
    o.masters.sort_unstable_by_key(|x| {
        let d = view.get(&x.id).and_then(deployed);
        (d.is_none(), d.map_or(0, |d| d.since), x.id)
    });
    let first = o.masters[0];
    o.primary = Some(first.id);
    o.primary_deployed = first.deployed;
    o.epoch = match view.get(&first.id).and_then(deployed) {
        Some(d) => d.epoch,
        None => best_claim(view, config).map_or(0, |c| c.epoch),
    };
    o.status = if first.deployed {
        Status::Settled
    } else {
        Status::Elected
    };
    o
}

/// Opens the election of `epoch`: what members do next, and why no
/// primary is chosen yet.
fn open(o: &mut Outcome, view: &View, config: &ElectionConfig, epoch: u32, replacing: bool, now: Instant) {
    let dynamic = config.dynamic_roles.is_some();
    let live = view.live();
    let t = tally(view, epoch);
    let best = best_candidate(view, dynamic);
    let enough = live >= config.minimum();
    let met_at = view.observing_since + config.meet_first;
    let meeting = now < met_at;
    if meeting {
        o.recheck(met_at);
    }
    o.election = Some(Election {
        tally: t,
        best,
        proposer: proposer(view),
        owner_live: t.highest.is_some_and(|h| view.get(&h.owner).is_some_and(|m| m.live)),
        drive: enough && !meeting && t.winner.is_none(),
    });
    let wait = if !enough {
        Wait::TooFewLive {
            live,
            minimum: config.minimum(),
        }
    } else if meeting && t.winner.is_none() {
        Wait::Meeting
    } else if best.is_none() && t.constraint.is_none() && t.proposal.is_none() {
        Wait::NoCandidate
    } else {
        Wait::Voting {
            epoch,
            round: t.max_round,
            promised: t.promisers,
            leader: t.leading.map(|(p, _)| p.candidate),
            accepted: t.leading.map_or(0, |(_, n)| n),
            quorum: t.quorum,
        }
    };
    o.status = if replacing {
        Status::Replacing(wait)
    } else {
        Status::Waiting(wait)
    };
}

/// HA: forced masters, sticky servers, then new servers up to
/// `ha_masters` (only once the primary has deployed: they join it).
fn seat_servers(o: &mut Outcome, view: &View, config: &ElectionConfig, now: Instant, primary_deployed: bool) {
    let dynamic = config.dynamic_roles.is_some();
    let server = |m: &MemberView| Master {
        id: m.id,
        kind: DeployedAs::Server,
        cluster_init: false,
        forced: m.forced_master(),
        deployed: m.record.deployment.is_some_and(|d| d.role == DeployedAs::Server),
    };
    let start = o.masters.len();
    for m in view.members.iter().filter(|m| m.forced_master()) {
        o.push(server(m));
    }
    o.masters[start..].sort_unstable_by_key(|x| x.id);
    let start = o.masters.len();
    for m in view.members {
        let sticky = m.record.deployment.is_some_and(|d| d.role == DeployedAs::Server)
            && m.record.forced != Some(ForcedRole::Worker)
            && Some(m.id) != o.primary;
        if !sticky {
            continue;
        }
        match gone_at(view, &m.id, config) {
            Some(at) if now >= at => continue,
            Some(at) => o.recheck(at),
            None => {}
        }
        o.push(server(m));
    }
    o.masters[start..].sort_unstable_by_key(|x| {
        let since = view.get(&x.id).and_then(|m| m.record.deployment).map_or(0, |d| d.since);
        (since, x.id)
    });
    if !primary_deployed {
        return;
    }
    while o.masters.len() < config.ha_masters as usize {
        let pick = view
            .members
            .iter()
            .filter(|m| m.live && m.eligible(dynamic) && Some(m.id) != o.primary && o.master(&m.id).is_none())
            .min_by_key(|m| rank(m));
        match pick {
            Some(m) => o.push(server(m)),
            None => break,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::record::{Ballot, Proposal, RoleRecord};
    use super::*;
    use crate::time::Duration;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn live(n: u8) -> MemberView {
        let mut m = MemberView::new(id(n));
        m.live = true;
        m.last_seen = Some(Instant::ZERO);
        m
    }

    /// Member `n` accepted candidate `c` in ballot `(round + 1, c)` of
    /// `epoch` (members given the same arguments accepted the same
    /// proposal).
    fn voting(n: u8, epoch: u32, round: u32, c: u8) -> MemberView {
        let ballot = Ballot {
            round: round + 1,
            owner: id(c),
        };
        let mut m = live(n);
        m.record.vote = Some(Vote {
            epoch,
            promised: ballot,
            accepted: Some(Proposal {
                ballot,
                candidate: id(c),
            }),
            proposal: None,
        });
        m
    }

    fn deployed(mut m: MemberView, role: DeployedAs, epoch: u32, since: u64) -> MemberView {
        m.record.deployment = Some(Deployment { role, epoch, since });
        m
    }

    fn forced(mut m: MemberView, f: ForcedRole) -> MemberView {
        m.record.forced = Some(f);
        m
    }

    fn run(ms: &[MemberView], c: &ElectionConfig, now: u64) -> Outcome {
        elect(&View::new(ms, Instant::ZERO), c, Instant::from_secs(now))
    }

    fn promised(o: &Outcome, m: &MemberView) -> Option<(u32, Ballot)> {
        o.vote_for(m).map(|v| (v.epoch, v.promised))
    }

    fn ballot(round: u32, owner: u8) -> Ballot {
        Ballot {
            round,
            owner: id(owner),
        }
    }

    const MASTER: Option<Role> = Some(Role::Master { cluster_init: false });
    const INIT: Option<Role> = Some(Role::Master { cluster_init: true });
    const WORKER: Option<Role> = Some(Role::Worker);

    /// A node that met one other member 1 s after starting starts no
    /// ballot until `meet_first` has passed, then the election runs.
    #[test]
    fn a_starting_member_meets_first() {
        let config = ElectionConfig::DEFAULT.with_meet_first(MEET_FIRST);
        let ms = [live(1), live(2)];
        let view = View::new(&ms, Instant::from_secs(10));
        let o = elect(&view, &config, Instant::from_secs(11));
        assert_eq!(o.status(), Status::Waiting(Wait::Meeting));
        assert_eq!(o.recheck_at(), Some(Instant::from_secs(12)));
        assert_eq!(o.vote_for(&ms[0]), ms[0].record.vote, "no ballot started while meeting");
        let o = elect(&view, &config, Instant::from_secs(12));
        assert_ne!(o.status(), Status::Waiting(Wait::Meeting));
        assert_ne!(o.vote_for(&ms[0]), ms[0].record.vote, "the lowest id starts a ballot");
    }

    #[test]
    fn waits_for_minimum_nodes() {
        let c = ElectionConfig::DEFAULT;
        let ms = [live(1), MemberView::new(id(2))];
        let o = run(&ms, &c, 0);
        assert_eq!(o.status(), Status::Waiting(Wait::TooFewLive { live: 1, minimum: 2 }));
        assert_eq!((o.vote_for(&ms[0]), o.role_of(&id(1)), o.primary()), (None, None, None));
        let o = run(&[live(1)], &ElectionConfig::new(1, 1, None).unwrap(), 0);
        assert_eq!(promised(&o, &live(1)), Some((1, ballot(1, 1))));
    }

    #[test]
    fn first_primary_needs_a_majority_then_deploys() {
        let c = ElectionConfig::DEFAULT;
        let ms = [live(3), live(2), live(4)];
        let o = run(&ms, &c, 0);
        assert!(matches!(
            o.status(),
            Status::Waiting(Wait::Voting {
                quorum: 2,
                round: 0,
                ..
            })
        ));
        // The lowest id starts a ballot; the others wait for it.
        assert_eq!(promised(&o, &ms[1]), Some((1, ballot(1, 2))));
        assert_eq!(o.vote_for(&ms[0]), None);
        // One acceptance of three: not yet.
        let ms = [voting(3, 1, 0, 2), live(2), live(4)];
        let o = run(&ms, &c, 0);
        assert_eq!(o.primary(), None);
        assert!(matches!(
            o.status(),
            Status::Waiting(Wait::Voting { leader: Some(l), accepted: 1, .. }) if l == id(2)
        ));
        // Two of three: elected; late members still accept it.
        let ms = [voting(3, 1, 0, 2), voting(2, 1, 0, 2), live(4)];
        let o = run(&ms, &c, 0);
        assert_eq!(o.status(), Status::Elected);
        assert_eq!((o.role_of(&id(2)), o.role_of(&id(4))), (MASTER, None));
        assert_eq!(o.vote_for(&ms[2]).unwrap().accepted.unwrap().candidate, id(2));
        assert_eq!(o.deployment(&id(2), 7).unwrap().role, DeployedAs::Primary);
        assert_eq!(o.deployment(&id(4), 7), None, "workers wait for the primary");
        // Deployed: settled, and it stays master whatever the votes say.
        let ms = [
            voting(3, 1, 0, 3),
            deployed(voting(2, 1, 0, 4), DeployedAs::Primary, 1, 7),
            live(4),
        ];
        let o = run(&ms, &c, 0);
        assert_eq!((o.status(), o.epoch(), o.voting()), (Status::Settled, 1, false));
        assert_eq!(o.primary().unwrap().id, id(2));
        assert_eq!(o.role_of(&id(4)), WORKER);
        assert_eq!(o.deployment(&id(4), 9).unwrap().role, DeployedAs::Worker);
    }

    #[test]
    fn forced_roles_win() {
        let c = ElectionConfig::DEFAULT;
        // A forced master beats an elected, deployed primary, which steps down.
        let ms = [
            deployed(voting(1, 1, 0, 1), DeployedAs::Primary, 1, 5),
            voting(2, 1, 0, 1),
            forced(live(3), ForcedRole::Master),
        ];
        let o = run(&ms, &c, 0);
        assert_eq!(o.masters().len(), 1);
        assert_eq!((o.role_of(&id(3)), o.role_of(&id(1))), (MASTER, None));
        assert!(o.steps_down(&ms[0]) && !o.steps_down(&ms[2]));
        assert_eq!((o.status(), o.voting()), (Status::Elected, false));
        // A forced worker is never master, not by votes, not by a
        // deployment: its epoch is void and the next one is elected.
        let ms = [
            forced(
                deployed(voting(1, 1, 0, 1), DeployedAs::Primary, 1, 5),
                ForcedRole::Worker,
            ),
            voting(2, 1, 0, 1),
            live(3),
        ];
        let o = run(&ms, &c, 0);
        assert_eq!(o.primary(), None);
        assert!(matches!(o.status(), Status::Waiting(Wait::Voting { epoch: 2, .. })));
        assert_eq!(promised(&o, &ms[0]), Some((2, ballot(1, 1))));
        let all_workers = [forced(live(1), ForcedRole::Worker), forced(live(2), ForcedRole::Worker)];
        assert_eq!(run(&all_workers, &c, 0).status(), Status::Waiting(Wait::NoCandidate));
        // Two forced masters without HA: both masters (the operator's
        // choice); the deployed one is the primary.
        let ms = [
            forced(live(1), ForcedRole::Master),
            forced(deployed(live(2), DeployedAs::Primary, 0, 9), ForcedRole::Master),
        ];
        let o = run(&ms, &c, 0);
        assert_eq!(o.masters().len(), 2);
        assert_eq!((o.primary().unwrap().id, o.status()), (id(2), Status::Settled));
    }

    #[test]
    fn conflicting_primaries_resolve_to_one() {
        let c = ElectionConfig::DEFAULT;
        // Two halves that never met, each with its deployed primary.
        let a = deployed(voting(1, 1, 0, 1), DeployedAs::Primary, 1, 40);
        let b = deployed(voting(9, 1, 0, 9), DeployedAs::Primary, 1, 30);
        let ms = [a, voting(2, 1, 0, 1), b, voting(8, 1, 0, 9)];
        let o = run(&ms, &c, 0);
        assert_eq!(o.masters().len(), 1);
        assert_eq!(o.primary().unwrap().id, id(9), "the older deployment wins");
        assert!(o.steps_down(&a) && !o.steps_down(&b));
        // Same clock: the lower node id.
        let a = deployed(live(1), DeployedAs::Primary, 1, 30);
        let o = run(&[a, b], &c, 0);
        assert_eq!(o.primary().unwrap().id, id(1));
        // A later epoch beats both.
        let z = deployed(live(5), DeployedAs::Primary, 2, 99);
        let o = run(&[a, b, z], &c, 0);
        assert_eq!((o.primary().unwrap().id, o.epoch()), (id(5), 2));
    }

    #[test]
    fn a_dead_master_is_replaced_only_with_dynamic_roles() {
        let mut p = deployed(voting(1, 1, 0, 1), DeployedAs::Primary, 1, 10);
        p.live = false;
        p.last_seen = Some(Instant::from_secs(100));
        let ms = [p, voting(2, 1, 0, 1), voting(3, 1, 0, 1)];
        let fixed = ElectionConfig::DEFAULT;
        let o = run(&ms, &fixed, 1_000_000);
        assert_eq!(
            (o.primary().unwrap().id, o.status(), o.voting()),
            (id(1), Status::Settled, false)
        );
        let dynamic = ElectionConfig::new(2, 1, Some(Duration::from_secs(300))).unwrap();
        // Within the timeout: still the master; look again when it runs out.
        let o = run(&ms, &dynamic, 200);
        assert_eq!(
            (o.status(), o.recheck_at()),
            (Status::Settled, Some(Instant::from_secs(400)))
        );
        // Past it: the next epoch is elected among the live members.
        let o = run(&ms, &dynamic, 400);
        assert!(matches!(o.status(), Status::Replacing(Wait::Voting { epoch: 2, .. })));
        assert_eq!(o.primary().unwrap().id, id(1));
        assert_eq!(promised(&o, &ms[1]), Some((2, ballot(1, 2))));
        // Replaced: the new primary wins, the old one steps down when back.
        let mut back = p;
        back.live = true;
        let ms = [back, voting(2, 2, 0, 2), voting(3, 2, 0, 2)];
        let o = run(&ms, &dynamic, 500);
        assert_eq!(
            (o.primary().unwrap().id, o.epoch(), o.status()),
            (id(2), 2, Status::Elected)
        );
        assert!(o.steps_down(&back));
        assert_eq!(o.role_of(&id(1)), None, "a worker once the new primary deployed");
        // A forced master is never replaced.
        let ms = [forced(p, ForcedRole::Master), live(2), live(3)];
        let o = run(&ms, &dynamic, 10_000);
        assert_eq!((o.primary().unwrap().id, o.voting()), (id(1), false));
        // A replica that just started counts absence from its start.
        let mut never = p;
        never.last_seen = None;
        let ms = [never, live(2), live(3)];
        let o = elect(
            &View::new(&ms, Instant::from_secs(1000)),
            &dynamic,
            Instant::from_secs(1200),
        );
        assert_eq!(
            (o.status(), o.recheck_at()),
            (Status::Settled, Some(Instant::from_secs(1300)))
        );
    }

    #[test]
    fn ha_has_one_cluster_init_and_fills_seats() {
        let c = ElectionConfig::new(2, 3, None).unwrap();
        // Before the primary deployed, nobody else is seated.
        let ms = [
            voting(1, 1, 0, 1),
            voting(2, 1, 0, 1),
            voting(3, 1, 0, 1),
            live(4),
            live(5),
        ];
        let o = run(&ms, &c, 0);
        assert_eq!(
            (o.status(), o.masters().len(), o.role_of(&id(1))),
            (Status::Elected, 1, INIT)
        );
        // Deployed: two more seats, by rank; a deployed worker stays one.
        let p = deployed(voting(1, 1, 0, 1), DeployedAs::Primary, 1, 3);
        let w = deployed(live(2), DeployedAs::Worker, 1, 4);
        let ms = [p, w, live(3), live(4), live(5)];
        let o = run(&ms, &c, 0);
        let ids: std::vec::Vec<NodeId> = o.masters().iter().map(|m| m.id).collect();
        assert_eq!(ids, [id(1), id(3), id(4)]);
        assert_eq!(
            (o.role_of(&id(3)), o.role_of(&id(2)), o.role_of(&id(5))),
            (MASTER, WORKER, WORKER)
        );
        assert_eq!(o.masters().iter().filter(|m| m.cluster_init).count(), 1);
        assert_eq!(o.deployment(&id(3), 8).unwrap().role, DeployedAs::Server);
        // A forced master takes a seat; sticky servers keep theirs.
        let s = deployed(live(5), DeployedAs::Server, 1, 6);
        let f = forced(live(4), ForcedRole::Master);
        let ms = [p, w, live(3), f, s];
        let o = run(&ms, &c, 0);
        let ids: std::vec::Vec<NodeId> = o.masters().iter().map(|m| m.id).collect();
        assert_eq!(ids, [id(1), id(4), id(5)]);
        // The primary restarted (same record): still the cluster-init
        // master, and nobody else is ever marked cluster-init.
        let mut down = p;
        down.live = false;
        let o = run(&[down, w, live(3), f, s], &c, 0);
        assert_eq!((o.role_of(&id(1)), o.status()), (INIT, Status::Settled));
        let dynamic = ElectionConfig::new(2, 3, Some(Duration::from_secs(60))).unwrap();
        let o = run(&[down, w, live(3), f, s], &dynamic, 1000);
        assert_eq!(o.role_of(&id(1)), WORKER, "gone: its seat is refilled");
        assert!(o.masters().iter().all(|m| !m.cluster_init));
        assert_eq!(o.masters().len(), 3);
        assert_eq!(o.role_of(&id(2)), MASTER, "dynamic roles promote a worker");
        // A primary forced to be a worker leaves its seat; nobody else
        // becomes cluster-init.
        let o = run(&[forced(p, ForcedRole::Worker), w, live(3), f, s], &c, 0);
        assert_eq!(o.role_of(&id(1)), WORKER);
        assert!(o.masters().iter().all(|m| !m.cluster_init));
        assert!(o.steps_down(&forced(p, ForcedRole::Worker)));
    }

    #[test]
    fn steps_down_and_deployment_need_a_primary() {
        let c = ElectionConfig::DEFAULT;
        let o = run(&[live(1), live(2)], &c, 0);
        let d = deployed(live(3), DeployedAs::Server, 1, 1);
        assert!(!o.steps_down(&d));
        assert_eq!(o.deployment(&id(1), 0), None);
        let r = RoleRecord {
            vote: Some(Vote::new(9)),
            ..RoleRecord::default()
        };
        let mut ahead = live(2);
        ahead.record = r;
        assert_eq!(o.vote_for(&ahead), r.vote, "a later epoch is never taken back");
    }
}
