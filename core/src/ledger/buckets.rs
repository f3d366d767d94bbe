//! Bucket names, the owner-only policy, and the names Kairos stores under.
//!
//! This module owns which buckets only their owners may write
//! ([`is_owner_only`]) and the well-known bucket and key names, so the rest
//! of the code (IP allocation, role election, the k3s bootstrap, the API)
//! uses names, never string literals. It never reads or writes a ledger.
//!
//! Kairos keeps its coordination in one bucket per `network_id` (default
//! [`DEFAULT_NETWORK_ID`]): per-node keys `<uuid>-uuid` (liveness, advertised
//! every 20 s and fresh for 15 min), `<uuid>-role` and `<uuid>-ip` (see
//! [`NodeKey`]), and cluster keys [`LEADER_AUTO`], [`IP_MASTER`],
//! [`TOKEN_NODETOKEN`] and [`MASTER_KUBECONFIG`]. EdgeVPN's own buckets are
//! listed too; `machines` and `addresses` are owner-only here (EdgeVPN lets
//! anyone overwrite them).

use core::fmt;

use super::{LedgerError, MAX_KEY_LEN};
use crate::identity::NodeId;
use crate::time::Duration;

/// EdgeVPN's machine table; here keyed by the owner's node id (owner-only).
pub const MACHINES: &str = "machines";
/// Overlay address claims, keyed by the claimant's node id (owner-only).
pub const ADDRESSES: &str = "addresses";
/// Any bucket whose name starts with this is owner-only.
pub const OWNER_PREFIX: &str = "owner/";
/// EdgeVPN's users bucket.
pub const USERS: &str = "users";
/// EdgeVPN's services bucket.
pub const SERVICES: &str = "services";
/// EdgeVPN's files bucket.
pub const FILES: &str = "files";
/// EdgeVPN's health-check bucket.
pub const HEALTHCHECK: &str = "healthcheck";
/// EdgeVPN's DNS records bucket.
pub const DNS: &str = "dns";
/// EdgeVPN's DHCP leases bucket.
pub const DHCP: &str = "dhcp";

/// The bucket Kairos uses when the config names no `network_id`.
pub const DEFAULT_NETWORK_ID: &str = "kairos";
/// Key (in the `network_id` bucket): the node that assigns roles.
pub const LEADER_AUTO: &str = "leader-auto";
/// Key: the master's overlay address (what `get-kubeconfig` rewrites to).
pub const IP_MASTER: &str = "ip-master";
/// Key: the k3s node token the master publishes for workers.
pub const TOKEN_NODETOKEN: &str = "token-nodetoken";
/// Key: the master's kubeconfig (up to [`super::MAX_VALUE_LEN`] bytes).
pub const MASTER_KUBECONFIG: &str = "master-kubeconfig";

/// Role value: a k3s server.
pub const ROLE_MASTER: &str = "master";
/// Role value: the first HA server (`--cluster-init`).
pub const ROLE_MASTER_CLUSTERINIT: &str = "master/clusterinit";
/// Role value: a further HA server.
pub const ROLE_MASTER_HA: &str = "master/ha";
/// Role value: a k3s agent.
pub const ROLE_WORKER: &str = "worker";

/// How often Kairos re-advertises a node's `<uuid>-uuid` key.
pub const ADVERTISE_INTERVAL: Duration = Duration::from_secs(20);
/// The ttl (seconds) of a `<uuid>-uuid` key: Kairos counts a node as alive
/// for 15 minutes after its last advertisement, far more than the interval,
/// so one lost push never marks a healthy node dead.
pub const ADVERTISE_TTL_SECS: u32 = 15 * 60;

/// Whether only the owner may write `bucket`: [`MACHINES`], [`ADDRESSES`]
/// and every bucket starting with [`OWNER_PREFIX`]. In such a bucket an
/// entry's key must be its origin's [`NodeId`] in printable form (26
/// lowercase base32 characters), on local puts and on received entries.
pub fn is_owner_only(bucket: &[u8]) -> bool {
    bucket == MACHINES.as_bytes() || bucket == ADDRESSES.as_bytes() || bucket.starts_with(OWNER_PREFIX.as_bytes())
}

/// The key a node owns in an owner-only bucket: its printable node id.
pub fn owner_key(id: &NodeId) -> [u8; 26] {
    let mut k = [0u8; 26];
    id.encode(&mut k);
    k
}

/// Applies the owner-only rule to an entry whose origin's node id is
/// `origin_id()`; that id if it had to be derived (a BLAKE2s the caller
/// need not repeat).
pub(crate) fn check_owner(
    bucket: &[u8],
    key: &[u8],
    origin_id: impl FnOnce() -> NodeId,
) -> Result<Option<NodeId>, LedgerError> {
    if !is_owner_only(bucket) {
        return Ok(None);
    }
    let id = origin_id();
    if key != owner_key(&id) {
        return Err(LedgerError::NotOwner);
    }
    Ok(Some(id))
}

/// The per-node keys of a Kairos `network_id` bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKeyKind {
    /// `<uuid>-uuid`: liveness, written with [`ADVERTISE_TTL_SECS`].
    Uuid,
    /// `<uuid>-role`: the role assigned to the node.
    Role,
    /// `<uuid>-ip`: the node's overlay address.
    Ip,
}

impl NodeKeyKind {
    /// The suffix after the uuid.
    pub const fn suffix(self) -> &'static str {
        match self {
            NodeKeyKind::Uuid => "-uuid",
            NodeKeyKind::Role => "-role",
            NodeKeyKind::Ip => "-ip",
        }
    }
}

/// A per-node key, `<uuid><suffix>`, built without allocation.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NodeKey {
    buf: [u8; MAX_KEY_LEN],
    len: u8,
}

impl NodeKey {
    /// `<uuid><suffix>`; [`LedgerError::KeyLength`] if it would be empty or
    /// longer than [`MAX_KEY_LEN`].
    pub fn new(uuid: &[u8], kind: NodeKeyKind) -> Result<Self, LedgerError> {
        let suffix = kind.suffix().as_bytes();
        let len = uuid.len() + suffix.len();
        if uuid.is_empty() || len > MAX_KEY_LEN {
            return Err(LedgerError::KeyLength);
        }
        let mut buf = [0u8; MAX_KEY_LEN];
        buf[..uuid.len()].copy_from_slice(uuid);
        buf[uuid.len()..len].copy_from_slice(suffix);
        Ok(NodeKey { buf, len: len as u8 })
    }

    /// The key of a node identified by its node id (this mesh's uuid).
    pub fn of_node(id: &NodeId, kind: NodeKeyKind) -> Self {
        // 26 + 5 bytes always fit.
        Self::new(&owner_key(id), kind).unwrap_or(NodeKey {
            buf: [0; MAX_KEY_LEN],
            len: 0,
        })
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// Splits a key of the form `<uuid><suffix>`.
    pub fn parse(key: &[u8]) -> Option<(&[u8], NodeKeyKind)> {
        [NodeKeyKind::Uuid, NodeKeyKind::Role, NodeKeyKind::Ip]
            .into_iter()
            .find_map(|kind| match key.strip_suffix(kind.suffix().as_bytes()) {
                Some(uuid) if !uuid.is_empty() => Some((uuid, kind)),
                _ => None,
            })
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeKey({:?})", Printable(self.as_bytes()))
    }
}

/// Shows bytes as text when they are UTF-8, else as escaped bytes.
pub(crate) struct Printable<'a>(pub &'a [u8]);

impl fmt::Debug for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match core::str::from_utf8(self.0) {
            Ok(s) => write!(f, "{s:?}"),
            Err(_) => write!(f, "b\"{}\"", self.0.escape_ascii()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use std::string::ToString;

    #[test]
    fn owner_only_buckets() {
        assert!(is_owner_only(b"machines"));
        assert!(is_owner_only(b"addresses"));
        assert!(is_owner_only(b"owner/anything"));
        assert!(!is_owner_only(b"owner"));
        assert!(!is_owner_only(b"kairos"));
        assert!(!is_owner_only(b"machines2"));
        let id = Identity::from_bytes(&[9; 64]).public();
        let mine = owner_key(&id.node_id());
        assert_eq!(&mine[..], id.node_id().to_string().as_bytes());
        let of = || id.node_id();
        assert_eq!(check_owner(b"machines", &mine, of), Ok(Some(id.node_id())));
        assert_eq!(
            check_owner(b"machines", b"someone-else", of),
            Err(LedgerError::NotOwner)
        );
        assert_eq!(
            check_owner(b"kairos", b"anything", || unreachable!("no owner to check")),
            Ok(None)
        );
    }

    #[test]
    fn node_keys() {
        let k = NodeKey::new(b"abc", NodeKeyKind::Role).unwrap();
        assert_eq!(k.as_bytes(), b"abc-role");
        assert_eq!(NodeKey::parse(b"abc-role"), Some((&b"abc"[..], NodeKeyKind::Role)));
        assert_eq!(NodeKey::parse(b"abc-uuid"), Some((&b"abc"[..], NodeKeyKind::Uuid)));
        assert_eq!(NodeKey::parse(b"x-ip"), Some((&b"x"[..], NodeKeyKind::Ip)));
        assert_eq!(NodeKey::parse(b"-ip"), None);
        assert_eq!(NodeKey::parse(IP_MASTER.as_bytes()), None);
        assert_eq!(NodeKey::new(b"", NodeKeyKind::Ip), Err(LedgerError::KeyLength));
        assert_eq!(NodeKey::new(&[b'a'; 126], NodeKeyKind::Ip), Err(LedgerError::KeyLength));
        let id = Identity::from_bytes(&[1; 64]).node_id();
        let k = NodeKey::of_node(&id, NodeKeyKind::Uuid);
        assert_eq!(k.as_bytes(), std::format!("{id}-uuid").as_bytes());
        assert_eq!(
            std::format!("{:?}", NodeKey::new(b"a", NodeKeyKind::Ip).unwrap()),
            "NodeKey(\"a-ip\")"
        );
    }
}
