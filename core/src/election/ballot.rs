//! Counting the votes of one epoch, and what a member should vote.
//!
//! Votes are `(epoch, round, candidate)`; a member holds one vote at a time
//! and never changes it within a round. For an epoch, a view looks only at
//! the highest round anyone has reached:
//!
//! - the **quorum** is a strict majority of the members the view holds,
//!   `total / 2 + 1`;
//! - a candidate with a quorum of votes in that round is the round's
//!   **winner**;
//! - the round is **dead** when no candidate can reach a quorum in it any
//!   more: the most votes any candidate has, plus every member without a
//!   vote in this round, is below the quorum. Only then does anyone vote in
//!   the next round, so a round that has (or may still get) a winner is
//!   never left. Votes for a member the view knows is not eligible (forced
//!   worker) cannot help anyone and count as lost.
//!
//! What to vote ([`ballot`]): in a dead round, the best live eligible member
//! in the next round; otherwise, in the current round, the winner if there
//! is one, else the live eligible candidate with the most votes (so late
//! voters join the leader instead of splitting the vote), else the best
//! live eligible member. *Best* is by rank: forced masters first, then the
//! lowest node id.
//!
//! This module counts; it never decides who is master (that is `rule.rs`).

use core::cmp::Reverse;

use super::record::Vote;
use super::view::{MemberView, View};
use crate::identity::NodeId;

/// The vote a member should hold now: cast it if it has no vote in this
/// epoch and round yet (see [`super::Outcome::vote_for`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ballot {
    /// The election.
    pub epoch: u32,
    /// The round to vote in.
    pub round: u32,
    /// Who to vote for.
    pub candidate: NodeId,
}

impl Ballot {
    /// The vote this ballot asks for.
    pub fn vote(&self) -> Vote {
        Vote {
            epoch: self.epoch,
            round: self.round,
            candidate: self.candidate,
        }
    }
}

/// The count of one epoch in one view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    /// The epoch counted.
    pub epoch: u32,
    /// The highest round with a vote (0 when nobody voted).
    pub round: u32,
    /// Votes needed: a strict majority of the members held.
    pub quorum: u32,
    /// The candidate with a quorum in `round`, if any (and not known to be
    /// ineligible).
    pub winner: Option<NodeId>,
    /// The live eligible candidate with the most votes in `round`, and its
    /// votes.
    pub leader: Option<(NodeId, u32)>,
    /// No candidate can reach the quorum in `round` any more.
    pub dead: bool,
}

/// A member's rank: lower is better (forced masters first, then node id).
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
pub(crate) fn tally(view: &View, epoch: u32, dynamic: bool) -> Tally {
    let total = view.total();
    let quorum = total / 2 + 1;
    let round = view
        .members
        .iter()
        .filter_map(|m| m.record.vote)
        .filter(|v| v.epoch == epoch)
        .map(|v| v.round)
        .max();
    let Some(round) = round else {
        return Tally {
            epoch,
            round: 0,
            quorum,
            winner: None,
            leader: None,
            dead: false,
        };
    };
    let in_round = |m: &MemberView| m.record.vote.filter(|v| (v.epoch, v.round) == (epoch, round));
    let mut voted = 0;
    let mut top = 0;
    let mut winner = None;
    let mut leader: Option<(NodeId, u32, (bool, NodeId))> = None;
    for (i, m) in view.members.iter().enumerate() {
        let Some(v) = in_round(m) else { continue };
        voted += 1;
        let c = v.candidate;
        // Count each candidate once, at its first voter.
        if view.members[..i]
            .iter()
            .any(|p| in_round(p).is_some_and(|pv| pv.candidate == c))
        {
            continue;
        }
        let n = view
            .members
            .iter()
            .filter(|p| in_round(p).is_some_and(|pv| pv.candidate == c))
            .count() as u32;
        let known = view.get(&c);
        if known.is_some_and(|k| !k.eligible(dynamic)) {
            continue;
        }
        top = top.max(n);
        if n >= quorum {
            winner = Some(c);
        }
        if let Some(k) = known.filter(|k| k.live) {
            let key = rank(k);
            if leader.is_none_or(|(_, ln, lk)| (Reverse(n), key) < (Reverse(ln), lk)) {
                leader = Some((c, n, key));
            }
        }
    }
    let undecided = total.saturating_sub(voted);
    Tally {
        epoch,
        round,
        quorum,
        winner,
        leader: leader.map(|(c, n, _)| (c, n)),
        dead: winner.is_none() && top + undecided < quorum,
    }
}

/// What to vote in the election `t` counts, if anything can be voted.
pub(crate) fn ballot(view: &View, t: &Tally, dynamic: bool) -> Option<Ballot> {
    let (round, candidate) = if t.dead {
        (t.round.checked_add(1)?, best_candidate(view, dynamic)?)
    } else {
        let c = t
            .winner
            .or(t.leader.map(|(c, _)| c))
            .or_else(|| best_candidate(view, dynamic))?;
        (t.round, c)
    };
    Some(Ballot {
        epoch: t.epoch,
        round,
        candidate,
    })
}

#[cfg(test)]
mod tests {
    use super::super::record::ForcedRole;
    use super::*;
    use crate::time::Instant;

    fn id(n: u8) -> NodeId {
        NodeId([n; 16])
    }

    fn member(n: u8, live: bool, vote: Option<(u32, u32, u8)>) -> MemberView {
        let mut m = MemberView::new(id(n));
        m.live = live;
        m.record.vote = vote.map(|(epoch, round, c)| Vote {
            epoch,
            round,
            candidate: id(c),
        });
        m
    }

    #[test]
    fn no_votes_yet() {
        let ms = [member(3, true, None), member(1, false, None), member(2, true, None)];
        let v = View::new(&ms, Instant::ZERO);
        let t = tally(&v, 1, false);
        assert_eq!((t.round, t.quorum, t.winner, t.dead), (0, 2, None, false));
        // The best live member: 1 is not live.
        let b = ballot(&v, &t, false).unwrap();
        assert_eq!((b.epoch, b.round, b.candidate), (1, 0, id(2)));
    }

    #[test]
    fn majority_wins_and_late_voters_follow() {
        let ms = [
            member(1, true, Some((1, 0, 5))),
            member(2, true, Some((1, 0, 5))),
            member(3, true, Some((1, 0, 5))),
            member(4, true, Some((1, 0, 1))),
            member(5, true, None),
        ];
        let v = View::new(&ms, Instant::ZERO);
        let t = tally(&v, 1, false);
        assert_eq!(
            (t.quorum, t.winner, t.leader, t.dead),
            (3, Some(id(5)), Some((id(5), 3)), false)
        );
        assert_eq!(ballot(&v, &t, false).unwrap().candidate, id(5));
        // Without a majority, the leader still draws the late vote.
        let ms = [ms[0], ms[1], ms[3], ms[4], member(6, true, None), member(7, true, None)];
        let v = View::new(&ms, Instant::ZERO);
        let t = tally(&v, 1, false);
        assert_eq!(
            (t.quorum, t.winner, t.leader, t.dead),
            (4, None, Some((id(5), 2)), false)
        );
        assert_eq!(ballot(&v, &t, false).unwrap().candidate, id(5));
        // Votes of another epoch do not count.
        assert_eq!(tally(&v, 2, false).round, 0);
    }

    #[test]
    fn a_split_round_dies_only_when_no_one_can_win() {
        // 4 members, 2 against 2: nobody can reach 3.
        let mut ms = [
            member(1, true, Some((1, 0, 1))),
            member(2, true, Some((1, 0, 1))),
            member(3, true, Some((1, 0, 3))),
            member(4, true, Some((1, 0, 3))),
        ];
        let t = tally(&View::new(&ms, Instant::ZERO), 1, false);
        assert!(t.dead && t.winner.is_none());
        let b = ballot(&View::new(&ms, Instant::ZERO), &t, false).unwrap();
        assert_eq!((b.round, b.candidate), (1, id(1)));
        // One member has not voted yet: 1 could still reach 3.
        ms[3].record.vote = None;
        let t = tally(&View::new(&ms, Instant::ZERO), 1, false);
        assert!(!t.dead);
        // An unlisted member may vote too.
        ms[3].record.vote = ms[2].record.vote;
        let v = View {
            members: &ms,
            unlisted: 1,
            observing_since: Instant::ZERO,
        };
        let t = tally(&v, 1, false);
        assert_eq!(t.quorum, 3);
        assert!(!t.dead);
        // A member that moved on to round 1 left round 0 open for nobody;
        // only round 1 is looked at.
        ms[0].record.vote = Some(Vote {
            epoch: 1,
            round: 1,
            candidate: id(2),
        });
        let t = tally(&View::new(&ms, Instant::ZERO), 1, false);
        assert_eq!((t.round, t.leader, t.dead), (1, Some((id(2), 1)), false));
    }

    #[test]
    fn votes_for_forced_workers_are_lost() {
        let mut ms = [
            member(1, true, Some((1, 0, 2))),
            member(2, true, Some((1, 0, 2))),
            member(3, true, Some((1, 0, 1))),
        ];
        ms[1].record.forced = Some(ForcedRole::Worker);
        let v = View::new(&ms, Instant::ZERO);
        let t = tally(&v, 1, false);
        // 2 has a majority but may not be master: the round is dead.
        assert_eq!((t.winner, t.dead), (None, true));
        assert_eq!(ballot(&v, &t, false).unwrap().candidate, id(1));
    }

    #[test]
    fn forced_masters_rank_first_and_ties_go_to_rank() {
        let mut ms = [
            member(1, true, Some((1, 0, 9))),
            member(2, true, Some((1, 0, 8))),
            member(8, true, None),
            member(9, true, None),
            member(7, true, None),
        ];
        ms[3].record.forced = Some(ForcedRole::Master);
        let v = View::new(&ms, Instant::ZERO);
        assert_eq!(best_candidate(&v, false), Some(id(9)));
        let t = tally(&v, 1, false);
        // 8 and 9 have one vote each; 9 ranks first (forced master).
        assert_eq!(t.leader, Some((id(9), 1)));
    }
}
