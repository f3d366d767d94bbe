//! What one replica knows about the members of one `network_id`: the input
//! of [`super::elect`].
//!
//! A *member* of a network is a node whose role record
//! (`owner/roles/<node id>`) is live in the replica and names that
//! network. It is *live* while its advertisement (`owner/alive/<node id>`)
//! is live. [`read_view`] builds the members from a [`Ledger`] into a
//! caller slice; a record that does not fit, or whose version this code
//! does not know, still counts in [`View::unlisted`], so majorities are
//! never computed over fewer members than the replica holds (which keeps
//! the rule safe, at worst slower).
//!
//! This module only reads: it never writes the ledger and never decides.

use super::record::{network_of, DeployedAs, ForcedRole, RoleRecord};
use super::{ALIVE, ROLES};
use crate::identity::NodeId;
use crate::ledger::{EntryState, Ledger};
use crate::time::Instant;

/// One member as a replica sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MemberView {
    /// Its node id.
    pub id: NodeId,
    /// Its advertisement is live in this replica.
    pub live: bool,
    /// When this replica last received its advertisement, if it still
    /// holds a record of one (expired ones are purged 10 minutes after they
    /// expire).
    pub last_seen: Option<Instant>,
    /// Its role record.
    pub record: RoleRecord,
}

impl MemberView {
    /// A member with an empty record, not live, never seen (a slot filler
    /// for the caller's buffer).
    pub const fn new(id: NodeId) -> Self {
        MemberView {
            id,
            live: false,
            last_seen: None,
            record: RoleRecord {
                forced: None,
                deployment: None,
                vote: None,
            },
        }
    }

    /// Whether it may become a master by election: not forced to be a
    /// worker, and, without dynamic roles, not deployed as a worker (roles
    /// stick once deployed).
    pub fn eligible(&self, dynamic_roles: bool) -> bool {
        self.record.forced != Some(ForcedRole::Worker)
            && (dynamic_roles || self.record.deployment.is_none_or(|d| d.role != DeployedAs::Worker))
    }

    /// Whether its configuration forces it to be a master.
    pub fn forced_master(&self) -> bool {
        self.record.forced == Some(ForcedRole::Master)
    }
}

impl Default for MemberView {
    fn default() -> Self {
        MemberView::new(NodeId([0; 16]))
    }
}

/// The members of one `network_id` in one replica. Member ids are unique;
/// their order does not matter (the rule never depends on it).
#[derive(Debug, Clone, Copy)]
pub struct View<'a> {
    /// The members listed.
    pub members: &'a [MemberView],
    /// Members the replica holds but that are not listed (no room, or a
    /// record version this code does not read): counted in majorities,
    /// never voting, never live.
    pub unlisted: u32,
    /// Since when this replica has been watching the network (the node's
    /// start): a member never seen alive counts as gone since then.
    pub observing_since: Instant,
}

impl<'a> View<'a> {
    /// A view of exactly these members.
    pub fn new(members: &'a [MemberView], observing_since: Instant) -> Self {
        View {
            members,
            unlisted: 0,
            observing_since,
        }
    }

    /// Every member the replica holds, listed or not.
    pub fn total(&self) -> u32 {
        self.members.len() as u32 + self.unlisted
    }

    /// The listed member with this id.
    pub fn get(&self, id: &NodeId) -> Option<&'a MemberView> {
        self.members.iter().find(|m| m.id == *id)
    }

    /// Listed members whose advertisement is live.
    pub fn live(&self) -> u32 {
        self.members.iter().filter(|m| m.live).count() as u32
    }
}

/// Whether the member `id` is live in `ledger` at `now` by its
/// advertisement, and when this replica received that advertisement;
/// `None` if the replica holds none of it (a bridge, a member not heard of
/// yet, or one whose advertisement expired and was purged).
pub fn advertised<const E: usize, const A: usize>(
    ledger: &Ledger<E, A>,
    id: &NodeId,
    now: Instant,
) -> Option<(bool, Instant)> {
    let a = ledger.find(ALIVE.as_bytes(), &crate::ledger::buckets::owner_key(id))?;
    // Reads do not expire entries: an advertisement past its deadline is
    // not live even before the ledger marks it so.
    let live = a.state() == EntryState::Live && a.deadline().is_none_or(|d| now < d);
    Some((live, a.received()))
}

/// Reads the members of `network_id` from `ledger` into `out` (as many as
/// fit; the rest count in [`View::unlisted`]).
pub fn read_view<'m, const E: usize, const A: usize>(
    ledger: &Ledger<E, A>,
    network_id: &str,
    observing_since: Instant,
    out: &'m mut [MemberView],
) -> View<'m> {
    let (n, unlisted) = read_members(ledger, network_id, out);
    View {
        members: &out[..n],
        unlisted,
        observing_since,
    }
}

/// [`read_view`]'s work: members listed in `out[..n]` (sorted by id), and
/// the unlisted.
///
/// Two passes over the replica's records in storage order (the role records,
/// then the advertisements, looked up by id in the sorted members) instead
/// of a lookup per member: this runs often in large meshes.
pub(crate) fn read_members<const E: usize, const A: usize>(
    ledger: &Ledger<E, A>,
    network_id: &str,
    out: &mut [MemberView],
) -> (usize, u32) {
    let mut n = 0;
    let mut unlisted = 0;
    for e in ledger.scan_bucket(ROLES.as_bytes()) {
        if network_of(e.value()) != Some(network_id.as_bytes()) {
            continue;
        }
        let record = match RoleRecord::parse(e.value()) {
            Ok((_, r)) if n < out.len() => r,
            _ => {
                unlisted += 1;
                continue;
            }
        };
        // The bucket is owner-only: the key is the origin's node id.
        out[n] = MemberView::new(e.origin_id());
        out[n].record = record;
        n += 1;
    }
    let members = &mut out[..n];
    members.sort_unstable_by_key(|m| m.id);
    // Owner-only too: one advertisement record per member, in any state
    // (an expired one still says when it was last seen).
    for a in ledger.scan_bucket_all(ALIVE.as_bytes()) {
        if let Ok(i) = members.binary_search_by_key(&a.origin_id(), |m| m.id) {
            members[i].live = a.state() == EntryState::Live;
            members[i].last_seen = Some(a.received());
        }
    }
    (n, unlisted)
}

#[cfg(test)]
mod tests {
    use super::super::record::{Deployment, MAX_RECORD_LEN};
    use super::super::{ALIVE_TTL_SECS, ALIVE_VALUE, MEMBER_TTL_SECS};
    use super::*;
    use crate::identity::Identity;
    use crate::ledger::buckets::owner_key;
    use crate::ledger::Ledger;
    use std::boxed::Box;

    type Small = Ledger<64, 16384>;

    fn put_record(l: &mut Small, who: &Identity, net: &str, r: RoleRecord, at: Instant) {
        let mut buf = [0u8; MAX_RECORD_LEN];
        let n = r.emit(net, &mut buf).unwrap();
        let key = owner_key(&who.node_id());
        l.put(at, who, ROLES.as_bytes(), &key, &buf[..n], MEMBER_TTL_SECS)
            .unwrap();
    }

    fn advertise(l: &mut Small, who: &Identity, at: Instant) {
        let key = owner_key(&who.node_id());
        l.put(at, who, ALIVE.as_bytes(), &key, ALIVE_VALUE, ALIVE_TTL_SECS)
            .unwrap();
    }

    #[test]
    fn reads_one_network() {
        let ids: std::vec::Vec<Identity> = (1..=4).map(|i| Identity::from_bytes(&[i; 64])).collect();
        let mut l = Box::new(Small::new());
        let t0 = Instant::from_secs(10);
        let worker = RoleRecord {
            deployment: Some(Deployment {
                role: DeployedAs::Worker,
                epoch: 1,
                since: 3,
            }),
            ..RoleRecord::default()
        };
        put_record(&mut l, &ids[0], "dev", RoleRecord::default(), t0);
        put_record(&mut l, &ids[1], "dev", worker, t0);
        put_record(&mut l, &ids[2], "prod", RoleRecord::default(), t0);
        // A record of a later version in "dev": counted, not listed.
        let key = owner_key(&ids[3].node_id());
        l.put(t0, &ids[3], ROLES.as_bytes(), &key, b"\x09\x03devfuture", 0)
            .unwrap();
        advertise(&mut l, &ids[0], t0);
        advertise(&mut l, &ids[2], t0);

        let mut buf = [MemberView::default(); 8];
        let v = read_view(&l, "dev", Instant::ZERO, &mut buf);
        assert_eq!(v.members.len(), 2);
        assert_eq!(v.unlisted, 1);
        assert_eq!(v.total(), 3);
        assert_eq!(v.live(), 1);
        let a = v.get(&ids[0].node_id()).unwrap();
        assert!(a.live && a.last_seen == Some(t0));
        let b = v.get(&ids[1].node_id()).unwrap();
        assert!(!b.live && b.last_seen.is_none());
        assert_eq!(b.record, worker);
        assert!(!b.eligible(false) && b.eligible(true));
        assert!(v.get(&ids[2].node_id()).is_none());

        let v = read_view(&l, "prod", Instant::ZERO, &mut buf);
        assert_eq!((v.members.len(), v.unlisted, v.live()), (1, 0, 1));

        // Too small a buffer: the rest is counted, not lost.
        let mut one = [MemberView::default(); 1];
        let v = read_view(&l, "dev", Instant::ZERO, &mut one);
        assert_eq!((v.members.len(), v.total()), (1, 3));

        let lapse = t0 + crate::time::Duration::from_secs(ALIVE_TTL_SECS as u64);
        let just_before = t0 + crate::time::Duration::from_millis(ALIVE_TTL_SECS as u64 * 1000 - 1);
        assert_eq!(advertised(&l, &ids[0].node_id(), just_before), Some((true, t0)));
        assert_eq!(
            advertised(&l, &ids[0].node_id(), lapse),
            Some((false, t0)),
            "before the ledger expires it"
        );
        assert_eq!(advertised(&l, &ids[1].node_id(), t0), None, "no advertisement");

        // The advertisement expires; when it was last seen stays known.
        l.expire(lapse);
        assert_eq!(advertised(&l, &ids[0].node_id(), lapse), Some((false, t0)));
        let v = read_view(&l, "dev", Instant::ZERO, &mut buf);
        let a = v.get(&ids[0].node_id()).unwrap();
        assert!(!a.live && a.last_seen == Some(t0));
    }
}
