//! `kairos peers [--json]`: the encrypted sessions of the running agent or
//! bridge with each other member (`GET /api/peers`), as a table. Read-only.

use std::io::Write;

use clap::Args;
use serde_json::Value;

use super::status::{bytes, duration, path, rtt, short_id, text, Table};
use super::{ApiArgs, CliError};

/// The `--help` text of the command.
pub const LONG_ABOUT: &str = "Show the encrypted sessions of this node with the other members, as \
the running `kairos agent` or `kairos bridge` reports them.

Reads GET /api/peers from the API at --api and prints one row per other member: host name, \
overlay IPv4, path, where its packets go, round-trip time, bytes received and sent, and how long \
ago the last handshake completed, and whether the role election counts the member as live (how \
long ago its liveness advertisement arrived; `-` for a bridge). The path is `direct` (VIA is the member's UDP endpoint), \
`relayed` (VIA names the member relaying the traffic; the direct endpoint is still probed) or \
`none` (no session up). Sessions re-handshake every two minutes while traffic flows.

With --json, prints the API's reply exactly as it was sent, for scripts.

Example:
  kairos peers
  kairos peers --json | jq '.[] | select(.path == \"relayed\") | .hostname'";

/// Arguments of `kairos peers`.
#[derive(Debug, Args)]
pub struct PeersArgs {
    /// Print the API's JSON reply instead of the table.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub api: ApiArgs,
}

/// Runs `kairos peers`.
pub fn run(args: PeersArgs) -> Result<(), CliError> {
    let client = args.api.client()?;
    let reply = client.request(hyper::Method::GET, "/api/peers", None)?;
    let peers = client.json(&reply)?;
    let Some(list) = peers.as_array() else {
        return Err(client.bad_reply(&reply, "a JSON array").into());
    };
    let out = if args.json {
        let mut raw = reply.body.to_vec();
        if raw.last() != Some(&b'\n') {
            raw.push(b'\n');
        }
        raw
    } else if list.is_empty() {
        eprintln!("No other members seen yet.");
        return Ok(());
    } else {
        render_peers(list).into_bytes()
    };
    std::io::stdout().write_all(&out).map_err(CliError::Output)
}

/// The table of sessions.
pub fn render_peers(peers: &[Value]) -> String {
    let mut table = Table::new(&[
        "HOSTNAME",
        "IPV4",
        "PATH",
        "VIA",
        "RTT",
        "RX",
        "TX",
        "HANDSHAKE",
        "LIVE",
    ]);
    for col in [4, 5, 6] {
        table.align_right(col);
    }
    for p in peers {
        let path = path(p);
        let via = match (path.as_str(), p.get("relay"), p.get("endpoint")) {
            ("relayed", Some(Value::String(relay)), _) => format!("relay {}", short_id(relay)),
            (_, _, Some(Value::String(endpoint))) => endpoint.clone(),
            _ => "-".to_owned(),
        };
        let count = |field| p.get(field).and_then(Value::as_u64).map_or("-".to_owned(), bytes);
        let handshake = match p.get("last_handshake_s").and_then(Value::as_u64) {
            Some(s) => format!("{} ago", duration(s)),
            None => "never".to_owned(),
        };
        // Whether the election counts it as live (its advertisement's age),
        // `-` for a member that sends none (a bridge).
        let live = match (
            p.get("live").and_then(Value::as_bool),
            p.get("advertised_s").and_then(Value::as_u64),
        ) {
            (Some(true), Some(s)) => format!("yes ({} ago)", duration(s)),
            (Some(false), Some(s)) => format!("no ({} ago)", duration(s)),
            _ => "-".to_owned(),
        };
        table.push(vec![
            text(p, "hostname"),
            text(p, "ipv4"),
            path,
            via,
            rtt(p.get("rtt_ms")),
            count("rx_bytes"),
            count("tx_bytes"),
            handshake,
            live,
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn peers_table() {
        let peers = [
            json!({"node_id": "b", "hostname": "edge-2", "ipv4": "10.1.0.8", "up": true, "path": "direct",
                   "endpoint": "192.168.1.12:51820", "relay": null, "rtt_ms": 0.52, "rx_bytes": 1_572_864,
                   "tx_bytes": 900, "handshakes": 3, "last_handshake_s": 75, "live": true, "advertised_s": 12}),
            json!({"node_id": "c", "hostname": "edge-3", "ipv4": "10.1.0.9", "up": true, "path": "relayed",
                   "endpoint": "203.0.113.9:40000", "relay": "bcdefghijklmnopqrstuvwxyza", "rtt_ms": 48.0,
                   "rx_bytes": 0, "tx_bytes": 0, "handshakes": 1, "last_handshake_s": 4, "live": false,
                   "advertised_s": 130}),
            json!({"node_id": "d", "hostname": null, "ipv4": null, "up": false, "path": "none",
                   "endpoint": null, "relay": null, "rtt_ms": null, "rx_bytes": 0, "tx_bytes": 0,
                   "handshakes": 0, "last_handshake_s": null}),
        ];
        assert_eq!(
            render_peers(&peers),
            "HOSTNAME  IPV4      PATH     VIA                     RTT       RX     TX  HANDSHAKE   LIVE\n\
             edge-2    10.1.0.8  direct   192.168.1.12:51820  0.52 ms  1.5 MiB  900 B  1m 15s ago  yes (12s ago)\n\
             edge-3    10.1.0.9  relayed  relay bcdefghi      48.0 ms      0 B    0 B  4s ago      no (2m 10s ago)\n\
             -         -         none     -                         -      0 B    0 B  never       -\n"
        );
    }
}
