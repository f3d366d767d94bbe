//! The agent's [`MeshNode`]: the core's `Node` with the host's choices of
//! crypto, RNG, storage sizes and verifier, and the mapping from the
//! resolved [`AgentConfig`] to the core's `NodeConfig` (ports, bootstrap
//! endpoints, beacons, overlay range, advertised endpoints, election).
//!
//! Everything here is pure and unit tested; sockets and name resolution
//! happen in the caller, which passes their results in.

use std::net::{IpAddr, SocketAddr};

use kairos_core::crypto::DefaultProvider;
use kairos_core::election::{ElectionConfig, ForcedRole, MemberView, MAX_MASTERS};
use kairos_core::identity::Identity;
use kairos_core::ledger::{Ed25519Verifier, Ledger};
use kairos_core::node::{BoxedTunnels, MemberSlot, Node, NodeConfig, RoleConfig};
use kairos_core::time::Duration;
use kairos_core::token::{NetworkKeys, MAX_BOOTSTRAP};
use rand_core::OsRng;

use crate::config::agent::{AgentConfig, NodeKind, Role};

/// The crypto provider of the agent (ring on hosts).
pub type Provider = DefaultProvider;
/// Ledger records the agent's replica holds.
pub const LEDGER_ENTRIES: usize = 4096;
/// Bytes of buckets, keys and values the replica holds (a kubeconfig is up
/// to 16 KiB; machine records and claims are tens of bytes).
pub const LEDGER_ARENA: usize = 512 * 1024;
/// The agent's ledger replica.
pub type AgentLedger = Ledger<LEDGER_ENTRIES, LEDGER_ARENA>;
/// The agent's node.
pub type MeshNode = Node<
    Provider,
    OsRng,
    Ed25519Verifier,
    Box<[MemberSlot<Provider>]>,
    BoxedTunnels<Provider>,
    Box<AgentLedger>,
    Box<[MemberView]>,
    LEDGER_ENTRIES,
    LEDGER_ARENA,
>;

/// Fewest member slots (a /30 range still gets a usable table).
const MIN_MEMBERS: usize = 64;
/// Most member slots: each costs a few KiB once used, and a member without
/// an overlay address cannot be routed to anyway.
const MAX_MEMBERS: usize = 4096;
/// Extra masters with HA when `master_nodes` is not set (Kairos' example value).
pub const DEFAULT_HA_EXTRA_MASTERS: u32 = 2;

/// Member slots for `config`: one per address of the overlay range, within
/// [`MIN_MEMBERS`]..=[`MAX_MEMBERS`].
pub fn member_capacity(config: &AgentConfig) -> usize {
    let hosts = kairos_core::node::ipam::host_count(&config.mesh.address) as usize;
    hosts.clamp(MIN_MEMBERS, MAX_MEMBERS)
}

/// Problems with the mapping that do not stop the agent (logged as warnings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warnings(pub Vec<String>);

/// The core's configuration for `config`, listening on `port`, with the
/// resolved `bootstrap` endpoints (config then token, in order) and the
/// host's `advertise` endpoints.
pub fn node_config(
    config: &AgentConfig,
    port: u16,
    bootstrap: &[SocketAddr],
    advertise: &[SocketAddr],
) -> (NodeConfig, Warnings) {
    let mut warnings = Vec::new();
    let mut c = NodeConfig::default();
    c.port = port;
    c.lan_beacons = config.mesh.lan_beacons;
    c.overlay = config.mesh.address;
    for (i, &b) in bootstrap.iter().enumerate() {
        if c.bootstrap.push(b).is_err() {
            warnings.push(format!(
                "only the first {MAX_BOOTSTRAP} bootstrap peers are dialled; {} more ignored",
                bootstrap.len() - i
            ));
            break;
        }
    }
    for &a in advertise {
        let _ = c.advertise.push(a);
    }
    c.roles = None;
    if config.kind == NodeKind::Agent {
        match role_config(config) {
            Ok(roles) => c.roles = Some(roles),
            Err(e) => warnings.push(format!("the role election is off: {e}")),
        }
    }
    (c, Warnings(warnings))
}

/// The election settings of `config`.
fn role_config(config: &AgentConfig) -> Result<RoleConfig, kairos_core::election::ElectionError> {
    let forced = match config.role {
        Role::Auto => None,
        Role::Master => Some(ForcedRole::Master),
        Role::Worker => Some(ForcedRole::Worker),
    };
    let ha = &config.auto.ha;
    let masters = if ha.enable {
        1 + ha.master_nodes.unwrap_or(DEFAULT_HA_EXTRA_MASTERS)
    } else {
        1
    };
    let election = ElectionConfig {
        minimum_nodes: config.minimum_nodes,
        ha_masters: masters.min(MAX_MASTERS as u32) as u8,
        dynamic_roles: config
            .dynamic_roles
            .then_some(Duration::from_secs(config.mesh.master_timeout_secs.into())),
        ..ElectionConfig::DEFAULT
    };
    RoleConfig::new(&config.network_id, forced, election)
}

/// Bootstrap endpoints in order (resolved config entries, then the
/// token's), without repeats and without this node's own endpoints
/// (`own`: its advertised addresses, with its port).
pub fn merge_bootstrap(
    from_config: &[SocketAddr],
    from_token: &[SocketAddr],
    own: &[SocketAddr],
    port: u16,
) -> Vec<SocketAddr> {
    let mut out: Vec<SocketAddr> = Vec::new();
    for &e in from_config.iter().chain(from_token) {
        let is_self = own.contains(&e) || (e.ip().is_loopback() && e.port() == port);
        if !is_self && !out.contains(&e) {
            out.push(e);
        }
    }
    out
}

/// One address of a host interface, as found by `getifaddrs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddress {
    /// Interface name.
    pub interface: String,
    /// The address.
    pub addr: IpAddr,
    /// Whether the interface is up and not loopback.
    pub usable: bool,
}

/// The endpoints to advertise: the first two usable IPv4 addresses of
/// interfaces other than the overlay's, with `port`.
pub fn advertise(addresses: &[HostAddress], overlay_interface: &str, port: u16) -> Vec<SocketAddr> {
    addresses
        .iter()
        .filter(|a| a.usable && a.interface != overlay_interface)
        .filter_map(|a| match a.addr {
            IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_link_local() && !v4.is_unspecified() => {
                Some(SocketAddr::new(IpAddr::V4(v4), port))
            }
            _ => None,
        })
        .take(2)
        .collect()
}

/// The addresses of this host's interfaces.
pub fn host_addresses() -> Vec<HostAddress> {
    use nix::net::if_::InterfaceFlags;
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|ifa| {
            let addr = ifa.address?;
            let ip = if let Some(v4) = addr.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = addr.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                return None;
            };
            let usable =
                ifa.flags.contains(InterfaceFlags::IFF_UP) && !ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK);
            Some(HostAddress {
                interface: ifa.interface_name,
                addr: ip,
                usable,
            })
        })
        .collect()
}

/// A node with `capacity` member slots (and as many tunnels: every member
/// can have a session), built on the heap in a function of its own: it is
/// about 90 KiB, and one built by value in an async function gives that
/// function's poll a frame that size, probed page by page at every wake-up
/// and kept resident.
pub fn new_node(
    identity: Identity,
    keys: &NetworkKeys,
    config: NodeConfig,
    capacity: usize,
    ledger: Box<AgentLedger>,
    wall_at_zero: Duration,
) -> Box<MeshNode> {
    let slots: Box<[MemberSlot<Provider>]> = (0..capacity).map(|_| None).collect();
    // A tunnel per member slot, allocated as its session starts.
    let tunnels = BoxedTunnels::new(capacity);
    let views = vec![MemberView::default(); capacity + 1].into_boxed_slice();
    Box::new(Node::new(
        identity,
        keys,
        config,
        OsRng,
        slots,
        tunnels,
        ledger,
        Ed25519Verifier,
        views,
        wall_at_zero,
    ))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::{check, EnvOverrides, Source};
    use kairos_core::token::NetworkToken;

    /// A valid config with a fresh token and `extra` lines under `p2p:`.
    pub(crate) fn config(extra: &str) -> AgentConfig {
        let token = NetworkToken::generate(&mut OsRng);
        let mut buf = vec![0u8; token.encoded_len()];
        let text = token.encode(&mut buf).unwrap();
        let yaml = format!("#cloud-config\np2p:\n  network_token: \"{text}\"\n{extra}");
        check(&Source::from_text("t.yaml", &yaml), &EnvOverrides::none())
            .config
            .expect("valid config")
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn maps_the_mesh_settings() {
        let c =
            config("  network_id: dev\n  role: master\n  mesh:\n    lan_beacons: false\n    address: 10.9.0.0/16\n");
        let boot = [addr("203.0.113.7:51820")];
        let adv = [addr("192.168.1.5:4000")];
        let (nc, warnings) = node_config(&c, 4000, &boot, &adv);
        assert!(warnings.0.is_empty(), "{warnings:?}");
        assert_eq!(nc.port, 4000);
        assert!(!nc.lan_beacons);
        assert_eq!(nc.overlay.to_string(), "10.9.0.0/16");
        assert_eq!(&nc.bootstrap[..], &boot);
        assert_eq!(&nc.advertise[..], &adv);
        let roles = nc.roles.expect("election on");
        assert_eq!(roles.network_id(), "dev");
        assert_eq!(roles.election().ha_masters, 1);
        assert_eq!(roles.election().minimum_nodes, 2);
        assert_eq!(member_capacity(&c), MAX_MEMBERS, "a /16 is capped");
    }

    #[test]
    fn ha_and_dynamic_roles() {
        let c = config("  dynamic_roles: true\n  minimum_nodes: 3\n  auto:\n    ha:\n      master_nodes: 2\n");
        let (nc, _) = node_config(&c, 1, &[], &[]);
        let e = nc.roles.unwrap().election();
        assert_eq!(e.ha_masters, 3, "the cluster-init master plus two");
        assert_eq!(e.minimum_nodes, 3);
        assert_eq!(
            e.dynamic_roles,
            Some(Duration::from_secs(300)),
            "the default master_timeout"
        );
        let c = config("  dynamic_roles: true\n  mesh:\n    master_timeout: 20\n");
        let (nc, _) = node_config(&c, 1, &[], &[]);
        assert_eq!(
            nc.roles.unwrap().election().dynamic_roles,
            Some(Duration::from_secs(20))
        );
        assert_eq!(member_capacity(&c), 254);
    }

    #[test]
    fn a_bridge_takes_no_part_in_the_election() {
        let mut c = config("  role: master\n");
        c.kind = NodeKind::Bridge;
        let (nc, warnings) = node_config(&c, 1, &[], &[]);
        assert!(nc.roles.is_none(), "a bridge has no role and casts no vote");
        assert!(warnings.0.is_empty(), "{warnings:?}");
    }

    #[test]
    fn too_many_bootstrap_peers_are_cut_with_a_warning() {
        let c = config("");
        let many: Vec<SocketAddr> = (1..=10).map(|i| addr(&format!("203.0.113.{i}:51820"))).collect();
        let (nc, warnings) = node_config(&c, 1, &many, &[]);
        assert_eq!(nc.bootstrap.len(), MAX_BOOTSTRAP);
        assert_eq!(warnings.0.len(), 1);
        assert!(warnings.0[0].contains("2 more ignored"), "{warnings:?}");
    }

    #[test]
    fn bootstrap_merges_in_order_without_repeats_or_self() {
        let a = addr("203.0.113.7:51820");
        let b = addr("198.51.100.1:51820");
        let own = addr("192.168.1.5:51820");
        let merged = merge_bootstrap(&[a, own, a], &[b, a, addr("127.0.0.1:51820")], &[own], 51820);
        assert_eq!(merged, vec![a, b]);
    }

    #[test]
    fn advertises_lan_addresses_not_the_overlay_or_loopback() {
        let h = |i: &str, a: &str, usable| HostAddress {
            interface: i.into(),
            addr: a.parse().unwrap(),
            usable,
        };
        let addrs = [
            h("lo", "127.0.0.1", false),
            h("kairos0", "10.1.0.5", true),
            h("eth0", "fe80::1", true),
            h("eth0", "169.254.1.1", true),
            h("eth1", "192.168.1.5", false),
            h("eth0", "192.168.0.9", true),
            h("eth2", "172.16.0.2", true),
            h("eth3", "172.17.0.2", true),
        ];
        assert_eq!(
            advertise(&addrs, "kairos0", 7),
            vec![addr("192.168.0.9:7"), addr("172.16.0.2:7")]
        );
    }
}
