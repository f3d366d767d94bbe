//! k3s as a systemd unit, when systemd is PID 1 and `KAIROS_ROOT` is `/`:
//! the bootstrap writes `k3s.service` (server) or `k3s-agent.service`
//! (agent) with an environment file beside it (mode 0600: it holds
//! `K3S_TOKEN`), and starts it with `systemctl`. The names, paths and unit
//! settings are those of k3s's own installer, so k3s's tools
//! (`k3s-killall.sh`, `journalctl -u k3s`) work as usual.
//!
//! k3s then outlives the agent: stopping the agent leaves the cluster
//! running, and at boot systemd starts k3s before the agent is up. An
//! unchanged unit is not restarted when the agent starts again.
//!
//! The unit text is pure ([`unit_file`], [`env_file`]); [`Systemd`] writes
//! the files and runs `systemctl`. Under any other `KAIROS_ROOT` this
//! module is never used, so tests cannot touch the machine's units.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use super::files::{self, FileError};
use super::launch::Launch;
use super::paths::Paths;

/// The server unit, as k3s's installer names it.
pub const SERVER_UNIT: &str = "k3s.service";
/// The agent unit, as k3s's installer names it.
pub const AGENT_UNIT: &str = "k3s-agent.service";

/// Why systemd could not run k3s.
#[derive(Debug, thiserror::Error)]
pub enum SystemdError {
    /// A unit or environment file could not be written.
    #[error(transparent)]
    File(#[from] FileError),
    /// `systemctl` could not run, or failed.
    #[error("systemctl {args} failed: {detail}")]
    Systemctl {
        /// Its arguments.
        args: String,
        /// The exit status or the error.
        detail: String,
    },
}

/// Whether k3s should run under systemd: the prefix is the real `/` and
/// PID 1 is systemd.
pub fn systemd_is_init(paths: &Paths) -> bool {
    paths.is_real_root() && std::fs::read_to_string(paths.init_comm()).is_ok_and(|comm| comm.trim() == "systemd")
}

/// The unit that runs `launch`.
pub fn unit_name(launch: &Launch) -> &'static str {
    if launch.subcommand() == "agent" {
        AGENT_UNIT
    } else {
        SERVER_UNIT
    }
}

/// The environment file's path, as the unit names it.
pub fn env_path(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}.env")
}

/// The unit file for `launch`, with `program` its absolute path.
pub fn unit_file(launch: &Launch, program: &Path) -> String {
    let unit = unit_name(launch);
    let server = unit == SERVER_UNIT;
    let mut exec = quote(&program.to_string_lossy());
    for a in &launch.args {
        exec.push(' ');
        exec.push_str(&quote(a));
    }
    format!(
        "# Written by kairos agent (k3s over the mesh); rewritten on every deployment.\n\
         [Unit]\n\
         Description=Lightweight Kubernetes ({role}, over the kairos mesh)\n\
         Documentation=https://k3s.io\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n\
         \n\
         [Service]\n\
         Type={kind}\n\
         EnvironmentFile=-/etc/default/%N\n\
         EnvironmentFile=-/etc/sysconfig/%N\n\
         EnvironmentFile=-{env}\n\
         KillMode=process\n\
         Delegate=yes\n\
         LimitNOFILE=1048576\n\
         LimitNPROC=infinity\n\
         LimitCORE=infinity\n\
         TasksMax=infinity\n\
         TimeoutStartSec=0\n\
         Restart=always\n\
         RestartSec=5s\n\
         ExecStartPre=-/sbin/modprobe br_netfilter\n\
         ExecStartPre=-/sbin/modprobe overlay\n\
         ExecStart={exec}\n",
        role = if server { "k3s server" } else { "k3s agent" },
        kind = if server { "notify" } else { "exec" },
        env = env_path(unit),
    )
}

/// The environment file for `launch`: one `NAME="value"` line each.
pub fn env_file(launch: &Launch) -> String {
    launch
        .env
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"\n",
                v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
            )
        })
        .collect()
}

/// One `ExecStart=` word: double-quoted, with systemd's specifiers (`%`)
/// and variable expansion (`$`) escaped.
fn quote(word: &str) -> String {
    let mut q = String::with_capacity(word.len() + 2);
    q.push('"');
    for c in word.chars() {
        match c {
            '\\' => q.push_str("\\\\"),
            '"' => q.push_str("\\\""),
            '%' => q.push_str("%%"),
            '$' => q.push_str("$$"),
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// `program` as an absolute path: systemd needs one. A bare name is
/// looked up on `PATH`.
pub fn resolve_program(program: &Path) -> PathBuf {
    if program.is_absolute() || program.components().count() > 1 {
        return std::path::absolute(program).unwrap_or_else(|_| program.to_path_buf());
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| Path::new("/usr/local/bin").join(program))
}

/// k3s under systemd.
#[derive(Debug)]
pub struct Systemd {
    paths: Paths,
    active: Option<&'static str>,
}

impl Systemd {
    /// Units under `paths`.
    pub fn new(paths: Paths) -> Systemd {
        Systemd { paths, active: None }
    }

    /// Writes the unit for `launch` and runs it: restarted if its files
    /// changed, else only enabled and started if it is not running. The
    /// other unit (agent for a server, server for an agent) is disabled.
    pub async fn start(&mut self, launch: &Launch) -> Result<(), SystemdError> {
        let unit = unit_name(launch);
        let other = if unit == SERVER_UNIT { AGENT_UNIT } else { SERVER_UNIT };
        if self.paths.systemd_unit(other).exists() {
            if let Err(e) = systemctl(&["disable", "--now", other]).await {
                tracing::warn!("{e}");
            }
        }
        let changed = self.write(launch)?;
        if changed {
            systemctl(&["daemon-reload"]).await?;
            systemctl(&["enable", unit]).await?;
            systemctl(&["restart", "--no-block", unit]).await?;
        } else {
            systemctl(&["enable", "--now", "--no-block", unit]).await?;
        }
        self.active = Some(unit);
        tracing::info!(unit, restarted = changed, "k3s runs under systemd");
        Ok(())
    }

    /// Rewrites the unit for the next start without restarting it.
    pub async fn update(&mut self, launch: &Launch) -> Result<(), SystemdError> {
        if self.write(launch)? {
            systemctl(&["daemon-reload"]).await?;
        }
        Ok(())
    }

    /// Stops and disables the unit this bootstrap started.
    pub async fn stop(&mut self) -> Result<(), SystemdError> {
        if let Some(unit) = self.active.take() {
            systemctl(&["disable", "--now", unit]).await?;
        }
        Ok(())
    }

    /// Writes the unit and its environment file; whether either changed.
    fn write(&self, launch: &Launch) -> Result<bool, SystemdError> {
        let unit = unit_name(launch);
        let unit_path = self.paths.systemd_unit(unit);
        let env_path = self.paths.join(&env_path(unit));
        let unit_text = unit_file(launch, &resolve_program(&launch.program));
        let env_text = env_file(launch);
        let same =
            |path: &Path, text: &str| files::read_optional(path).ok().flatten().as_deref() == Some(text.as_bytes());
        let changed = !same(&unit_path, &unit_text) || !same(&env_path, &env_text);
        if changed {
            files::replace(&env_path, env_text.as_bytes(), 0o600)?;
            files::replace(&unit_path, unit_text.as_bytes(), 0o644)?;
        }
        Ok(changed)
    }
}

async fn systemctl(args: &[&str]) -> Result<(), SystemdError> {
    let err = |detail: String| SystemdError::Systemctl {
        args: args.join(" "),
        detail,
    };
    let out = Command::new("systemctl")
        .args(args)
        .output()
        .await
        .map_err(|e| err(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(err(format!("{} {}", out.status, stderr.trim())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(args: &[&str], env: &[(&str, &str)]) -> Launch {
        Launch {
            program: "/usr/local/bin/k3s".into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn a_server_unit() {
        let l = launch(&["server", "--node-ip=10.1.0.7", "--node-label=a=100%$x"], &[]);
        assert_eq!(unit_name(&l), SERVER_UNIT);
        let text = unit_file(&l, Path::new("/usr/local/bin/k3s"));
        assert!(text.contains("\nType=notify\n"), "{text}");
        assert!(
            text.contains("\nEnvironmentFile=-/etc/systemd/system/k3s.service.env\n"),
            "{text}"
        );
        assert!(
            text.ends_with(
                "\nExecStart=\"/usr/local/bin/k3s\" \"server\" \"--node-ip=10.1.0.7\" \"--node-label=a=100%%$$x\"\n"
            ),
            "{text}"
        );
        assert!(text.contains("WantedBy=multi-user.target"));
    }

    #[test]
    fn an_agent_unit_and_its_environment() {
        let l = launch(
            &["agent"],
            &[("K3S_URL", "https://10.1.0.2:6443"), ("K3S_TOKEN", "K10\"a\\b")],
        );
        assert_eq!(unit_name(&l), AGENT_UNIT);
        let text = unit_file(&l, Path::new("/usr/bin/k3s"));
        assert!(
            text.contains("\nType=exec\n") && text.contains("k3s-agent.service.env"),
            "{text}"
        );
        assert!(!text.contains("K10"), "the token stays in the environment file");
        assert_eq!(
            env_file(&l),
            "K3S_URL=\"https://10.1.0.2:6443\"\nK3S_TOKEN=\"K10\\\"a\\\\b\"\n"
        );
    }

    #[test]
    fn programs_are_made_absolute() {
        assert_eq!(resolve_program(Path::new("/opt/k3s")), PathBuf::from("/opt/k3s"));
        assert!(resolve_program(Path::new("sh")).is_absolute());
        assert_eq!(
            resolve_program(Path::new("no-such-k3s-anywhere")),
            PathBuf::from("/usr/local/bin/no-such-k3s-anywhere")
        );
    }

    #[test]
    fn never_under_a_test_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("proc/1")).unwrap();
        std::fs::write(dir.path().join("proc/1/comm"), "systemd\n").unwrap();
        assert!(!systemd_is_init(&Paths::new(dir.path())));
    }
}
