//! [`K3sSettings`]: what the agent's config makes of the k3s bootstrap, or
//! why it stays off ([`BootstrapOff`]); and the two test seams,
//! `KAIROS_K3S_BIN` (the k3s executable) and `KAIROS_ROOT` (the prefix of
//! every system path).
//!
//! This module reads the config and the environment only; it never starts
//! anything. `Debug` never shows the values of the `k3s:` blocks or the
//! datastore URL.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use serde_yaml_ng::Value;

use super::paths::Paths;
use crate::config::agent::{AgentConfig, NodeKind, OpaqueYaml};

/// The environment variable naming the k3s executable (default: `k3s`, found on `PATH`).
pub const BIN_ENV: &str = "KAIROS_K3S_BIN";
/// The environment variable naming the prefix of every system path (default `/`).
pub const ROOT_ENV: &str = "KAIROS_ROOT";
/// The k3s executable when [`BIN_ENV`] is not set.
pub const DEFAULT_BIN: &str = "k3s";

/// Why the bootstrap does not run: the node is in the mesh only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapOff {
    /// `kairos bridge` takes no cluster role.
    Bridge,
    /// `p2p.auto.enable: false` (legacy `skip_auto: true`).
    AutoDisabled,
    /// Neither a `k3s:` nor a `k3s-agent:` block.
    NoK3sBlock,
    /// Every k3s block present says `enabled: false`.
    BlocksDisabled,
    /// `p2p.vpn.create: false`: no interface, so no overlay address for k3s.
    NoInterface,
    /// `p2p.vpn.use: false`: Kubernetes is not to run over the overlay.
    OverlayNotUsed,
}

impl fmt::Display for BootstrapOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BootstrapOff::Bridge => "a bridge takes no cluster role",
            BootstrapOff::AutoDisabled => "p2p.auto.enable is false",
            BootstrapOff::NoK3sBlock => "the config has no k3s: or k3s-agent: block",
            BootstrapOff::BlocksDisabled => "every k3s block says enabled: false",
            BootstrapOff::NoInterface => "p2p.vpn.create is false (no overlay interface for k3s)",
            BootstrapOff::OverlayNotUsed => "p2p.vpn.use is false (k3s is not to run over the overlay)",
        })
    }
}

/// Extra k3s arguments and environment from a `k3s:` (server) or
/// `k3s-agent:` (agent) block, appended after the bootstrap's own.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Extra {
    /// `args`: appended to the command line.
    pub args: Vec<String>,
    /// `env`: set in k3s's environment (the bootstrap's own `K3S_*` win).
    pub env: Vec<(String, String)>,
}

impl fmt::Debug for Extra {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extra")
            .field("args", &self.args.len())
            .field("env_keys", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// The bootstrap's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct K3sSettings {
    /// The ledger bucket of this cluster (`network_id`).
    pub network_id: String,
    /// The mesh interface (`p2p.mesh.interface`): k3s's `--flannel-iface`.
    pub interface: String,
    /// `KAIROS_ROOT`: the prefix of every system path (`/` on a machine).
    pub root: PathBuf,
    /// `KAIROS_K3S_BIN`: the k3s executable.
    pub bin: PathBuf,
    /// `p2p.auto.ha.enable`: several masters; HA servers join the primary.
    pub ha: bool,
    /// `p2p.auto.ha.external_db`: k3s's datastore endpoint instead of embedded etcd.
    pub external_db: Option<String>,
    /// From the `k3s:` block, for `k3s server`.
    pub server: Extra,
    /// From the `k3s-agent:` block, for `k3s agent`.
    pub agent: Extra,
}

impl fmt::Debug for K3sSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("K3sSettings")
            .field("network_id", &self.network_id)
            .field("interface", &self.interface)
            .field("root", &self.root)
            .field("bin", &self.bin)
            .field("ha", &self.ha)
            .field("external_db", &self.external_db.as_ref().map(|_| "<redacted>"))
            .field("server", &self.server)
            .field("agent", &self.agent)
            .finish()
    }
}

impl K3sSettings {
    /// The settings for `c`, with the seams read from the process
    /// environment; `None` when the bootstrap is off, with the reason
    /// logged (see [`Self::check`]).
    pub fn from_config(c: &AgentConfig) -> Option<K3sSettings> {
        match Self::check(c, |k| std::env::var_os(k)) {
            Ok(s) => Some(s),
            Err(why) => {
                tracing::info!("k3s bootstrap off: {why}; mesh only");
                None
            }
        }
    }

    /// The settings for `c`, or why the bootstrap is off. `env` reads the
    /// environment ([`BIN_ENV`], [`ROOT_ENV`]).
    pub fn check(c: &AgentConfig, env: impl Fn(&str) -> Option<OsString>) -> Result<K3sSettings, BootstrapOff> {
        if c.kind == NodeKind::Bridge {
            return Err(BootstrapOff::Bridge);
        }
        if !c.auto.enable {
            return Err(BootstrapOff::AutoDisabled);
        }
        let blocks: Vec<&OpaqueYaml> = [&c.k3s, &c.k3s_agent].into_iter().flatten().collect();
        if blocks.is_empty() {
            return Err(BootstrapOff::NoK3sBlock);
        }
        if blocks.iter().all(|b| b.0.get("enabled") == Some(&Value::Bool(false))) {
            return Err(BootstrapOff::BlocksDisabled);
        }
        if !c.vpn.create {
            return Err(BootstrapOff::NoInterface);
        }
        if !c.vpn.use_for_kubernetes {
            return Err(BootstrapOff::OverlayNotUsed);
        }
        let nonempty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
        Ok(K3sSettings {
            network_id: c.network_id.clone(),
            interface: c.mesh.interface.clone(),
            root: nonempty(ROOT_ENV).unwrap_or_else(|| PathBuf::from("/")),
            bin: nonempty(BIN_ENV).unwrap_or_else(|| PathBuf::from(DEFAULT_BIN)),
            ha: c.auto.ha.enable,
            external_db: c.auto.ha.external_db.clone(),
            server: c.k3s.as_ref().map(|b| extra(b, "k3s")).unwrap_or_default(),
            agent: c.k3s_agent.as_ref().map(|b| extra(b, "k3s-agent")).unwrap_or_default(),
        })
    }

    /// The system paths, under [`Self::root`].
    pub fn paths(&self) -> Paths {
        Paths::new(&self.root)
    }
}

/// `args` and `env` of a k3s block. Entries that are not scalars are
/// skipped with a warning naming the key (never the value).
fn extra(block: &OpaqueYaml, name: &str) -> Extra {
    let mut out = Extra::default();
    match block.0.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Sequence(items)) => {
            for (i, item) in items.iter().enumerate() {
                match scalar(item) {
                    Some(s) => out.args.push(s),
                    None => tracing::warn!("{name}.args[{i}] is not a string: skipped"),
                }
            }
        }
        Some(_) => tracing::warn!("{name}.args is not a list: ignored"),
    }
    match block.0.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Mapping(m)) => {
            for (k, v) in m {
                match (k.as_str(), scalar(v)) {
                    (Some(k), Some(v)) if valid_env_name(k) => out.env.push((k.to_string(), v)),
                    (Some(k), _) => tracing::warn!("{name}.env.{k} is not a name with a string value: skipped"),
                    (None, _) => tracing::warn!("{name}.env has a key that is not a string: skipped"),
                }
            }
        }
        Some(_) => tracing::warn!("{name}.env is not a mapping: ignored"),
    }
    out
}

/// A YAML scalar as k3s would read it on a command line.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A name a shell and systemd's `EnvironmentFile=` accept.
fn valid_env_name(k: &str) -> bool {
    let mut chars = k.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{check, EnvOverrides, Source};

    fn config(yaml: &str) -> AgentConfig {
        let token = kairos_core::token::NetworkToken::generate(&mut rand_core::OsRng).to_string();
        let text = format!("#cloud-config\np2p:\n  network_token: {token}\n  network_id: edge\n{yaml}");
        let c = check(&Source::from_text("test.yaml", &text), &EnvOverrides::none());
        c.config.unwrap_or_else(|| panic!("{:?}", c.diagnostics))
    }

    fn no_env(_: &str) -> Option<OsString> {
        None
    }

    #[test]
    fn a_k3s_block_turns_it_on_with_the_defaults() {
        let s = K3sSettings::check(&config("k3s: {}\n"), no_env).unwrap();
        assert_eq!(s.network_id, "edge");
        assert_eq!(s.interface, "kairos0");
        assert_eq!(s.root, PathBuf::from("/"));
        assert_eq!(s.bin, PathBuf::from("k3s"));
        assert!(!s.ha && s.external_db.is_none());
        assert_eq!(s.server, Extra::default());
        assert_eq!(s.agent, Extra::default());
    }

    #[test]
    fn the_seams_come_from_the_environment() {
        let env = |k: &str| match k {
            "KAIROS_ROOT" => Some(OsString::from("/tmp/root")),
            "KAIROS_K3S_BIN" => Some(OsString::from("/opt/fake-k3s")),
            _ => None,
        };
        let s = K3sSettings::check(&config("k3s-agent: {}\n"), env).unwrap();
        assert_eq!(s.root, PathBuf::from("/tmp/root"));
        assert_eq!(s.bin, PathBuf::from("/opt/fake-k3s"));
        assert_eq!(
            s.paths().node_token(),
            PathBuf::from("/tmp/root/var/lib/rancher/k3s/server/node-token")
        );
        let empty = |_: &str| Some(OsString::new());
        assert_eq!(
            K3sSettings::check(&config("k3s: {}\n"), empty).unwrap().root,
            PathBuf::from("/")
        );
    }

    #[test]
    fn off_and_why() {
        let off = |yaml: &str| K3sSettings::check(&config(yaml), no_env).unwrap_err();
        assert_eq!(off(""), BootstrapOff::NoK3sBlock);
        assert_eq!(off("  auto: {enable: false}\nk3s: {}\n"), BootstrapOff::AutoDisabled);
        assert_eq!(off("  vpn: {create: false}\nk3s: {}\n"), BootstrapOff::NoInterface);
        assert_eq!(off("  vpn: {use: false}\nk3s: {}\n"), BootstrapOff::OverlayNotUsed);
        assert_eq!(
            off("k3s: {enabled: false}\nk3s-agent: {enabled: false}\n"),
            BootstrapOff::BlocksDisabled
        );
        assert!(K3sSettings::check(&config("k3s: {enabled: false}\nk3s-agent: {}\n"), no_env).is_ok());
        let mut bridge = config("k3s: {}\n");
        bridge.kind = NodeKind::Bridge;
        assert_eq!(K3sSettings::check(&bridge, no_env).unwrap_err(), BootstrapOff::Bridge);
        assert!(BootstrapOff::NoK3sBlock.to_string().contains("k3s:"));
    }

    #[test]
    fn blocks_give_args_and_env_and_ha() {
        let s = K3sSettings::check(
            &config(
                "  auto: {ha: {enable: true, master_nodes: 2, external_db: \"mysql://u:s3cret@db/k3s\"}}\n  mesh: {interface: mesh0}\n\
                 k3s:\n  args: [--disable=traefik, \"--node-label=a=b\", 5]\n  env: {HTTP_PROXY: \"http://p:3128\", \"bad name\": x, N: 1}\n\
                 k3s-agent:\n  args: --not-a-list\n  env: [x]\n",
            ),
            no_env,
        )
        .unwrap();
        assert!(s.ha);
        assert_eq!(s.interface, "mesh0");
        assert_eq!(s.external_db.as_deref(), Some("mysql://u:s3cret@db/k3s"));
        assert_eq!(s.server.args, ["--disable=traefik", "--node-label=a=b", "5"]);
        assert_eq!(
            s.server.env,
            [
                ("HTTP_PROXY".to_string(), "http://p:3128".to_string()),
                ("N".into(), "1".into())
            ]
        );
        assert_eq!(s.agent, Extra::default());
        let debug = format!("{s:?}");
        assert!(!debug.contains("s3cret") && !debug.contains("p:3128"), "{debug}");
    }
}
