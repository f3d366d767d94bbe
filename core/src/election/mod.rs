//! Role election: which members of a `network_id` run the Kubernetes
//! masters, decided by a rule every member computes alike from its replica
//! of the ledger. The rules, their guarantees and their limits are in
//! `docs/roles.md`; this summary names the parts.
//!
//! - **Records** ([`record`](RoleRecord)): each member keeps one durable
//!   record `owner/roles/<node id>` (its `network_id`, its forced role, its
//!   vote, what it deployed as; ttl [`MEMBER_TTL_SECS`], refreshed daily)
//!   and one liveness advertisement `owner/alive/<node id>` (ttl
//!   [`ALIVE_TTL_SECS`], refreshed every [`ALIVE_INTERVAL`]). Both buckets
//!   are owner-only, so no member can write or delete another's records.
//! - **Views** ([`read_view`]): the members of one `network_id` as a
//!   replica sees them: records, liveness, when last seen.
//! - **The rule** ([`elect`]): a pure function of a view, the
//!   configuration and the time. Forced roles win; otherwise the *primary*
//!   (the master that starts the cluster) is elected by single-decree Paxos
//!   run over the role records (`ballot.rs`): a candidate is primary once a
//!   strict majority of the members accepted it in one ballot. No two
//!   candidates are ever elected in one epoch while every member that takes
//!   part is known to every member that counts a quorum, and a connected
//!   majority always finishes. Deployed masters are sticky; with HA the
//!   primary alone is `cluster-init` and up to `ha_masters - 1` further
//!   servers join it; with dynamic roles a primary gone longer than the
//!   timeout is replaced by the election of the next *epoch*, and the
//!   higher epoch wins when both meet.
//! - **The participant** ([`Participant`]): the one stateful piece a node
//!   holds: its own record (which the host persists), the writes that are
//!   due, and the last time it saw each master alive.
//!
//! This module never writes the ledger (the node puts the [`Writes`] it is
//! given), never reads a clock, never runs k3s and never allocates.
//! Several `network_id`s on one network are independent: a record names
//! its network and a view holds only that network's members.

mod ballot;
mod participant;
mod record;
mod rule;
#[cfg(test)]
mod sim;
mod view;

use core::fmt;

pub use participant::{Participant, Write, Writes};
pub use record::{
    Ballot, DeployedAs, Deployment, ForcedRole, Proposal, RecordError, RoleRecord, Vote, ALIVE_VALUE, MAX_RECORD_LEN,
};
pub use rule::{elect, Master, Outcome, Status, Wait, MEET_FIRST};
pub use view::{advertised, read_view, MemberView, View};

use crate::ledger::buckets::{ROLE_MASTER, ROLE_MASTER_CLUSTERINIT, ROLE_MASTER_HA, ROLE_WORKER};
use crate::time::Duration;

/// Bucket of the durable role records, keyed by node id (owner-only: it
/// starts with [`crate::ledger::buckets::OWNER_PREFIX`]).
pub const ROLES: &str = "owner/roles";
/// Bucket of the liveness advertisements, keyed by node id (owner-only).
pub const ALIVE: &str = "owner/alive";
/// How often a member rewrites its advertisement, in a network of up to
/// 200 members (see [`alive_interval`]).
pub const ALIVE_INTERVAL: Duration = Duration::from_secs(20);
/// The longest gap between advertisements, in the largest networks.
pub const MAX_ALIVE_INTERVAL: Duration = Duration::from_secs(600);

/// How often a member of a network of `members` rewrites its
/// advertisement: every 20 s up to 200 members, then 100 ms per member (up
/// to 10 minutes), so the whole mesh writes at most 10 advertisements a
/// second and idle traffic per peer stays flat as the mesh grows. The ttl
/// is six intervals ([`alive_ttl_secs`]), so absence is noticed within
/// two minutes in small networks and proportionally later in large ones.
pub fn alive_interval(members: usize) -> Duration {
    let scaled = Duration::from_millis(100).saturating_mul(members.min(u32::MAX as usize) as u32);
    scaled.clamp(ALIVE_INTERVAL, MAX_ALIVE_INTERVAL)
}

/// The ttl of an advertisement written every `interval`: six intervals.
pub fn alive_ttl_secs(interval: Duration) -> u32 {
    (interval.as_secs() * 6).min(u32::MAX as u64) as u32
}
/// The ttl of an advertisement in networks of up to 200 members: six
/// intervals, so a few lost pushes never make a healthy member look gone,
/// and a member that stopped is seen gone within two minutes.
pub const ALIVE_TTL_SECS: u32 = 120;
/// The ttl of a role record: a member not heard of for a week is no longer
/// counted (so decommissioned machines do not weigh on majorities forever).
pub const MEMBER_TTL_SECS: u32 = 7 * 24 * 3600;
/// How often a member rewrites its role record when nothing in it changed.
pub const MEMBER_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// The most masters an [`Outcome`] lists (forced, sticky and HA together).
pub const MAX_MASTERS: usize = 16;
/// The longest `network_id` (as `docs/config.md` allows).
pub const MAX_NETWORK_ID_LEN: usize = 64;

/// What the election needs from the configuration. Every member of a
/// `network_id` must use the same values (as with Kairos).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElectionConfig {
    /// Live members needed before a primary is elected (`minimum_nodes`,
    /// Kairos' default 2; 0 counts as 1).
    pub minimum_nodes: u32,
    /// Masters wanted: 1 without HA, `master_nodes` with HA.
    pub ha_masters: u8,
    /// With dynamic roles: how long a master may be gone (no live
    /// advertisement) before it is replaced. `None`: never replaced.
    pub dynamic_roles: Option<Duration>,
    /// How long a starting member only promises and accepts before it
    /// starts ballots or proposes ([`MEET_FIRST`] in a node, see
    /// `node::RoleConfig`; zero here).
    pub meet_first: Duration,
}

impl ElectionConfig {
    /// Kairos' defaults: 2 nodes, no HA, no dynamic roles (and no
    /// listening first).
    pub const DEFAULT: ElectionConfig = ElectionConfig {
        minimum_nodes: 2,
        ha_masters: 1,
        dynamic_roles: None,
        meet_first: Duration::ZERO,
    };

    /// A checked configuration: `ha_masters` must be 1..=[`MAX_MASTERS`].
    pub fn new(minimum_nodes: u32, ha_masters: u8, dynamic_roles: Option<Duration>) -> Result<Self, ElectionError> {
        if ha_masters == 0 || ha_masters as usize > MAX_MASTERS {
            return Err(ElectionError::HaMasters(ha_masters));
        }
        Ok(ElectionConfig {
            minimum_nodes,
            ha_masters,
            dynamic_roles,
            meet_first: Duration::ZERO,
        })
    }

    /// With this [`Self::meet_first`].
    pub const fn with_meet_first(mut self, d: Duration) -> Self {
        self.meet_first = d;
        self
    }

    /// Whether more than one master is wanted.
    pub fn ha(&self) -> bool {
        self.ha_masters > 1
    }

    /// `minimum_nodes`, at least 1.
    pub(crate) fn minimum(&self) -> u32 {
        self.minimum_nodes.max(1)
    }
}

impl Default for ElectionConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Why an election input was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionError {
    /// `ha_masters` is 0 or more than [`MAX_MASTERS`].
    HaMasters(u8),
    /// The `network_id` is empty or longer than [`MAX_NETWORK_ID_LEN`].
    NetworkIdLength,
    /// The persisted role record does not parse.
    Restored(RecordError),
}

impl fmt::Display for ElectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElectionError::HaMasters(n) => write!(f, "HA master count {n} not in 1..={MAX_MASTERS}"),
            ElectionError::NetworkIdLength => write!(f, "network_id must be 1 to {MAX_NETWORK_ID_LEN} bytes"),
            ElectionError::Restored(e) => write!(f, "persisted role record: {e}"),
        }
    }
}

impl core::error::Error for ElectionError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            ElectionError::Restored(e) => Some(e),
            _ => None,
        }
    }
}

/// The role the election gives a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A k3s server. `cluster_init`: the first HA server, which starts the
    /// embedded etcd cluster (`--cluster-init`); every other server joins
    /// the primary ([`Outcome::primary`]).
    Master {
        /// Start the cluster with `--cluster-init` (HA primary only).
        cluster_init: bool,
    },
    /// A k3s agent of the primary.
    Worker,
}

impl Role {
    /// The value Kairos stores under `<uuid>-role` for this role (`master`,
    /// `master/clusterinit`, `master/ha`, `worker`), for tools that read
    /// Kairos' keys; `ha` is [`ElectionConfig::ha`].
    pub fn kairos_value(self, ha: bool) -> &'static str {
        match self {
            Role::Master { cluster_init: true } => ROLE_MASTER_CLUSTERINIT,
            Role::Master { cluster_init: false } if ha => ROLE_MASTER_HA,
            Role::Master { cluster_init: false } => ROLE_MASTER,
            Role::Worker => ROLE_WORKER,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Role::Master { cluster_init: true } => f.write_str("master (cluster-init)"),
            Role::Master { cluster_init: false } => f.write_str("master"),
            Role::Worker => f.write_str("worker"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::buckets::is_owner_only;
    use crate::ledger::MAX_BUCKET_LEN;
    use std::string::ToString;

    #[test]
    fn buckets_are_owner_only() {
        assert!(is_owner_only(ROLES.as_bytes()));
        assert!(is_owner_only(ALIVE.as_bytes()));
        assert!(ROLES.len() <= MAX_BUCKET_LEN && ALIVE.len() <= MAX_BUCKET_LEN);
        assert!(ALIVE_INTERVAL.as_secs() * 6 <= ALIVE_TTL_SECS as u64);
        assert_eq!(alive_ttl_secs(ALIVE_INTERVAL), ALIVE_TTL_SECS);
        assert_eq!(alive_interval(0), ALIVE_INTERVAL);
        assert_eq!(alive_interval(200), ALIVE_INTERVAL);
        assert_eq!(alive_interval(1000), Duration::from_secs(100));
        assert_eq!(alive_interval(1_000_000), MAX_ALIVE_INTERVAL);
    }

    #[test]
    fn config_checks_ha() {
        assert_eq!(ElectionConfig::new(2, 0, None), Err(ElectionError::HaMasters(0)));
        assert_eq!(ElectionConfig::new(2, 17, None), Err(ElectionError::HaMasters(17)));
        let c = ElectionConfig::new(0, 3, None).unwrap();
        assert!(c.ha());
        assert_eq!(c.minimum(), 1);
        assert!(!ElectionConfig::default().ha());
        assert_eq!(
            ElectionError::HaMasters(0).to_string(),
            "HA master count 0 not in 1..=16"
        );
        assert_eq!(
            ElectionError::NetworkIdLength.to_string(),
            "network_id must be 1 to 64 bytes"
        );
    }

    #[test]
    fn kairos_role_values() {
        assert_eq!(
            Role::Master { cluster_init: true }.kairos_value(true),
            "master/clusterinit"
        );
        assert_eq!(Role::Master { cluster_init: false }.kairos_value(true), "master/ha");
        assert_eq!(Role::Master { cluster_init: false }.kairos_value(false), "master");
        assert_eq!(Role::Worker.kairos_value(true), "worker");
        assert_eq!(Role::Master { cluster_init: true }.to_string(), "master (cluster-init)");
    }
}
