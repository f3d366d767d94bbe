//! The election of one epoch's primary: single-decree Paxos, run over the
//! members' role records.
//!
//! Each member's [`Vote`] is its Paxos state, and its record in the ledger
//! is every message it sends: other members read it, in any order, late or
//! never, exactly as Paxos lets messages travel.
//!
//! - **Starting a ballot.** A member starts ballot `(round, itself)`, one
//!   round above every round it has seen, by setting its own `promised` to
//!   it (its record is the *prepare*). Who starts: the lowest-id live member
//!   of a view, when there is no ballot yet or the owner of the highest
//!   ballot is not live. Two members start ballots only while their views
//!   disagree; the higher ballot wins the promises and the other waits.
//! - **Promising and accepting.** Every member promises the highest ballot
//!   it sees (`promised` only grows) and accepts the highest proposal whose
//!   ballot is not below its promise. Its record then reports, with the
//!   promise, what it last accepted.
//! - **Proposing.** The owner of the highest ballot, once a *quorum* (a
//!   strict majority of the members the view holds) has promised exactly
//!   that ballot, proposes: the candidate of the highest-ballot acceptance
//!   among those promisers if there is one (it may already be elected),
//!   else the best live eligible member (forced masters first, then the
//!   lowest node id). It accepts its own proposal.
//! - **Elected**: a quorum has accepted the same proposal. Members keep
//!   accepting later proposals (always for the same candidate, by Paxos'
//!   argument), so the majority holds while new members join.
//!
//! Paxos' argument carries over unchanged as long as quorums intersect:
//! in one epoch no two candidates are ever elected provided every member
//! that promises or accepts is known (its record is held) by every member
//! that counts a quorum. A connected quorum of live members always
//! finishes: a ballot whose owner vanished is superseded once its
//! advertisement expires.
//!
//! This module counts and steps one member; it never decides who is master
//! (that is `rule.rs`).

use super::record::{Ballot, Proposal, Vote};
use super::view::{MemberView, View};
use crate::identity::NodeId;

/// The count of one epoch in one view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// The epoch counted.
    pub epoch: u32,
    /// A strict majority of the members held.
    pub quorum: u32,
    /// The highest round of any ballot seen (0: none).
    pub max_round: u32,
    /// The highest ballot promised.
    pub highest: Option<Ballot>,
    /// Members that promised exactly `highest`.
    pub promisers: u32,
    /// The candidate of the highest-ballot acceptance among them: what the
    /// owner of `highest` must propose.
    pub constraint: Option<NodeId>,
    /// The highest proposal seen (made, or accepted by someone).
    pub proposal: Option<Proposal>,
    /// A proposal a quorum accepted.
    pub winner: Option<Proposal>,
    /// The proposal with the most acceptances, and their number.
    pub leading: Option<(Proposal, u32)>,
}

/// What a member needs to take its next step in an open election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Election {
    /// The count.
    pub tally: Tally,
    /// The best live eligible candidate.
    pub best: Option<NodeId>,
    /// The member that should start a ballot: the lowest-id live member.
    pub proposer: Option<NodeId>,
    /// The owner of the highest ballot is live.
    pub owner_live: bool,
    /// Ballots may be started and proposals made (enough live members and
    /// nobody elected yet); otherwise members only promise and accept.
    pub drive: bool,
}

/// A member's rank as a candidate: lower is better (forced masters first,
/// then node id).
pub(crate) fn rank(m: &MemberView) -> (bool, NodeId) {
    (!m.forced_master(), m.id)
}

/// The best live member that may become master, by rank.
pub(crate) fn best_candidate(view: &View, dynamic: bool) -> Option<NodeId> {
    view.members
        .iter()
        .filter(|m| m.live && m.eligible(dynamic))
        .min_by_key(|m| rank(m))
        .map(|m| m.id)
}

/// Counts the votes of `epoch` in `view`.
pub(crate) fn tally(view: &View, epoch: u32) -> Tally {
    let quorum = view.total() / 2 + 1;
    let votes = || {
        view.members
            .iter()
            .filter_map(|m| m.record.vote)
            .filter(|v| v.epoch == epoch)
    };
    let highest = votes().map(|v| v.promised).filter(|b| b.round > 0).max();
    // Ties between proposals of one ballot (never made by a correct owner)
    // go to the higher candidate id, so no order of members matters.
    let key = |p: Proposal| (p.ballot, p.candidate);
    let later = |a: Option<Proposal>, b: Option<Proposal>| match (a, b) {
        (Some(x), Some(y)) if key(y) > key(x) => Some(y),
        (None, y) => y,
        (x, _) => x,
    };
    let mut t = Tally {
        epoch,
        quorum,
        max_round: highest.map_or(0, |b| b.round),
        highest,
        promisers: 0,
        constraint: None,
        proposal: None,
        winner: None,
        leading: None,
    };
    let mut constraint: Option<Proposal> = None;
    for v in votes() {
        t.proposal = later(later(t.proposal, v.proposal), v.accepted);
        if Some(v.promised) == highest {
            t.promisers += 1;
            constraint = later(constraint, v.accepted);
        }
    }
    t.constraint = constraint.map(|p| p.candidate);
    // Acceptances, each distinct proposal counted once (at its first
    // acceptor), with the count of all acceptors.
    let accepted = |m: &MemberView| m.record.vote.filter(|v| v.epoch == epoch).and_then(|v| v.accepted);
    for (i, m) in view.members.iter().enumerate() {
        let Some(p) = accepted(m) else { continue };
        if view.members[..i].iter().any(|q| accepted(q) == Some(p)) {
            continue;
        }
        let n = view.members.iter().filter(|q| accepted(q) == Some(p)).count() as u32;
        if n >= quorum {
            t.winner = Some(p);
        }
        if t.leading.is_none_or(|(lp, ln)| (n, key(p)) > (ln, key(lp))) {
            t.leading = Some((p, n));
        }
    }
    t
}

/// The state `me` should hold after its next step in `el`.
pub(crate) fn step(el: &Election, me: &MemberView) -> Option<Vote> {
    let t = &el.tally;
    let mut v = match me.record.vote {
        Some(v) if v.epoch > t.epoch => return Some(v),
        Some(v) if v.epoch == t.epoch => v,
        _ => Vote::new(t.epoch),
    };
    // Accept the highest proposal not below the promise, then promise the
    // highest ballot.
    if let Some(p) = t.proposal {
        if p.ballot >= v.promised && v.accepted.is_none_or(|a| a.ballot < p.ballot) {
            v.promised = p.ballot;
            v.accepted = Some(p);
        }
    }
    if let Some(h) = t.highest {
        v.promised = v.promised.max(h);
    }
    if el.drive {
        let owns_highest = v.promised.owner == me.id && Some(v.promised) == t.highest;
        if owns_highest {
            let proposed = v.proposal.is_some_and(|p| p.ballot == v.promised);
            if let Some(c) = t
                .constraint
                .or(el.best)
                .filter(|_| !proposed && t.promisers >= t.quorum)
            {
                let p = Proposal {
                    ballot: v.promised,
                    candidate: c,
                };
                v.proposal = Some(p);
                v.accepted = Some(p);
            }
        } else if el.proposer == Some(me.id) && (t.highest.is_none() || !el.owner_live) {
            v.promised = Ballot {
                round: t.max_round.checked_add(1)?,
                owner: me.id,
            };
        }
    }
    // Nothing to say yet in a new epoch: keep the old record as it is.
    if v == Vote::new(t.epoch) && me.record.vote.is_none_or(|old| old.epoch != t.epoch) {
        return me.record.vote;
    }
    Some(v)
}

/// The member that starts ballots: the lowest-id live member.
pub(crate) fn proposer(view: &View) -> Option<NodeId> {
    view.members.iter().filter(|m| m.live).map(|m| m.id).min()
}

#[cfg(test)]
mod tests {
    use super::super::record::ForcedRole;
    use super::*;
    use crate::time::Instant;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn ballot(round: u32, owner: u8) -> Ballot {
        Ballot {
            round,
            owner: id(owner),
        }
    }

    fn prop(round: u32, owner: u8, c: u8) -> Proposal {
        Proposal {
            ballot: ballot(round, owner),
            candidate: id(c),
        }
    }

    fn member(n: u8, promised: Option<(u32, u8)>, accepted: Option<Proposal>) -> MemberView {
        let mut m = MemberView::new(id(n));
        m.live = true;
        m.record.vote = promised.map(|(r, o)| Vote {
            epoch: 1,
            promised: ballot(r, o),
            accepted,
            proposal: None,
        });
        m
    }

    fn election(view: &View) -> Election {
        let tally = tally(view, 1);
        Election {
            tally,
            best: best_candidate(view, false),
            proposer: proposer(view),
            owner_live: tally
                .highest
                .is_some_and(|h| view.get(&h.owner).is_some_and(|m| m.live)),
            drive: tally.winner.is_none(),
        }
    }

    /// Every member steps once, in order, each seeing the others' new state.
    fn settle(ms: &mut [MemberView]) {
        for i in 0..ms.len() {
            let el = election(&View::new(ms, Instant::ZERO));
            ms[i].record.vote = step(&el, &ms[i]);
        }
    }

    #[test]
    fn three_members_elect_the_best_in_three_steps() {
        let mut ms = [member(3, None, None), member(1, None, None), member(2, None, None)];
        // 1 starts ballot (1, 1); the others promise it; 1 proposes itself.
        settle(&mut ms);
        assert_eq!(ms[1].record.vote.unwrap().promised, ballot(1, 1));
        settle(&mut ms);
        let t = tally(&View::new(&ms, Instant::ZERO), 1);
        assert_eq!(t.promisers, 3);
        assert_eq!(ms[1].record.vote.unwrap().proposal, Some(prop(1, 1, 1)));
        settle(&mut ms);
        let t = tally(&View::new(&ms, Instant::ZERO), 1);
        assert_eq!((t.winner, t.leading), (Some(prop(1, 1, 1)), Some((prop(1, 1, 1), 3))));
    }

    #[test]
    fn a_possibly_elected_candidate_is_proposed_again() {
        // Ballot (1, 9) got 5 accepted by two of five before its owner
        // vanished; 1 owns the new ballot (2, 1), promised by 1, 2 and 4:
        // it must propose 5 (maybe elected already), not the best member.
        let ms = [
            member(1, Some((2, 1)), None),
            member(2, Some((2, 1)), Some(prop(1, 9, 5))),
            member(4, Some((2, 1)), None),
            member(5, Some((1, 9)), Some(prop(1, 9, 5))),
            member(9, Some((1, 9)), None),
        ];
        let el = election(&View::new(&ms, Instant::ZERO));
        let t = el.tally;
        assert_eq!(
            (t.highest, t.promisers, t.constraint),
            (Some(ballot(2, 1)), 3, Some(id(5)))
        );
        assert_eq!((t.winner, t.leading), (None, Some((prop(1, 9, 5), 2))));
        let v = step(&el, &ms[0]).unwrap();
        assert_eq!(v.proposal, Some(prop(2, 1, 5)));
        // It does not accept the old proposal: it promised a higher ballot.
        assert_eq!(v.accepted, Some(prop(2, 1, 5)));
        // A member that promised (1, 9) only accepts (1, 9)'s proposal,
        // then promises (2, 1).
        let v = step(&el, &ms[4]).unwrap();
        assert_eq!((v.promised, v.accepted), (ballot(2, 1), Some(prop(1, 9, 5))));
    }

    #[test]
    fn a_minority_never_elects_and_a_live_owner_is_waited_for() {
        // 2 of 5 members: promises never reach a quorum of 3.
        let mut ms = [
            member(1, None, None),
            member(2, None, None),
            member(3, None, None),
            member(4, None, None),
            member(5, None, None),
        ];
        for m in &mut ms[2..] {
            m.live = false;
        }
        for _ in 0..5 {
            for i in 0..2 {
                let el = election(&View::new(&ms, Instant::ZERO));
                ms[i].record.vote = step(&el, &ms[i]);
            }
        }
        let t = tally(&View::new(&ms, Instant::ZERO), 1);
        assert_eq!((t.highest, t.promisers, t.proposal), (Some(ballot(1, 1)), 2, None));
        // 2 does not start a ballot of its own while 1 (live) owns one.
        assert_eq!(ms[1].record.vote.unwrap().promised, ballot(1, 1));
    }

    #[test]
    fn accept_respects_the_promise() {
        let mut m = member(4, Some((5, 2)), None);
        m.record.vote.as_mut().unwrap().epoch = 1;
        let mut el = election(&View::new(core::slice::from_ref(&m), Instant::ZERO));
        el.tally.proposal = Some(prop(3, 9, 9));
        el.drive = false;
        let v = step(&el, &m).unwrap();
        assert_eq!((v.promised, v.accepted), (ballot(5, 2), None));
        el.tally.proposal = Some(prop(5, 2, 7));
        let v = step(&el, &m).unwrap();
        assert_eq!(v.accepted, Some(prop(5, 2, 7)));
        // A later epoch's state is never taken back.
        m.record.vote.as_mut().unwrap().epoch = 2;
        assert_eq!(step(&el, &m), m.record.vote);
    }

    #[test]
    fn forced_masters_are_proposed_first() {
        let mut ms = [member(1, None, None), member(2, None, None), member(9, None, None)];
        ms[2].record.forced = Some(ForcedRole::Master);
        ms[0].record.forced = Some(ForcedRole::Worker);
        let v = View::new(&ms, Instant::ZERO);
        assert_eq!(best_candidate(&v, false), Some(id(9)));
        // The proposer is the lowest id, whatever its role.
        assert_eq!(proposer(&v), Some(id(1)));
    }
}
