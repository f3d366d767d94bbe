//! The k3s bootstrap over the mesh: runs k3s on this node in the role the
//! election gives it, on the overlay, and publishes what workers need.
//!
//! The driver owns the node; this module owns k3s. They talk through two
//! channels only: the driver sends [`K3sInputs`] (role, overlay addresses,
//! the master's ledger entries) on a `watch` channel whenever they change,
//! and [`run`] answers with [`K3sOutput`]s (ledger puts, "deployed") on an
//! `mpsc` channel. This module never touches the node, the ledger or the
//! state dir, and never logs the node token or the values of the `k3s:`
//! blocks.
//!
//! The files, one concept each:
//! - [`settings`]: [`K3sSettings`], what the config turns the bootstrap
//!   into (or why it is off), and the `KAIROS_K3S_BIN` / `KAIROS_ROOT` seams;
//! - [`files`]: crash-safe writes of the files it owns, reads of k3s's;
//! - [`paths`]: every system path the bootstrap reads or writes, under
//!   `KAIROS_ROOT`;
//! - [`plan`]: the decisions, pure: what should run given the inputs and what
//!   runs ([`plan::Deployment`], [`plan::target`], [`plan::step`]), when to
//!   publish and report;
//! - [`launch`]: a deployment's command line, environment and k3s config file;
//! - [`kubeconfig`]: the kubeconfig rewrite (server on the overlay);
//! - [`marker`]: the role deployed, kept across reboots;
//! - [`supervise`]: k3s as a supervised child (restart backoff, log forwarding);
//! - [`systemd`]: k3s as a systemd unit, when systemd is PID 1;
//! - [`runner`]: [`run`], the task that ties them together.
//!
//! `docs/k3s.md` is the user's view of all this.

pub mod files;
pub mod kubeconfig;
pub mod launch;
pub mod marker;
pub mod paths;
pub mod plan;
pub mod runner;
pub mod settings;
pub mod supervise;
pub mod systemd;

use std::fmt;
use std::net::Ipv4Addr;

use kairos_core::election::Role;

#[allow(unused_imports)] // the driver's entry points, wired next
pub use runner::run;
#[allow(unused_imports)]
pub use settings::{BootstrapOff, K3sSettings};

/// What the driver tells the bootstrap, sent on a `tokio::sync::watch`
/// channel whenever any field changes. `Debug` never shows the token.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct K3sInputs {
    /// The role to run: `node.role_to_deploy()`, else the deployed role
    /// (`node.role()`); `None` while undecided.
    pub role: Option<Role>,
    /// This node's overlay IPv4 address, once assigned.
    pub ipv4: Option<Ipv4Addr>,
    /// The overlay IPv4 address of the election's primary (the k3s server
    /// workers and HA servers join), if known.
    pub primary_ipv4: Option<Ipv4Addr>,
    /// The ledger's `<network_id>/ip-master`, as stored, if the master
    /// wrote it (as for the two below: another member's is left out).
    pub ip_master: Option<String>,
    /// The ledger's `<network_id>/token-nodetoken`, as stored.
    pub node_token: Option<String>,
    /// The ledger's `<network_id>/master-kubeconfig`, as stored.
    pub kubeconfig: Option<Vec<u8>>,
}

impl fmt::Debug for K3sInputs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("K3sInputs")
            .field("role", &self.role)
            .field("ipv4", &self.ipv4)
            .field("primary_ipv4", &self.primary_ipv4)
            .field("ip_master", &self.ip_master)
            .field("node_token", &self.node_token.as_ref().map(|_| "<redacted>"))
            .field(
                "kubeconfig",
                &self.kubeconfig.as_ref().map(|k| format!("<{} bytes>", k.len())),
            )
            .finish()
    }
}

/// What the bootstrap asks of the driver, on a `tokio::sync::mpsc` channel.
#[derive(Clone, PartialEq, Eq)]
pub enum K3sOutput {
    /// Put `value` under `key` in the bucket named by the `network_id`.
    /// `key` is one of `kairos_core::ledger::buckets::{IP_MASTER,
    /// TOKEN_NODETOKEN, MASTER_KUBECONFIG}`.
    Publish {
        /// The key.
        key: &'static str,
        /// The value (at most `kairos_core::ledger::MAX_VALUE_LEN` bytes).
        value: Vec<u8>,
    },
    /// k3s now runs in this role: the driver calls `node.role_deployed(now)`.
    Deployed(Role),
}

impl fmt::Debug for K3sOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // Values are the node token and a kubeconfig with credentials.
            K3sOutput::Publish { key, value } => {
                write!(f, "Publish {{ key: {key:?}, value: <{} bytes> }}", value.len())
            }
            K3sOutput::Deployed(role) => write!(f, "Deployed({role:?})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_token_and_values() {
        let i = K3sInputs {
            node_token: Some("K10s3cret::server:s3cret".into()),
            ..K3sInputs::default()
        };
        let o = K3sOutput::Publish {
            key: kairos_core::ledger::buckets::TOKEN_NODETOKEN,
            value: b"K10s3cret".to_vec(),
        };
        let all = format!("{i:?} {o:?}");
        assert!(!all.contains("s3cret"), "{all}");
        assert!(all.contains("token-nodetoken") && all.contains("9 bytes"), "{all}");
    }
}
