//! What the API shows, read from the node by the driver (which owns it):
//! [`Summary`] (`GET /api/summary`), [`Machine`] (`GET /api/machines`),
//! [`Peer`], [`NodeEntry`], [`PeerstoreEntry`], [`Blockchain`], the ledger
//! views, the [`Metrics`] snapshot and [`member_names`] (for DNS).
//!
//! Field names are an interface (scripts, the e2e tests, `kairos status`
//! and EdgeVPN's tools parse them); they are listed in `docs/api.md`. Add
//! fields, never rename. This module only reads the node; writes go through
//! the driver's commands.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant as StdInstant;

use kairos_core::election::{advertised, DeployedAs, ForcedRole, Role, RoleRecord, ROLES};
use kairos_core::identity::NodeId;
use kairos_core::ledger::buckets::{self, NodeKey, NodeKeyKind, ADDRESSES, FILES, MACHINES, SERVICES, USERS};
use kairos_core::node::record::MachineRecord;
use kairos_core::node::{Member, NodeStats};
use kairos_core::time::Instant;
use serde::Serialize;

use super::info::{Kind, MachineInfo, INFO};
use super::mesh::{MeshNode, Provider};
use super::restore::StateRepair;

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
    /// The cluster (`network_id`) this node belongs to; `null` for a bridge.
    pub network_id: Option<String>,
    /// The overlay interface, `null` without one (`p2p.vpn.create: false`).
    pub interface: Option<String>,
    /// The userspace stack's SOCKS5 proxy and forwards (`kairos bridge
    /// --userspace`, whose interface is `userspace`); `null` otherwise.
    pub userspace: Option<super::userspace::UserspaceInfo>,
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
    /// `master`, `worker`, or `null` while the election has not decided
    /// (always `null` for a bridge).
    pub role: Option<String>,
    /// Seconds since the agent started.
    pub uptime_s: u64,
    /// The agent's version.
    pub version: String,
    /// This machine's host name.
    pub hostname: String,
    /// `agent` or `bridge`.
    pub kind: Kind,
    /// What the data path batches (interface offloads, UDP GSO and GRO).
    pub offload: OffloadInfo,
    /// State files repaired at start (empty when all were sound).
    pub state_repairs: Vec<StateRepair>,
    /// EdgeVPN: `node_id`.
    #[serde(rename = "NodeID")]
    pub edge_node_id: String,
    /// EdgeVPN: members including this node.
    #[serde(rename = "Machines")]
    pub edge_machines: usize,
    /// EdgeVPN: members up.
    #[serde(rename = "Peers")]
    pub edge_peers: usize,
    /// EdgeVPN: entries of the `users` bucket.
    #[serde(rename = "Users")]
    pub edge_users: usize,
    /// EdgeVPN: entries of the `services` bucket.
    #[serde(rename = "Services")]
    pub edge_services: usize,
    /// EdgeVPN: entries of the `files` bucket.
    #[serde(rename = "Files")]
    pub edge_files: usize,
    /// EdgeVPN: live ledger entries.
    #[serde(rename = "BlockChain")]
    pub edge_blockchain: usize,
    /// EdgeVPN: members (this node included) with a `machines` record.
    #[serde(rename = "OnChainNodes")]
    pub edge_on_chain_nodes: usize,
}

/// One entry of `GET /api/machines`: another member.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// Its host name, from its info record.
    pub hostname: Option<String>,
    /// Its cluster, from its role record or its info record.
    pub network_id: Option<String>,
    /// `master`, `master/clusterinit`, `master/ha`, `worker`, or `null`.
    pub role: Option<String>,
    /// `agent` or `bridge`, from its info record.
    pub kind: Option<Kind>,
    /// The round trip of the handshake of the current session with it
    /// (`null` without one).
    pub rtt_ms: Option<f64>,
    /// EdgeVPN: `node_id`.
    #[serde(rename = "PeerID")]
    pub edge_peer_id: String,
    /// EdgeVPN: the host name, `""` if unknown.
    #[serde(rename = "Hostname")]
    pub edge_hostname: String,
    /// EdgeVPN: the OS, `""` if unknown.
    #[serde(rename = "OS")]
    pub edge_os: String,
    /// EdgeVPN: the architecture, `""` if unknown.
    #[serde(rename = "Arch")]
    pub edge_arch: String,
    /// EdgeVPN: `ipv4`.
    #[serde(rename = "Address")]
    pub edge_address: Option<String>,
    /// EdgeVPN: its version, `""` if unknown.
    #[serde(rename = "Version")]
    pub edge_version: String,
    /// EdgeVPN: `up`.
    #[serde(rename = "Connected")]
    pub edge_connected: bool,
    /// EdgeVPN: whether it has a `machines` record.
    #[serde(rename = "OnChain")]
    pub edge_on_chain: bool,
    /// EdgeVPN: `up`.
    #[serde(rename = "Online")]
    pub edge_online: bool,
}

/// One entry of `GET /api/peers`: another member's session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Peer {
    /// Its node id.
    pub node_id: String,
    /// Its host name, from its info record.
    pub hostname: Option<String>,
    /// Its overlay IPv4 address.
    pub ipv4: Option<String>,
    /// Its overlay IPv6 address.
    pub ipv6: String,
    /// Whether a session is up.
    pub up: bool,
    /// `direct`, `relayed` or `none`.
    pub path: Path,
    /// As in [`Machine::endpoint`].
    pub endpoint: Option<String>,
    /// As in [`Machine::relay`].
    pub relay: Option<String>,
    /// The round trip of the handshake of the current session with it
    /// (`null` without one).
    pub rtt_ms: Option<f64>,
    /// Payload bytes received from it.
    pub rx_bytes: u64,
    /// Payload bytes sent to it.
    pub tx_bytes: u64,
    /// Handshakes completed with it.
    pub handshakes: u64,
    /// Seconds since the last handshake completed.
    pub last_handshake_s: Option<u64>,
    /// Whether its liveness advertisement is live here (its ttl, six
    /// advertisement intervals, has not run out since it arrived), so the
    /// election counts it as live. `null`: none held (a bridge, or gone
    /// for longer than the ttl and 10 minutes).
    pub live: Option<bool>,
    /// Seconds since its newest liveness advertisement arrived.
    pub advertised_s: Option<u64>,
}

/// One entry of `GET /api/nodes` (EdgeVPN's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEntry {
    /// The node id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Whether it is this node or a session with it is up.
    #[serde(rename = "Online")]
    pub online: bool,
}

/// One entry of `GET /api/peerstore` (EdgeVPN's shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerstoreEntry {
    /// The node id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its known underlay endpoints (`ip:port`).
    #[serde(rename = "Addrs")]
    pub addrs: Vec<String>,
}

/// `GET /api/blockchain`: the ledger's position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blockchain {
    /// EdgeVPN: the Lamport clock.
    #[serde(rename = "Index")]
    pub index: u64,
    /// EdgeVPN: a hex digest of the live entries (equal on replicas in step).
    #[serde(rename = "Hash")]
    pub hash: String,
    /// Live entries.
    pub entries: usize,
    /// The Lamport clock.
    pub clock: u64,
}

/// One bucket as `{"key": "value"}`.
pub type BucketView = BTreeMap<String, String>;
/// The ledger as `{"bucket": {"key": "value"}}`.
pub type LedgerView = BTreeMap<String, BucketView>;

/// A member's names, for the DNS resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberName {
    /// Its node id.
    pub node_id: NodeId,
    /// Its host name, from its info record (`None` without one).
    pub hostname: Option<String>,
    /// Its cluster, from its info record (`None` for a bridge or without one).
    pub network_id: Option<String>,
    /// Its overlay IPv4 address.
    pub ipv4: Option<std::net::Ipv4Addr>,
    /// Its overlay IPv6 address.
    pub ipv6: std::net::Ipv6Addr,
}

/// `GET /metrics`: what the Prometheus text shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Metrics {
    /// The summary.
    pub summary: Summary,
    /// Every other member's session.
    pub peers: Vec<Peer>,
    /// Live ledger entries.
    pub ledger_entries: usize,
    /// Ledger records (live, tombstones, expired).
    pub ledger_records: usize,
    /// Record slots of the replica.
    pub ledger_capacity: usize,
    /// Arena bytes in use.
    pub ledger_arena_bytes: usize,
    /// The Lamport clock.
    pub ledger_clock: u64,
    /// The node's counters.
    pub stats: NodeStats,
    /// The data path's counters.
    pub datapath: super::datapath::DatapathStats,
    /// How saving state goes.
    pub saves: super::persist::SaveStats,
}

/// What the driver knows besides the node.
#[derive(Debug, Clone)]
pub struct AgentInfo {
    /// `network_id`, `None` for a bridge.
    pub network_id: Option<String>,
    /// The interface name, if one was made.
    pub interface: Option<String>,
    /// The userspace stack's listeners (`bridge --userspace`).
    pub userspace: Option<super::userspace::UserspaceInfo>,
    /// The mesh socket's address.
    pub listen: SocketAddr,
    /// The overlay IPv4 range.
    pub overlay: String,
    /// When the agent started.
    pub started: StdInstant,
    /// This machine's info record (host name, kind).
    pub machine: MachineInfo,
    /// Whether the election runs with HA (`master/ha` vs `master`).
    pub ha: bool,
    /// What the data path batches.
    pub offload: OffloadInfo,
    /// State files repaired at start.
    pub state_repairs: Vec<StateRepair>,
}

/// The data path's offloads, as `GET /api/summary` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OffloadInfo {
    /// Interface TSO and checksum offloads: `on`, `off: <reason>`, or
    /// `none` without an interface.
    pub interface: String,
    /// Datagrams per send (UDP GSO; 1 without it).
    pub udp_gso_segments: usize,
    /// Datagrams per receive (UDP GRO; 1 without it).
    pub udp_gro_segments: usize,
}

impl OffloadInfo {
    /// From the interface (if any) and the mesh socket.
    pub fn new(tun: Option<&super::tun::Offload>, udp: super::udp::UdpOffload) -> OffloadInfo {
        let interface = match tun {
            None => "none".to_owned(),
            Some(super::tun::Offload::On) => "on".to_owned(),
            Some(super::tun::Offload::Off(why)) => format!("off: {why}"),
        };
        OffloadInfo {
            interface,
            udp_gso_segments: udp.gso_segments,
            udp_gro_segments: udp.gro_segments,
        }
    }
}

impl std::fmt::Display for OffloadInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interface {}, UDP GSO x{}, GRO x{}",
            self.interface, self.udp_gso_segments, self.udp_gro_segments
        )
    }
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
    let ledger = node.ledger();
    let count = |bucket: &str| ledger.iter_bucket(bucket.as_bytes()).count();
    let on_chain = std::iter::once(node.node_id())
        .chain(node.members().map(|m| m.id()))
        .filter(|id| ledger.get(MACHINES.as_bytes(), &buckets::owner_key(id)).is_some())
        .count();
    let node_id = node.node_id().to_string();
    Summary {
        node_id: node_id.clone(),
        network_id: info.network_id.clone(),
        interface: info.interface.clone(),
        userspace: info.userspace.clone(),
        ipv4: node.ipv4().map(|a| a.to_string()),
        ipv6: node.ipv6().to_string(),
        overlay: info.overlay.clone(),
        listen: info.listen.to_string(),
        members,
        peers_up: up,
        direct,
        relayed,
        role: info.network_id.as_ref().and(node.role()).map(role_name),
        uptime_s: info.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        hostname: info.machine.hostname.clone(),
        kind: info.machine.kind,
        offload: info.offload.clone(),
        state_repairs: info.state_repairs.clone(),
        edge_node_id: node_id,
        edge_machines: members + 1,
        edge_peers: up,
        edge_users: count(USERS),
        edge_services: count(SERVICES),
        edge_files: count(FILES),
        edge_blockchain: ledger.len(),
        edge_on_chain_nodes: on_chain,
    }
}

/// What the ledger says about member `id`: its info record, the network
/// of its role record, its role.
struct Described {
    info: Option<MachineInfo>,
    network_id: Option<String>,
    role: Option<String>,
    on_chain: bool,
}

fn describe(node: &MeshNode, id: &NodeId, ha: bool) -> Described {
    let ledger = node.ledger();
    let key = buckets::owner_key(id);
    let info = ledger
        .get(INFO.as_bytes(), &key)
        .and_then(|e| MachineInfo::parse(e.value()));
    let record = ledger.get(ROLES.as_bytes(), &key);
    let record = record.as_ref().and_then(|e| RoleRecord::parse(e.value()).ok());
    let network_id = record
        .map(|(n, _)| n.to_owned())
        .or_else(|| info.as_ref().and_then(|i| i.network_id.clone()));
    let mut role = None;
    if let (Some(net), Some(outcome)) = (network_id.as_deref(), node.election()) {
        if node.network_id() == Some(net) {
            role = outcome.role_of(id).map(|r| r.kairos_value(ha).to_owned());
        }
    }
    if role.is_none() {
        role = record.and_then(|(_, r)| r.deployment).map(|d| match d.role {
            DeployedAs::Primary if ha => buckets::ROLE_MASTER_CLUSTERINIT.to_owned(),
            DeployedAs::Primary => buckets::ROLE_MASTER.to_owned(),
            DeployedAs::Server => buckets::ROLE_MASTER_HA.to_owned(),
            DeployedAs::Worker => buckets::ROLE_WORKER.to_owned(),
        });
    }
    if role.is_none() {
        // A Kairos-style `<uuid>-role` key in the cluster's bucket.
        role = network_id.as_deref().and_then(|net| {
            let k = NodeKey::of_node(id, NodeKeyKind::Role);
            let e = ledger.get(net.as_bytes(), k.as_bytes())?;
            std::str::from_utf8(e.value()).ok().map(str::to_owned)
        });
    }
    Described {
        info,
        network_id,
        role,
        on_chain: ledger.get(MACHINES.as_bytes(), &key).is_some(),
    }
}

fn relay_of(node: &MeshNode, id: &NodeId) -> Option<String> {
    match node.path(id) {
        Some(kairos_core::node::Path::Relayed(via)) => Some(via.to_string()),
        _ => None,
    }
}

fn rtt_ms(node: &MeshNode, id: &NodeId) -> Option<f64> {
    let rtt = node.tunnel(id)?.handshake_rtt()?;
    // Milliseconds with microsecond precision.
    Some(rtt.as_micros() as f64 / 1000.0)
}

/// The other members of `node`, in node id order.
pub fn machines(node: &MeshNode, now: Instant, info: &AgentInfo) -> Vec<Machine> {
    let mut out: Vec<Machine> = node
        .members()
        .map(|m| {
            let id = m.id();
            let d = describe(node, &id, info.ha);
            let ipv4 = m.ipv4().map(|a| a.to_string());
            let field = |f: fn(&MachineInfo) -> &String| d.info.as_ref().map(f).cloned().unwrap_or_default();
            Machine {
                node_id: id.to_string(),
                ipv4: ipv4.clone(),
                ipv6: node.member_ipv6(&id).to_string(),
                up: m.is_up(),
                path: Path::of(m),
                endpoint: m.endpoint().map(|e| e.to_string()),
                relay: relay_of(node, &id),
                last_seen_s: m.last_seen().map(|t| now.saturating_since(t).as_secs()),
                hostname: d.info.as_ref().map(|i| i.hostname.clone()),
                network_id: d.network_id.clone(),
                role: d.role.clone(),
                kind: d.info.as_ref().map(|i| i.kind),
                rtt_ms: rtt_ms(node, &id),
                edge_peer_id: id.to_string(),
                edge_hostname: field(|i| &i.hostname),
                edge_os: field(|i| &i.os),
                edge_arch: field(|i| &i.arch),
                edge_address: ipv4,
                edge_version: field(|i| &i.version),
                edge_connected: m.is_up(),
                edge_on_chain: d.on_chain,
                edge_online: m.is_up(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    out
}

/// The sessions with the other members, in node id order.
pub fn peers(node: &MeshNode, now: Instant) -> Vec<Peer> {
    let mut out: Vec<Peer> = node
        .members()
        .map(|m| {
            let id = m.id();
            let stats = node.tunnel(&id).map(|t| t.stats()).unwrap_or_default();
            let ad = advertised(node.ledger(), &id, now);
            let hostname = node
                .ledger()
                .get(INFO.as_bytes(), &buckets::owner_key(&id))
                .and_then(|e| MachineInfo::parse(e.value()))
                .map(|i| i.hostname);
            Peer {
                node_id: id.to_string(),
                hostname,
                ipv4: m.ipv4().map(|a| a.to_string()),
                ipv6: node.member_ipv6(&id).to_string(),
                up: m.is_up(),
                path: Path::of(m),
                endpoint: m.endpoint().map(|e| e.to_string()),
                relay: relay_of(node, &id),
                rtt_ms: rtt_ms(node, &id),
                rx_bytes: stats.rx_bytes,
                tx_bytes: stats.tx_bytes,
                handshakes: stats.handshakes,
                last_handshake_s: stats.last_handshake.map(|t| now.saturating_since(t).as_secs()),
                live: ad.map(|(live, _)| live),
                advertised_s: ad.map(|(_, at)| now.saturating_since(at).as_secs()),
            }
        })
        .collect();
    out.sort_by(|a, b| a.node_id.cmp(&b.node_id));
    out
}

/// `GET /api/nodes`: this node and every member, in node id order.
pub fn nodes(node: &MeshNode) -> Vec<NodeEntry> {
    let mut out: Vec<NodeEntry> = std::iter::once(NodeEntry {
        id: node.node_id().to_string(),
        online: true,
    })
    .chain(node.members().map(|m| NodeEntry {
        id: m.id().to_string(),
        online: m.is_up(),
    }))
    .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// `GET /api/peerstore`: the endpoints known for each member.
pub fn peerstore(node: &MeshNode) -> Vec<PeerstoreEntry> {
    let mut out: Vec<PeerstoreEntry> = node
        .members()
        .map(|m| PeerstoreEntry {
            id: m.id().to_string(),
            addrs: m.endpoint().map(|e| e.to_string()).into_iter().collect(),
        })
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// `GET /api/blockchain`.
pub fn blockchain(node: &MeshNode) -> Blockchain {
    let ledger = node.ledger();
    let digest = ledger.digest();
    let mut bytes = [0u8; 4 + 64 * 8];
    bytes[..4].copy_from_slice(&digest.entries().to_le_bytes());
    for (i, chunk) in bytes[4..].chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&digest.range(i).to_le_bytes());
    }
    let hash = kairos_core::crypto::hash(&[b"kairos api ledger digest", &bytes]);
    Blockchain {
        index: ledger.clock(),
        hash: hash.iter().map(|b| format!("{b:02x}")).collect(),
        entries: ledger.len(),
        clock: ledger.clock(),
    }
}

/// The live entries of `bucket` (or of every bucket), values shown by
/// [`show_value`]. Tombstones and expired entries are left out.
pub fn ledger_view(node: &MeshNode, bucket: Option<&[u8]>) -> LedgerView {
    let mut out = LedgerView::new();
    for e in node.ledger().iter() {
        if bucket.is_some_and(|b| b != e.bucket()) {
            continue;
        }
        out.entry(show_name(e.bucket()))
            .or_default()
            .insert(show_name(e.key()), show_value(e.bucket(), e.value()));
    }
    out
}

/// Who wrote one live entry, for `GET /api/writers/{bucket}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Writer {
    /// The writer's node id.
    pub node_id: String,
    /// Whether the writer is the master of the `network_id` the bucket is
    /// named after, whose k3s entries (`ip-master`, `token-nodetoken`,
    /// `master-kubeconfig`) count (`publishers::Publishers`: the primary this
    /// node's election names, or, where it names none, a member whose role
    /// record shows it deployed as a master, or the primary those records
    /// show). Any member may write those keys; `false` for every other
    /// writer.
    pub master: bool,
    /// The value, shown as by [`show_value`] (read with the writer, so the
    /// two always belong together).
    pub value: String,
}

/// The writers of one bucket's live entries, by key.
pub type WritersView = BTreeMap<String, Writer>;

/// The writer of every live entry of `bucket`.
pub fn writers(node: &MeshNode, bucket: &[u8], now: Instant) -> WritersView {
    let Ok(network) = std::str::from_utf8(bucket) else {
        return WritersView::new();
    };
    let primary = (node.network_id() == Some(network)).then(|| node.primary()).flatten();
    let publishers = super::publishers::Publishers::new(node.ledger(), network, primary, now);
    node.ledger()
        .iter_bucket(bucket)
        .map(|e| {
            let writer = Writer {
                node_id: e.origin_id().to_string(),
                master: publishers.contains(&e.origin_id()),
                value: show_value(bucket, e.value()),
            };
            (show_name(e.key()), writer)
        })
        .collect()
}

/// The live value under `(bucket, key)`, shown by [`show_value`].
pub fn ledger_get(node: &MeshNode, bucket: &[u8], key: &[u8]) -> Option<String> {
    node.ledger().get(bucket, key).map(|e| show_value(bucket, e.value()))
}

/// Every member's names (this node first, then in node id order), for the
/// DNS resolver: host names come from the members' info records.
pub fn member_names(node: &MeshNode) -> Vec<MemberName> {
    let info = |id: &NodeId| {
        node.ledger()
            .get(INFO.as_bytes(), &buckets::owner_key(id))
            .and_then(|e| MachineInfo::parse(e.value()))
            .map(|i| (i.hostname, i.network_id))
            .unwrap_or_default()
    };
    let me = node.node_id();
    let mut others: Vec<MemberName> = node
        .members()
        .map(|m| {
            let (hostname, network_id) = info(&m.id());
            MemberName {
                node_id: m.id(),
                hostname: (!hostname.is_empty()).then_some(hostname),
                network_id,
                ipv4: m.ipv4(),
                ipv6: node.member_ipv6(&m.id()),
            }
        })
        .collect();
    others.sort_by_key(|m| m.node_id.to_string());
    let (hostname, network_id) = info(&me);
    let mut out = vec![MemberName {
        node_id: me,
        hostname: (!hostname.is_empty()).then_some(hostname),
        network_id,
        ipv4: node.ipv4(),
        ipv6: node.ipv6(),
    }];
    out.extend(others);
    out
}

/// The metrics snapshot.
pub fn metrics(
    node: &MeshNode,
    now: Instant,
    info: &AgentInfo,
    datapath: super::datapath::DatapathStats,
    saves: super::persist::SaveStats,
) -> Metrics {
    let ledger = node.ledger();
    Metrics {
        summary: summary(node, info),
        peers: peers(node, now),
        ledger_entries: ledger.len(),
        ledger_records: ledger.records(),
        ledger_capacity: super::mesh::LEDGER_ENTRIES,
        ledger_arena_bytes: ledger.arena_usage().0,
        ledger_clock: ledger.clock(),
        stats: node.stats(),
        datapath,
        saves,
    }
}

/// A bucket or key name: the text if UTF-8, else `base64:` and the bytes.
pub fn show_name(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("base64:{}", base64(bytes)),
    }
}

/// A value as the API shows it. The well-known binary records decoded:
/// an address claim (`addresses`) as the address (`10.1.0.7`), a machine
/// record (`machines`) as its endpoints (`192.0.2.7:51820, ...`), a role
/// record (`owner/roles`) as `network_id=kairos forced=none
/// deployed=primary epoch=1`. Otherwise UTF-8 as the text, anything else as
/// `base64:` and the bytes.
pub fn show_value(bucket: &[u8], value: &[u8]) -> String {
    if bucket == ADDRESSES.as_bytes() {
        if let Some(a) = kairos_core::node::ipam::decode(value) {
            return a.to_string();
        }
    } else if bucket == MACHINES.as_bytes() {
        if let Some(r) = MachineRecord::parse(value) {
            let list: Vec<String> = r.endpoints.iter().map(|e| e.to_string()).collect();
            return list.join(", ");
        }
    } else if bucket == ROLES.as_bytes() {
        if let Ok((network, r)) = RoleRecord::parse(value) {
            return show_role_record(network, &r);
        }
    }
    show_name(value)
}

fn show_role_record(network: &str, r: &RoleRecord) -> String {
    let forced = match r.forced {
        None => "none",
        Some(ForcedRole::Master) => "master",
        Some(ForcedRole::Worker) => "worker",
    };
    let mut out = format!("network_id={network} forced={forced}");
    match r.deployment {
        None => out.push_str(" deployed=none"),
        Some(d) => {
            let role = match d.role {
                DeployedAs::Primary => "primary",
                DeployedAs::Server => "server",
                DeployedAs::Worker => "worker",
            };
            out.push_str(&format!(" deployed={role} epoch={}", d.epoch));
        }
    }
    out
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `master` or `worker`.
pub fn role_name(role: Role) -> String {
    match role {
        Role::Master { .. } => "master".to_owned(),
        Role::Worker => "worker".to_owned(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kairos_core::identity::Identity;
    use kairos_core::node::NodeConfig;
    use kairos_core::token::NetworkKeys;
    use rand_core::OsRng;

    /// Runs `f` with a real agent node without members, on a thread with
    /// room for the boxed ledger's construction.
    pub(crate) fn with_node(f: impl FnOnce(&mut MeshNode, Instant) + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || {
                let mut node = crate::agent::mesh::new_node(
                    Identity::generate(&mut OsRng),
                    &NetworkKeys::derive(&[1; 32]),
                    NodeConfig::default(),
                    4,
                    Box::default(),
                    std::time::Duration::from_secs(1_800_000_000),
                );
                f(&mut node, Instant::from_secs(10));
            })
            .unwrap()
            .join()
            .unwrap();
    }

    fn agent_info() -> AgentInfo {
        AgentInfo {
            network_id: Some("kairos".into()),
            interface: None,
            userspace: None,
            listen: "[::]:51820".parse().unwrap(),
            overlay: "10.1.0.0/24".into(),
            started: StdInstant::now(),
            machine: MachineInfo {
                hostname: "edge-1".into(),
                os: "linux".into(),
                arch: "x86_64".into(),
                version: "0.1.0".into(),
                network_id: Some("kairos".into()),
                kind: Kind::Agent,
            },
            ha: false,
            offload: OffloadInfo::new(
                None,
                crate::agent::udp::UdpOffload {
                    gso_segments: 1,
                    gro_segments: 1,
                },
            ),
            state_repairs: Vec::new(),
        }
    }

    #[test]
    fn writers_say_who_wrote_each_entry_and_whether_it_is_the_master() {
        with_node(|node, now| {
            let me = node.node_id().to_string();
            node.ledger_put(now, b"kairos", b"master-kubeconfig", b"k", 0).unwrap();
            let w = writers(node, b"kairos", now);
            assert_eq!(w.len(), 1);
            assert_eq!(w["master-kubeconfig"].node_id, me);
            assert!(!w["master-kubeconfig"].master, "no record shows it deployed as primary");
            // Its role record says it deployed as primary of "kairos".
            let record = RoleRecord {
                deployment: Some(kairos_core::election::Deployment {
                    role: DeployedAs::Primary,
                    epoch: 1,
                    since: 1,
                }),
                ..RoleRecord::default()
            };
            let mut buf = [0u8; kairos_core::election::MAX_RECORD_LEN];
            let n = record.emit("kairos", &mut buf).unwrap();
            let key = buckets::owner_key(&node.node_id());
            node.ledger_put(now, ROLES.as_bytes(), &key, &buf[..n], 0).unwrap();
            assert!(writers(node, b"kairos", now)["master-kubeconfig"].master);
            // Of another network, it is not that network's master.
            node.ledger_put(now, b"prod", b"master-kubeconfig", b"k", 0).unwrap();
            assert!(!writers(node, b"prod", now)["master-kubeconfig"].master);
            assert!(writers(node, b"empty", now).is_empty());
        });
    }

    #[test]
    fn a_real_node_reads_back_its_ledger_without_tombstones() {
        with_node(|node, now| {
            let info = agent_info();
            crate::agent::write_machine_info(node, &info.machine, now);
            let clock = node.ledger().clock();
            crate::agent::write_machine_info(node, &info.machine, now);
            assert_eq!(node.ledger().clock(), clock, "the same record is not written again");
            node.ledger_put(now, b"users", b"alice", b"x", 0).unwrap();
            node.ledger_put(now, b"kairos", b"gone", b"x", 0).unwrap();
            node.ledger_delete(now, b"kairos", b"gone").unwrap();
            node.ledger_put(now, b"kairos", b"bin", &[0xff], 0).unwrap();

            let view = ledger_view(node, None);
            assert_eq!(view["kairos"].len(), 1, "the tombstone is not shown: {view:?}");
            assert_eq!(view["kairos"]["bin"], "base64:/w==");
            assert_eq!(view["users"]["alice"], "x");
            let me = node.node_id().to_string();
            let record = MachineInfo::parse(view[INFO][&me].as_bytes()).expect("an info record");
            assert_eq!(record.hostname, "edge-1");
            assert_eq!(ledger_view(node, Some(b"users")).len(), 1);
            assert!(ledger_view(node, Some(b"none")).is_empty());
            assert_eq!(ledger_get(node, b"kairos", b"gone"), None);
            assert_eq!(ledger_get(node, b"users", b"alice").as_deref(), Some("x"));

            let s = summary(node, &info);
            assert_eq!((s.hostname.as_str(), s.kind), ("edge-1", Kind::Agent));
            assert_eq!((s.edge_machines, s.edge_users, s.edge_on_chain_nodes), (1, 1, 0));
            assert_eq!(s.edge_blockchain, node.ledger().len());
            let b = blockchain(node);
            assert_eq!((b.entries, b.index), (node.ledger().len(), node.ledger().clock()));
            assert_eq!(b.hash.len(), 64);
            assert_eq!(
                nodes(node),
                vec![NodeEntry {
                    id: me.clone(),
                    online: true
                }]
            );
            assert!(machines(node, now, &info).is_empty());

            let names = member_names(node);
            assert_eq!(names.len(), 1);
            assert_eq!(names[0].node_id, node.node_id());
            assert_eq!(names[0].hostname.as_deref(), Some("edge-1"));
            assert_eq!(names[0].ipv6, node.ipv6());
            let m = metrics(node, now, &info, Default::default(), Default::default());
            assert_eq!(m.ledger_entries, node.ledger().len());
        });
    }

    #[test]
    fn a_bridge_summary_has_no_network_or_role() {
        with_node(|node, _| {
            let mut info = agent_info();
            info.network_id = None;
            info.machine.kind = Kind::Bridge;
            let s = summary(node, &info);
            assert_eq!((s.network_id, s.role, s.kind), (None, None, Kind::Bridge));
        });
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (raw, b64) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), b64);
        }
    }

    #[test]
    fn values_are_text_addresses_or_base64() {
        assert_eq!(show_value(b"kairos", b"master"), "master");
        assert_eq!(show_value(b"kairos", &[0xff, 0x00]), "base64:/wA=");
        assert_eq!(show_value(ADDRESSES.as_bytes(), &[10, 1, 0, 7]), "10.1.0.7");
        assert_eq!(show_value(ADDRESSES.as_bytes(), b"not a claim"), "not a claim");
        assert_eq!(show_name(&[0xc3]), "base64:ww==");
        let mut rec = MachineRecord::default();
        rec.endpoints.push("192.0.2.7:51820".parse().unwrap()).unwrap();
        rec.endpoints.push("[2001:db8::1]:51821".parse().unwrap()).unwrap();
        let mut buf = [0u8; kairos_core::node::record::MAX_RECORD_LEN];
        let n = rec.emit(&mut buf);
        assert_eq!(
            show_value(MACHINES.as_bytes(), &buf[..n]),
            "192.0.2.7:51820, [2001:db8::1]:51821"
        );
        let role = RoleRecord {
            forced: Some(ForcedRole::Master),
            deployment: Some(kairos_core::election::Deployment {
                role: DeployedAs::Primary,
                epoch: 1,
                since: 5,
            }),
            vote: None,
        };
        let mut buf = [0u8; kairos_core::election::MAX_RECORD_LEN];
        let n = role.emit("kairos", &mut buf).unwrap();
        assert_eq!(
            show_value(ROLES.as_bytes(), &buf[..n]),
            "network_id=kairos forced=master deployed=primary epoch=1"
        );
        assert_eq!(show_value(ROLES.as_bytes(), &[0xff, 1]), "base64:/wE=");
    }
}
