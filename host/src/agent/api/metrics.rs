//! `GET /metrics`: the node's counters in the Prometheus text exposition
//! format (version 0.0.4), written by hand from one [`Metrics`] snapshot:
//! the numbers are read from the node in one driver turn, so a registry of
//! live metric objects (the `prometheus-client` crate) would only be copied
//! into and thrown away on each scrape. Per-peer series carry a `node_id`
//! label. Names are listed in `docs/api.md`; add series, never rename.

use std::fmt::Write;

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use super::{ask, ApiError, Commands};
use crate::agent::driver::Command;
use crate::agent::status::{Metrics, Path};

/// The exposition format's content type.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(super) async fn metrics(State(c): State<Commands>) -> Result<Response, ApiError> {
    let m = ask(&c, Command::Metrics).await?;
    let mut r = render(&m).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(r)
}

/// Writes one metric family: `# HELP`, `# TYPE`, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    fn single(&mut self, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
        self.head(name, kind, help);
        let _ = writeln!(self.out, "{name} {value}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text of `m`.
pub fn render(m: &Metrics) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let s = &m.summary;
    f.head(
        "kairos_info",
        "gauge",
        "This node: labels say what it is; the value is 1.",
    );
    f.sample(
        "kairos_info",
        &[
            ("node_id", &s.node_id),
            ("hostname", &s.hostname),
            ("version", &s.version),
            ("kind", s.kind.as_str()),
            ("network_id", s.network_id.as_deref().unwrap_or("")),
            ("ipv4", s.ipv4.as_deref().unwrap_or("")),
        ],
        1,
    );
    f.single(
        "kairos_uptime_seconds",
        "gauge",
        "Seconds since the agent started.",
        s.uptime_s,
    );
    f.single("kairos_members", "gauge", "Other members known.", s.members);
    f.single("kairos_peers_up", "gauge", "Members with a session up.", s.peers_up);
    f.head("kairos_peers", "gauge", "Members up, by path.");
    f.sample("kairos_peers", &[("path", "direct")], s.direct);
    f.sample("kairos_peers", &[("path", "relayed")], s.relayed);

    f.single(
        "kairos_ledger_entries",
        "gauge",
        "Live ledger entries.",
        m.ledger_entries,
    );
    f.single(
        "kairos_ledger_records",
        "gauge",
        "Ledger records held (live, tombstones, expired).",
        m.ledger_records,
    );
    f.single(
        "kairos_ledger_capacity_records",
        "gauge",
        "Ledger record slots.",
        m.ledger_capacity,
    );
    f.single(
        "kairos_ledger_arena_bytes",
        "gauge",
        "Ledger arena bytes in use.",
        m.ledger_arena_bytes,
    );
    f.single(
        "kairos_ledger_clock",
        "gauge",
        "The ledger's Lamport clock.",
        m.ledger_clock,
    );

    let n = &m.stats;
    let counters: [(&str, &str, u64); 19] = [
        ("kairos_rx_datagrams_total", "Datagrams handled.", n.rx_datagrams),
        ("kairos_rx_dropped_total", "Datagrams dropped.", n.rx_dropped),
        ("kairos_tx_datagrams_total", "Datagrams sent.", n.tx_datagrams),
        ("kairos_events_lost_total", "Node events lost.", n.events_lost),
        (
            "kairos_relayed_datagrams_total",
            "Datagrams relayed between two other members.",
            n.relayed,
        ),
        (
            "kairos_staged_dropped_total",
            "Packets held for a session, dropped.",
            n.staged_dropped,
        ),
        (
            "kairos_replies_dropped_total",
            "Handshake and hello replies dropped.",
            n.replies_dropped,
        ),
        (
            "kairos_ledger_refused_total",
            "Ledger entries refused.",
            n.ledger_refused,
        ),
        (
            "kairos_control_dropped_total",
            "Control messages dropped.",
            n.control_dropped,
        ),
        (
            "kairos_ledger_entries_sent_total",
            "Ledger entries sent whole, alone or batched.",
            n.ledger_entries_sent,
        ),
        (
            "kairos_ledger_writes_total",
            "Ledger versions this node wrote itself.",
            n.ledger_writes,
        ),
        (
            "kairos_ledger_batches_sent_total",
            "Datagrams carrying several ledger entries.",
            n.ledger_batches_sent,
        ),
        (
            "kairos_ledger_exchanges_started_total",
            "Anti-entropy exchanges started (digests sent).",
            n.ledger_exchanges_started,
        ),
        (
            "kairos_ledger_exchanges_unanswered_total",
            "Anti-entropy exchanges whose digest got no answer in time (lost on the way).",
            n.ledger_exchanges_unanswered,
        ),
        (
            "kairos_handshake_initiations_sent_total",
            "Handshake initiations sent, retries included.",
            n.initiations_sent,
        ),
        (
            "kairos_handshake_initiations_answered_total",
            "Handshake initiations answered.",
            n.initiations_answered,
        ),
        (
            "kairos_handshakes_total",
            "Handshakes completed, as initiator or responder.",
            n.handshakes,
        ),
        (
            "kairos_tunnel_pool_full_total",
            "Sessions refused or not started because every tunnel was busy.",
            n.tunnel_pool_full,
        ),
        (
            "kairos_tunnels_evicted_total",
            "Quiet sessions closed to make room in a full tunnel pool.",
            n.tunnels_evicted,
        ),
    ];
    for (name, help, v) in counters {
        f.single(name, "counter", help, v);
    }

    let d = &m.datapath;
    let datapath: [(&str, &str, u64); 8] = [
        (
            "kairos_tso_packets_total",
            "Super-packets read from the interface (TSO).",
            d.tso_packets,
        ),
        ("kairos_tso_segments_total", "Segments cut from them.", d.tso_segments),
        (
            "kairos_gso_sends_total",
            "Sends of several datagrams at once (UDP GSO).",
            d.gso_sends,
        ),
        (
            "kairos_udp_receives_total",
            "Receive calls on the mesh socket.",
            d.receives,
        ),
        (
            "kairos_udp_datagrams_total",
            "Datagrams received on the mesh socket.",
            d.datagrams,
        ),
        (
            "kairos_gro_writes_total",
            "Interface writes of merged TCP segments.",
            d.gro_writes,
        ),
        (
            "kairos_gro_segments_total",
            "Segments written inside merged writes.",
            d.gro_segments,
        ),
        (
            "kairos_offload_errors_total",
            "Packets from the interface dropped for a malformed offload header.",
            d.offload_errors,
        ),
    ];
    for (name, help, v) in datapath {
        f.single(name, "counter", help, v);
    }
    f.head(
        "kairos_dropped_total",
        "counter",
        "Refused input by direction (in: datagrams; out: packets from the interface) and reason.",
    );
    for (direction, counts) in [("in", &d.rx_drops), ("out", &d.tx_drops)] {
        for (reason, n) in kairos_core::session::DropReason::LABELS.iter().zip(counts.iter()) {
            f.sample(
                "kairos_dropped_total",
                &[("direction", direction), ("reason", reason)],
                n,
            );
        }
    }
    f.single(
        "kairos_state_write_errors_total",
        "counter",
        "State file writes that failed (a full disk, an I/O error); each is retried.",
        m.saves.write_errors,
    );
    f.single(
        "kairos_state_unsaved_files",
        "gauge",
        "State files whose newest version is not on disk yet (waiting for a retry).",
        m.saves.unsaved,
    );
    f.single(
        "kairos_state_repairs",
        "gauge",
        "State files repaired at start (moved aside as damaged, or an interrupted write cleaned up).",
        s.state_repairs.len(),
    );
    let o = &s.offload;
    f.head(
        "kairos_offload_info",
        "gauge",
        "The data path's offloads: labels say which are on; the value is 1.",
    );
    let (gso, gro) = (o.udp_gso_segments.to_string(), o.udp_gro_segments.to_string());
    f.sample(
        "kairos_offload_info",
        &[
            ("interface", &o.interface),
            ("udp_gso_segments", &gso),
            ("udp_gro_segments", &gro),
        ],
        1,
    );

    type PeerValue = fn(&crate::agent::status::Peer) -> Option<String>;
    let per_peer: [(&str, &str, &str, PeerValue); 5] = [
        (
            "kairos_peer_up",
            "gauge",
            "1 if a session with the member is up.",
            |p| Some(u8::from(p.up).to_string()),
        ),
        (
            "kairos_peer_relayed",
            "gauge",
            "1 if the member is reached through a relay.",
            |p| Some(u8::from(p.path == Path::Relayed).to_string()),
        ),
        (
            "kairos_peer_rx_bytes_total",
            "counter",
            "Payload bytes received from the member.",
            |p| Some(p.rx_bytes.to_string()),
        ),
        (
            "kairos_peer_tx_bytes_total",
            "counter",
            "Payload bytes sent to the member.",
            |p| Some(p.tx_bytes.to_string()),
        ),
        (
            "kairos_peer_rtt_seconds",
            "gauge",
            "Handshake round trip of the current session with the member.",
            |p| p.rtt_ms.map(|ms| (ms / 1000.0).to_string()),
        ),
    ];
    for (name, kind, help, value) in per_peer {
        f.head(name, kind, help);
        for p in &m.peers {
            if let Some(v) = value(p) {
                f.sample(name, &[("node_id", &p.node_id)], v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::api::fake::{fake_metrics, fake_peers};
    use kairos_core::session::DropReason;

    #[test]
    fn the_text_follows_the_exposition_format() {
        let text = render(&fake_metrics());
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert!(["gauge", "counter"].contains(&kind), "{line}");
                assert!(declared.insert(name.to_owned()), "{name} declared twice");
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            // name{labels} value
            let (series, value) = line.rsplit_once(' ').unwrap();
            value.parse::<f64>().unwrap_or_else(|_| panic!("not a number: {line}"));
            let name = series.split('{').next().unwrap();
            assert!(declared.contains(name), "{name} has no TYPE line before it");
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
            if name.ends_with("_total") {
                assert!(text.contains(&format!("# TYPE {name} counter")), "{name}");
            }
        }
        assert!(text.ends_with('\n'));
        assert!(text.contains("kairos_members 2\n"));
        assert!(text.contains("kairos_peers{path=\"relayed\"} 1\n"));
        let peers = fake_peers();
        assert!(text.contains(&format!(
            "kairos_peer_rx_bytes_total{{node_id=\"{}\"}} 1000\n",
            peers[0].node_id
        )));
        assert!(text.contains(&format!(
            "kairos_peer_rtt_seconds{{node_id=\"{}\"}} 0.0125\n",
            peers[0].node_id
        )));
        // Drops by direction and reason, every reason present.
        assert!(text.contains("kairos_dropped_total{direction=\"in\",reason=\"replayed\"} 4\n"));
        assert!(text.contains("kairos_dropped_total{direction=\"out\",reason=\"no_route\"} 0\n"));
        assert_eq!(text.matches("kairos_dropped_total{").count(), 2 * DropReason::KINDS);
        assert!(text.contains("kairos_tso_packets_total 3\n"));
        assert!(text.contains("kairos_state_write_errors_total 7\n"));
        assert!(text.contains("kairos_state_unsaved_files 1\n"));
        assert!(text.contains("kairos_state_repairs 1\n"));
        // A peer without a measure has no rtt sample.
        assert!(!text.contains(&format!("kairos_peer_rtt_seconds{{node_id=\"{}\"}}", peers[1].node_id)));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        let mut m = fake_metrics();
        m.summary.hostname = "evil\"}\nkairos_members 99".into();
        let text = render(&m);
        assert!(!text.contains("\nkairos_members 99"));
    }
}
