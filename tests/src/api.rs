//! The parts of the agent's HTTP API the tests read: `GET /api/summary` and
//! `GET /api/machines`.
//!
//! Parsed leniently from JSON (unknown fields ignored, an address with a
//! `/len` suffix taken without it, a member count given as a number or a
//! list), so the tests check behaviour, not the exact encoding; the fields
//! a test relies on are required.

use serde_json::Value;

use crate::error::{HarnessError, Result};

/// `GET /api/summary`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// This node's id.
    pub node_id: String,
    /// The cluster (`network_id`) the node belongs to, if reported.
    pub network_id: Option<String>,
    /// The TUN interface, if reported.
    pub interface: Option<String>,
    /// The overlay IPv4 address, once assigned.
    pub ipv4: Option<String>,
    /// The overlay IPv6 address, if any.
    pub ipv6: Option<String>,
    /// Other members known (as reported: a count, or the length of a list).
    pub members: Option<u64>,
    /// Peers with a session up.
    pub peers_up: Option<u64>,
    /// Peers reached directly.
    pub direct: Option<u64>,
    /// Peers reached through a relay.
    pub relayed: Option<u64>,
    /// The whole answer.
    pub raw: Value,
}

/// One entry of `GET /api/machines`.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// The member's node id.
    pub node_id: String,
    /// Its overlay IPv4 address, if it has one.
    pub ipv4: Option<String>,
    /// Its overlay IPv6 address, if reported.
    pub ipv6: Option<String>,
    /// Whether a session with it is up.
    pub up: bool,
    /// `direct`, `relayed` or `none`.
    pub path: String,
    /// Where it is reached, if reported.
    pub endpoint: Option<String>,
}

fn text(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.split('/').next().unwrap_or(s).to_owned()),
        _ => None,
    }
}

fn count(value: &Value, key: &str) -> Option<u64> {
    match value.get(key)? {
        Value::Number(n) => n.as_u64(),
        Value::Array(items) => Some(items.len() as u64),
        _ => None,
    }
}

fn parse_json(from: &str, body: &str) -> Result<Value> {
    serde_json::from_str(body).map_err(|e| HarnessError::unexpected(from, format!("not JSON ({e}): {body:.200}")))
}

impl Summary {
    /// Parses the body of `/api/summary`.
    pub fn parse(body: &str) -> Result<Summary> {
        let raw = parse_json("/api/summary", body)?;
        let node_id = text(&raw, "node_id")
            .ok_or_else(|| HarnessError::unexpected("/api/summary", format!("no node_id in {raw}")))?;
        Ok(Summary {
            node_id,
            network_id: text(&raw, "network_id"),
            interface: text(&raw, "interface"),
            ipv4: text(&raw, "ipv4"),
            ipv6: text(&raw, "ipv6"),
            members: count(&raw, "members"),
            peers_up: count(&raw, "peers_up"),
            direct: count(&raw, "direct"),
            relayed: count(&raw, "relayed"),
            raw,
        })
    }
}

impl Machine {
    /// Parses the body of `/api/machines` (a JSON array, or an object with
    /// a `machines` array).
    pub fn parse_list(body: &str) -> Result<Vec<Machine>> {
        let raw = parse_json("/api/machines", body)?;
        let items = match &raw {
            Value::Array(items) => items,
            Value::Object(map) => match map.get("machines") {
                Some(Value::Array(items)) => items,
                _ => return Err(HarnessError::unexpected("/api/machines", format!("no array in {raw}"))),
            },
            _ => return Err(HarnessError::unexpected("/api/machines", format!("no array in {raw}"))),
        };
        items
            .iter()
            .map(|item| {
                let node_id = text(item, "node_id")
                    .ok_or_else(|| HarnessError::unexpected("/api/machines", format!("no node_id in {item}")))?;
                Ok(Machine {
                    node_id,
                    ipv4: text(item, "ipv4"),
                    ipv6: text(item, "ipv6"),
                    up: item.get("up").and_then(Value::as_bool).unwrap_or(false),
                    path: text(item, "path").unwrap_or_else(|| "none".to_owned()),
                    endpoint: text(item, "endpoint"),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_summary() {
        let s = Summary::parse(
            r#"{"node_id":"abc","network_id":"n1","interface":"kairos0","ipv4":"10.1.0.7/24","ipv6":null,
                "listen":"0.0.0.0:51820","members":3,"peers_up":2,"direct":2,"relayed":0,"uptime_s":4}"#,
        )
        .unwrap();
        assert_eq!(s.node_id, "abc");
        assert_eq!(s.ipv4.as_deref(), Some("10.1.0.7"));
        assert_eq!(s.ipv6, None);
        assert_eq!(
            (s.members, s.peers_up, s.direct, s.relayed),
            (Some(3), Some(2), Some(2), Some(0))
        );
        assert!(Summary::parse(r#"{"ipv4":null}"#).is_err());
        assert!(Summary::parse("not json").is_err());
    }

    #[test]
    fn parses_machines() {
        let list = Machine::parse_list(
            r#"[{"node_id":"a","ipv4":"10.1.0.1","ipv6":"fd00::1","up":true,"path":"direct","endpoint":"1.2.3.4:5"},
                {"node_id":"b","ipv4":null,"up":false,"path":"none","endpoint":null}]"#,
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert!(list[0].up && list[0].path == "direct");
        assert_eq!(list[1].ipv4, None);
        assert_eq!(Machine::parse_list(r#"{"machines":[]}"#).unwrap(), vec![]);
    }
}
