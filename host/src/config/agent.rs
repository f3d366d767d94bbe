//! [`AgentConfig`]: what the agent runs with once the cloud-config and the
//! environment are resolved and every default is filled in, and the small
//! value types of its fields ([`Role`], [`LogLevel`], [`Endpoint`],
//! [`ApiAddress`], [`OpaqueYaml`]). Each default is a constant here and is
//! listed in `docs/config.md`.
//!
//! These types hold checked values only; reading and checking them is the
//! resolver's job. `Debug` output never shows the network token, the
//! values of `p2p.vpn.env`, the HA datastore URL or the k3s blocks, which may
//! all carry credentials.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;

use kairos_core::token::{NetworkToken, OverlayRange};

/// `network_id` when none is set: the name Kairos uses.
pub const DEFAULT_NETWORK_ID: &str = "kairos";
/// `minimum_nodes` when none is set (Kairos's default): roles are scheduled
/// once this many nodes are seen.
pub const DEFAULT_MINIMUM_NODES: u32 = 2;
/// `p2p.mesh.listen_port` when none is set.
pub const DEFAULT_LISTEN_PORT: u16 = 51820;
/// `p2p.mesh.address` when neither the config nor the token sets one:
/// EdgeVPN's overlay range.
pub const DEFAULT_OVERLAY: OverlayRange = match OverlayRange::new(Ipv4Addr::new(10, 1, 0, 0), 24) {
    Some(r) => r,
    None => panic!("valid range"),
};
/// `p2p.mesh.interface` when none is set (Kairos's interface name).
pub const DEFAULT_INTERFACE: &str = "kairos0";
/// Bytes of headers a relayed overlay packet carries on the underlay: outer
/// IPv6 + UDP (48), the outer transport header and tag (32), the relay
/// envelope (17) and the inner transport header and tag (32).
pub const RELAYED_OVERHEAD: u16 = 48 + 32 + 17 + 32;
/// `p2p.mesh.mtu` when none is set: the largest multiple of 8 with which a
/// relayed packet still fits a 1500-byte underlay (1368 + 129 = 1497).
pub const DEFAULT_MTU: u16 = 1368;
// Checked at compile time: it fits, and it is the largest multiple of 8 that does.
const _: () = assert!(DEFAULT_MTU % 8 == 0 && DEFAULT_MTU + RELAYED_OVERHEAD <= 1500);
const _: () = assert!(DEFAULT_MTU + 8 + RELAYED_OVERHEAD > 1500 && RELAYED_OVERHEAD == 129);
/// Smallest MTU: the IPv6 minimum link MTU (the overlay carries IPv6).
pub const MIN_MTU: u16 = 1280;
/// Largest MTU: a jumbo-frame link.
pub const MAX_MTU: u16 = 9000;
/// `p2p.mesh.master_timeout` when none is set: with `dynamic_roles`, a
/// master gone five minutes is replaced.
pub const DEFAULT_MASTER_TIMEOUT_SECS: u32 = 300;
/// `p2p.mesh.state_dir` when none is set.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/kairos-mesh";
/// `p2p.mesh.api` when none is set: loopback, where `kairos get-kubeconfig`
/// and EdgeVPN's tools look.
pub const DEFAULT_API: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));

/// The resolved configuration of `kairos agent`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AgentConfig {
    /// The network token (`network_token`, or `KAIROS_TOKEN`). Required.
    pub network_token: NetworkToken,
    /// Which cluster of the network this node belongs to (`network_id`);
    /// default [`DEFAULT_NETWORK_ID`].
    pub network_id: String,
    /// The node's Kubernetes role (`role`); default [`Role::Auto`].
    pub role: Role,
    /// Whether to run the embedded DNS (`dns`); default `false`.
    pub dns: bool,
    /// Log verbosity (`loglevel`); default [`LogLevel::Info`].
    pub log_level: LogLevel,
    /// Nodes seen before roles are scheduled (`minimum_nodes`, at least 1);
    /// default [`DEFAULT_MINIMUM_NODES`].
    pub minimum_nodes: u32,
    /// `disable_dht`; default `false`. Accepted for compatibility: this mesh
    /// has no DHT, so it changes nothing.
    #[allow(dead_code)] // accepted and ignored, by design
    pub disable_dht: bool,
    /// Whether roles may change after deployment (`p2p.dynamic_roles`);
    /// default `false` (roles are sticky).
    pub dynamic_roles: bool,
    /// `p2p.vpn`.
    pub vpn: VpnConfig,
    /// `p2p.auto` (legacy: `kairos.skip_auto`, `kairos.ha`).
    pub auto: AutoConfig,
    /// Keys of the legacy `kairos:` block with no `p2p:` equivalent.
    #[allow(dead_code)] // for the k3s bootstrap (issue 6)
    pub legacy: LegacyOptions,
    /// `p2p.mesh`: this project's own settings.
    pub mesh: MeshConfig,
    /// Whether this is a node (`kairos agent`) or an operator's bridge
    /// (`kairos bridge`: a member with no cluster role).
    pub kind: NodeKind,
    /// The userspace overlay of `kairos bridge --userspace` (smoltcp, SOCKS5,
    /// forwards) in place of the interface; never set by a cloud-config.
    pub userspace: Option<crate::agent::userspace::UserspaceConfig>,
    /// The top-level `k3s:` block, as written (for the k3s bootstrap).
    #[allow(dead_code)] // for the k3s bootstrap (issue 6)
    pub k3s: Option<OpaqueYaml>,
    /// The top-level `k3s-agent:` block, as written.
    #[allow(dead_code)] // for the k3s bootstrap (issue 6)
    pub k3s_agent: Option<OpaqueYaml>,
}

/// `p2p.vpn`: whether the overlay is created and whether Kubernetes uses it.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VpnConfig {
    /// `create`: bring up the overlay interface; default `true`.
    pub create: bool,
    /// `use`: run Kubernetes over the overlay; default `true`. Kairos only
    /// uses the overlay when it also creates it.
    pub use_for_kubernetes: bool,
    /// `env`: EdgeVPN environment options, kept as written; default empty.
    pub env: BTreeMap<String, String>,
}

impl Default for VpnConfig {
    fn default() -> Self {
        VpnConfig {
            create: true,
            use_for_kubernetes: true,
            env: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for VpnConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VpnConfig")
            .field("create", &self.create)
            .field("use_for_kubernetes", &self.use_for_kubernetes)
            .field("env_keys", &self.env.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// `p2p.auto`: automatic role scheduling.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AutoConfig {
    /// `enable` (legacy: `skip_auto` inverted); default `true`.
    pub enable: bool,
    /// `ha` (legacy: `kairos.ha`).
    pub ha: HaConfig,
}

impl Default for AutoConfig {
    fn default() -> Self {
        AutoConfig {
            enable: true,
            ha: HaConfig::default(),
        }
    }
}

/// `p2p.auto.ha`: several masters.
#[derive(Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HaConfig {
    /// `enable`; default: `true` when `master_nodes` is set, else `false`
    /// (Kairos's rule).
    pub enable: bool,
    /// `external_db`: a k3s datastore endpoint; default none (embedded etcd).
    pub external_db: Option<String>,
    /// `master_nodes`: masters besides the cluster-init one; default none
    /// (the election decides).
    pub master_nodes: Option<u32>,
}

impl fmt::Debug for HaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaConfig")
            .field("enable", &self.enable)
            .field("external_db", &self.external_db.as_ref().map(|_| "<redacted>"))
            .field("master_nodes", &self.master_nodes)
            .finish()
    }
}

/// Keys of the legacy `kairos:` block kept as written: their mapping onto
/// the overlay and k3s is for the k3s bootstrap to decide.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct LegacyOptions {
    /// `kairos.hybrid`; default `false`.
    pub hybrid: bool,
    /// `kairos.hybrid_vpn`; default `false`.
    pub hybrid_vpn: bool,
}

/// `p2p.mesh`: this project's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MeshConfig {
    /// UDP port of the mesh (`listen_port`, 0 = any free port); default
    /// [`DEFAULT_LISTEN_PORT`].
    pub listen_port: u16,
    /// Members to dial first (`bootstrap_peers`), besides those in the
    /// token; default none.
    pub bootstrap_peers: Vec<Endpoint>,
    /// The overlay IPv4 range (`address`); default: the token's range if it
    /// carries one, else [`DEFAULT_OVERLAY`].
    pub address: OverlayRange,
    /// The TUN interface name (`interface`); default [`DEFAULT_INTERFACE`].
    pub interface: String,
    /// MTU of the interface (`mtu`, [`MIN_MTU`] to [`MAX_MTU`]); default [`DEFAULT_MTU`].
    pub mtu: u16,
    /// Where identity keys and state live (`state_dir`); default [`DEFAULT_STATE_DIR`].
    pub state_dir: PathBuf,
    /// Where the HTTP API listens (`api`); default [`DEFAULT_API`].
    pub api: ApiAddress,
    /// Whether to send and hear LAN multicast beacons (`lan_beacons`); default `true`.
    pub lan_beacons: bool,
    /// With `dynamic_roles`: seconds a master may be gone before it is
    /// replaced (`master_timeout`); default [`DEFAULT_MASTER_TIMEOUT_SECS`].
    pub master_timeout_secs: u32,
}

/// What kind of member runs: a cluster node or an operator's bridge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NodeKind {
    /// `kairos agent`: a node of the `network_id` cluster, in its election.
    #[default]
    Agent,
    /// `kairos bridge`: a member of the mesh that takes no cluster role,
    /// votes in no election and is counted by none.
    Bridge,
}

impl NodeKind {
    /// `agent` or `bridge`, as the logs and the API say it.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Agent => "agent",
            NodeKind::Bridge => "bridge",
        }
    }
}

/// A node's Kubernetes role.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Role {
    /// Decided by the election (`auto`, or no role).
    #[default]
    Auto,
    /// A k3s server.
    Master,
    /// A k3s agent.
    Worker,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Auto => "auto",
            Role::Master => "master",
            Role::Worker => "worker",
        })
    }
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Everything.
    Trace,
    /// Diagnostics for developers.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Problems that do not stop the agent.
    Warn,
    /// Failures only.
    Error,
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "trace",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        })
    }
}

/// A member to dial: an address, or a host name resolved when dialled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// An address literal (port not 0, address not unspecified).
    Addr(SocketAddr),
    /// A host name and port.
    Name {
        /// The host name.
        host: String,
        /// The port (not 0).
        port: u16,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Addr(a) => write!(f, "{a}"),
            Endpoint::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Where the HTTP API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiAddress {
    /// A TCP address.
    Tcp(SocketAddr),
    /// A unix socket (`unix:///run/kairos-mesh.sock`), created with mode 0600.
    Unix(PathBuf),
}

impl fmt::Display for ApiAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiAddress::Tcp(a) => write!(f, "{a}"),
            ApiAddress::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

/// A YAML block kept as written (`k3s:`, `k3s-agent:`). `Debug` shows its
/// top-level keys only: these blocks carry k3s tokens and datastore URLs.
#[derive(Clone, PartialEq)]
pub struct OpaqueYaml(pub serde_yaml_ng::Value);

impl fmt::Debug for OpaqueYaml {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            serde_yaml_ng::Value::Mapping(m) => {
                let keys: Vec<_> = m.keys().map(|k| k.as_str().unwrap_or("<non-string key>")).collect();
                f.debug_struct("OpaqueYaml").field("keys", &keys).finish()
            }
            _ => f.write_str("OpaqueYaml(<not a mapping>)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_credentials() {
        let mut vpn = VpnConfig::default();
        vpn.env.insert("EDGEVPNTOKEN".into(), "s3cret".into());
        let ha = HaConfig {
            enable: true,
            external_db: Some("mysql://u:s3cret@db".into()),
            master_nodes: Some(2),
        };
        let mut m = serde_yaml_ng::Mapping::new();
        m.insert("env".into(), "K3S_TOKEN=s3cret".into());
        let k3s = OpaqueYaml(serde_yaml_ng::Value::Mapping(m));
        let all = format!("{vpn:?} {ha:?} {k3s:?}");
        assert!(!all.contains("s3cret"), "{all}");
        assert!(all.contains("EDGEVPNTOKEN") && all.contains("env"), "{all}");
    }

    #[test]
    fn displays() {
        assert_eq!(ApiAddress::Unix("/run/k.sock".into()).to_string(), "unix:///run/k.sock");
        assert_eq!(ApiAddress::Tcp(DEFAULT_API).to_string(), "127.0.0.1:8080");
        let e = Endpoint::Name {
            host: "seed.example.com".into(),
            port: 51820,
        };
        assert_eq!(e.to_string(), "seed.example.com:51820");
        assert_eq!(DEFAULT_OVERLAY.to_string(), "10.1.0.0/24");
        assert_eq!(Role::default().to_string(), "auto");
        assert_eq!(LogLevel::default().to_string(), "info");
    }
}
