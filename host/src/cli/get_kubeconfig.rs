//! `kairos get-kubeconfig [--network-id ID]`: finds the kubeconfig a k3s
//! master published in the ledger (`GET /api/ledger`: key
//! `master-kubeconfig` of the bucket named after the cluster's network_id),
//! points its servers at the master's overlay address (key `ip-master`) with
//! [`rewrite_kubeconfig`], and prints it: stdout carries the kubeconfig and
//! nothing else, so `kairos get-kubeconfig > kubeconfig` works. Read-only.
//! With `--userspace-forward`, the servers are a local port forward of a
//! rootless bridge instead ([`point_at_forward`]).

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use base64::Engine as _;
use clap::Args;
use hyper::Method;
use serde_json::Value;
use serde_yaml_ng::Value as Yaml;

use super::status::{short_id, text};
use super::{ApiArgs, CliError};
use crate::client::{encode_segment, ApiClient};

/// The `--help` text of the command.
pub const LONG_ABOUT: &str = "Print the kubeconfig of the k3s cluster running over the mesh, ready \
for kubectl: `kairos get-kubeconfig > kubeconfig; KUBECONFIG=kubeconfig kubectl get nodes`.

Once its API is up, the cluster's master publishes its kubeconfig in the shared ledger (key \
`master-kubeconfig` of the bucket named after the cluster's network_id) with its overlay IPv4 \
(key `ip-master`). This command reads the whole ledger from the running agent or bridge \
(GET /api/ledger at --api), takes that kubeconfig, and rewrites the `server` of every cluster in \
it to https://IP-MASTER:PORT (the port of the published server, 6443 if it has none), because \
k3s writes it for 127.0.0.1. Everything else is kept as published. Only the kubeconfig goes to \
stdout; notes go to stderr.

Every member may write that bucket, so the command checks who wrote the kubeconfig (GET \
/api/writers/NETWORK_ID) and refuses one the cluster's master did not write (exit 1, naming the \
writer); an `ip-master` the master did not write is ignored with a warning.

The Kubernetes API is then reached over the encrypted overlay: run this on a node of the mesh, \
or on an operator machine that runs `kairos bridge` (keep it running while you use kubectl).

A bridge without root (`kairos bridge --userspace`) reaches the master through a local port \
forward instead: --userspace-forward [LISTEN] (default 127.0.0.1:6443) writes the server as \
https://LISTEN and sets `tls-server-name` to the master's overlay address, which is what the \
k3s certificate names, so kubectl still verifies it. Start the bridge with the forward the \
command prints on stderr (--forward LISTEN=IP-MASTER:6443).

When several clusters share the network (several network_ids), pick one with --network-id; \
without it the command fails with their names (exit 2). When no master has published a \
kubeconfig yet, it fails (exit 1) and lists the members it sees with their network_id and role \
(from GET /api/machines).";

/// The ledger key holding the published kubeconfig.
pub const KUBECONFIG_KEY: &str = "master-kubeconfig";
/// The ledger key holding the master's overlay address.
pub const IP_MASTER_KEY: &str = "ip-master";
/// The Kubernetes API port when the published server has none.
pub const DEFAULT_PORT: u16 = 6443;

/// Arguments of `kairos get-kubeconfig`.
#[derive(Debug, Args)]
pub struct GetKubeconfigArgs {
    /// The cluster to take the kubeconfig of, by its network_id; needed when
    /// several clusters share the network.
    #[arg(long, value_name = "ID")]
    pub network_id: Option<String>,

    /// Point the kubeconfig at a local port forward of `kairos bridge
    /// --userspace` (IP:PORT or a port on 127.0.0.1; default
    /// 127.0.0.1:6443), verifying TLS for the master's overlay address.
    #[arg(long, value_name = "LISTEN", num_args = 0..=1, default_missing_value = "127.0.0.1:6443",
          value_parser = forward_listen)]
    pub userspace_forward: Option<SocketAddr>,

    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `kairos get-kubeconfig`.
pub fn run(args: GetKubeconfigArgs) -> Result<(), CliError> {
    let client = args.api.client()?;
    let reply = client.request(Method::GET, "/api/ledger", None)?;
    let Value::Object(ledger) = client.json(&reply)? else {
        return Err(client.bad_reply(&reply, "a JSON object").into());
    };
    let mut published: Vec<&str> = ledger
        .iter()
        .filter(|(_, keys)| keys.get(KUBECONFIG_KEY).is_some_and(Value::is_string))
        .map(|(bucket, _)| bucket.as_str())
        .collect();
    published.sort_unstable();
    let bucket = match (args.network_id.as_deref(), published.as_slice()) {
        (Some(id), _) if published.contains(&id) => id,
        (Some(id), []) => {
            return Err(failed(format!(
                "no master has published a kubeconfig for network_id {id} yet{}",
                members_seen(&client)
            )))
        }
        (Some(id), others) => {
            return Err(failed(format!(
                "no master has published a kubeconfig for network_id {id}; clusters that have one: {}",
                others.join(", ")
            )))
        }
        (None, [one]) => one,
        (None, []) => {
            return Err(failed(format!(
                "no master has published a kubeconfig yet{}",
                members_seen(&client)
            )))
        }
        (None, several) => {
            return Err(CliError::Usage(format!(
                "several clusters on this network: {}; pick one with --network-id",
                several.join(", ")
            )))
        }
    };
    // Any member may write the bucket: take what its master wrote only,
    // read together with who wrote it.
    let writers = client
        .get_json(&format!("/api/writers/{}", encode_segment(bucket)))
        .map_err(|e| match e {
            crate::client::ApiError::Status { status: 404, .. } => failed(format!(
                "the agent or bridge at the API is older than this command and cannot say who wrote the \
                 kubeconfig of network_id {bucket} (GET /api/writers): upgrade it"
            )),
            e => failed(format!(
                "cannot check who wrote the kubeconfig of network_id {bucket}: {e}"
            )),
        })?;
    let (published, ip_master) = check_writers(bucket, &writers).map_err(failed)?;
    let published_yaml = decode_published(&published);
    let ip_master = match ip_master {
        Some(ip) => Some(parse_ip_master(&ip).map_err(|e| failed(format!("{IP_MASTER_KEY} in bucket {bucket}: {e}")))?),
        None => None,
    };
    let mut rewritten = rewrite_kubeconfig(&published_yaml, ip_master)
        .map_err(|e| failed(format!("the kubeconfig of network_id {bucket}: {e}")))?;
    if let Some(listen) = args.userspace_forward {
        let targets = rewritten.servers.clone();
        rewritten = point_at_forward(&rewritten.yaml, listen)
            .map_err(|e| failed(format!("the kubeconfig of network_id {bucket}: {e}")))?;
        for t in targets {
            if let Some((host, port)) = split_server(&t) {
                let host = match host.parse::<IpAddr>() {
                    Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                    _ => host.to_owned(),
                };
                eprintln!(
                    "for the forward: kairos bridge --userspace --forward {listen}={host}:{}",
                    port.unwrap_or(DEFAULT_PORT)
                );
            }
        }
    }
    if ip_master.is_none() {
        eprintln!(
            "warning: the master of network_id {bucket} has not published its overlay address ({IP_MASTER_KEY}); \
             the servers are kept as published"
        );
    }
    eprintln!(
        "kubeconfig of network_id {bucket}, server {}",
        rewritten.servers.join(", ")
    );
    std::io::stdout()
        .write_all(rewritten.yaml.as_bytes())
        .map_err(CliError::Output)
}

/// The kubeconfig and `ip-master` the master of network `bucket` wrote,
/// from `GET /api/writers/BUCKET` (each value comes with its writer). Every
/// member may write the bucket, so a member could otherwise hand the
/// operator a kubeconfig of its own (docs/security.md, gap 3): a kubeconfig
/// another member wrote is refused (`Err` with the reason), an
/// `ip-master` another member wrote is ignored with a warning.
pub fn check_writers(bucket: &str, writers: &Value) -> Result<(String, Option<String>), String> {
    let by_master = |key: &str| {
        let w = writers.get(key)?;
        Some((w["master"] == true, w["value"].as_str().unwrap_or_default().to_owned()))
    };
    let kubeconfig = match by_master(KUBECONFIG_KEY) {
        Some((true, value)) => value,
        Some((false, _)) => {
            let id = writers[KUBECONFIG_KEY]["node_id"].as_str().unwrap_or_default();
            return Err(format!(
                "the kubeconfig of network_id {bucket} was written by node {}, which is not its master: \
                 refusing it. Right after a new master takes over, its own comes within seconds; the master \
                 puts its own back within 10 s, so if this persists a member keeps overwriting it",
                short_id(id)
            ));
        }
        None => {
            return Err(format!(
                "no master has published a kubeconfig for network_id {bucket} yet"
            ))
        }
    };
    let ip_master = match by_master(IP_MASTER_KEY) {
        Some((true, ip)) => Some(ip),
        Some((false, _)) => {
            eprintln!(
                "warning: {IP_MASTER_KEY} in bucket {bucket} was not written by the master of network_id {bucket}; \
                 it is ignored"
            );
            None
        }
        None => None,
    };
    Ok((kubeconfig, ip_master))
}

fn failed(message: String) -> CliError {
    CliError::Other(anyhow::anyhow!(message))
}

/// `; members seen:` and one line per member with its network_id and role,
/// for the operator to tell "no master yet" from "wrong network".
fn members_seen(client: &ApiClient) -> String {
    match client.get_json("/api/machines") {
        Ok(Value::Array(machines)) => describe_members(&machines),
        Ok(_) => String::from(" (cannot list the members: /api/machines is not a JSON array)"),
        Err(e) => format!(" (cannot list the members: {e})"),
    }
}

/// The members part of the "no kubeconfig" message.
pub fn describe_members(machines: &[Value]) -> String {
    if machines.is_empty() {
        return "; no members seen (is this node connected to the mesh? see `kairos status`)".to_owned();
    }
    let mut out = String::from("; members seen:");
    for m in machines {
        let name = match text(m, "hostname").as_str() {
            "-" => format!("node {}", short_id(&text(m, "node_id"))),
            h => format!("{h} (node {})", short_id(&text(m, "node_id"))),
        };
        let role = match (m.get("role"), m.get("kind")) {
            (Some(Value::String(r)), _) => r.clone(),
            (_, Some(Value::String(k))) if k == "bridge" => "none (a bridge)".to_owned(),
            _ => "not decided yet".to_owned(),
        };
        out.push_str(&format!(
            "\n  {name}: network_id {}, role {role}",
            text(m, "network_id")
        ));
    }
    out
}

/// The kubeconfig text from the ledger value: the YAML itself, a
/// non-UTF-8 value in the API's `base64:` form, or a kubeconfig published
/// base64-encoded (upstream Kairos publishes it URL-safe without padding).
pub fn decode_published(value: &str) -> String {
    let engines = [
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ];
    let decode = |s: &str| {
        engines
            .iter()
            .find_map(|e| e.decode(s.trim()).ok())
            .and_then(|b| String::from_utf8(b).ok())
    };
    if let Some(b64) = value.strip_prefix("base64:") {
        if let Some(text) = decode(b64) {
            return text;
        }
    }
    if matches!(serde_yaml_ng::from_str::<Yaml>(value), Ok(Yaml::Mapping(_))) {
        return value.to_owned();
    }
    match decode(value) {
        Some(text) if matches!(serde_yaml_ng::from_str::<Yaml>(&text), Ok(Yaml::Mapping(_))) => text,
        _ => value.to_owned(),
    }
}

/// `ip-master` as an address: `10.1.0.7`, also `10.1.0.7/24` or `[fd00::1]`.
pub fn parse_ip_master(s: &str) -> Result<IpAddr, String> {
    let t = s.trim();
    let t = t.split_once('/').map_or(t, |(ip, _)| ip);
    let t = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(t);
    t.parse().map_err(|_| format!("`{s}` is not an IP address"))
}

/// A kubeconfig with its servers pointed at the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The kubeconfig YAML to print.
    pub yaml: String,
    /// The `server` of each cluster after the rewrite, in order.
    pub servers: Vec<String>,
}

/// Why a published kubeconfig cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigError {
    /// Not YAML, or not a mapping.
    #[error("not a valid kubeconfig (YAML): {0}")]
    BadYaml(String),
    /// No `clusters` list with a `cluster.server`.
    #[error("it has no cluster with a server (`clusters[].cluster.server`)")]
    NoClusters,
    /// A `server` that is not a URL with a host.
    #[error("cluster server `{0}` is not an https://HOST[:PORT] address")]
    BadServer(String),
    /// The server points at the master's loopback and there is no
    /// `ip-master` to replace it with.
    #[error(
        "its server {0} is the master's own loopback address and the master has not published its \
         overlay address (ip-master) yet: try again in a moment"
    )]
    LoopbackWithoutIp(String),
}

/// Points every `clusters[*].cluster.server` of `yaml` at
/// `https://IP_MASTER:PORT`, keeping the port of the published server
/// ([`DEFAULT_PORT`] if it has none) and everything else as published.
/// Without `ip_master` the servers are kept, unless one is a loopback or
/// unspecified address (127.0.0.1, localhost, ::1, 0.0.0.0), useless off the
/// master.
pub fn rewrite_kubeconfig(yaml: &str, ip_master: Option<IpAddr>) -> Result<Rewritten, KubeconfigError> {
    let mut doc: Yaml = serde_yaml_ng::from_str(yaml).map_err(|e| KubeconfigError::BadYaml(e.to_string()))?;
    if !doc.is_mapping() {
        return Err(KubeconfigError::BadYaml("the document is not a mapping".into()));
    }
    let clusters = doc
        .get_mut("clusters")
        .and_then(Yaml::as_sequence_mut)
        .ok_or(KubeconfigError::NoClusters)?;
    let mut servers = Vec::new();
    for entry in clusters.iter_mut() {
        let Some(server) = entry.get_mut("cluster").and_then(|c| c.get_mut("server")) else {
            continue;
        };
        let published = server.as_str().unwrap_or_default().to_owned();
        let (host, port) = split_server(&published).ok_or_else(|| KubeconfigError::BadServer(published.clone()))?;
        let new = match ip_master {
            Some(IpAddr::V4(ip)) => format!("https://{ip}:{}", port.unwrap_or(DEFAULT_PORT)),
            Some(IpAddr::V6(ip)) => format!("https://[{ip}]:{}", port.unwrap_or(DEFAULT_PORT)),
            None if is_local(host) => return Err(KubeconfigError::LoopbackWithoutIp(published)),
            None => published,
        };
        *server = Yaml::String(new.clone());
        servers.push(new);
    }
    if servers.is_empty() {
        return Err(KubeconfigError::NoClusters);
    }
    let yaml = serde_yaml_ng::to_string(&doc).map_err(|e| KubeconfigError::BadYaml(e.to_string()))?;
    Ok(Rewritten { yaml, servers })
}

/// `--userspace-forward`: `IP:PORT`, `localhost:PORT` or a port on 127.0.0.1.
fn forward_listen(s: &str) -> Result<SocketAddr, String> {
    const EXPECTED: &str = "expected IP:PORT (e.g. 127.0.0.1:6443) or a port";
    let s = s.trim();
    let local = |p: &str| {
        p.parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
    };
    let addr = match (local(s), s.strip_prefix("localhost:")) {
        (Ok(a), _) => a,
        (Err(_), Some(p)) => local(p).map_err(|_| EXPECTED.to_owned())?,
        (Err(_), None) => s.parse::<SocketAddr>().map_err(|_| EXPECTED.to_owned())?,
    };
    if addr.port() == 0 || addr.ip().is_unspecified() {
        return Err(EXPECTED.to_owned());
    }
    Ok(addr)
}

/// Points every cluster of `yaml` (already rewritten for the master) at
/// the local forward `listen`, and sets its `tls-server-name` to the host
/// it pointed at (the master's overlay address, which the k3s certificate
/// names), unless the cluster already has one.
pub fn point_at_forward(yaml: &str, listen: SocketAddr) -> Result<Rewritten, KubeconfigError> {
    let mut doc: Yaml = serde_yaml_ng::from_str(yaml).map_err(|e| KubeconfigError::BadYaml(e.to_string()))?;
    let clusters = doc
        .get_mut("clusters")
        .and_then(Yaml::as_sequence_mut)
        .ok_or(KubeconfigError::NoClusters)?;
    let new = format!("https://{listen}");
    let mut servers = Vec::new();
    for entry in clusters.iter_mut() {
        let Some(Yaml::Mapping(cluster)) = entry.get_mut("cluster") else {
            continue;
        };
        let Some(server) = cluster.get("server") else { continue };
        let published = server.as_str().unwrap_or_default().to_owned();
        let (host, _) = split_server(&published).ok_or_else(|| KubeconfigError::BadServer(published.clone()))?;
        let host = host.to_owned();
        cluster.insert(Yaml::from("server"), Yaml::String(new.clone()));
        if !cluster.contains_key("tls-server-name") {
            cluster.insert(Yaml::from("tls-server-name"), Yaml::String(host));
        }
        servers.push(new.clone());
    }
    if servers.is_empty() {
        return Err(KubeconfigError::NoClusters);
    }
    let yaml = serde_yaml_ng::to_string(&doc).map_err(|e| KubeconfigError::BadYaml(e.to_string()))?;
    Ok(Rewritten { yaml, servers })
}

/// The host (IPv6 without brackets) and port of `[scheme://]host[:port][/path]`.
fn split_server(server: &str) -> Option<(&str, Option<u16>)> {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if let Some(r) = authority.strip_prefix('[') {
        let (host, after) = r.split_once(']')?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, _)) if h.contains(':') => return None,
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    match port {
        Some(p) => Some((host, Some(p.parse().ok().filter(|&p: &u16| p != 0)?))),
        None => Some((host, None)),
    }
}

/// Whether `host` only means something on the master itself.
fn is_local(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_masters_kubeconfig_and_address_are_taken() {
        let by = |master: bool, value: &str| {
            let id = if master {
                "qbbbbbbbbbbbbbbbbbbbbbbbbb"
            } else {
                "qccccccccccccccccccccccccc"
            };
            json!({"node_id": id, "master": master, "value": value})
        };
        let w = json!({"master-kubeconfig": by(true, "k"), "ip-master": by(true, "10.1.0.7")});
        assert_eq!(check_writers("kairos", &w), Ok(("k".into(), Some("10.1.0.7".into()))));
        let w = json!({"master-kubeconfig": by(true, "k"), "ip-master": by(false, "192.0.2.9")});
        assert_eq!(
            check_writers("kairos", &w),
            Ok(("k".into(), None)),
            "its address is ignored"
        );
        let w = json!({"master-kubeconfig": by(true, "k")});
        assert_eq!(check_writers("kairos", &w), Ok(("k".into(), None)));
        let w = json!({"master-kubeconfig": by(false, "forged"), "ip-master": by(true, "10.1.0.7")});
        let e = check_writers("kairos", &w).unwrap_err();
        assert!(
            e.contains("network_id kairos") && e.contains("qccccccc") && e.contains("not its master"),
            "{e}"
        );
        assert!(!e.contains("forged"));
        let e = check_writers("kairos", &json!({})).unwrap_err();
        assert!(e.contains("no master has published"), "{e}");
    }
    use serde_json::json;

    /// A kubeconfig as k3s writes it (trimmed).
    const K3S: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0t
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
    client-certificate-data: Y2VydA==
    client-key-data: a2V5
";

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn rewrites_the_k3s_loopback_server_and_keeps_the_rest() {
        let out = rewrite_kubeconfig(K3S, ip("10.1.0.7")).unwrap();
        assert_eq!(out.servers, ["https://10.1.0.7:6443"]);
        assert_eq!(out.yaml, K3S.replace("https://127.0.0.1:6443", "https://10.1.0.7:6443"));
    }

    #[test]
    fn keeps_the_published_port_and_defaults_to_6443() {
        let yaml = "clusters:\n- cluster:\n    server: https://localhost:16443\n  name: a\n\
                    - cluster:\n    server: https://localhost\n  name: b\n\
                    - cluster:\n    server: https://[::1]:7443/prefix\n  name: c\n\
                    - name: no-cluster-block\n";
        let out = rewrite_kubeconfig(yaml, ip("10.1.0.7")).unwrap();
        assert_eq!(
            out.servers,
            [
                "https://10.1.0.7:16443",
                "https://10.1.0.7:6443",
                "https://10.1.0.7:7443"
            ]
        );
        let doc: Yaml = serde_yaml_ng::from_str(&out.yaml).unwrap();
        assert_eq!(doc["clusters"][1]["name"], Yaml::from("b"));
        assert_eq!(doc["clusters"][3]["name"], Yaml::from("no-cluster-block"));
        assert!(
            !out.yaml.contains("localhost") && !out.yaml.contains("::1"),
            "{}",
            out.yaml
        );
    }

    #[test]
    fn an_ipv6_master_is_bracketed() {
        let out = rewrite_kubeconfig(K3S, ip("fd12:3456::7")).unwrap();
        assert_eq!(out.servers, ["https://[fd12:3456::7]:6443"]);
    }

    #[test]
    fn without_ip_master_keeps_a_routable_server_and_refuses_loopback() {
        let routable = K3S.replace("127.0.0.1", "10.1.0.9");
        let out = rewrite_kubeconfig(&routable, None).unwrap();
        assert_eq!(out.yaml, routable);
        assert_eq!(out.servers, ["https://10.1.0.9:6443"]);
        for local in ["127.0.0.1", "localhost", "[::1]", "0.0.0.0", "127.0.1.1"] {
            let yaml = K3S.replace("127.0.0.1", local);
            assert_eq!(
                rewrite_kubeconfig(&yaml, None),
                Err(KubeconfigError::LoopbackWithoutIp(format!("https://{local}:6443"))),
                "{local}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_a_kubeconfig() {
        assert!(matches!(
            rewrite_kubeconfig("clusters: [unclosed", ip("10.1.0.7")),
            Err(KubeconfigError::BadYaml(_))
        ));
        assert!(matches!(
            rewrite_kubeconfig("just text", ip("10.1.0.7")),
            Err(KubeconfigError::BadYaml(_))
        ));
        assert_eq!(
            rewrite_kubeconfig("kind: Config\n", ip("10.1.0.7")),
            Err(KubeconfigError::NoClusters)
        );
        assert_eq!(
            rewrite_kubeconfig("clusters:\n- name: a\n", ip("10.1.0.7")),
            Err(KubeconfigError::NoClusters)
        );
        assert_eq!(
            rewrite_kubeconfig("clusters:\n- cluster:\n    server: 'https://:99999'\n", ip("10.1.0.7")),
            Err(KubeconfigError::BadServer("https://:99999".into()))
        );
    }

    #[test]
    fn points_at_a_userspace_forward_and_keeps_tls_verification() {
        let at_master = rewrite_kubeconfig(K3S, ip("10.1.0.7")).unwrap();
        let out = point_at_forward(&at_master.yaml, "127.0.0.1:6443".parse().unwrap()).unwrap();
        assert_eq!(out.servers, ["https://127.0.0.1:6443"]);
        assert_eq!(
            out.yaml,
            K3S.replace(
                "    server: https://127.0.0.1:6443\n",
                "    server: https://127.0.0.1:6443\n    tls-server-name: 10.1.0.7\n"
            ),
            "the server is the forward, the certificate is checked for the master's address"
        );
        let doc: Yaml = serde_yaml_ng::from_str(&out.yaml).unwrap();
        assert!(
            doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"].is_null(),
            "verification stays on"
        );

        // An IPv6 forward is bracketed; an IPv6 master is the bare name.
        let v6 = rewrite_kubeconfig(K3S, ip("fd00::7")).unwrap();
        let out = point_at_forward(&v6.yaml, "[::1]:16443".parse().unwrap()).unwrap();
        assert_eq!(out.servers, ["https://[::1]:16443"]);
        let doc: Yaml = serde_yaml_ng::from_str(&out.yaml).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["tls-server-name"], Yaml::from("fd00::7"));

        // A name the publisher chose is kept.
        let named = at_master
            .yaml
            .replace("    server:", "    tls-server-name: k3s.internal\n    server:");
        let out = point_at_forward(&named, "127.0.0.1:6443".parse().unwrap()).unwrap();
        let doc: Yaml = serde_yaml_ng::from_str(&out.yaml).unwrap();
        assert_eq!(
            doc["clusters"][0]["cluster"]["tls-server-name"],
            Yaml::from("k3s.internal")
        );
        assert_eq!(
            point_at_forward("kind: Config\n", "127.0.0.1:1".parse().unwrap()),
            Err(KubeconfigError::NoClusters)
        );
    }

    #[test]
    fn forward_listen_addresses() {
        assert_eq!(forward_listen("127.0.0.1:6443"), Ok("127.0.0.1:6443".parse().unwrap()));
        assert_eq!(forward_listen("16443"), Ok("127.0.0.1:16443".parse().unwrap()));
        assert_eq!(forward_listen("localhost:7443"), Ok("127.0.0.1:7443".parse().unwrap()));
        assert_eq!(forward_listen("[::1]:6443"), Ok("[::1]:6443".parse().unwrap()));
        for bad in ["", "0", "0.0.0.0:6443", "host:6443", "127.0.0.1"] {
            assert!(forward_listen(bad).is_err(), "{bad:?}");
        }
        use crate::cli::{Cli, Command};
        use clap::Parser;
        let parse = |argv: &[&str]| match Cli::try_parse_from(argv).unwrap().command {
            Command::GetKubeconfig(a) => a.userspace_forward,
            other => panic!("{other:?}"),
        };
        assert_eq!(parse(&["kairos", "get-kubeconfig"]), None);
        assert_eq!(
            parse(&["kairos", "get-kubeconfig", "--userspace-forward"]),
            Some("127.0.0.1:6443".parse().unwrap())
        );
        assert_eq!(
            parse(&["kairos", "get-kubeconfig", "--userspace-forward", "16443"]),
            Some("127.0.0.1:16443".parse().unwrap())
        );
    }

    #[test]
    fn splits_servers() {
        assert_eq!(split_server("https://127.0.0.1:6443"), Some(("127.0.0.1", Some(6443))));
        assert_eq!(
            split_server("https://k3s.example:443/x"),
            Some(("k3s.example", Some(443)))
        );
        assert_eq!(split_server("https://[fd00::1]"), Some(("fd00::1", None)));
        assert_eq!(split_server("10.0.0.1:6443"), Some(("10.0.0.1", Some(6443))));
        assert_eq!(split_server("https://fd00::1:6443"), None);
        assert_eq!(split_server("https://host:x"), None);
        assert_eq!(split_server(""), None);
    }

    #[test]
    fn decodes_what_masters_publish() {
        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
        assert_eq!(decode_published(K3S), K3S);
        assert_eq!(decode_published(&URL_SAFE_NO_PAD.encode(K3S)), K3S);
        assert_eq!(decode_published(&format!("base64:{}", STANDARD.encode(K3S))), K3S);
        // Neither YAML of a mapping nor base64 of one: passed on for the rewrite to refuse.
        assert_eq!(decode_published("abcd"), "abcd");
    }

    #[test]
    fn parses_ip_master() {
        assert_eq!(parse_ip_master("10.1.0.7"), Ok("10.1.0.7".parse().unwrap()));
        assert_eq!(parse_ip_master(" 10.1.0.7/24\n"), Ok("10.1.0.7".parse().unwrap()));
        assert_eq!(parse_ip_master("[fd00::1]"), Ok("fd00::1".parse().unwrap()));
        assert!(parse_ip_master("master.local").is_err());
    }

    #[test]
    fn describes_members() {
        let machines = [
            json!({"node_id": "abcdefghijklmnopqrstuvwxyz", "hostname": "edge-1", "network_id": "kairos",
                   "role": "worker", "kind": "agent"}),
            json!({"node_id": "bcdefghijklmnopqrstuvwxyza", "hostname": null, "network_id": null,
                   "role": null, "kind": "bridge"}),
            json!({"node_id": "cdefghijklmnopqrstuvwxyzab", "hostname": "edge-3", "network_id": "other",
                   "role": null, "kind": "agent"}),
        ];
        assert_eq!(
            describe_members(&machines),
            "; members seen:\n  edge-1 (node abcdefgh): network_id kairos, role worker\n  \
             node bcdefghi: network_id -, role none (a bridge)\n  \
             edge-3 (node cdefghij): network_id other, role not decided yet"
        );
        assert!(describe_members(&[]).starts_with("; no members seen"));
    }
}
