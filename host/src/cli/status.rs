//! `kairos status [--json]`: asks the running agent or bridge for this node
//! (`GET /api/summary`) and the members it sees (`GET /api/machines`) and
//! prints them as a short report and a table. Also home of the plain-text
//! [`Table`] and the value formatting the other operator commands share.
//! It only reads the API; it never changes anything.

use std::fmt::Write as _;
use std::io::Write;

use clap::Args;
use serde_json::Value;

use super::{ApiArgs, CliError};

/// The `--help` text of the command.
pub const LONG_ABOUT: &str = "Show this node and the members of the mesh it sees, as the running \
`kairos agent` or `kairos bridge` reports them.

Reads GET /api/summary (this node: id, host name, network_id, role, overlay addresses, counts of \
members and sessions, uptime, version) and GET /api/machines (one row per other member: host \
name, node id, overlay IPv4, path, round-trip time, Kubernetes role and network_id) from the \
API at --api. The path is `direct` (peer to peer), `relayed` (through another member, when NATs \
keep the two apart) or `none` (no session up).

With --json, prints {\"summary\": ..., \"machines\": [...]} with both replies exactly as the API \
sent them, for scripts.

Example:
  kairos status
  kairos status --api unix:///run/kairos-mesh.sock --json | jq '.machines[].hostname'";

/// Arguments of `kairos status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print the API's JSON replies instead of the report.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `kairos status`.
pub fn run(args: StatusArgs) -> Result<(), CliError> {
    let client = args.api.client()?;
    let summary_reply = client.request(hyper::Method::GET, "/api/summary", None)?;
    let summary = client.json(&summary_reply)?;
    if !summary.is_object() {
        return Err(client.bad_reply(&summary_reply, "a JSON object").into());
    }
    let machines_reply = client.request(hyper::Method::GET, "/api/machines", None)?;
    let machines = client.json(&machines_reply)?;
    let Some(list) = machines.as_array() else {
        return Err(client.bad_reply(&machines_reply, "a JSON array").into());
    };
    let out = if args.json {
        let mut s = serde_json::to_string_pretty(&serde_json::json!({"summary": summary, "machines": machines}))
            .expect("a JSON value serializes");
        s.push('\n');
        s
    } else {
        let mut s = render_summary(&summary);
        s.push('\n');
        s.push_str(&render_machines(list));
        s
    };
    std::io::stdout().write_all(out.as_bytes()).map_err(CliError::Output)
}

/// The report on this node, one `Label: value` line each.
pub fn render_summary(s: &Value) -> String {
    let kind = text(s, "kind");
    let hostname = text(s, "hostname");
    let mut node = text(s, "node_id");
    match (hostname.as_str(), kind.as_str()) {
        ("-", "-") => {}
        ("-", k) => node = format!("{node} ({k})"),
        (h, "-") => node = format!("{h} ({node})"),
        (h, k) => node = format!("{h} ({k}, {node})"),
    }
    let network = match s.get("network_id") {
        Some(Value::String(n)) => n.clone(),
        _ if kind == "bridge" => "- (a bridge joins every network_id of the mesh)".to_owned(),
        _ => "-".to_owned(),
    };
    let role = match s.get("role") {
        Some(Value::String(r)) => r.clone(),
        _ if kind == "bridge" => "-".to_owned(),
        _ => "not decided yet".to_owned(),
    };
    let mut overlay = [text(s, "ipv4"), text(s, "ipv6")]
        .into_iter()
        .filter(|a| a != "-")
        .collect::<Vec<_>>()
        .join(", ");
    if overlay.is_empty() {
        overlay = "no address yet".to_owned();
    }
    if let Some(Value::String(i)) = s.get("interface") {
        let _ = write!(overlay, " on {i}");
    }
    if let Some(Value::String(r)) = s.get("overlay") {
        let _ = write!(overlay, " (range {r})");
    }
    let members = format!(
        "{} others, {} up ({} direct, {} relayed)",
        text(s, "members"),
        text(s, "peers_up"),
        text(s, "direct"),
        text(s, "relayed")
    );
    let uptime = s
        .get("uptime_s")
        .and_then(Value::as_u64)
        .map_or("-".to_owned(), duration);
    let mut lines = vec![
        ("Node", node),
        ("Network", network),
        ("Role", role),
        ("Overlay", overlay),
    ];
    if let Some(proxy) = s.get("userspace").and_then(userspace_line) {
        lines.push(("Proxy", proxy));
    }
    lines.extend([
        ("Listen", text(s, "listen")),
        ("Members", members),
        ("Uptime", uptime),
        ("Version", text(s, "version")),
    ]);
    let mut out = String::new();
    for (label, value) in lines {
        let _ = writeln!(out, "{:<9}{value}", format!("{label}:"));
    }
    out
}

/// The `Proxy:` line of `bridge --userspace`: its SOCKS5 proxy and forwards.
fn userspace_line(u: &Value) -> Option<String> {
    if !u.is_object() {
        return None;
    }
    let socks = match u.get("socks") {
        Some(Value::String(a)) => format!("SOCKS5 {a}"),
        _ => "SOCKS5 off".to_owned(),
    };
    let forwards: Vec<&str> = u
        .get("forwards")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    Some(match forwards.as_slice() {
        [] => socks,
        f => format!("{socks}; forwards {}", f.join(", ")),
    })
}

/// The table of the other members (or a line saying there are none).
pub fn render_machines(machines: &[Value]) -> String {
    if machines.is_empty() {
        return "No other members seen yet.\n".to_owned();
    }
    let mut table = Table::new(&["HOSTNAME", "NODE", "IPV4", "PATH", "RTT", "ROLE", "NETWORK"]);
    table.align_right(4);
    for m in machines {
        let role = match (m.get("role"), m.get("kind")) {
            (Some(Value::String(r)), _) => r.clone(),
            (_, Some(Value::String(k))) if k == "bridge" => "(bridge)".to_owned(),
            _ => "-".to_owned(),
        };
        table.push(vec![
            text(m, "hostname"),
            short_id(&text(m, "node_id")),
            text(m, "ipv4"),
            path(m),
            rtt(m.get("rtt_ms")),
            role,
            text(m, "network_id"),
        ]);
    }
    table.render()
}

/// A plain-text table: a header row, columns two spaces apart, no trailing
/// spaces; columns are left-aligned unless marked with [`Table::align_right`].
#[derive(Debug, Clone)]
pub struct Table {
    header: Vec<String>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            right: vec![false; header.len()],
            rows: Vec::new(),
        }
    }

    /// Aligns column `col` (from 0) to the right, for numbers.
    pub fn align_right(&mut self, col: usize) {
        self.right[col] = true;
    }

    /// Adds a row (one cell per column; missing cells are blank).
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as lines of text, each ending in a newline.
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let cell = |row: &[String], c: usize| row.get(c).map_or(String::new(), |s| s.replace(['\n', '\t'], " "));
        let all: Vec<Vec<String>> = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|row| (0..cols).map(|c| cell(row, c)).collect())
            .collect();
        let widths: Vec<usize> = (0..cols)
            .map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
            .collect();
        let mut out = String::new();
        for row in &all {
            let mut line = String::new();
            for (c, value) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                let pad = widths[c] - value.chars().count();
                if self.right[c] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(value);
                } else {
                    line.push_str(value);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A field as text: strings as they are, numbers and booleans printed,
/// `null` or missing as `-`.
pub fn text(v: &Value, field: &str) -> String {
    match v.get(field) {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => b.to_string(),
        _ => "-".to_owned(),
    }
}

/// The first 8 characters of a node id (26 characters, too wide for a table).
pub fn short_id(id: &str) -> String {
    id.chars().take(8).collect()
}

/// A member's `path`; `none` when missing.
pub fn path(m: &Value) -> String {
    match m.get("path") {
        Some(Value::String(p)) => p.clone(),
        _ => "none".to_owned(),
    }
}

/// A round-trip time in milliseconds: `0.42 ms`, `12.3 ms`, `140 ms`, `-`.
pub fn rtt(ms: Option<&Value>) -> String {
    match ms.and_then(Value::as_f64) {
        Some(ms) if ms < 10.0 => format!("{ms:.2} ms"),
        Some(ms) if ms < 100.0 => format!("{ms:.1} ms"),
        Some(ms) => format!("{ms:.0} ms"),
        None => "-".to_owned(),
    }
}

/// A byte count: `512 B`, `1.5 KiB`, `3.2 MiB`, `1.1 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A duration in seconds, two units at most: `42s`, `3m 5s`, `2h 10m`, `4d 3h`.
pub fn duration(s: u64) -> String {
    let (d, h, m, sec) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{sec}s"),
        (0, 0, _) => format!("{m}m {sec}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_aligns_columns_without_trailing_spaces() {
        let mut t = Table::new(&["NAME", "RTT", "NOTE"]);
        t.align_right(1);
        t.push(vec!["edge-1".into(), "1.20 ms".into(), "".into()]);
        t.push(vec!["a".into(), "140 ms".into(), "multi\nline".into()]);
        t.push(vec!["short-row".into()]);
        assert_eq!(
            t.render(),
            "NAME           RTT  NOTE\n\
             edge-1     1.20 ms\n\
             a           140 ms  multi line\n\
             short-row\n"
        );
    }

    #[test]
    fn formats_values() {
        assert_eq!(rtt(Some(&json!(0.4219))), "0.42 ms");
        assert_eq!(rtt(Some(&json!(12.34))), "12.3 ms");
        assert_eq!(rtt(Some(&json!(140))), "140 ms");
        assert_eq!(rtt(Some(&Value::Null)), "-");
        assert_eq!(rtt(None), "-");
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 * 1024 * 1024 + 200 * 1024), "3.2 MiB");
        assert_eq!(bytes(u64::MAX), "16777216.0 TiB");
        assert_eq!(duration(42), "42s");
        assert_eq!(duration(185), "3m 5s");
        assert_eq!(duration(7800), "2h 10m");
        assert_eq!(duration(4 * 86_400 + 3 * 3600 + 59), "4d 3h");
        assert_eq!(short_id("abcdefghijklmnopqrstuvwxyz"), "abcdefgh");
        assert_eq!(text(&json!({"a": null, "b": 3, "c": ""}), "a"), "-");
        assert_eq!(text(&json!({"b": 3}), "b"), "3");
        assert_eq!(text(&json!({"c": ""}), "c"), "-");
    }

    #[test]
    fn summary_of_an_agent_and_of_a_bridge() {
        let agent = json!({
            "node_id": "abcdefghijklmnopqrstuvwxyz", "hostname": "edge-1", "kind": "agent",
            "network_id": "kairos", "interface": "kairos0", "ipv4": "10.1.0.7",
            "ipv6": "fd12::1", "overlay": "10.1.0.0/24", "listen": "[::]:51820", "members": 2,
            "peers_up": 2, "direct": 1, "relayed": 1, "role": "master", "uptime_s": 3725,
            "version": "0.1.0"
        });
        assert_eq!(
            render_summary(&agent),
            "Node:    edge-1 (agent, abcdefghijklmnopqrstuvwxyz)\n\
             Network: kairos\n\
             Role:    master\n\
             Overlay: 10.1.0.7, fd12::1 on kairos0 (range 10.1.0.0/24)\n\
             Listen:  [::]:51820\n\
             Members: 2 others, 2 up (1 direct, 1 relayed)\n\
             Uptime:  1h 2m\n\
             Version: 0.1.0\n"
        );
        let bridge = json!({"node_id": "n", "kind": "bridge", "network_id": null, "role": null, "ipv4": null});
        let out = render_summary(&bridge);
        assert!(out.contains("Node:    n (bridge)\n"), "{out}");
        assert!(
            out.contains("Network: - (a bridge joins every network_id of the mesh)\n"),
            "{out}"
        );
        assert!(out.contains("Role:    -\n"), "{out}");
        assert!(out.contains("Overlay: no address yet\n"), "{out}");
        let rootless = json!({"node_id": "n", "kind": "bridge", "interface": "userspace", "ipv4": "10.1.0.9",
            "userspace": {"socks": "127.0.0.1:1080", "forwards": ["127.0.0.1:6443=10.1.0.7:6443"]}});
        let out = render_summary(&rootless);
        assert!(out.contains("Overlay: 10.1.0.9 on userspace\n"), "{out}");
        assert!(
            out.contains("Proxy:   SOCKS5 127.0.0.1:1080; forwards 127.0.0.1:6443=10.1.0.7:6443\n"),
            "{out}"
        );
        let no_socks = json!({"node_id": "n", "userspace": {"socks": null, "forwards": []}});
        assert!(render_summary(&no_socks).contains("Proxy:   SOCKS5 off\n"));
        assert!(!render_summary(&agent).contains("Proxy:"), "only in userspace mode");
        let undecided = json!({"node_id": "n", "kind": "agent", "role": null});
        assert!(render_summary(&undecided).contains("Role:    not decided yet\n"));
    }

    #[test]
    fn machines_table() {
        let machines = [
            json!({"node_id": "bcdefghijklmnopqrstuvwxyza", "hostname": "edge-2", "ipv4": "10.1.0.8",
                   "path": "direct", "rtt_ms": 0.8, "role": "worker", "network_id": "kairos", "kind": "agent"}),
            json!({"node_id": "cdefghijklmnopqrstuvwxyzab", "hostname": null, "ipv4": null,
                   "path": "none", "rtt_ms": null, "role": null, "network_id": null, "kind": "bridge"}),
        ];
        assert_eq!(
            render_machines(&machines),
            "HOSTNAME  NODE      IPV4      PATH        RTT  ROLE      NETWORK\n\
             edge-2    bcdefghi  10.1.0.8  direct  0.80 ms  worker    kairos\n\
             -         cdefghij  -         none          -  (bridge)  -\n"
        );
        assert_eq!(render_machines(&[]), "No other members seen yet.\n");
    }
}
