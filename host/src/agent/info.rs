//! [`MachineInfo`]: the record every agent and bridge writes at start in
//! the owner-only bucket [`INFO`] under its own node id, so the other
//! members (their API, their dashboard, the DNS resolver) can show a host
//! name, the OS and the version next to a node id.
//!
//! The value is JSON:
//!
//! ```json
//! {"hostname": "edge-1", "os": "linux", "arch": "x86_64", "version": "0.1.0",
//!  "network_id": "kairos", "kind": "agent"}
//! ```
//!
//! `network_id` is `null` for a bridge. This module owns the encoding and
//! reading the local machine's facts; it never writes the ledger itself
//! (the agent start-up does, through the node).

use serde::{Deserialize, Serialize};

/// The owner-only bucket of machine info records (key: the writer's node id).
pub const INFO: &str = "owner/info";

/// The longest host name kept (a DNS name); longer ones are cut.
const MAX_HOSTNAME: usize = 253;

/// What kind of member wrote a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `kairos agent`: a node with an interface, taking part in a cluster.
    Agent,
    /// `kairos bridge`: a member without a cluster (no `network_id`).
    Bridge,
}

impl Kind {
    /// `agent` or `bridge`, as in the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Agent => "agent",
            Kind::Bridge => "bridge",
        }
    }
}

/// A member's machine info record. See the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineInfo {
    /// The kernel's host name.
    pub hostname: String,
    /// `std::env::consts::OS` (`linux`).
    pub os: String,
    /// `std::env::consts::ARCH` (`x86_64`, `aarch64`).
    pub arch: String,
    /// The writer's `kairos` version.
    pub version: String,
    /// Its cluster, `null` for a bridge.
    pub network_id: Option<String>,
    /// `agent` or `bridge`.
    pub kind: Kind,
}

impl MachineInfo {
    /// This machine's record: its host name, OS, architecture and this
    /// binary's version.
    pub fn local(network_id: Option<&str>, kind: Kind) -> MachineInfo {
        MachineInfo {
            hostname: local_hostname(),
            os: std::env::consts::OS.to_owned(),
            arch: std::env::consts::ARCH.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            network_id: network_id.map(str::to_owned),
            kind,
        }
    }

    /// The record's value (JSON bytes, well under the ledger's value limit).
    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain strings cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a record's value; `None` if it is not one (any member can
    /// write anything under its own key, so callers treat it as untrusted).
    pub fn parse(value: &[u8]) -> Option<MachineInfo> {
        serde_json::from_slice(value).ok()
    }
}

/// The kernel's host name (`uname -n`), `localhost` if it is empty.
pub fn local_hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    let name = name.trim();
    if name.is_empty() {
        return "localhost".to_owned();
    }
    let mut end = name.len().min(MAX_HOSTNAME);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_with_the_contract_field_names() {
        let info = MachineInfo {
            hostname: "edge-1".into(),
            os: "linux".into(),
            arch: "x86_64".into(),
            version: "0.1.0".into(),
            network_id: Some("kairos".into()),
            kind: Kind::Agent,
        };
        let bytes = info.encode();
        let j: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            j,
            serde_json::json!({"hostname": "edge-1", "os": "linux", "arch": "x86_64", "version": "0.1.0",
                "network_id": "kairos", "kind": "agent"})
        );
        assert_eq!(MachineInfo::parse(&bytes), Some(info));
        assert_eq!(MachineInfo::parse(b"not json"), None);
        assert_eq!(MachineInfo::parse(br#"{"hostname": 1}"#), None);
    }

    #[test]
    fn a_bridge_has_no_network_id() {
        let info = MachineInfo::local(None, Kind::Bridge);
        let j: serde_json::Value = serde_json::from_slice(&info.encode()).unwrap();
        assert!(j["network_id"].is_null());
        assert_eq!(j["kind"], "bridge");
        assert!(!info.hostname.is_empty());
        assert_eq!(info.os, std::env::consts::OS);
        assert!(info.encode().len() < kairos_core::ledger::MAX_VALUE_LEN);
    }
}
