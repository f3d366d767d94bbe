//! The runner against a `sh` stand-in for k3s, under a temporary
//! `KAIROS_ROOT`: what a master publishes and reports, what a worker waits
//! for and starts with, that it follows a moved master, and that a
//! restart keeps the deployed role without a second `--cluster-init`.

use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::*;
use crate::k3s::settings::Extra;

const TOKEN: &str = "K10fake::server:secret";
const MASTER_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 5);
const WORKER_IP: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 6);

/// Records each start as one line, and for `server` writes the node token
/// and kubeconfig where k3s does; then sleeps until SIGTERM.
const STAND_IN: &str = r#"#!/bin/sh
mkdir -p "$KAIROS_ROOT/var/log"
echo "argv=$* K3S_URL=${K3S_URL:-} K3S_TOKEN=${K3S_TOKEN:-} pid=$$" >> "$KAIROS_ROOT/var/log/k3s-standin.log"
if [ "$1" = server ]; then
  mkdir -p "$KAIROS_ROOT/var/lib/rancher/k3s/server" "$KAIROS_ROOT/etc/rancher/k3s"
  printf 'K10fake::server:secret\n' > "$KAIROS_ROOT/var/lib/rancher/k3s/server/node-token"
  printf 'apiVersion: v1\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n  name: default\nkind: Config\n' > "$KAIROS_ROOT/etc/rancher/k3s/k3s.yaml"
fi
echo "stand-in up"
exec sleep 3600
"#;

struct Node {
    root: PathBuf,
    inputs: watch::Sender<K3sInputs>,
    outputs: mpsc::Receiver<K3sOutput>,
    task: JoinHandle<()>,
}

fn settings(root: &Path, ha: bool) -> K3sSettings {
    let bin = root.join("k3s-stand-in");
    std::fs::write(&bin, STAND_IN).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    K3sSettings {
        network_id: "kairos".into(),
        interface: "kairos0".into(),
        root: root.to_path_buf(),
        bin,
        ha,
        external_db: None,
        server: Extra::default(),
        agent: Extra::default(),
    }
}

fn start(root: &Path, ha: bool, inputs: K3sInputs) -> Node {
    let (tx, rx) = watch::channel(inputs);
    let (otx, orx) = mpsc::channel(16);
    let task = tokio::spawn(run(settings(root, ha), rx, otx));
    Node {
        root: root.to_path_buf(),
        inputs: tx,
        outputs: orx,
        task,
    }
}

impl Node {
    async fn next(&mut self) -> K3sOutput {
        tokio::time::timeout(Duration::from_secs(10), self.outputs.recv())
            .await
            .expect("an output within 10 s")
            .expect("the runner is alive")
    }

    /// Outputs until `Deployed`, which is returned with the publications.
    async fn until_deployed(&mut self) -> (Role, Vec<(&'static str, Vec<u8>)>) {
        let mut published = Vec::new();
        loop {
            match self.next().await {
                K3sOutput::Publish { key, value } => published.push((key, value)),
                K3sOutput::Deployed(role) => return (role, published),
            }
        }
    }

    fn starts(&self) -> Vec<String> {
        std::fs::read_to_string(self.root.join("var/log/k3s-standin.log"))
            .map(|s| s.lines().map(String::from).collect())
            .unwrap_or_default()
    }

    async fn wait_starts(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.starts();
            if s.len() >= n {
                return s;
            }
            assert!(Instant::now() < deadline, "{n} starts expected, saw {s:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Drops the driver's end and waits for the runner to stop k3s.
    async fn stop(self) {
        let pid_file = self.root.join("run/kairos-mesh/k3s.pid");
        drop(self.inputs);
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .unwrap()
            .unwrap();
        assert!(!pid_file.exists(), "the child is gone");
    }
}

fn pid_of(line: &str) -> u32 {
    line.rsplit("pid=").next().unwrap().trim().parse().unwrap()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

#[tokio::test]
async fn a_master_publishes_its_entries_and_reports_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let master = Role::Master { cluster_init: false };
    let mut node = start(
        dir.path(),
        false,
        K3sInputs {
            role: Some(master),
            ipv4: Some(MASTER_IP),
            ..K3sInputs::default()
        },
    );
    let (role, published) = node.until_deployed().await;
    assert_eq!(role, master);
    let value = |key: &str| {
        published
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(value(IP_MASTER), b"10.1.0.5");
    assert_eq!(value(TOKEN_NODETOKEN), TOKEN.as_bytes());
    let kube = String::from_utf8(value(MASTER_KUBECONFIG)).unwrap();
    assert!(
        kube.contains("server: https://10.1.0.5:6443") && !kube.contains("127.0.0.1"),
        "{kube}"
    );

    let starts = node.starts();
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert!(
        starts[0].starts_with(
            "argv=server --node-ip=10.1.0.5 --advertise-address=10.1.0.5 --bind-address=10.1.0.5 --tls-san=10.1.0.5 --flannel-iface=kairos0 K3S_URL= K3S_TOKEN= "
        ),
        "{starts:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("var/lib/kairos-mesh/k3s-deployed")).unwrap(),
        "master\n"
    );
    let config = std::fs::read_to_string(dir.path().join("etc/rancher/k3s/config.yaml.d/90-kairos-mesh.yaml")).unwrap();
    assert!(
        config.contains("node-ip: 10.1.0.5\nflannel-iface: kairos0\n"),
        "{config}"
    );

    // The ledger shows the entries: nothing more to publish.
    node.inputs.send_modify(|i| {
        i.ip_master = Some("10.1.0.5".into());
        i.node_token = Some(TOKEN.into());
        i.primary_ipv4 = Some(MASTER_IP);
    });
    let pid = pid_of(&starts[0]);
    assert!(alive(pid));
    let quiet = tokio::time::timeout(Duration::from_millis(700), node.outputs.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    node.stop().await;
    assert!(!alive(pid), "k3s stopped with the runner");
}

#[tokio::test]
async fn a_worker_waits_for_the_masters_entries_then_follows_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(
        dir.path(),
        false,
        K3sInputs {
            role: Some(Role::Worker),
            ipv4: Some(WORKER_IP),
            primary_ipv4: Some(MASTER_IP),
            ..K3sInputs::default()
        },
    );
    // Nothing to join yet: nothing starts, nothing is reported.
    let early = tokio::time::timeout(Duration::from_millis(700), node.outputs.recv()).await;
    assert!(early.is_err(), "{early:?}");
    assert_eq!(node.starts(), Vec::<String>::new());

    node.inputs.send_modify(|i| {
        i.ip_master = Some("10.1.0.5".into());
        i.node_token = Some(format!("{TOKEN}\n"));
    });
    assert_eq!(node.until_deployed().await, (Role::Worker, vec![]));
    let starts = node.wait_starts(1).await;
    assert!(
        starts[0].starts_with(
            "argv=agent --with-node-id --node-ip=10.1.0.6 --flannel-iface=kairos0 K3S_URL=https://10.1.0.5:6443 K3S_TOKEN=K10fake::server:secret "
        ),
        "{starts:?}"
    );
    assert!(!dir.path().join("var/lib/rancher/k3s/server/node-token").exists());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("var/lib/kairos-mesh/k3s-deployed")).unwrap(),
        "worker\n"
    );

    // A new primary: the worker keeps the old one until the new one
    // publishes, then restarts against it.
    let first = pid_of(&starts[0]);
    node.inputs
        .send_modify(|i| i.primary_ipv4 = Some(Ipv4Addr::new(10, 1, 0, 9)));
    let quiet = tokio::time::timeout(Duration::from_millis(500), node.outputs.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    assert!(alive(first), "the old master serves meanwhile");
    node.inputs.send_modify(|i| {
        i.ip_master = Some("10.1.0.9".into());
        i.node_token = Some("K10other::server:x".into());
    });
    assert_eq!(node.until_deployed().await, (Role::Worker, vec![]));
    let starts = node.wait_starts(2).await;
    assert!(
        starts[1].contains("K3S_URL=https://10.1.0.9:6443 K3S_TOKEN=K10other::server:x"),
        "{starts:?}"
    );
    assert!(!alive(first), "the first agent was stopped");
    node.stop().await;
}

#[tokio::test]
async fn a_restarted_ha_primary_keeps_its_role_without_a_second_cluster_init() {
    let dir = tempfile::tempdir().unwrap();
    let init = Role::Master { cluster_init: true };
    let inputs = K3sInputs {
        role: Some(init),
        ipv4: Some(MASTER_IP),
        ..K3sInputs::default()
    };
    let mut node = start(dir.path(), true, inputs.clone());
    assert_eq!(node.until_deployed().await.0, init);
    assert!(node.starts()[0].contains("--cluster-init"), "{:?}", node.starts());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("var/lib/kairos-mesh/k3s-deployed")).unwrap(),
        "master/clusterinit\n"
    );
    node.stop().await;

    // The machine reboots. Before the election speaks, k3s comes back in
    // the recorded role, and never with --cluster-init.
    let mut node = start(
        dir.path(),
        true,
        K3sInputs {
            role: None,
            ..inputs.clone()
        },
    );
    let starts = node.wait_starts(2).await;
    assert!(starts[1].starts_with("argv=server --node-ip=10.1.0.5 "), "{starts:?}");
    assert!(!starts[1].contains("--cluster-init"), "{starts:?}");
    // Nothing is reported before the driver gives the role...
    let quiet = tokio::time::timeout(Duration::from_millis(500), node.outputs.recv()).await;
    assert!(!matches!(quiet, Ok(Some(K3sOutput::Deployed(_)))), "{quiet:?}");
    // ...then it is, with no restart.
    node.inputs.send_modify(|i| i.role = Some(init));
    let (role, _) = node.until_deployed().await;
    assert_eq!(role, init);
    assert_eq!(node.starts().len(), 2);
    node.stop().await;
}

#[tokio::test]
async fn a_master_that_steps_down_stops_k3s() {
    let dir = tempfile::tempdir().unwrap();
    let master = Role::Master { cluster_init: false };
    let mut node = start(
        dir.path(),
        false,
        K3sInputs {
            role: Some(master),
            ipv4: Some(MASTER_IP),
            ..K3sInputs::default()
        },
    );
    node.until_deployed().await;
    let pid = pid_of(&node.starts()[0]);
    // The election gives it the worker role; the new master has not published yet.
    node.inputs.send_modify(|i| {
        i.role = Some(Role::Worker);
        i.primary_ipv4 = Some(Ipv4Addr::new(10, 1, 0, 9));
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        assert!(Instant::now() < deadline, "the server still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let marker = dir.path().join("var/lib/kairos-mesh/k3s-deployed");
    while marker.exists() {
        assert!(Instant::now() < deadline, "no longer deployed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The new master publishes: the node joins it as a worker.
    node.inputs.send_modify(|i| {
        i.ip_master = Some("10.1.0.9".into());
        i.node_token = Some("K10other::server:x".into());
    });
    assert_eq!(node.until_deployed().await, (Role::Worker, vec![]));
    assert!(node.wait_starts(2).await[1].starts_with("argv=agent "));
    node.stop().await;
}
