//! Target `role_record`: `election::RoleRecord::parse` on the input.
//!
//! A role record is the value of `owner/roles/<node id>`, written by any
//! member and read by every other, so its parser sees whatever a member
//! signs. When the input parses:
//!
//! - `emit` under the parsed network id writes the input again, byte for
//!   byte (records have exactly one encoding: a node compares bytes to see
//!   whether its record changed, `docs/roles.md`);
//! - `merge` with itself is the identity.
//!
//! When the input is two records back to back (the first one's length is
//! fixed by its network id), both parse and the merge of the two is checked
//! too: it emits and parses back to itself, merging the second again changes
//! nothing (every field only grows), and the forced role is the first's.

use kairos_core::election::{RoleRecord, MAX_RECORD_LEN};

use crate::Stats;

/// The length of the record at the start of `b` if its network id length
/// is readable (the body after it has a fixed length).
fn record_len(b: &[u8]) -> Option<usize> {
    let n = usize::from(*b.get(1)?);
    // 2 header bytes, the network id, 113 body bytes (`MAX_RECORD_LEN` is
    // the length with a 64-byte network id).
    Some(2 + n + (MAX_RECORD_LEN - 2 - 64))
}

/// Parses `b` and checks the round trip; the record and its network id.
fn parse_checked(b: &[u8], stats: &mut Stats) -> Option<(String, RoleRecord)> {
    stats.fed += 1;
    let (network, record) = RoleRecord::parse(b).ok()?;
    stats.accepted += 1;
    let mut out = [0u8; MAX_RECORD_LEN];
    let n = record
        .emit(network, &mut out)
        .expect("a parsed network id is a valid one");
    assert_eq!(&out[..n], b, "parse then emit must give the same bytes: {record:?}");
    assert_eq!(record.merge(&record), record, "merge with itself is the identity");
    Some((network.to_owned(), record))
}

/// Runs the target on one input.
pub fn run(data: &[u8]) -> Stats {
    let mut stats = Stats::default();
    parse_checked(data, &mut stats);
    let Some(split) = record_len(data).filter(|&n| n < data.len()) else {
        return stats;
    };
    let (first, second) = data.split_at(split);
    let (Some((network, a)), Some((_, b))) = (parse_checked(first, &mut stats), parse_checked(second, &mut stats))
    else {
        return stats;
    };
    let m = a.merge(&b);
    assert_eq!(m.forced, a.forced, "the forced role is the receiver's");
    assert_eq!(m.merge(&b), m, "merging the same record twice changes nothing");
    assert_eq!(m.merge(&a), m, "the merge already contains the receiver's record");
    let mut out = [0u8; MAX_RECORD_LEN];
    let n = m.emit(&network, &mut out).expect("a parsed network id");
    assert_eq!(
        RoleRecord::parse(&out[..n]).map(|(_, r)| r),
        Ok(m),
        "a merged record round-trips"
    );
    stats
}

/// A record for the seeds and tests: `network`, then `record` encoded.
pub fn encode(network: &str, record: &RoleRecord) -> Vec<u8> {
    let mut out = [0u8; MAX_RECORD_LEN];
    let n = record.emit(network, &mut out).expect("a valid network id");
    out[..n].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::election::{Ballot, DeployedAs, Deployment, ForcedRole, Proposal, Vote};
    use kairos_core::identity::NodeId;

    pub(crate) fn sample(epoch: u32, round: u32) -> RoleRecord {
        RoleRecord {
            forced: Some(ForcedRole::Worker),
            deployment: Some(Deployment {
                role: DeployedAs::Server,
                epoch,
                since: 9,
            }),
            vote: Some(Vote {
                epoch,
                promised: Ballot {
                    round,
                    owner: NodeId([3; 16]),
                },
                accepted: Some(Proposal {
                    ballot: Ballot {
                        round,
                        owner: NodeId([3; 16]),
                    },
                    candidate: NodeId([4; 16]),
                }),
                proposal: None,
            }),
        }
    }

    #[test]
    fn replays() {
        assert_eq!(run(&[]).accepted, 0);
        let one = encode("kairos", &sample(1, 2));
        assert_eq!(run(&one).accepted, 1);
        let mut two = one.clone();
        two.extend_from_slice(&encode("kairos", &sample(2, 1)));
        // The whole input is no record; both halves are.
        assert_eq!(run(&two).accepted, 2);
        let empty = encode("k", &RoleRecord::default());
        assert_eq!(run(&empty).accepted, 1);
        let mut bad = one;
        let last = bad.len() - 1;
        bad[last] ^= 1; // a proposal-free vote with a non-zero candidate byte
        assert_eq!(run(&bad).accepted, 0);
    }
}
