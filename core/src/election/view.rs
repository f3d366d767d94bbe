//! What one replica knows about the members of one `network_id`: the input
//! of [`super::elect`].
//!
//! A *member* of a network is a node whose role record
//! (`owner/roles/<node id>`) is live in the replica and names that
//! network, or, until it writes one (a member writes its first record when
//! it has something to say: a vote, a forced role, a deployment), whose
//! advertisement (`owner/alive/<node id>`) for that network is live. It is
//! *live* while its advertisement is live. [`read_view`] builds the members from a [`Ledger`] into a
//! caller slice; a record that does not fit, or whose version this code
//! does not know, still counts in [`View::unlisted`], so majorities are
//! never computed over fewer members than the replica holds (which keeps
//! the rule safe, at worst slower).
//!
//! This module only reads: it never writes the ledger and never decides.

use super::record::{network_of, parse_alive, DeployedAs, ForcedRole, RoleRecord};
use super::{ALIVE, ROLES};
use crate::identity::NodeId;
use crate::ledger::{Entry, EntryState, Ledger};
use crate::time::{Duration, Instant};

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

/// Reads the members of `network_id` from `ledger` into `out` (as many as
/// fit; the rest count in [`View::unlisted`]), with their liveness at `now`.
pub fn read_view<'m, const E: usize, const A: usize>(
    ledger: &Ledger<E, A>,
    network_id: &str,
    observing_since: Instant,
    now: Instant,
    out: &'m mut [MemberView],
) -> View<'m> {
    let read = read_members(ledger, network_id, now, out);
    View {
        members: &out[..read.listed],
        unlisted: read.unlisted,
        observing_since,
    }
}

/// What [`read_members`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Read {
    /// Members listed in `out[..listed]`, sorted by id.
    pub listed: usize,
    /// Members counted but not listed.
    pub unlisted: u32,
    /// The next time a member listed as live stops being live if no new
    /// advertisement of it arrives (liveness lapses without a ledger
    /// change, so the caller runs again then).
    pub lapse: Option<Instant>,
}

/// Whether advertisement `a` shows its writer live at `now`, and until
/// when. An advertisement of this version is live for the window it
/// names after this replica received it; the one-byte advertisement of
/// earlier versions while its ledger ttl runs.
fn liveness(a: &Entry<'_>, now: Instant) -> Option<Instant> {
    if a.state() != EntryState::Live {
        return None;
    }
    let until = match parse_alive(a.value()) {
        Some((_, window)) => a.received() + Duration::from_secs(window as u64),
        None => a.deadline().unwrap_or(Instant::FAR_FUTURE),
    };
    (now < until).then_some(until)
}

/// [`read_view`]'s work.
///
/// Two passes over the replica's records in storage order (the role records,
/// then the advertisements, looked up by id in the sorted members) instead
/// of a lookup per member: this runs often in large meshes.
pub(crate) fn read_members<const E: usize, const A: usize>(
    ledger: &Ledger<E, A>,
    network_id: &str,
    now: Instant,
    out: &mut [MemberView],
) -> Read {
    let mut n = 0;
    let mut unlisted = 0;
    let mut lapse: Option<Instant> = None;
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
    let with_record = n;
    // Records that are counted but not listed: an advertisement not found
    // among the listed may be one of theirs (rare; looked up then).
    let unread = unlisted > 0;
    out[..with_record].sort_unstable_by_key(|m| m.id);
    // Owner-only too: one advertisement record per member, in any state
    // (an expired one still says when it was last seen).
    for a in ledger.scan_bucket_all(ALIVE.as_bytes()) {
        let until = liveness(&a, now);
        let live = until.is_some();
        let listed = match out[..with_record].binary_search_by_key(&a.origin_id(), |m| m.id) {
            Ok(i) => Some(i),
            // No role record yet: a member while its advertisement for
            // this network is held (as long as a role record would be).
            Err(_)
                if a.state() == EntryState::Live
                    && parse_alive(a.value()).is_some_and(|(net, _)| net == network_id)
                    && !(unread && has_record(ledger, a.key(), network_id)) =>
            {
                if n < out.len() {
                    out[n] = MemberView::new(a.origin_id());
                    n += 1;
                    Some(n - 1)
                } else {
                    unlisted += 1;
                    None
                }
            }
            Err(_) => None,
        };
        if let Some(i) = listed {
            out[i].live = live;
            out[i].last_seen = Some(a.received());
            if let Some(t) = until {
                lapse = Some(lapse.map_or(t, |l| l.min(t)));
            }
        }
    }
    if n > with_record {
        out[..n].sort_unstable_by_key(|m| m.id);
    }
    Read {
        listed: n,
        unlisted,
        lapse,
    }
}

/// Whether the member keyed `key` has a live role record in `network_id`.
fn has_record<const E: usize, const A: usize>(ledger: &Ledger<E, A>, key: &[u8], network_id: &str) -> bool {
    ledger
        .get(ROLES.as_bytes(), key)
        .is_some_and(|r| network_of(r.value()) == Some(network_id.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::super::record::{emit_alive, MAX_ALIVE_LEN};
    use super::super::record::{Deployment, MAX_RECORD_LEN};
    use super::super::{ALIVE_TTL_SECS, MEMBER_TTL_SECS};
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

    fn advertise(l: &mut Small, who: &Identity, net: &str, at: Instant) {
        let mut buf = [0u8; MAX_ALIVE_LEN];
        let n = emit_alive(net, ALIVE_TTL_SECS, &mut buf).unwrap();
        let key = owner_key(&who.node_id());
        l.put(at, who, ALIVE.as_bytes(), &key, &buf[..n], MEMBER_TTL_SECS)
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
        advertise(&mut l, &ids[0], "dev", t0);
        advertise(&mut l, &ids[2], "prod", t0);

        let mut buf = [MemberView::default(); 8];
        let v = read_view(&l, "dev", Instant::ZERO, t0, &mut buf);
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

        let v = read_view(&l, "prod", Instant::ZERO, t0, &mut buf);
        assert_eq!((v.members.len(), v.unlisted, v.live()), (1, 0, 1));

        // Too small a buffer: the rest is counted, not lost.
        let mut one = [MemberView::default(); 1];
        let v = read_view(&l, "dev", Instant::ZERO, t0, &mut one);
        assert_eq!((v.members.len(), v.total()), (1, 3));

        // The live window ends when no newer advertisement came; when it
        // was last seen stays known, and the caller is told when to look.
        let lapse = t0 + Duration::from_secs(ALIVE_TTL_SECS as u64);
        let read = read_members(
            &l,
            "dev",
            t0 + Duration::from_millis(ALIVE_TTL_SECS as u64 * 1000 - 1),
            &mut buf,
        );
        assert_eq!(read.lapse, Some(lapse));
        let v = read_view(&l, "dev", Instant::ZERO, lapse, &mut buf);
        let a = v.get(&ids[0].node_id()).unwrap();
        assert!(!a.live && a.last_seen == Some(t0));
        assert_eq!(read_members(&l, "dev", lapse, &mut buf).lapse, None);
    }

    #[test]
    fn a_member_without_a_record_counts_while_its_advertisement_is_held() {
        let ids: std::vec::Vec<Identity> = (1..=5).map(|i| Identity::from_bytes(&[i; 64])).collect();
        let mut l = Box::new(Small::new());
        let t0 = Instant::from_secs(10);
        put_record(&mut l, &ids[0], "dev", RoleRecord::default(), t0);
        advertise(&mut l, &ids[0], "dev", t0);
        // No record yet: a member of "dev" by its advertisement alone.
        advertise(&mut l, &ids[1], "dev", t0);
        advertise(&mut l, &ids[2], "prod", t0);
        // A record this code cannot read, and its advertisement: counted
        // once, not listed.
        let key = owner_key(&ids[3].node_id());
        l.put(t0, &ids[3], ROLES.as_bytes(), &key, b"\x09\x03devfuture", 0)
            .unwrap();
        advertise(&mut l, &ids[3], "dev", t0);
        // The one-byte advertisement of earlier versions names no network
        // and is live while its ledger ttl runs.
        put_record(&mut l, &ids[4], "dev", RoleRecord::default(), t0);
        let key = owner_key(&ids[4].node_id());
        l.put(t0, &ids[4], ALIVE.as_bytes(), &key, &[1], ALIVE_TTL_SECS)
            .unwrap();

        let mut buf = [MemberView::default(); 8];
        let v = read_view(&l, "dev", Instant::ZERO, t0, &mut buf);
        assert_eq!((v.members.len(), v.unlisted, v.live()), (3, 1, 3));
        assert!(v.members.windows(2).all(|w| w[0].id < w[1].id), "sorted by id");
        let b = v.get(&ids[1].node_id()).unwrap();
        assert!(b.live && b.last_seen == Some(t0));
        assert_eq!(b.record, RoleRecord::default());
        let v = read_view(&l, "prod", Instant::ZERO, t0, &mut buf);
        assert_eq!((v.members.len(), v.unlisted, v.live()), (1, 0, 1));

        // No room: counted all the same.
        let mut one = [MemberView::default(); 1];
        assert_eq!(read_view(&l, "dev", Instant::ZERO, t0, &mut one).total(), 4);

        // Advertisements stop: nobody is live, and every member still
        // counts (a partition must not shrink the majorities).
        let later = t0 + Duration::from_secs(ALIVE_TTL_SECS as u64);
        l.expire(later);
        let v = read_view(&l, "dev", Instant::ZERO, later, &mut buf);
        assert_eq!((v.members.len(), v.unlisted, v.live()), (3, 1, 0));
        assert!(v.get(&ids[1].node_id()).is_some_and(|m| m.last_seen == Some(t0)));

        // A week later the advertisement expires with the role records: a
        // member that never voted is no member any more.
        let week = t0 + Duration::from_secs(MEMBER_TTL_SECS as u64);
        l.expire(week);
        let v = read_view(&l, "dev", Instant::ZERO, week, &mut buf);
        assert_eq!((v.members.len(), v.unlisted, v.live()), (0, 1, 0));
    }
}
