//! [`Settings`]: what one source (the legacy `kairos:` block, the `p2p:`
//! block, the environment) sets, every field optional; [`merge`] layers two
//! of them key by key; [`Settings::finish`] fills in the defaults and makes
//! the [`AgentConfig`].
//!
//! Nothing here reads YAML or the environment, and nothing reports
//! problems: the readers have checked every value before it lands here.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kairos_core::token::{NetworkToken, OverlayRange};

use super::agent::{
    AgentConfig, ApiAddress, AutoConfig, Endpoint, HaConfig, LegacyOptions, LogLevel, MeshConfig, NodeKind, OpaqueYaml,
    Role, VpnConfig, DEFAULT_API, DEFAULT_INTERFACE, DEFAULT_LISTEN_PORT, DEFAULT_MASTER_TIMEOUT_SECS,
    DEFAULT_MINIMUM_NODES, DEFAULT_MTU, DEFAULT_NETWORK_ID, DEFAULT_OVERLAY, DEFAULT_STATE_DIR,
};

/// Settings from one source; `None` means "not set here". Fields are named
/// after the keys they come from (see `docs/config.md`).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// A `network_token` key is present (even if its value was refused), so
    /// a missing-token error would be redundant.
    pub token_seen: bool,
    pub network_token: Option<NetworkToken>,
    pub network_id: Option<String>,
    pub role: Option<Role>,
    pub dns: Option<bool>,
    pub log_level: Option<LogLevel>,
    pub minimum_nodes: Option<u32>,
    pub disable_dht: Option<bool>,
    pub dynamic_roles: Option<bool>,
    pub vpn_create: Option<bool>,
    pub vpn_use: Option<bool>,
    pub vpn_env: Option<BTreeMap<String, String>>,
    pub auto_enable: Option<bool>,
    pub ha_enable: Option<bool>,
    pub ha_external_db: Option<String>,
    pub ha_master_nodes: Option<u32>,
    pub hybrid: Option<bool>,
    pub hybrid_vpn: Option<bool>,
    pub listen_port: Option<u16>,
    pub bootstrap_peers: Option<Vec<Endpoint>>,
    pub address: Option<OverlayRange>,
    pub interface: Option<String>,
    pub mtu: Option<u16>,
    pub state_dir: Option<PathBuf>,
    pub api: Option<ApiAddress>,
    pub lan_beacons: Option<bool>,
    pub master_timeout: Option<u32>,
}

/// `over` layered on `under`, key by key, and the keys (named as in the
/// `p2p:` block) that both set.
pub fn merge(over: Settings, under: Settings) -> (Settings, Vec<&'static str>) {
    let mut both = Vec::new();
    macro_rules! layer {
        ($($field:ident => $name:literal),* $(,)?) => {
            Settings {
                token_seen: over.token_seen || under.token_seen,
                $($field: {
                    if over.$field.is_some() && under.$field.is_some() {
                        both.push($name);
                    }
                    over.$field.or(under.$field)
                },)*
            }
        };
    }
    let merged = layer!(
        network_token => "network_token",
        network_id => "network_id",
        role => "role",
        dns => "dns",
        log_level => "loglevel",
        minimum_nodes => "minimum_nodes",
        disable_dht => "disable_dht",
        dynamic_roles => "dynamic_roles",
        vpn_create => "vpn.create",
        vpn_use => "vpn.use",
        vpn_env => "vpn.env",
        auto_enable => "auto.enable",
        ha_enable => "auto.ha.enable",
        ha_external_db => "auto.ha.external_db",
        ha_master_nodes => "auto.ha.master_nodes",
        hybrid => "hybrid",
        hybrid_vpn => "hybrid_vpn",
        listen_port => "mesh.listen_port",
        bootstrap_peers => "mesh.bootstrap_peers",
        address => "mesh.address",
        interface => "mesh.interface",
        mtu => "mesh.mtu",
        state_dir => "mesh.state_dir",
        api => "mesh.api",
        lan_beacons => "mesh.lan_beacons",
        master_timeout => "mesh.master_timeout",
    );
    (merged, both)
}

impl Settings {
    /// The agent's config: these settings with every default filled in.
    /// `None` without a network token.
    pub fn finish(self, k3s: Option<OpaqueYaml>, k3s_agent: Option<OpaqueYaml>) -> Option<AgentConfig> {
        let network_token = self.network_token?;
        let address = self.address.or(network_token.overlay()).unwrap_or(DEFAULT_OVERLAY);
        let ha_enable = self.ha_enable.unwrap_or(self.ha_master_nodes.is_some());
        Some(AgentConfig {
            network_id: self.network_id.unwrap_or_else(|| DEFAULT_NETWORK_ID.to_owned()),
            role: self.role.unwrap_or_default(),
            dns: self.dns.unwrap_or(false),
            log_level: self.log_level.unwrap_or_default(),
            minimum_nodes: self.minimum_nodes.unwrap_or(DEFAULT_MINIMUM_NODES),
            disable_dht: self.disable_dht.unwrap_or(false),
            dynamic_roles: self.dynamic_roles.unwrap_or(false),
            vpn: VpnConfig {
                create: self.vpn_create.unwrap_or(true),
                use_for_kubernetes: self.vpn_use.unwrap_or(true),
                env: self.vpn_env.unwrap_or_default(),
            },
            auto: AutoConfig {
                enable: self.auto_enable.unwrap_or(true),
                ha: HaConfig {
                    enable: ha_enable,
                    external_db: self.ha_external_db.filter(|s| !s.is_empty()),
                    master_nodes: self.ha_master_nodes,
                },
            },
            legacy: LegacyOptions {
                hybrid: self.hybrid.unwrap_or(false),
                hybrid_vpn: self.hybrid_vpn.unwrap_or(false),
            },
            mesh: MeshConfig {
                listen_port: self.listen_port.unwrap_or(DEFAULT_LISTEN_PORT),
                bootstrap_peers: self.bootstrap_peers.unwrap_or_default(),
                address,
                interface: self.interface.unwrap_or_else(|| DEFAULT_INTERFACE.to_owned()),
                mtu: self.mtu.unwrap_or(DEFAULT_MTU),
                state_dir: self.state_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
                api: self.api.unwrap_or(ApiAddress::Tcp(DEFAULT_API)),
                lan_beacons: self.lan_beacons.unwrap_or(true),
                master_timeout_secs: self.master_timeout.unwrap_or(DEFAULT_MASTER_TIMEOUT_SECS),
            },
            network_token,
            kind: NodeKind::Agent,
            userspace: None,
            k3s,
            k3s_agent,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    #[test]
    fn over_wins_key_by_key_and_overlaps_are_named() {
        let over = Settings {
            role: Some(Role::Worker),
            mtu: Some(1400),
            ..Settings::default()
        };
        let under = Settings {
            role: Some(Role::Master),
            network_id: Some("dev".into()),
            token_seen: true,
            ..Settings::default()
        };
        let (m, both) = merge(over, under);
        assert_eq!(m.role, Some(Role::Worker));
        assert_eq!(m.network_id.as_deref(), Some("dev"));
        assert_eq!(m.mtu, Some(1400));
        assert!(m.token_seen);
        assert_eq!(both, ["role"]);
    }

    #[test]
    fn defaults() {
        assert!(Settings::default().finish(None, None).is_none(), "no token, no config");
        let token = NetworkToken::generate(&mut OsRng);
        let c = Settings {
            network_token: Some(token.clone()),
            ..Settings::default()
        }
        .finish(None, None)
        .unwrap();
        assert_eq!(c.network_id, "kairos");
        assert_eq!(c.role, Role::Auto);
        assert_eq!(c.minimum_nodes, 2);
        assert!(c.vpn.create && c.vpn.use_for_kubernetes && c.auto.enable && !c.auto.ha.enable);
        assert_eq!(c.mesh.listen_port, 51820);
        assert_eq!(c.mesh.address, DEFAULT_OVERLAY);
        assert_eq!(c.mesh.interface, "kairos0");
        assert_eq!(c.mesh.mtu, 1368);
        assert_eq!(c.mesh.state_dir, PathBuf::from("/var/lib/kairos-mesh"));
        assert_eq!(c.mesh.api.to_string(), "127.0.0.1:8080");
        assert!(c.mesh.lan_beacons);

        // The token's overlay hint beats the default; the config beats both.
        let hinted = token.with_overlay("10.9.0.0/16".parse().unwrap());
        let s = Settings {
            network_token: Some(hinted),
            ..Settings::default()
        };
        assert_eq!(
            s.clone().finish(None, None).unwrap().mesh.address.to_string(),
            "10.9.0.0/16"
        );
        let own = Settings {
            address: Some("10.5.0.0/24".parse().unwrap()),
            ..s
        };
        assert_eq!(own.finish(None, None).unwrap().mesh.address.to_string(), "10.5.0.0/24");
    }

    #[test]
    fn ha_is_on_when_master_nodes_is_set() {
        let token = Some(NetworkToken::generate(&mut OsRng));
        let s = Settings {
            network_token: token.clone(),
            ha_master_nodes: Some(2),
            ..Settings::default()
        };
        assert!(s.finish(None, None).unwrap().auto.ha.enable);
        let s = Settings {
            network_token: token,
            ha_master_nodes: Some(2),
            ha_enable: Some(false),
            ..Settings::default()
        };
        assert!(!s.finish(None, None).unwrap().auto.ha.enable);
    }
}
