//! A member's role record (the value of `owner/roles/<node id>`) and its
//! encoding; the advertisement value.
//!
//! ```text
//! version (1) = 1 | network id length n (1, 1..=64) | network id (n, UTF-8)
//! forced (1: 0 auto, 1 master, 2 worker)
//! deployed (1: 0 none, 1 worker, 2 primary, 3 server) | epoch (4, BE) | since (8, BE)
//! vote (1: 0 none, 1 some) | epoch (4, BE) | promised ballot
//! accepted (1: 0 none, 1 some) | ballot | candidate node id (16)
//! proposal (1: 0 none, 1 some) | ballot | candidate node id (16)
//! ```
//!
//! A ballot is its round (4, BE) then its owner's node id (16). 115 + n
//! bytes. Fields of an absent deployment, vote, acceptance or proposal are
//! zero, so a
//! record has exactly one encoding (a node compares bytes to see whether
//! its record changed). Every later version keeps the first two fields, so
//! a member can still tell which network an unknown record belongs to and
//! count its writer as a member ([`network_of`]).
//!
//! This module owns the layout and the merge of two versions of one
//! member's record; it never decides what a record should say.

use core::fmt;

use super::{ElectionError, MAX_NETWORK_ID_LEN};
use crate::identity::NodeId;
use crate::wire::array;

/// The encoding version this module writes.
const VERSION: u8 = 1;
/// Bytes after the network id.
const BODY_LEN: usize = 1 + 13 + 25 + 2 * 37;
/// The longest record.
pub const MAX_RECORD_LEN: usize = 2 + MAX_NETWORK_ID_LEN + BODY_LEN;
/// The value of an advertisement (`owner/alive/<node id>`): only its
/// presence (and ttl) matters.
pub const ALIVE_VALUE: &[u8] = &[VERSION];

/// A role set in the configuration (`role: master | worker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForcedRole {
    /// Always a master.
    Master,
    /// Never a master.
    Worker,
}

/// What a member deployed as (k3s is running in that role).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeployedAs {
    /// A k3s agent.
    Worker,
    /// The master that started its cluster: the single master without HA,
    /// the `--cluster-init` server with HA.
    Primary,
    /// An HA server that joined the primary's cluster.
    Server,
}

impl DeployedAs {
    /// Whether this is a k3s server.
    pub fn is_master(self) -> bool {
        !matches!(self, DeployedAs::Worker)
    }
}

/// A finished deployment: sticky once recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deployment {
    /// The role k3s runs in.
    pub role: DeployedAs,
    /// The epoch of the primary this deployment belongs to (see
    /// [`Vote::epoch`]; 0 when a forced master deployed before any election).
    pub epoch: u32,
    /// The ledger's Lamport clock when it was recorded: the older deployment
    /// wins a conflict between two primaries of one epoch.
    pub since: u64,
}

/// A numbered attempt to elect the primary of an epoch, started by its
/// owner. Ballots are ordered by round, then owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ballot {
    /// The round (0: no ballot).
    pub round: u32,
    /// The member that started it.
    pub owner: NodeId,
}

impl Ballot {
    /// No ballot: lower than every real one.
    pub const NONE: Ballot = Ballot {
        round: 0,
        owner: NodeId([0; 16]),
    };
}

/// A candidate proposed in a ballot (by the ballot's owner), or accepted in
/// it (by a member).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Proposal {
    /// The ballot.
    pub ballot: Ballot,
    /// Who would be primary.
    pub candidate: NodeId,
}

/// A member's part in the election of one epoch: single-decree Paxos, the
/// member being an acceptor (`promised`, `accepted`) and, for its own
/// ballots, a proposer (`proposal`). See `ballot.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Vote {
    /// The election: 1 elects the first primary; epoch `e + 1` replaces the
    /// primary of epoch `e` (dynamic roles).
    pub epoch: u32,
    /// The highest ballot this member promised to take part in: it accepts
    /// no proposal of a lower one.
    pub promised: Ballot,
    /// The last proposal it accepted.
    pub accepted: Option<Proposal>,
    /// The last proposal it made, in a ballot of its own.
    pub proposal: Option<Proposal>,
}

impl Vote {
    /// A member's state at the start of an epoch.
    pub const fn new(epoch: u32) -> Self {
        Vote {
            epoch,
            promised: Ballot::NONE,
            accepted: None,
            proposal: None,
        }
    }

    /// Two versions of one member's state merged: every field only grows.
    fn merge(&self, other: &Vote) -> Vote {
        if other.epoch != self.epoch {
            return if other.epoch > self.epoch { *other } else { *self };
        }
        let later = |a: Option<Proposal>, b: Option<Proposal>| match (a, b) {
            (Some(x), Some(y)) if y.ballot > x.ballot => Some(y),
            (None, y) => y,
            (x, _) => x,
        };
        Vote {
            epoch: self.epoch,
            promised: self.promised.max(other.promised),
            accepted: later(self.accepted, other.accepted),
            proposal: later(self.proposal, other.proposal),
        }
    }
}

/// What a member says about itself in its role record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoleRecord {
    /// The role its configuration forces, if any.
    pub forced: Option<ForcedRole>,
    /// What it has deployed as, if anything.
    pub deployment: Option<Deployment>,
    /// Its current vote, if it has voted.
    pub vote: Option<Vote>,
}

/// Why a role record did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// Shorter than its fields, or longer.
    Length,
    /// A version this code does not know.
    Version(u8),
    /// The network id is empty, too long or not UTF-8.
    NetworkId,
    /// A field holds a value outside its range (which field, by offset
    /// after the network id).
    Field(u8),
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::Length => f.write_str("role record has the wrong length"),
            RecordError::Version(v) => write!(f, "role record version {v} unknown"),
            RecordError::NetworkId => f.write_str("role record network id is empty, too long or not UTF-8"),
            RecordError::Field(at) => write!(f, "role record field at {at} out of range"),
        }
    }
}

impl core::error::Error for RecordError {}

/// The network id of a record of any version (the first two fields never
/// change), or `None` if even those are malformed.
pub(crate) fn network_of(b: &[u8]) -> Option<&[u8]> {
    let n = *b.get(1)? as usize;
    if n == 0 || n > MAX_NETWORK_ID_LEN {
        return None;
    }
    b.get(2..2 + n)
}

impl RoleRecord {
    /// Writes the record of a member of `network_id` into `out`; its length.
    pub fn emit(&self, network_id: &str, out: &mut [u8; MAX_RECORD_LEN]) -> Result<usize, ElectionError> {
        let n = network_id.len();
        if n == 0 || n > MAX_NETWORK_ID_LEN {
            return Err(ElectionError::NetworkIdLength);
        }
        out[0] = VERSION;
        out[1] = n as u8;
        out[2..2 + n].copy_from_slice(network_id.as_bytes());
        let body = &mut out[2 + n..2 + n + BODY_LEN];
        body.fill(0);
        body[0] = match self.forced {
            None => 0,
            Some(ForcedRole::Master) => 1,
            Some(ForcedRole::Worker) => 2,
        };
        if let Some(d) = self.deployment {
            body[1] = match d.role {
                DeployedAs::Worker => 1,
                DeployedAs::Primary => 2,
                DeployedAs::Server => 3,
            };
            body[2..6].copy_from_slice(&d.epoch.to_be_bytes());
            body[6..14].copy_from_slice(&d.since.to_be_bytes());
        }
        if let Some(v) = self.vote {
            body[14] = 1;
            body[15..19].copy_from_slice(&v.epoch.to_be_bytes());
            emit_ballot(&v.promised, &mut body[19..39]);
            for (at, p) in [(39, v.accepted), (76, v.proposal)] {
                if let Some(p) = p {
                    body[at] = 1;
                    emit_ballot(&p.ballot, &mut body[at + 1..at + 21]);
                    body[at + 21..at + 37].copy_from_slice(&p.candidate.0);
                }
            }
        }
        Ok(2 + n + BODY_LEN)
    }

    /// Reads a record: its network id and contents. Only the canonical
    /// encoding is accepted.
    pub fn parse(b: &[u8]) -> Result<(&str, RoleRecord), RecordError> {
        match b.first() {
            None => return Err(RecordError::Length),
            Some(&VERSION) => {}
            Some(&v) => return Err(RecordError::Version(v)),
        }
        let network = network_of(b).ok_or(RecordError::NetworkId)?;
        let network = core::str::from_utf8(network).map_err(|_| RecordError::NetworkId)?;
        let body = &b[2 + network.len()..];
        if body.len() != BODY_LEN {
            return Err(RecordError::Length);
        }
        let forced = match body[0] {
            0 => None,
            1 => Some(ForcedRole::Master),
            2 => Some(ForcedRole::Worker),
            _ => return Err(RecordError::Field(0)),
        };
        let role = match body[1] {
            0 => None,
            1 => Some(DeployedAs::Worker),
            2 => Some(DeployedAs::Primary),
            3 => Some(DeployedAs::Server),
            _ => return Err(RecordError::Field(1)),
        };
        let deployment = role.map(|role| Deployment {
            role,
            epoch: u32::from_be_bytes(array(body, 2)),
            since: u64::from_be_bytes(array(body, 6)),
        });
        if deployment.is_none() && body[2..14].iter().any(|&x| x != 0) {
            return Err(RecordError::Field(2));
        }
        let proposal = |at: usize| match body[at] {
            0 if body[at + 1..at + 37].iter().all(|&x| x == 0) => Ok(None),
            1 => Ok(Some(Proposal {
                ballot: parse_ballot(&body[at + 1..]),
                candidate: NodeId(array(body, at + 21)),
            })),
            _ => Err(RecordError::Field(at as u8)),
        };
        let vote = match body[14] {
            0 if body[15..].iter().all(|&x| x == 0) => None,
            1 => Some(Vote {
                epoch: u32::from_be_bytes(array(body, 15)),
                promised: parse_ballot(&body[19..]),
                accepted: proposal(39)?,
                proposal: proposal(76)?,
            }),
            _ => return Err(RecordError::Field(14)),
        };
        Ok((
            network,
            RoleRecord {
                forced,
                deployment,
                vote,
            },
        ))
    }

    /// Merges two versions of one member's record (the one it remembers and
    /// the one its replica holds) into the more advanced: the later epoch's
    /// vote, and in one epoch the highest promise, acceptance and proposal
    /// (they only grow); the later deployment (by epoch, then clock). The
    /// forced role is `self`'s: it comes from the current configuration.
    pub fn merge(&self, other: &RoleRecord) -> RoleRecord {
        let vote = match (self.vote, other.vote) {
            (Some(a), Some(b)) => Some(a.merge(&b)),
            (None, b) => b,
            (a, None) => a,
        };
        let deployment = match (self.deployment, other.deployment) {
            (Some(a), Some(b)) if (b.epoch, b.since) > (a.epoch, a.since) => Some(b),
            (None, b) => b,
            (a, _) => a,
        };
        RoleRecord {
            forced: self.forced,
            deployment,
            vote,
        }
    }

    /// Whether the record says this member runs a k3s server.
    pub fn deployed_master(&self) -> bool {
        self.deployment.is_some_and(|d| d.role.is_master())
    }
}

fn emit_ballot(b: &Ballot, out: &mut [u8]) {
    out[..4].copy_from_slice(&b.round.to_be_bytes());
    out[4..20].copy_from_slice(&b.owner.0);
}

fn parse_ballot(b: &[u8]) -> Ballot {
    Ballot {
        round: u32::from_be_bytes(array(b, 0)),
        owner: NodeId(array(b, 4)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn full() -> RoleRecord {
        RoleRecord {
            forced: Some(ForcedRole::Worker),
            deployment: Some(Deployment {
                role: DeployedAs::Server,
                epoch: 3,
                since: 0x0102_0304_0506_0708,
            }),
            vote: Some(Vote {
                epoch: 3,
                promised: ballot(9, 0xab),
                accepted: Some(Proposal {
                    ballot: ballot(8, 0xcd),
                    candidate: NodeId([0xef; 16]),
                }),
                proposal: None,
            }),
        }
    }

    fn ballot(round: u32, owner: u8) -> Ballot {
        Ballot {
            round,
            owner: NodeId([owner; 16]),
        }
    }

    #[test]
    fn round_trips() {
        let mut out = [0u8; MAX_RECORD_LEN];
        for r in [RoleRecord::default(), full()] {
            for net in ["kairos", "x", &"n".repeat(64)] {
                let n = r.emit(net, &mut out).unwrap();
                assert_eq!(n, 115 + net.len());
                assert_eq!(RoleRecord::parse(&out[..n]), Ok((net, r)));
                assert_eq!(network_of(&out[..n]), Some(net.as_bytes()));
            }
        }
        let n = full().emit("dev", &mut out).unwrap();
        assert_eq!(&out[..5], &[1, 3, b'd', b'e', b'v']);
        assert_eq!(&out[5..7], &[2, 3]);
        assert_eq!(&out[7..11], &3u32.to_be_bytes());
        assert_eq!(n, MAX_RECORD_LEN - 61);
        // Every optional part present, and none.
        let mut all = full();
        all.vote.as_mut().unwrap().proposal = Some(Proposal {
            ballot: ballot(9, 0xab),
            candidate: NodeId([1; 16]),
        });
        let n = all.emit("dev", &mut out).unwrap();
        assert_eq!(RoleRecord::parse(&out[..n]), Ok(("dev", all)));
        let bare = RoleRecord {
            vote: Some(Vote::new(1)),
            ..RoleRecord::default()
        };
        let n = bare.emit("dev", &mut out).unwrap();
        assert_eq!(RoleRecord::parse(&out[..n]), Ok(("dev", bare)));
    }

    #[test]
    fn refuses_bad_input() {
        let mut out = [0u8; MAX_RECORD_LEN];
        assert_eq!(
            RoleRecord::default().emit("", &mut out),
            Err(ElectionError::NetworkIdLength)
        );
        assert_eq!(
            RoleRecord::default().emit(&"n".repeat(65), &mut out),
            Err(ElectionError::NetworkIdLength)
        );
        let n = full().emit("dev", &mut out).unwrap();
        let good = out[..n].to_vec();
        assert_eq!(RoleRecord::parse(&[]), Err(RecordError::Length));
        assert_eq!(RoleRecord::parse(&good[..n - 1]), Err(RecordError::Length));
        let mut long = good.clone();
        long.push(0);
        assert_eq!(RoleRecord::parse(&long), Err(RecordError::Length));
        let mut b = good.clone();
        b[0] = 2;
        assert_eq!(RoleRecord::parse(&b), Err(RecordError::Version(2)));
        // A later version still names its network.
        assert_eq!(network_of(&b), Some(&b"dev"[..]));
        let mut b = good.clone();
        b[1] = 0;
        assert_eq!(RoleRecord::parse(&b), Err(RecordError::NetworkId));
        let mut b = good.clone();
        b[2] = 0xff;
        assert_eq!(RoleRecord::parse(&b), Err(RecordError::NetworkId));
        for (at, v) in [(0usize, 3u8), (1, 4), (14, 2), (39, 2), (76, 7)] {
            let mut b = good.clone();
            b[5 + at] = v;
            assert_eq!(RoleRecord::parse(&b), Err(RecordError::Field(at as u8)));
        }
        // Absent fields must be zero (one encoding per record).
        let n = RoleRecord::default().emit("dev", &mut out).unwrap();
        let mut b = out[..n].to_vec();
        b[5 + 3] = 1;
        assert_eq!(RoleRecord::parse(&b), Err(RecordError::Field(2)));
        let mut b = out[..n].to_vec();
        b[5 + 30] = 1;
        assert_eq!(RoleRecord::parse(&b), Err(RecordError::Field(14)));
        let n = full().emit("dev", &mut out).unwrap();
        let mut b = out[..n].to_vec();
        b[5 + 80] = 1;
        assert_eq!(RoleRecord::parse(&b), Err(RecordError::Field(76)));
        assert_eq!(RecordError::Version(7).to_string(), "role record version 7 unknown");
    }

    #[test]
    fn merge_keeps_the_later_vote_and_deployment() {
        let accepted = |round| Proposal {
            ballot: ballot(round, 1),
            candidate: NodeId([round as u8; 16]),
        };
        let vote = |epoch, promised, acc: Option<u32>| Vote {
            epoch,
            promised: ballot(promised, 2),
            accepted: acc.map(accepted),
            proposal: None,
        };
        let dep = |epoch, since| Deployment {
            role: DeployedAs::Primary,
            epoch,
            since,
        };
        let mine = RoleRecord {
            forced: Some(ForcedRole::Master),
            deployment: Some(dep(1, 50)),
            vote: Some(vote(1, 4, Some(2))),
        };
        let ledger = RoleRecord {
            forced: None,
            deployment: Some(dep(1, 40)),
            vote: Some(vote(1, 3, Some(3))),
        };
        let m = mine.merge(&ledger);
        assert_eq!(m.forced, Some(ForcedRole::Master));
        // Each part of the vote only grows: the higher promise, the later
        // acceptance.
        assert_eq!(m.vote, Some(vote(1, 4, Some(3))));
        assert_eq!(m.deployment, Some(dep(1, 50)));
        assert_eq!(RoleRecord::default().merge(&ledger).deployment, Some(dep(1, 40)));
        assert_eq!(ledger.merge(&RoleRecord::default()).vote, ledger.vote);
        let later_epoch = RoleRecord {
            vote: Some(vote(2, 1, None)),
            deployment: Some(dep(2, 1)),
            ..RoleRecord::default()
        };
        let m = mine.merge(&later_epoch);
        assert_eq!(m.vote, Some(vote(2, 1, None)));
        assert_eq!(m.deployment, Some(dep(2, 1)));
        assert!(m.deployed_master());
        assert_eq!(later_epoch.merge(&mine).vote, Some(vote(2, 1, None)));
    }
}
