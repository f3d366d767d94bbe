//! `kairos agent --config FILE` (alias `start`): reads the cloud-config,
//! refuses it before touching anything if it has errors (exit 2), checks
//! the machine (exit 1 with what is missing), sets up logging and runs the
//! agent ([`crate::agent`]) on a single-threaded tokio runtime (beside the
//! agent's data path thread) until SIGTERM or SIGINT.

use std::path::PathBuf;

use clap::Args;
use tracing_subscriber::EnvFilter;

use super::CliError;
use crate::agent::{self, preflight, AgentError};
use crate::config::{self, ConfigError, EnvOverrides};

/// The `--help` text of the command.
pub const LONG_ABOUT: &str = "Run this machine's mesh node: join the network of the token in \
the cloud-config, create the overlay interface and keep it up, and serve the HTTP API.

What it does, in order:
  1. Reads FILE (the `kairos:` and `p2p:` blocks, `p2p.mesh` settings) with the KAIROS_* \
environment overrides. A config with an error is refused before anything is touched, with \
every problem's line and column (exit 2); `kairos validate FILE` shows the same.
  2. Checks that it can create an interface: root or CAP_NET_ADMIN, and /dev/net/tun (exit 1 \
with what is missing and how to fix it). With p2p.vpn.create: false there is no interface and \
no root is needed: the node joins for coordination only (ledger, election, relaying, API).
  3. Opens and locks the state directory (p2p.mesh.state_dir, default /var/lib/kairos-mesh): the \
node's keys (first start: generated; a damaged identity.key stops the start and is never \
replaced), the ledger snapshot, its address claim and role record (a damaged one is moved aside \
as NAME.state.damaged-<time> and the log says what was repaired).
  4. Listens on UDP p2p.mesh.listen_port (default 51820), sends and hears encrypted LAN beacons \
(multicast 239.255.77.73, UDP port 51819), and dials the bootstrap peers of the config and token.
  5. Creates the TUN interface (default kairos0, MTU 1368), gives it the node's IPv6 ULA at once \
and its IPv4 address from the overlay range once the mesh agrees on one (the same after a \
restart), with the route for the range.
  6. Serves the HTTP API and the dashboard on p2p.mesh.api (default 127.0.0.1:8080; see \
docs/api.md); any other than a loopback address or a unix socket needs a bearer token \
(KAIROS_API_TOKEN or KAIROS_API_TOKEN_FILE).
  7. With p2p.dns: true, answers the members' names (<hostname>.<network_id>.mesh) on port 53 \
of its overlay addresses.
  8. With a k3s: or k3s-agent: block, runs k3s in the role the election gives it, over the \
overlay (see docs/k3s.md).

SIGTERM or SIGINT stops it within 2 seconds: state saved, interface removed. Logs go to stderr \
(one line per event: start, address, members, peers up/down with their path, roles); RUST_LOG \
(e.g. RUST_LOG=debug) overrides the config's loglevel. The token and keys are never logged.

See docs/agent.md for the state directory, the API fields and the systemd unit.";

/// Arguments of `kairos agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The cloud-config file (`-` reads stdin).
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,
}

/// Runs `kairos agent`.
pub fn run(args: AgentArgs) -> Result<(), CliError> {
    let (config, diagnostics) = match config::load(&args.config, &EnvOverrides::from_process()) {
        Ok(c) => c,
        Err(e @ ConfigError::Invalid { .. }) => return Err(CliError::Usage(e.to_string())),
        Err(e @ ConfigError::Read { .. }) => return Err(CliError::Other(e.into())),
    };
    init_logging(config.log_level);
    for d in &diagnostics {
        if d.is_error() {
            continue;
        }
        tracing::warn!("{}: {d}", args.config.display());
    }
    let need_tun = config.vpn.create;
    preflight::check(&preflight::Facts::gather(need_tun), need_tun)
        .map_err(|e| CliError::Other(AgentError::from(e).into()))?;
    run_config(config)
}

/// Runs the agent with a resolved `config` on a single-threaded tokio
/// runtime until SIGTERM or SIGINT (`kairos agent` and `kairos bridge`).
pub(super) fn run_config(config: crate::config::AgentConfig) -> Result<(), CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context("cannot start the async runtime")))?;
    // Boxed: the agent's future holds the node (about 280 KB); on the main
    // thread's stack, each move of it would leave that many pages resident.
    runtime
        .block_on(Box::pin(agent::run(config)))
        .map_err(|e| CliError::Other(e.into()))
}

/// Logs to stderr at `RUST_LOG`, else at the config's `loglevel`.
pub(super) fn init_logging(level: crate::config::agent::LogLevel) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.to_string()));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn agent_and_its_alias_start_parse() {
        for name in ["agent", "start"] {
            let cli = Cli::try_parse_from(["kairos", name, "--config", "/etc/kairos/config.yaml"]).unwrap();
            match cli.command {
                Command::Agent(a) => assert_eq!(a.config, PathBuf::from("/etc/kairos/config.yaml")),
                other => panic!("{other:?}"),
            }
        }
        assert!(
            Cli::try_parse_from(["kairos", "agent"]).is_err(),
            "--config is required"
        );
    }

    #[test]
    fn a_config_with_errors_is_refused_with_exit_2_and_positions() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.yaml");
        std::fs::write(&file, "#cloud-config\np2p:\n  mesh:\n    mtu: 100\n").unwrap();
        let err = run(AgentArgs { config: file }).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(text.contains("bad.yaml:4:10: error: p2p.mesh.mtu"), "{text}");
        assert!(text.contains("missing network_token"), "{text}");
        // Nothing was touched: no state dir was made next to the config.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_missing_config_is_exit_1() {
        let err = run(AgentArgs {
            config: "/nonexistent/kairos.yaml".into(),
        })
        .unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert!(err.to_string().contains("cannot read the config"), "{err}");
    }
}
