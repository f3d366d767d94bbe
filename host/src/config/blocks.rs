//! Reading the two blocks Kairos users write, the legacy `kairos:` block and
//! the current `p2p:` block (with `vpn`, `auto`, `auto.ha` and this
//! project's `mesh`), into [`Settings`]: which keys each block has, what
//! each key's value must be, and the advice given for a key that is not
//! known (a typo, or a key of the other block).
//!
//! Unknown keys are warnings, never errors: Kairos adds keys over time and
//! an older agent must not refuse a newer config. This module never fills
//! in defaults; [`Settings::finish`](super::settings::Settings::finish) does.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::agent::{Endpoint, MAX_MTU, MIN_MTU};
use super::diagnostic::Severity;
use super::read::Reader;
use super::scan::item;
use super::settings::Settings;
use super::values::{self, describe, MTU_EXPECTED, PORT_EXPECTED};

/// Which block is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Block {
    /// `kairos:` (the seed document's block).
    Legacy,
    /// `p2p:` (current Kairos).
    P2p,
}

/// Keys both blocks have.
const COMMON_KEYS: [&str; 7] = [
    "network_token",
    "network_id",
    "role",
    "dns",
    "loglevel",
    "minimum_nodes",
    "disable_dht",
];
/// Keys of the legacy block only.
const LEGACY_KEYS: [&str; 4] = ["hybrid", "hybrid_vpn", "skip_auto", "ha"];
/// Keys of the `p2p:` block only.
const P2P_KEYS: [&str; 5] = ["vpn", "auto", "dynamic_roles", "distribution", "mesh"];
/// Keys of `p2p.mesh`.
pub const MESH_KEYS: [&str; 9] = [
    "listen_port",
    "bootstrap_peers",
    "address",
    "interface",
    "mtu",
    "state_dir",
    "api",
    "lan_beacons",
    "master_timeout",
];
const VPN_KEYS: [&str; 3] = ["create", "use", "env"];
const AUTO_KEYS: [&str; 2] = ["enable", "ha"];
const HA_KEYS: [&str; 3] = ["enable", "external_db", "master_nodes"];

/// The largest `p2p.mesh.master_timeout` accepted (a day).
const MAX_MASTER_TIMEOUT: u32 = 86_400;
/// The largest `minimum_nodes` and `master_nodes` accepted.
const MAX_NODES_SETTING: u64 = 10_000;

/// Reads the block at `path` (`kairos` or `p2p`).
pub fn read_block(r: &mut Reader, block: Block, path: &str, v: &Value) -> Settings {
    let mut s = Settings::default();
    let Some(m) = r.mapping(path, v) else {
        return s;
    };
    for (key, p, v) in r.entries(path, m) {
        match (key, block) {
            ("network_token", _) => {
                s.token_seen = true;
                s.network_token = r.token(&p, v);
            }
            ("network_id", _) => {
                let id = r.parsed(&p, v, "expected a network id (a string)", values::network_id);
                s.network_id = id.filter(|id| !id.is_empty());
            }
            // An empty string is "not set" (Kairos's templates render `role: ""`).
            ("role" | "loglevel", _) if is_empty_string(v) => {}
            ("role", _) => s.role = r.parsed(&p, v, "expected a role: master, worker or auto", values::role),
            ("dns", _) => s.dns = r.bool(&p, v),
            ("loglevel", _) => {
                s.log_level = r.parsed(
                    &p,
                    v,
                    "expected a log level: debug, info, warn or error",
                    values::log_level,
                )
            }
            ("minimum_nodes", _) => {
                s.minimum_nodes = r
                    .uint(
                        &p,
                        v,
                        1,
                        MAX_NODES_SETTING,
                        "expected a number of nodes from 1 to 10000",
                    )
                    .map(|n| n as u32)
            }
            ("disable_dht", _) => s.disable_dht = r.bool(&p, v),
            ("hybrid", Block::Legacy) => s.hybrid = r.bool(&p, v),
            ("hybrid_vpn", Block::Legacy) => s.hybrid_vpn = r.bool(&p, v),
            ("skip_auto", Block::Legacy) => s.auto_enable = r.bool(&p, v).map(|skip| !skip),
            ("ha", Block::Legacy) => read_ha(r, &p, v, &mut s),
            ("vpn", Block::P2p) => read_vpn(r, &p, v, &mut s),
            ("auto", Block::P2p) => read_auto(r, &p, v, &mut s),
            ("dynamic_roles", Block::P2p) => s.dynamic_roles = r.bool(&p, v),
            ("distribution", Block::P2p) => read_distribution(r, &p, v),
            ("mesh", Block::P2p) => read_mesh(r, &p, v, &mut s),
            _ => {
                let hint = other_block_hint(key, block);
                let known: Vec<&str> = match block {
                    Block::Legacy => COMMON_KEYS.iter().chain(&LEGACY_KEYS).copied().collect(),
                    Block::P2p => COMMON_KEYS.iter().chain(&P2P_KEYS).copied().collect(),
                };
                r.unknown_key(&p, key, &known, hint);
            }
        }
    }
    s
}

fn is_empty_string(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.trim().is_empty())
}

/// Advice for a key that belongs to the other block or to `p2p.mesh`.
fn other_block_hint(key: &str, block: Block) -> Option<String> {
    match block {
        Block::Legacy if P2P_KEYS.contains(&key) || MESH_KEYS.contains(&key) => Some(format!(
            "`{key}` belongs in the `p2p:` block (`kairos:` is the legacy block)"
        )),
        Block::P2p if MESH_KEYS.contains(&key) => Some(format!("did you mean `p2p.mesh.{key}`?")),
        Block::P2p => match key {
            "ha" => Some("in the `p2p:` block HA is `auto.ha`".into()),
            "skip_auto" => Some("in the `p2p:` block write `auto: {enable: false}`".into()),
            "hybrid" | "hybrid_vpn" => Some(format!(
                "`{key}` is a legacy `kairos:` key; the `p2p:` block has `vpn.create` and `vpn.use`"
            )),
            _ => None,
        },
        Block::Legacy => None,
    }
}

fn sub_entries<'v>(r: &mut Reader, path: &str, v: &'v Value) -> Vec<(&'v str, String, &'v Value)> {
    match r.mapping(path, v) {
        Some(m) => r.entries(path, m),
        None => Vec::new(),
    }
}

fn read_ha(r: &mut Reader, path: &str, v: &Value, s: &mut Settings) {
    for (key, p, v) in sub_entries(r, path, v) {
        match key {
            "enable" => s.ha_enable = r.bool(&p, v),
            "external_db" => s.ha_external_db = r.str(&p, v, "expected a datastore endpoint").map(str::to_owned),
            "master_nodes" => {
                s.ha_master_nodes = r
                    .uint(
                        &p,
                        v,
                        0,
                        MAX_NODES_SETTING,
                        "expected a number of masters from 0 to 10000",
                    )
                    .map(|n| n as u32)
            }
            _ => r.unknown_key(&p, key, &HA_KEYS, None),
        }
    }
}

fn read_vpn(r: &mut Reader, path: &str, v: &Value, s: &mut Settings) {
    for (key, p, v) in sub_entries(r, path, v) {
        match key {
            "create" => s.vpn_create = r.bool(&p, v),
            "use" => s.vpn_use = r.bool(&p, v),
            "env" => s.vpn_env = read_env_map(r, &p, v),
            _ => r.unknown_key(&p, key, &VPN_KEYS, None),
        }
    }
}

/// `vpn.env`: names to text. Numbers and booleans are taken as written, as
/// Kairos's Go decoder does for a map of strings.
fn read_env_map(r: &mut Reader, path: &str, v: &Value) -> Option<BTreeMap<String, String>> {
    let m: &Mapping = match v {
        Value::Null => return Some(BTreeMap::new()),
        _ => r.mapping(path, v)?,
    };
    let mut env = BTreeMap::new();
    for (key, p, v) in r.entries(path, m) {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => describe(v),
            Value::Null => String::new(),
            _ => {
                r.error(&p, format!("expected a text value, found {}", describe(v)));
                continue;
            }
        };
        env.insert(key.to_owned(), text);
    }
    Some(env)
}

fn read_auto(r: &mut Reader, path: &str, v: &Value, s: &mut Settings) {
    for (key, p, v) in sub_entries(r, path, v) {
        match key {
            "enable" => s.auto_enable = r.bool(&p, v),
            "ha" => read_ha(r, &p, v, s),
            _ => r.unknown_key(&p, key, &AUTO_KEYS, None),
        }
    }
}

/// `p2p.distribution`: Kairos can bootstrap k3s or k0s; this agent does k3s.
fn read_distribution(r: &mut Reader, path: &str, v: &Value) {
    if let Some(d) = r.str(path, v, "expected a distribution name") {
        if !d.is_empty() && !d.eq_ignore_ascii_case("k3s") {
            r.error(
                path,
                format!(
                    "expected \"k3s\" (the only distribution this agent bootstraps), found {}",
                    values::quote(d)
                ),
            );
        }
    }
}

fn read_mesh(r: &mut Reader, path: &str, v: &Value, s: &mut Settings) {
    for (key, p, v) in sub_entries(r, path, v) {
        match key {
            "listen_port" => s.listen_port = r.uint(&p, v, 0, 65535, PORT_EXPECTED).map(|n| n as u16),
            "bootstrap_peers" => s.bootstrap_peers = read_peers(r, &p, v),
            "address" => {
                s.address = r.parsed(&p, v, "expected an IPv4 range like 10.1.0.0/24", values::overlay);
                if let Some(a) = &s.address {
                    r.lint(&p, values::lint_overlay(a));
                }
            }
            "interface" => s.interface = r.parsed(&p, v, "expected an interface name", values::interface),
            "mtu" => {
                s.mtu = r
                    .uint(&p, v, MIN_MTU.into(), MAX_MTU.into(), MTU_EXPECTED)
                    .map(|n| n as u16);
                if let Some(m) = s.mtu {
                    r.lint(&p, values::lint_mtu(m));
                }
            }
            "state_dir" => {
                s.state_dir = r.parsed(&p, v, "expected a directory path", values::state_dir);
                if let Some(d) = &s.state_dir {
                    r.lint(&p, values::lint_state_dir(d));
                }
            }
            "api" => {
                s.api = r.parsed(&p, v, "expected IP:PORT or unix:///path", values::api);
                if let Some(a) = &s.api {
                    r.lint(&p, values::lint_api(a));
                }
            }
            "lan_beacons" => s.lan_beacons = r.bool(&p, v),
            "master_timeout" => {
                s.master_timeout = r
                    .uint(&p, v, 1, MAX_MASTER_TIMEOUT.into(), "expected seconds, 1 to 86400")
                    .map(|n| n as u32)
            }
            _ => r.unknown_key(&p, key, &MESH_KEYS, None),
        }
    }
}

/// `p2p.mesh.bootstrap_peers`: every item is checked; a list with a bad
/// item is refused as a whole (so the agent never runs with half of it).
fn read_peers(r: &mut Reader, path: &str, v: &Value) -> Option<Vec<Endpoint>> {
    let items = r.list(path, v, "[\"203.0.113.7:51820\"]")?;
    let mut peers = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        let p = item(path, i);
        match r.parsed(&p, v, "expected HOST:PORT", values::endpoint) {
            Some(e) if peers.contains(&e) => {
                r.at_value(Severity::Warning, &p, format!("{e} is listed twice"));
            }
            Some(e) => peers.push(e),
            None => ok = false,
        }
    }
    ok.then_some(peers)
}
