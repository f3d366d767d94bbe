//! What the API shows: [`Summary`] (`GET /api/summary`) and [`Machine`]
//! (`GET /api/machines`), read from the node by the driver, which owns it.
//!
//! Field names are an interface (scripts, the e2e tests and `kairos status`
//! parse them); they are listed in `docs/agent.md`. Add fields, never rename.

use std::net::SocketAddr;
use std::time::Instant as StdInstant;

use kairos_core::election::Role;
use kairos_core::node::Member;
use kairos_core::time::Instant;
use serde::Serialize;

use super::mesh::{MeshNode, Provider};

/// How traffic reaches a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Path {
    /// Straight to its endpoint.
    Direct,
    /// Through another member.
    Relayed,
    /// No session is up.
    None,
}

impl Path {
    /// The path to `m` now.
    pub fn of(m: &Member<Provider>) -> Path {
        match (m.is_up(), m.is_relayed()) {
            (false, _) => Path::None,
            (true, true) => Path::Relayed,
            (true, false) => Path::Direct,
        }
    }

    /// The word used in logs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Path::Direct => "direct",
            Path::Relayed => "relayed",
            Path::None => "none",
        }
    }
}

/// `GET /api/summary`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// This node's id (26 characters).
    pub node_id: String,
    /// The cluster (`network_id`) this node belongs to.
    pub network_id: String,
    /// The overlay interface, `null` without one (`p2p.vpn.create: false`).
    pub interface: Option<String>,
    /// The overlay IPv4 address, `null` until assigned.
    pub ipv4: Option<String>,
    /// The overlay IPv6 address.
    pub ipv6: String,
    /// The overlay IPv4 range.
    pub overlay: String,
    /// The mesh UDP socket's address.
    pub listen: String,
    /// Other members known.
    pub members: usize,
    /// Members with a session up.
    pub peers_up: usize,
    /// Members up over a direct path.
    pub direct: usize,
    /// Members up through a relay.
    pub relayed: usize,
    /// `master`, `worker`, or `null` while the election has not decided.
    pub role: Option<String>,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// The agent's version.
    pub version: String,
}

/// One entry of `GET /api/machines`: another member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// Its node id.
    pub node_id: String,
    /// Its overlay IPv4 address, `null` until it claims one.
    pub ipv4: Option<String>,
    /// Its overlay IPv6 address.
    pub ipv6: String,
    /// Whether a session with it is up.
    pub up: bool,
    /// `direct`, `relayed` or `none`.
    pub path: Path,
    /// Where its datagrams go (its last authenticated source, else its
    /// announced endpoint), `null` if unknown. While relayed, the endpoint
    /// the direct path would use (it is probed every 10 s).
    pub endpoint: Option<String>,
    /// The node id of the member relaying its traffic, `null` unless
    /// `path` is `relayed`.
    pub relay: Option<String>,
    /// Seconds since an authenticated packet last came from it.
    pub last_seen_s: Option<u64>,
}

/// What the driver knows besides the node.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// `network_id`.
    pub network_id: String,
    /// The interface name, if one was made.
    pub interface: Option<String>,
    /// The mesh socket's address.
    pub listen: SocketAddr,
    /// The overlay IPv4 range.
    pub overlay: String,
    /// When the agent started.
    pub started: StdInstant,
}

/// The summary of `node`.
pub fn summary(node: &MeshNode, info: &AgentInfo) -> Summary {
    let (mut members, mut up, mut direct, mut relayed) = (0, 0, 0, 0);
    for m in node.members() {
        members += 1;
        match Path::of(m) {
            Path::Direct => {
                up += 1;
                direct += 1;
            }
            Path::Relayed => {
                up += 1;
                relayed += 1;
            }
            Path::None => {}
        }
    }
    Summary {
        node_id: node.node_id().to_string(),
        network_id: info.network_id.clone(),
        interface: info.interface.clone(),
        ipv4: node.ipv4().map(|a| a.to_string()),
        ipv6: node.ipv6().to_string(),
        overlay: info.overlay.clone(),
        listen: info.listen.to_string(),
        members,
        peers_up: up,
        direct,
        relayed,
        role: node.role().map(role_name),
        uptime_s: info.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// The members of `node`, in node id order.
pub fn machines(node: &MeshNode, now: Instant) -> Vec<Machine> {
    let mut out: Vec<Machine> = node
        .members()
        .map(|m| Machine {
            node_id: m.id().to_string(),
            ipv4: m.ipv4().map(|a| a.to_string()),
            ipv6: node.member_ipv6(&m.id()).to_string(),
            up: m.is_up(),
            path: Path::of(m),
            endpoint: m.endpoint().map(|e| e.to_string()),
            relay: match node.path(&m.id()) {
                Some(kairos_core::node::Path::Relayed(via)) => Some(via.to_string()),
                _ => None,
            },
            last_seen_s: m.last_seen().map(|t| now.saturating_since(t).as_secs()),
        })
        .collect();
    out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    out
}

/// `master` or `worker`.
pub fn role_name(role: Role) -> String {
    match role {
        Role::Master { .. } => "master".to_owned(),
        Role::Worker => "worker".to_owned(),
    }
}
