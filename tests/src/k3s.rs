//! The k3s bootstrap in the end-to-end tests: node configs that turn it on
//! with the `k3s-standin` binary in place of k3s (`KAIROS_K3S_BIN`) and a
//! root of their own under the lab's directory (`KAIROS_ROOT`), and what
//! the stand-in recorded of each start.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::agent::{Agent, NodeConfig};
use crate::binaries;
use crate::error::{HarnessError, Result};
use crate::lab::Lab;

/// The `KAIROS_ROOT` of node `name` in `lab`.
pub fn root(lab: &Lab, name: &str) -> PathBuf {
    lab.dir().join(name).join("root")
}

/// Turns the k3s bootstrap on in `config` for node `name`: a `k3s:` block,
/// the stand-in as k3s, and a root of its own.
pub fn enable(lab: &Lab, name: &str, config: &mut NodeConfig) -> Result<()> {
    let standin = binaries::k3s_standin()?;
    let root = root(lab, name);
    std::fs::create_dir_all(&root).map_err(|e| HarnessError::io(format!("creating {}", root.display()), e))?;
    config.top_yaml += "k3s:\n  enabled: true\n";
    config
        .env
        .push(("KAIROS_K3S_BIN".into(), standin.to_string_lossy().into_owned()));
    config
        .env
        .push(("KAIROS_ROOT".into(), root.to_string_lossy().into_owned()));
    Ok(())
}

/// One start of k3s as the stand-in recorded it.
#[derive(Debug, Clone)]
pub struct Start {
    /// `server` or `agent`, then the arguments.
    pub argv: Vec<String>,
    /// The `K3S_*` environment.
    pub env: Value,
}

impl Start {
    /// `server` or `agent`.
    pub fn command(&self) -> &str {
        self.argv.first().map(String::as_str).unwrap_or_default()
    }

    /// Whether `arg` is one of the arguments.
    pub fn has(&self, arg: &str) -> bool {
        self.argv.iter().any(|a| a == arg)
    }

    /// The value of `K3S_<name>` in its environment.
    pub fn env(&self, name: &str) -> Option<&str> {
        self.env.get(name).and_then(Value::as_str)
    }
}

/// Every start of k3s under `root`, oldest first.
pub fn starts_in(root: &Path) -> Result<Vec<Start>> {
    let log = root.join("var/log/k3s-standin.jsonl");
    let text = match std::fs::read_to_string(&log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(HarnessError::io(format!("reading {}", log.display()), e)),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let v: Value = serde_json::from_str(l)
                .map_err(|e| HarnessError::unexpected("the stand-in's log", format!("{e}: {l}")))?;
            let argv = v["argv"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            Ok(Start {
                argv,
                env: v["env"].clone(),
            })
        })
        .collect()
}

/// Every start of k3s on `agent`'s node.
pub fn starts(lab: &Lab, agent: &Agent) -> Result<Vec<Start>> {
    starts_in(&root(lab, &agent.name))
}

/// The node token the stand-in wrote on a server node.
pub fn node_token(lab: &Lab, agent: &Agent) -> Option<String> {
    std::fs::read_to_string(root(lab, &agent.name).join("var/lib/rancher/k3s/server/node-token"))
        .ok()
        .map(|t| t.trim().to_owned())
}
