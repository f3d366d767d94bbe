//! Every system path the k3s bootstrap reads or writes, under one prefix
//! (`KAIROS_ROOT`, default `/`), so tests run the whole bootstrap inside a
//! temporary directory and never touch the machine.
//!
//! This module only names paths; it never opens them. Nothing else in
//! [`crate::k3s`] writes a system path literal.

use std::path::{Path, PathBuf};

/// k3s's node token, written by `k3s server` once it is up.
pub const NODE_TOKEN: &str = "var/lib/rancher/k3s/server/node-token";
/// k3s's admin kubeconfig (server `https://127.0.0.1:6443`), written by `k3s server`.
pub const KUBECONFIG: &str = "etc/rancher/k3s/k3s.yaml";
/// The k3s config drop-in the bootstrap owns (k3s reads every file of
/// `config.yaml.d` after `config.yaml`, so the operator's own file stays theirs).
pub const CONFIG_DROP_IN: &str = "etc/rancher/k3s/config.yaml.d/90-kairos-mesh.yaml";
/// The role k3s was deployed in, kept across reboots ([`super::marker`]).
pub const DEPLOYED_MARKER: &str = "var/lib/kairos-mesh/k3s-deployed";
/// The PID of the supervised k3s child, so a restarted agent can stop one
/// that outlived an agent killed with SIGKILL.
pub const CHILD_PID: &str = "run/kairos-mesh/k3s.pid";
/// Where systemd units go.
pub const SYSTEMD_DIR: &str = "etc/systemd/system";
/// Where the kernel names PID 1's program.
pub const INIT_COMM: &str = "proc/1/comm";

/// The bootstrap's paths, each under the root prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// Paths under `root` (`/` on a real machine).
    pub fn new(root: impl Into<PathBuf>) -> Paths {
        Paths { root: root.into() }
    }

    /// The prefix.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether the prefix is the real `/`: only then may systemd be used.
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// `relative` (a path without a leading `/`) under the prefix.
    pub fn join(&self, relative: &str) -> PathBuf {
        self.root.join(relative.trim_start_matches('/'))
    }

    /// [`NODE_TOKEN`] under the prefix.
    pub fn node_token(&self) -> PathBuf {
        self.join(NODE_TOKEN)
    }

    /// [`KUBECONFIG`] under the prefix.
    pub fn kubeconfig(&self) -> PathBuf {
        self.join(KUBECONFIG)
    }

    /// [`CONFIG_DROP_IN`] under the prefix.
    pub fn config_drop_in(&self) -> PathBuf {
        self.join(CONFIG_DROP_IN)
    }

    /// [`DEPLOYED_MARKER`] under the prefix.
    pub fn deployed_marker(&self) -> PathBuf {
        self.join(DEPLOYED_MARKER)
    }

    /// [`CHILD_PID`] under the prefix.
    pub fn child_pid(&self) -> PathBuf {
        self.join(CHILD_PID)
    }

    /// The systemd unit `name` (`k3s.service`) under the prefix.
    pub fn systemd_unit(&self, name: &str) -> PathBuf {
        self.join(SYSTEMD_DIR).join(name)
    }

    /// [`INIT_COMM`] under the prefix.
    pub fn init_comm(&self) -> PathBuf {
        self.join(INIT_COMM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_under_the_prefix() {
        let p = Paths::new("/tmp/r");
        assert_eq!(
            p.node_token(),
            Path::new("/tmp/r/var/lib/rancher/k3s/server/node-token")
        );
        assert_eq!(p.kubeconfig(), Path::new("/tmp/r/etc/rancher/k3s/k3s.yaml"));
        assert_eq!(
            p.config_drop_in(),
            Path::new("/tmp/r/etc/rancher/k3s/config.yaml.d/90-kairos-mesh.yaml")
        );
        assert_eq!(
            p.deployed_marker(),
            Path::new("/tmp/r/var/lib/kairos-mesh/k3s-deployed")
        );
        assert_eq!(
            p.systemd_unit("k3s.service"),
            Path::new("/tmp/r/etc/systemd/system/k3s.service")
        );
        assert_eq!(p.join("/etc/x"), Path::new("/tmp/r/etc/x"));
        assert!(!p.is_real_root());
        let real = Paths::new("/");
        assert!(real.is_real_root());
        assert_eq!(real.node_token(), Path::new("/var/lib/rancher/k3s/server/node-token"));
        assert_eq!(real.init_comm(), Path::new("/proc/1/comm"));
    }
}
