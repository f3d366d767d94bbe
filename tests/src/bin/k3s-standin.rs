//! `k3s-standin`: what the tests run instead of k3s (which cannot be
//! downloaded on the test machines). The agent's k3s bootstrap starts it
//! through `KAIROS_K3S_BIN` exactly as it would start k3s.
//!
//! ```text
//! k3s-standin server ARGS...   record, write the node token and kubeconfig, sleep
//! k3s-standin agent ARGS...    record, sleep
//! k3s-standin --version        print a version line
//! ```
//!
//! Every system path is under `$KAIROS_ROOT`, which must be set and not
//! `/` (the stand-in never touches the real machine):
//!
//! - each start appends one JSON line to `$KAIROS_ROOT/var/log/k3s-standin.jsonl`:
//!   `{"argv": ["server", "--node-ip=..."], "env": {"K3S_URL": ..., "K3S_TOKEN": ...},
//!   "pid": N}` (`env` holds every `K3S_*` variable);
//! - `server` writes the node token to
//!   `$KAIROS_ROOT/var/lib/rancher/k3s/server/node-token` (kept if it
//!   exists, as k3s keeps its token) and an admin kubeconfig with server
//!   `https://127.0.0.1:6443` to `$KAIROS_ROOT/etc/rancher/k3s/k3s.yaml`,
//!   each replaced atomically;
//! - then it sleeps until SIGTERM (default action: exit), at most one hour,
//!   and gets SIGTERM when the agent that started it dies.
//!
//! Exit status 2: a usage error or no usable `KAIROS_ROOT`; 1: a file
//! could not be written.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The longest the stand-in lives.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// The kubeconfig k3s writes, with fake credentials.
const KUBECONFIG: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: c3RhbmQtaW4gQ0E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
kind: Config
preferences: {}
users:
- name: default
  user:
    client-certificate-data: c3RhbmQtaW4gY2VydA==
    client-key-data: c3RhbmQtaW4ga2V5
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version") | Some("-v") => {
            println!("k3s version v0.0.0+standin (kairos-tests)");
            return ExitCode::SUCCESS;
        }
        Some("server") | Some("agent") => {}
        _ => {
            eprintln!("usage: k3s-standin server|agent ARGS... (see the source's docs)");
            return ExitCode::from(2);
        }
    }
    let root = match std::env::var_os("KAIROS_ROOT").map(PathBuf::from) {
        Some(r) if r.is_absolute() && r != Path::new("/") => r,
        _ => {
            eprintln!(
                "k3s-standin: KAIROS_ROOT must name a directory other than / (it never touches the real machine)"
            );
            return ExitCode::from(2);
        }
    };
    // Die with the agent that started it, even a SIGKILLed one, so a test
    // never leaves a stand-in behind (real k3s under the bootstrap's
    // supervisor is found again through its PID file instead).
    if let Err(e) = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::TERM)) {
        eprintln!("k3s-standin: cannot ask to die with the agent: {e}");
    }
    if let Err(e) = start(&root, &args) {
        eprintln!("k3s-standin: {e}");
        return ExitCode::FAILURE;
    }
    println!("k3s-standin: {} running (pid {})", args[0], std::process::id());
    std::thread::sleep(MAX_LIFETIME);
    ExitCode::SUCCESS
}

fn start(root: &Path, args: &[String]) -> Result<(), String> {
    let env: serde_json::Map<String, serde_json::Value> = std::env::vars()
        .filter(|(k, _)| k.starts_with("K3S_"))
        .map(|(k, v)| (k, serde_json::Value::String(v)))
        .collect();
    let line = serde_json::json!({"argv": args, "env": env, "pid": std::process::id()});
    let log = root.join("var/log/k3s-standin.jsonl");
    let mut record = line.to_string();
    record.push('\n');
    create_parent(&log)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(record.as_bytes()))
        .map_err(|e| format!("cannot append to {}: {e}", log.display()))?;
    if args[0] == "server" {
        let token = root.join("var/lib/rancher/k3s/server/node-token");
        if !token.exists() {
            replace(&token, format!("{}\n", fake_token(root)).as_bytes())?;
        }
        // Like k3s: the kubeconfig's server is the bind address when one
        // is given (the API listens nowhere else), else loopback.
        let kubeconfig = match args.iter().find_map(|a| a.strip_prefix("--bind-address=")) {
            Some(ip) => KUBECONFIG.replace("127.0.0.1", ip),
            None => KUBECONFIG.to_owned(),
        };
        replace(&root.join("etc/rancher/k3s/k3s.yaml"), kubeconfig.as_bytes())?;
    }
    Ok(())
}

/// A token shaped like k3s's (`K10<ca hash>::server:<secret>`), the same
/// for every start under one root.
fn fake_token(root: &Path) -> String {
    let hex = |d: &[u8]| d.iter().map(|b| format!("{b:02x}")).collect::<String>();
    let ca = Sha256::digest(root.as_os_str().as_encoded_bytes());
    let secret = Sha256::digest(ca);
    format!("K10{}::server:{}", hex(&ca), hex(&secret[..16]))
}

fn create_parent(path: &Path) -> Result<(), String> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))
}

/// Writes `path` through a temporary file and a rename, so a reader never
/// sees half of it.
fn replace(path: &Path, bytes: &[u8]) -> Result<(), String> {
    create_parent(path)?;
    let temp = path.with_extension(format!("standin-tmp.{}", std::process::id()));
    fs::write(&temp, bytes)
        .and_then(|()| fs::rename(&temp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
