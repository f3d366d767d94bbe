//! Running `kairos agent` inside a lab: the binary ([`Kairos`]), a node's
//! cloud-config ([`NodeConfig`]), a started agent ([`Agent`]) and reading
//! its HTTP API from inside its namespace.
//!
//! Each agent gets its own namespace, so every agent can use the same UDP
//! port, interface name and API address (`127.0.0.1:8080` on that
//! namespace's loopback). Its config file and state dir live in the lab's
//! directory; its log is `<lab dir>/<name>.log` (kept across restarts).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::api::{Machine, Summary};
use crate::binaries;
use crate::command::{self, DEFAULT_LIMIT};
use crate::error::{HarnessError, Result};
use crate::lab::{Lab, Namespace, ProcessId};
use crate::preflight;
use crate::user::SystemUser;
use crate::wait::{wait_for, Poll, Waited};

/// The agent's UDP port in the tests.
pub const LISTEN_PORT: u16 = 51820;

/// The agent's API port in the tests (on its namespace's loopback).
pub const API_PORT: u16 = 8080;

/// The variable that sets the agents' `RUST_LOG` (default `info`).
pub const RUST_LOG_VAR: &str = "KAIROS_E2E_RUST_LOG";

/// The `kairos` binary under test.
#[derive(Debug, Clone)]
pub struct Kairos {
    path: PathBuf,
}

impl Kairos {
    /// Finds the binary (see [`binaries::kairos`]).
    pub fn locate() -> Result<Kairos> {
        Ok(Kairos {
            path: binaries::kairos()?,
        })
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `kairos generate-token`.
    pub fn generate_token(&self) -> Result<String> {
        let out = command::run_ok(&self.path, &["generate-token"], DEFAULT_LIMIT)?;
        let token = out
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or_default()
            .to_owned();
        if token.is_empty() {
            return Err(HarnessError::unexpected("kairos generate-token", "printed no token"));
        }
        Ok(token)
    }

    /// Whether this build has the `agent` command (`kairos agent --help`
    /// succeeds).
    pub fn has_agent(&self) -> bool {
        command::run(&self.path, &["agent", "--help"], DEFAULT_LIMIT).is_ok_and(|o| o.success())
    }
}

/// Makes a lab for a test that runs agents: `None` (after a loud SKIPPED
/// line) when the end-to-end tests cannot run here (see
/// [`crate::preflight`]) or when the binary has no `agent` command yet.
/// Panics when the tests are enabled and the binary cannot be found.
pub fn lab_with_agent(test: &str) -> Option<(Lab, Kairos)> {
    if !preflight::should_run(test) {
        return None;
    }
    let kairos = Kairos::locate().unwrap_or_else(|e| panic!("{test}: {e}"));
    binaries::e2e_net().unwrap_or_else(|e| panic!("{test}: {e}"));
    if !kairos.has_agent() {
        let why = format!(
            "{} has no `agent` command yet (`kairos agent --help` fails)",
            kairos.path().display()
        );
        if std::env::var("KAIROS_E2E_REQUIRE_AGENT").is_ok_and(|v| v == "1") {
            panic!("{test}: KAIROS_E2E_REQUIRE_AGENT=1 but {why}");
        }
        preflight::skip(test, &why);
        return None;
    }
    let lab = Lab::new(test).unwrap_or_else(|e| panic!("{test}: cannot set up the lab: {e}"));
    Some((lab, kairos))
}

/// The settings of one node's cloud-config.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `p2p.network_token`.
    pub token: String,
    /// `p2p.network_id`, if set.
    pub network_id: Option<String>,
    /// `p2p.mesh.listen_port`.
    pub listen_port: u16,
    /// `p2p.mesh.interface`.
    pub interface: String,
    /// `p2p.mesh.api` is `127.0.0.1:<api_port>`.
    pub api_port: u16,
    /// `p2p.mesh.lan_beacons`.
    pub lan_beacons: bool,
    /// `p2p.mesh.bootstrap_peers`.
    pub bootstrap_peers: Vec<String>,
    /// Extra lines appended under `p2p.mesh:` (indented by the caller's text).
    pub extra_mesh_yaml: String,
    /// Extra lines under `p2p:` (indented by two spaces by the caller),
    /// e.g. `  role: master`.
    pub p2p_yaml: String,
    /// Extra top-level lines, e.g. a `k3s:` block.
    pub top_yaml: String,
    /// Extra environment of the agent's process.
    pub env: Vec<(String, String)>,
    /// Puts the state dir on a tmpfs of this size (`mount -o size=`, e.g.
    /// `1m`) in a mount namespace of the agent's own: nothing is mounted
    /// in the machine's namespace, and the tmpfs (with the state) vanishes
    /// with the process, so a restart starts afresh. The test reaches the
    /// files through `/proc/PID/root` ([`Lab::state_dir`]).
    pub state_tmpfs: Option<String>,
}

impl NodeConfig {
    /// The defaults the tests use, with `token`.
    pub fn new(token: &str) -> NodeConfig {
        NodeConfig {
            token: token.to_owned(),
            network_id: None,
            listen_port: LISTEN_PORT,
            interface: "kairos0".to_owned(),
            api_port: API_PORT,
            lan_beacons: true,
            bootstrap_peers: Vec::new(),
            extra_mesh_yaml: String::new(),
            p2p_yaml: String::new(),
            top_yaml: String::new(),
            env: Vec::new(),
            state_tmpfs: None,
        }
    }

    /// The API address.
    pub fn api(&self) -> String {
        format!("127.0.0.1:{}", self.api_port)
    }

    /// The cloud-config text, with `state_dir`.
    pub fn to_yaml(&self, state_dir: &Path) -> String {
        // JSON strings are valid YAML double-quoted scalars.
        let q = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let mut yaml = String::from("#cloud-config\np2p:\n");
        yaml += &format!("  network_token: {}\n", q(&self.token));
        if let Some(id) = &self.network_id {
            yaml += &format!("  network_id: {}\n", q(id));
        }
        yaml += &self.p2p_yaml;
        yaml += "  mesh:\n";
        yaml += &format!("    listen_port: {}\n", self.listen_port);
        yaml += &format!("    interface: {}\n", q(&self.interface));
        yaml += &format!("    state_dir: {}\n", q(&state_dir.to_string_lossy()));
        yaml += &format!("    api: {}\n", q(&self.api()));
        yaml += &format!("    lan_beacons: {}\n", self.lan_beacons);
        if !self.bootstrap_peers.is_empty() {
            let peers: Vec<String> = self.bootstrap_peers.iter().map(|p| q(p)).collect();
            yaml += &format!("    bootstrap_peers: [{}]\n", peers.join(", "));
        }
        yaml += &self.extra_mesh_yaml;
        yaml += &self.top_yaml;
        yaml
    }
}

/// A `kairos agent` a lab started.
#[derive(Debug, Clone)]
pub struct Agent {
    /// The node's name in the test.
    pub name: String,
    /// Its namespace.
    pub ns: Namespace,
    /// Its config.
    pub config: NodeConfig,
    /// Its config file.
    pub config_path: PathBuf,
    /// Its state dir.
    pub state_dir: PathBuf,
    /// Its process (the latest one after a restart).
    pub process: ProcessId,
    /// When its latest process was started.
    pub started: Instant,
}

/// The host name a node named `name` runs with: `e2e-<name>`.
pub fn hostname(name: &str) -> String {
    format!("e2e-{name}")
}

impl Agent {
    /// The API address inside its namespace.
    pub fn api(&self) -> String {
        self.config.api()
    }
}

impl Lab {
    /// Writes `config` for node `name` and starts `kairos agent --config
    /// FILE` inside `ns`.
    pub fn start_agent(&mut self, kairos: &Kairos, ns: &Namespace, name: &str, config: &NodeConfig) -> Result<Agent> {
        self.start_agent_as(kairos, ns, name, config, None)
    }

    /// [`Lab::start_agent`], run as `user` when given (through `setpriv`,
    /// no capabilities): its node directory is given to the user first,
    /// so it can make its state dir there. Restarts run as root.
    pub fn start_agent_as(
        &mut self,
        kairos: &Kairos,
        ns: &Namespace,
        name: &str,
        config: &NodeConfig,
        user: Option<&SystemUser>,
    ) -> Result<Agent> {
        let node_dir = self.dir().join(name);
        std::fs::create_dir_all(&node_dir)
            .map_err(|e| HarnessError::io(format!("creating {}", node_dir.display()), e))?;
        if let Some(u) = user {
            u.chown(&node_dir)?;
        }
        let state_dir = node_dir.join("state");
        let config_path = node_dir.join("config.yaml");
        std::fs::write(&config_path, config.to_yaml(&state_dir))
            .map_err(|e| HarnessError::io(format!("writing {}", config_path.display()), e))?;
        let started = Instant::now();
        let wrapper = user.map(setpriv).unwrap_or_default();
        let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
        let process = self.spawn_agent(kairos, ns, name, &wrapper, &config_path, config, &state_dir)?;
        self.apis.push((
            name.to_owned(),
            ns.clone(),
            config.api(),
            &["/api/summary", "/api/machines"],
        ));
        Ok(Agent {
            name: name.to_owned(),
            ns: ns.clone(),
            config: config.clone(),
            config_path,
            state_dir,
            process,
            started,
        })
    }

    /// Starts `agent` again with the same config and state dir (its old
    /// process must have exited).
    pub fn restart_agent(&mut self, kairos: &Kairos, agent: &mut Agent) -> Result<()> {
        if self.exit_status(agent.process).is_none() {
            return Err(HarnessError::Check(format!(
                "{} is still running; stop it before restarting",
                agent.name
            )));
        }
        agent.started = Instant::now();
        let (ns, name, config_path, config, state_dir) = (
            agent.ns.clone(),
            agent.name.clone(),
            agent.config_path.clone(),
            agent.config.clone(),
            agent.state_dir.clone(),
        );
        agent.process = self.spawn_agent(kairos, &ns, &name, &[], &config_path, &config, &state_dir)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn spawn_agent(
        &mut self,
        kairos: &Kairos,
        ns: &Namespace,
        name: &str,
        wrapper: &[&str],
        config_path: &Path,
        config: &NodeConfig,
        state_dir: &Path,
    ) -> Result<ProcessId> {
        let config_path = config_path.to_string_lossy().into_owned();
        let env: Vec<(&str, &str)> = config.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let args = ["agent", "--config", &config_path];
        let tmpfs = match &config.state_tmpfs {
            Some(size) => {
                std::fs::create_dir_all(state_dir)
                    .map_err(|e| HarnessError::io(format!("creating {}", state_dir.display()), e))?;
                Some((size.as_str(), state_dir))
            }
            None => None,
        };
        self.spawn_named(kairos, ns, name, wrapper, &args, &env, tmpfs)
    }

    /// Starts `kairos args...` inside `ns` with its own UTS namespace and
    /// the host name `e2e-<name>` (as separate machines would have), so
    /// the members' names differ; with `tmpfs` (size, directory), also in
    /// a mount namespace of its own (unshare(1) makes its mounts private)
    /// with a tmpfs of that size on the directory. `wrapper` goes before
    /// the program (e.g. `setpriv ... --`). `unshare`, `sh` and the wrapper
    /// exec, so the PID is kairos's.
    #[allow(clippy::too_many_arguments)]
    fn spawn_named(
        &mut self,
        kairos: &Kairos,
        ns: &Namespace,
        name: &str,
        wrapper: &[&str],
        args: &[&str],
        env: &[(&str, &str)],
        tmpfs: Option<(&str, &Path)>,
    ) -> Result<ProcessId> {
        let rust_log = std::env::var(RUST_LOG_VAR).unwrap_or_else(|_| "info".to_owned());
        let hostname = hostname(name);
        let program = kairos.path().to_string_lossy().into_owned();
        let set_hostname = "echo \"$0\" > /proc/sys/kernel/hostname";
        let (script, mount_args) = match tmpfs {
            None => (format!("{set_hostname} && exec \"$@\""), None),
            Some((size, dir)) => (
                format!(
                    "{set_hostname} && mount -t tmpfs -o \"size=$1,mode=0700\" kairos-state \"$2\" && shift 2 && exec \"$@\""
                ),
                Some((size, dir.to_string_lossy().into_owned())),
            ),
        };
        let mut full = vec!["--uts"];
        if mount_args.is_some() {
            full.push("--mount");
        }
        full.extend(["sh", "-c", &script, &hostname]);
        if let Some((size, dir)) = &mount_args {
            full.extend([*size, dir.as_str()]);
        }
        full.extend_from_slice(wrapper);
        full.push(&program);
        full.extend_from_slice(args);
        let mut env: Vec<(&str, &str)> = env.to_vec();
        env.push(("RUST_LOG", &rust_log));
        self.spawn(ns, name, Path::new("unshare"), &full, &env)
    }

    /// Where `agent`'s state dir can be read from the test: the path
    /// itself, or through `/proc/PID/root` when it is on the agent's own
    /// tmpfs ([`NodeConfig::state_tmpfs`]; only while the agent runs).
    pub fn state_dir(&self, agent: &Agent) -> PathBuf {
        if agent.config.state_tmpfs.is_none() {
            return agent.state_dir.clone();
        }
        let relative = agent.state_dir.strip_prefix("/").unwrap_or(&agent.state_dir);
        PathBuf::from(format!("/proc/{}/root", self.pid(agent.process))).join(relative)
    }

    /// Starts `kairos bridge` inside `ns`: the token from `KAIROS_TOKEN`,
    /// the API on `127.0.0.1:<API_PORT>`, its state under the lab's
    /// directory, plus `extra` arguments.
    pub fn start_bridge(
        &mut self,
        kairos: &Kairos,
        ns: &Namespace,
        name: &str,
        token: &str,
        extra: &[&str],
    ) -> Result<Agent> {
        self.start_bridge_as(kairos, ns, name, token, extra, None)
    }

    /// [`Lab::start_bridge`], run as `user` when given (through
    /// `setpriv`, no capabilities): its node directory is given to the user
    /// first, so it can make its state dir there.
    pub fn start_bridge_as(
        &mut self,
        kairos: &Kairos,
        ns: &Namespace,
        name: &str,
        token: &str,
        extra: &[&str],
        user: Option<&SystemUser>,
    ) -> Result<Agent> {
        let node_dir = self.dir().join(name);
        std::fs::create_dir_all(&node_dir)
            .map_err(|e| HarnessError::io(format!("creating {}", node_dir.display()), e))?;
        if let Some(u) = user {
            u.chown(&node_dir)?;
        }
        let setpriv = user.map(setpriv).unwrap_or_default();
        let wrapper: Vec<&str> = setpriv.iter().map(String::as_str).collect();
        let state_dir = node_dir.join("state");
        let config = NodeConfig::new(token);
        let state = state_dir.to_string_lossy().into_owned();
        let api = config.api();
        let mut args = vec!["bridge", "--state-dir", &state, "--api", &api];
        args.extend_from_slice(extra);
        let started = Instant::now();
        let process = self.spawn_named(kairos, ns, name, &wrapper, &args, &[("KAIROS_TOKEN", token)], None)?;
        self.apis.push((
            name.to_owned(),
            ns.clone(),
            api.clone(),
            &["/api/summary", "/api/machines"],
        ));
        Ok(Agent {
            name: name.to_owned(),
            ns: ns.clone(),
            config,
            config_path: PathBuf::new(),
            state_dir,
            process,
            started,
        })
    }

    /// `GET /api/summary` of `agent`.
    pub fn summary(&self, agent: &Agent) -> Result<Summary> {
        Summary::parse(&self.http_get(&agent.ns, &agent.api(), "/api/summary")?)
    }

    /// `GET /api/machines` of `agent`.
    pub fn machines(&self, agent: &Agent) -> Result<Vec<Machine>> {
        Machine::parse_list(&self.http_get(&agent.ns, &agent.api(), "/api/machines")?)
    }

    /// Fails the poll for good when `agent`'s process has exited.
    fn still_running<T>(&mut self, agent: &Agent) -> Option<Poll<T>> {
        self.exit_status(agent.process).map(|status| {
            Poll::Fatal(format!(
                "{} exited ({status}); log {}:\n{}",
                agent.name,
                self.log_path(agent.process).display(),
                command::tail(&self.log(agent.process), 20)
            ))
        })
    }

    /// Waits until `agent`'s API answers `/api/summary` with an overlay IPv4
    /// address. Fails at once if the agent exits.
    pub fn wait_address(&mut self, agent: &Agent, deadline: Duration) -> Result<Waited<Summary>> {
        let what = format!("{} to answer /api/summary with an IPv4 address", agent.name);
        wait_for(&what, deadline, || {
            if let Some(fatal) = self.still_running(agent) {
                return Ok(fatal);
            }
            let summary = self.summary(agent)?;
            Ok::<_, HarnessError>(match summary.ipv4 {
                Some(_) => Poll::Ready(summary),
                None => Poll::Pending(format!("summary without ipv4: {}", summary.raw)),
            })
        })
    }

    /// Waits until `agent`'s API answers `/api/summary` at all. Fails at
    /// once if the agent exits.
    pub fn wait_for_api(&mut self, agent: &Agent, deadline: Duration) -> Result<Summary> {
        let what = format!("{} to answer /api/summary", agent.name);
        wait_for(&what, deadline, || {
            if let Some(fatal) = self.still_running(agent) {
                return Ok(fatal);
            }
            Ok::<_, HarnessError>(Poll::Ready(self.summary(agent)?))
        })
        .map(|w| w.value)
    }

    /// Waits until a ping from `from` to `addr` comes back (and `agent`,
    /// the one pinging from, keeps running).
    pub fn wait_ping(&mut self, agent: &Agent, addr: &str, deadline: Duration) -> Result<Duration> {
        let what = format!("{} to reach {addr} over the overlay", agent.name);
        wait_for(&what, deadline, || {
            if let Some(fatal) = self.still_running(agent) {
                return Ok(fatal);
            }
            let ok = self.ping(&agent.ns, addr)?;
            Ok::<_, HarnessError>(if ok {
                Poll::Ready(())
            } else {
                Poll::Pending("no reply".into())
            })
        })
        .map(|w| w.elapsed)
    }
}

/// `setpriv ... --`, which runs the program after it as `user`.
fn setpriv(user: &SystemUser) -> Vec<String> {
    let mut w = vec!["setpriv".to_owned()];
    w.extend(user.setpriv_args());
    w
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_yaml_has_every_setting() {
        let mut config = NodeConfig::new("kairos_abc");
        config.bootstrap_peers = vec!["198.51.100.10:51820".into()];
        config.network_id = Some("dev".into());
        let yaml = config.to_yaml(Path::new("/tmp/x/state"));
        assert!(
            yaml.starts_with("#cloud-config\np2p:\n  network_token: \"kairos_abc\"\n"),
            "{yaml}"
        );
        for line in [
            "  network_id: \"dev\"",
            "    listen_port: 51820",
            "    interface: \"kairos0\"",
            "    state_dir: \"/tmp/x/state\"",
            "    api: \"127.0.0.1:8080\"",
            "    lan_beacons: true",
            "    bootstrap_peers: [\"198.51.100.10:51820\"]",
        ] {
            assert!(yaml.lines().any(|l| l == line), "missing {line:?} in\n{yaml}");
        }
    }
}
