//! The kubeconfig a master publishes: k3s's `k3s.yaml` with every cluster's
//! `server` moved from `https://127.0.0.1:6443` to the master's overlay
//! address, so it works from any member (`kairos get-kubeconfig`).
//!
//! Pure: bytes in, bytes out. Errors never quote the file (it holds the
//! cluster's admin credentials).

use std::net::Ipv4Addr;

use serde_yaml_ng::Value;

use super::plan::server_url;

/// Why a kubeconfig could not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeconfigError {
    /// Not YAML (k3s may still be writing it).
    #[error("the kubeconfig is not valid YAML")]
    NotYaml,
    /// YAML without a `clusters` list of `cluster.server` entries.
    #[error("the kubeconfig has no clusters[].cluster.server")]
    NoServer,
}

/// `kubeconfig` with `clusters[*].cluster.server` set to
/// `https://<ip>:6443`; everything else kept.
pub fn rewrite(kubeconfig: &[u8], ip: Ipv4Addr) -> Result<Vec<u8>, KubeconfigError> {
    let mut doc: Value = serde_yaml_ng::from_slice(kubeconfig).map_err(|_| KubeconfigError::NotYaml)?;
    let url = Value::String(server_url(ip));
    let mut rewritten = 0;
    if let Some(Value::Sequence(clusters)) = doc.get_mut("clusters") {
        for c in clusters {
            if let Some(server) = c.get_mut("cluster").and_then(|c| c.get_mut("server")) {
                *server = url.clone();
                rewritten += 1;
            }
        }
    }
    if rewritten == 0 {
        return Err(KubeconfigError::NoServer);
    }
    serde_yaml_ng::to_string(&doc)
        .map(String::into_bytes)
        .map_err(|_| KubeconfigError::NotYaml)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What k3s writes (credentials shortened).
    const K3S_YAML: &str = "apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tQ0E=
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
    client-certificate-data: LS0tQ0VSVA==
    client-key-data: LS0tS0VZ
";

    #[test]
    fn the_server_moves_to_the_overlay_and_the_rest_stays() {
        let out = rewrite(K3S_YAML.as_bytes(), Ipv4Addr::new(10, 1, 0, 7)).unwrap();
        let doc: Value = serde_yaml_ng::from_slice(&out).unwrap();
        let before: Value = serde_yaml_ng::from_str(K3S_YAML).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://10.1.0.7:6443");
        assert_eq!(doc["clusters"][0]["cluster"]["certificate-authority-data"], "LS0tQ0E=");
        assert_eq!(doc["users"], before["users"]);
        assert_eq!(doc["current-context"], "default");
        assert!(!String::from_utf8(out).unwrap().contains("127.0.0.1"));
    }

    #[test]
    fn every_cluster_is_rewritten() {
        let two =
            "clusters:\n- cluster:\n    server: https://127.0.0.1:6443\n- cluster:\n    server: https://[::1]:6443\n";
        let out = rewrite(two.as_bytes(), Ipv4Addr::new(10, 1, 0, 2)).unwrap();
        let doc: Value = serde_yaml_ng::from_slice(&out).unwrap();
        assert_eq!(doc["clusters"][0]["cluster"]["server"], "https://10.1.0.2:6443");
        assert_eq!(doc["clusters"][1]["cluster"]["server"], "https://10.1.0.2:6443");
    }

    #[test]
    fn half_written_or_foreign_files_are_refused() {
        let ip = Ipv4Addr::new(10, 1, 0, 2);
        assert_eq!(rewrite(b"clusters: [", ip), Err(KubeconfigError::NotYaml));
        assert_eq!(rewrite(b"", ip), Err(KubeconfigError::NoServer));
        assert_eq!(rewrite(b"kind: Config\n", ip), Err(KubeconfigError::NoServer));
        assert_eq!(rewrite(b"clusters:\n- name: x\n", ip), Err(KubeconfigError::NoServer));
    }
}
