//! How a [`Deployment`] is started: k3s's command line and environment
//! ([`Launch`]) and the k3s config drop-in the bootstrap writes
//! ([`config_file`]).
//!
//! Pure. The overlay settings go both on the command line (explicit, and
//! what `ps` and the stand-in show) and in the config drop-in (so a k3s
//! restarted by hand keeps them). The node token only ever goes into the
//! environment (`K3S_TOKEN`): a command line is readable by every user.
//!
//! | deployment | command line | environment |
//! |---|---|---|
//! | primary | `server --node-ip --advertise-address --bind-address --tls-san --flannel-iface [--cluster-init]` | |
//! | HA server | `server --server=https://<primary>:6443` + the same | `K3S_TOKEN` |
//! | worker | `agent --with-node-id --node-ip --flannel-iface` | `K3S_URL`, `K3S_TOKEN` |
//!
//! Then the `args` of the `k3s:` block (servers) or `k3s-agent:` block
//! (agents); their `env` is set too, below the bootstrap's own variables.
//! `--bind-address` keeps the Kubernetes API (and k3s's supervisor, on the
//! same port) on the overlay address: it is never reachable from the LAN.
//! A user who wants it there passes `--bind-address=0.0.0.0` in the
//! `k3s:` block's `args` (later flags win).
//!
//! With an external datastore, servers get `K3S_DATASTORE_ENDPOINT` and no
//! `--server` (they share the datastore instead of joining over etcd).

use std::fmt;
use std::path::PathBuf;

use serde_yaml_ng::{Mapping, Value};

use super::plan::{server_url, Deployment, Kind};
use super::settings::{K3sSettings, ROOT_ENV};

/// A k3s process to start: program, arguments, environment.
#[derive(Clone, PartialEq, Eq)]
pub struct Launch {
    /// The k3s executable (`KAIROS_K3S_BIN`).
    pub program: PathBuf,
    /// The arguments, starting with `server` or `agent`.
    pub args: Vec<String>,
    /// Variables set on top of the agent's own environment.
    pub env: Vec<(String, String)>,
}

impl Launch {
    /// `server` or `agent`.
    pub fn subcommand(&self) -> &str {
        self.args.first().map(String::as_str).unwrap_or("")
    }

    /// The value of `name` in [`Self::env`].
    #[cfg(test)]
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

impl fmt::Debug for Launch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The k3s blocks' args and env may carry credentials: names only.
        f.debug_struct("Launch")
            .field("program", &self.program)
            .field("subcommand", &self.subcommand())
            .field("args", &self.args.len())
            .field("env_keys", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

/// The command line and environment that run `d`.
pub fn launch(d: &Deployment, s: &K3sSettings) -> Launch {
    let ip = d.node_ip.to_string();
    let mut args = Vec::new();
    let mut env: Vec<(String, String)> = Vec::new();
    let server_flags = |args: &mut Vec<String>| {
        args.push(format!("--node-ip={ip}"));
        args.push(format!("--advertise-address={ip}"));
        args.push(format!("--bind-address={ip}"));
        args.push(format!("--tls-san={ip}"));
        args.push(format!("--flannel-iface={}", s.interface));
    };
    let extra = match &d.kind {
        Kind::Primary { cluster_init } => {
            args.push("server".to_string());
            server_flags(&mut args);
            if *cluster_init {
                args.push("--cluster-init".to_string());
            }
            &s.server
        }
        Kind::Server(join) => {
            args.push("server".to_string());
            if s.external_db.is_none() {
                args.push(format!("--server={}", join.url()));
            }
            server_flags(&mut args);
            env.push(("K3S_TOKEN".into(), join.token.clone()));
            &s.server
        }
        Kind::Agent(join) => {
            args.push("agent".to_string());
            args.push("--with-node-id".to_string());
            args.push(format!("--node-ip={ip}"));
            args.push(format!("--flannel-iface={}", s.interface));
            env.push(("K3S_URL".into(), server_url(join.server)));
            env.push(("K3S_TOKEN".into(), join.token.clone()));
            &s.agent
        }
    };
    if d.is_server() {
        if let Some(db) = &s.external_db {
            env.push(("K3S_DATASTORE_ENDPOINT".into(), db.clone()));
        }
    }
    if !s.paths().is_real_root() {
        // The test seam: a stand-in finds its prefix here.
        env.push((ROOT_ENV.into(), s.root.to_string_lossy().into_owned()));
    }
    args.extend(extra.args.iter().cloned());
    let mut all: Vec<(String, String)> = extra
        .env
        .iter()
        .filter(|(k, _)| !env.iter().any(|(o, _)| o == k))
        .cloned()
        .collect();
    all.extend(env);
    Launch {
        program: s.bin.clone(),
        args,
        env: all,
    }
}

/// The k3s config drop-in for `d` (YAML): `node-ip` and `flannel-iface`,
/// and for servers `advertise-address`, `bind-address` and `tls-san`.
/// Never the token.
pub fn config_file(d: &Deployment, interface: &str) -> String {
    let ip = d.node_ip.to_string();
    let mut m = Mapping::new();
    m.insert("node-ip".into(), ip.clone().into());
    m.insert("flannel-iface".into(), interface.into());
    if d.is_server() {
        m.insert("advertise-address".into(), ip.clone().into());
        m.insert("bind-address".into(), ip.clone().into());
        m.insert("tls-san".into(), Value::Sequence(vec![ip.into()]));
    }
    let body = serde_yaml_ng::to_string(&Value::Mapping(m)).unwrap_or_default();
    format!("# Written by kairos agent (k3s over the mesh) before every start of k3s; edits are lost.\n{body}")
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use kairos_core::election::Role;

    use super::*;
    use crate::k3s::plan::Join;
    use crate::k3s::settings::Extra;

    const ME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);

    fn settings() -> K3sSettings {
        K3sSettings {
            network_id: "kairos".into(),
            interface: "kairos0".into(),
            root: "/".into(),
            bin: "/usr/local/bin/k3s".into(),
            ha: false,
            external_db: None,
            server: Extra::default(),
            agent: Extra::default(),
        }
    }

    fn deployment(role: Role, kind: Kind) -> Deployment {
        Deployment {
            role,
            node_ip: ME,
            kind,
        }
    }

    fn join() -> Join {
        Join {
            server: Ipv4Addr::new(10, 1, 0, 2),
            token: "K10tok::server:sec".into(),
        }
    }

    #[test]
    fn a_master() {
        let d = deployment(
            Role::Master { cluster_init: false },
            Kind::Primary { cluster_init: false },
        );
        let l = launch(&d, &settings());
        assert_eq!(l.program, PathBuf::from("/usr/local/bin/k3s"));
        assert_eq!(
            l.args,
            [
                "server",
                "--node-ip=10.1.0.7",
                "--advertise-address=10.1.0.7",
                "--bind-address=10.1.0.7",
                "--tls-san=10.1.0.7",
                "--flannel-iface=kairos0"
            ]
        );
        assert_eq!(l.env, []);
        assert_eq!(l.subcommand(), "server");
        assert_eq!(
            config_file(&d, "kairos0"),
            "# Written by kairos agent (k3s over the mesh) before every start of k3s; edits are lost.\n\
             node-ip: 10.1.0.7\nflannel-iface: kairos0\nadvertise-address: 10.1.0.7\nbind-address: 10.1.0.7\ntls-san:\n- 10.1.0.7\n"
        );
    }

    #[test]
    fn the_ha_primary_and_servers() {
        let init = deployment(
            Role::Master { cluster_init: true },
            Kind::Primary { cluster_init: true },
        );
        let l = launch(&init, &settings());
        assert_eq!(l.args.last().map(String::as_str), Some("--cluster-init"));
        let again = deployment(
            Role::Master { cluster_init: true },
            Kind::Primary { cluster_init: false },
        );
        assert!(!launch(&again, &settings()).args.iter().any(|a| a == "--cluster-init"));

        let server = deployment(Role::Master { cluster_init: false }, Kind::Server(join()));
        let l = launch(&server, &settings());
        assert_eq!(&l.args[..2], ["server", "--server=https://10.1.0.2:6443"]);
        assert!(l.args.contains(&"--flannel-iface=kairos0".to_string()));
        assert_eq!(l.env_var("K3S_TOKEN"), Some("K10tok::server:sec"));
        assert!(
            !l.args.iter().any(|a| a.contains("K10tok")),
            "the token stays off the command line"
        );
        assert!(!format!("{l:?}").contains("K10tok"));

        let mut db = settings();
        db.external_db = Some("postgres://k3s@db/k3s".into());
        let l = launch(&server, &db);
        assert!(!l.args.iter().any(|a| a.starts_with("--server")));
        assert_eq!(l.env_var("K3S_DATASTORE_ENDPOINT"), Some("postgres://k3s@db/k3s"));
        assert_eq!(l.env_var("K3S_TOKEN"), Some("K10tok::server:sec"));
    }

    #[test]
    fn a_worker() {
        let d = deployment(Role::Worker, Kind::Agent(join()));
        let mut s = settings();
        s.root = "/tmp/root".into();
        s.agent.args = vec!["--node-label=zone=a".into()];
        s.agent.env = vec![
            ("K3S_URL".into(), "ignored".into()),
            ("HTTP_PROXY".into(), "http://p".into()),
        ];
        s.server.args = vec!["--disable=traefik".into()];
        s.external_db = Some("ignored by agents".into());
        let l = launch(&d, &s);
        assert_eq!(
            l.args,
            [
                "agent",
                "--with-node-id",
                "--node-ip=10.1.0.7",
                "--flannel-iface=kairos0",
                "--node-label=zone=a"
            ]
        );
        assert_eq!(l.env_var("K3S_URL"), Some("https://10.1.0.2:6443"));
        assert_eq!(l.env_var("K3S_TOKEN"), Some("K10tok::server:sec"));
        assert_eq!(l.env_var("HTTP_PROXY"), Some("http://p"));
        assert_eq!(l.env_var("KAIROS_ROOT"), Some("/tmp/root"));
        assert_eq!(l.env_var("K3S_DATASTORE_ENDPOINT"), None);
        assert_eq!(
            l.env.iter().filter(|(k, _)| k == "K3S_URL").count(),
            1,
            "the bootstrap's own wins"
        );
        let file = config_file(&d, "kairos0");
        assert!(file.contains("node-ip: 10.1.0.7\nflannel-iface: kairos0\n"), "{file}");
        assert!(!file.contains("advertise-address") && !file.contains("K10tok"));
    }
}
