//! A fake driver for the router: it answers every [`Command`] from a fixed
//! small node state (a summary, two machines, their peers, metrics) and a
//! ledger kept in a map, with the node's limits and the owner-only rule.
//! The router tests and the `api_requests` fuzz target (`fuzz/host/`, through
//! [`crate::fuzzing`]) run the API against it.
//!
//! Compiled for tests and with the `fuzzing` feature only; the agent never
//! uses it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kairos_core::ledger::buckets::is_owner_only;
use kairos_core::ledger::{LedgerError, MAX_BUCKET_LEN, MAX_KEY_LEN, MAX_VALUE_LEN};
use kairos_core::node::NodeStats;
use tokio::sync::mpsc;

use crate::agent::driver::Command;
use crate::agent::info::Kind;
use crate::agent::status::{
    show_name, show_value, Blockchain, Machine, Metrics, NodeEntry, Path as MeshPath, Peer, PeerstoreEntry, Summary,
};

/// This (fake) node's id.
pub const ME: &str = "abcdefghijklmnopqrstuvwxyz";

pub fn fake_summary() -> Summary {
    Summary {
        node_id: ME.into(),
        network_id: Some("kairos".into()),
        interface: Some("kairos0".into()),
        userspace: None,
        ipv4: Some("10.1.0.7".into()),
        ipv6: "fd12:3456:789a::1".into(),
        overlay: "10.1.0.0/24".into(),
        listen: "[::]:51820".into(),
        members: 2,
        peers_up: 1,
        direct: 0,
        relayed: 1,
        role: None,
        uptime_s: 3,
        version: "0.1.0".into(),
        hostname: "edge-1".into(),
        kind: Kind::Agent,
        offload: crate::agent::status::OffloadInfo {
            interface: "on".to_owned(),
            udp_gso_segments: 64,
            udp_gro_segments: 64,
        },
        state_repairs: vec![crate::agent::restore::StateRepair {
            kind: crate::agent::restore::RepairKind::Damaged,
            file: "address-claim.state".into(),
            problem: "was unusable (checksum does not match: the content is damaged)".into(),
            moved_to: Some("address-claim.state.damaged-1700000000".into()),
            effect: "the node claims an address again".into(),
        }],
        edge_node_id: ME.into(),
        edge_machines: 3,
        edge_peers: 1,
        edge_users: 0,
        edge_services: 0,
        edge_files: 0,
        edge_blockchain: 5,
        edge_on_chain_nodes: 1,
    }
}

fn fake_machines() -> Vec<Machine> {
    vec![
        Machine {
            node_id: "bbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
            ipv4: Some("10.1.0.9".into()),
            ipv6: "fd12:3456:789a::2".into(),
            up: true,
            path: MeshPath::Relayed,
            endpoint: Some("192.0.2.1:51820".into()),
            relay: Some("aaaaaaaaaaaaaaaaaaaaaaaaaa".into()),
            last_seen_s: Some(1),
            hostname: Some("edge-2".into()),
            network_id: Some("kairos".into()),
            role: Some("master".into()),
            kind: Some(Kind::Agent),
            rtt_ms: Some(12.5),
            edge_peer_id: "bbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
            edge_hostname: "edge-2".into(),
            edge_os: "linux".into(),
            edge_arch: "x86_64".into(),
            edge_address: Some("10.1.0.9".into()),
            edge_version: "0.1.0".into(),
            edge_connected: true,
            edge_on_chain: false,
            edge_online: true,
        },
        Machine {
            node_id: "cccccccccccccccccccccccccc".into(),
            ipv4: None,
            ipv6: "fd12:3456:789a::3".into(),
            up: false,
            path: MeshPath::None,
            endpoint: None,
            relay: None,
            last_seen_s: None,
            hostname: None,
            network_id: None,
            role: None,
            kind: None,
            rtt_ms: None,
            edge_peer_id: "cccccccccccccccccccccccccc".into(),
            edge_hostname: String::new(),
            edge_os: String::new(),
            edge_arch: String::new(),
            edge_address: None,
            edge_version: String::new(),
            edge_connected: false,
            edge_on_chain: false,
            edge_online: false,
        },
    ]
}

pub fn fake_peers() -> Vec<Peer> {
    fake_machines()
        .into_iter()
        .map(|m| Peer {
            node_id: m.node_id,
            hostname: m.hostname,
            ipv4: m.ipv4,
            ipv6: m.ipv6,
            up: m.up,
            path: m.path,
            endpoint: m.endpoint,
            relay: m.relay,
            rtt_ms: m.rtt_ms,
            rx_bytes: if m.up { 1000 } else { 0 },
            tx_bytes: if m.up { 2000 } else { 0 },
            handshakes: u64::from(m.up),
            last_handshake_s: m.up.then_some(4),
            live: Some(m.up),
            advertised_s: Some(if m.up { 3 } else { 300 }),
        })
        .collect()
}

pub fn fake_metrics() -> Metrics {
    Metrics {
        summary: fake_summary(),
        peers: fake_peers(),
        ledger_entries: 5,
        ledger_records: 6,
        ledger_capacity: 4096,
        ledger_arena_bytes: 700,
        ledger_clock: 42,
        stats: NodeStats {
            rx_datagrams: 10,
            tx_datagrams: 11,
            ..NodeStats::default()
        },
        datapath: crate::agent::datapath::DatapathStats {
            tso_packets: 3,
            tso_segments: 90,
            rx_drops: {
                let mut d = [0; kairos_core::session::DropReason::KINDS];
                d[kairos_core::session::DropReason::Replayed.index()] = 4;
                d
            },
            ..Default::default()
        },
        saves: crate::agent::persist::SaveStats {
            write_errors: 7,
            unsaved: 1,
        },
    }
}

/// The fake driver's ledger: `(bucket, key) -> value`, live entries only.
pub type FakeLedger = BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>>;

fn put(l: &mut FakeLedger, bucket: Vec<u8>, key: Vec<u8>, value: Vec<u8>) -> Result<(), LedgerError> {
    if bucket.is_empty() || bucket.len() > MAX_BUCKET_LEN {
        return Err(LedgerError::BucketLength);
    }
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(LedgerError::KeyLength);
    }
    if value.len() > MAX_VALUE_LEN {
        return Err(LedgerError::ValueTooLong);
    }
    if is_owner_only(&bucket) && key != ME.as_bytes() {
        return Err(LedgerError::NotOwner);
    }
    l.insert((bucket, key), value);
    Ok(())
}

fn answer(l: &mut FakeLedger, c: Command) {
    match c {
        Command::Summary(r) => {
            let _ = r.send(fake_summary());
        }
        Command::Machines(r) => {
            let _ = r.send(fake_machines());
        }
        Command::Peers(r) => {
            let _ = r.send(fake_peers());
        }
        Command::Nodes(r) => drop(r.send(vec![
            NodeEntry {
                id: ME.into(),
                online: true,
            },
            NodeEntry {
                id: "bbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
                online: true,
            },
        ])),
        Command::Peerstore(r) => drop(r.send(vec![PeerstoreEntry {
            id: "bbbbbbbbbbbbbbbbbbbbbbbbbb".into(),
            addrs: vec!["192.0.2.1:51820".into()],
        }])),
        Command::Blockchain(r) => drop(r.send(Blockchain {
            index: 42,
            hash: "00ff".into(),
            entries: l.len(),
            clock: 42,
        })),
        Command::Metrics(r) => {
            let _ = r.send(fake_metrics());
        }
        Command::Ledger { bucket, reply } => {
            let mut view = crate::agent::status::LedgerView::new();
            for ((b, k), v) in l.iter() {
                if bucket.as_ref().is_none_or(|want| want == b) {
                    view.entry(show_name(b))
                        .or_default()
                        .insert(show_name(k), show_value(b, v));
                }
            }
            let _ = reply.send(view);
        }
        Command::Writers { bucket, reply } => {
            let view = l
                .iter()
                .filter(|((b, _), _)| *b == bucket)
                .map(|((b, k), v)| {
                    let writer = crate::agent::status::Writer {
                        node_id: ME.into(),
                        master: true,
                        value: show_value(b, v),
                    };
                    (show_name(k), writer)
                })
                .collect();
            let _ = reply.send(view);
        }
        Command::LedgerGet { bucket, key, reply } => {
            let v = l.get(&(bucket.clone(), key)).map(|v| show_value(&bucket, v));
            let _ = reply.send(v);
        }
        Command::LedgerPut {
            bucket,
            key,
            value,
            reply,
        } => {
            let _ = reply.send(put(l, bucket, key, value));
        }
        Command::LedgerDelete { bucket, key, reply } => {
            let k = (bucket.clone(), key.clone());
            let r = if !l.contains_key(&k) {
                Ok(false)
            } else if is_owner_only(&bucket) && key != ME.as_bytes() {
                Err(LedgerError::NotOwner)
            } else {
                l.remove(&k);
                Ok(true)
            };
            let _ = reply.send(r);
        }
        Command::LedgerDeleteBucket { bucket, reply } => {
            let before = l.len();
            l.retain(|(b, k), _| *b != bucket || (is_owner_only(b) && k != ME.as_bytes()));
            let _ = reply.send(Ok(before - l.len()));
        }
        Command::Shutdown => {}
    }
}

/// A driver that answers every command from the fakes and its own ledger.
pub fn fake_driver() -> mpsc::Sender<Command> {
    fake_driver_on(Arc::default())
}

/// A driver that answers every command from the fakes and `ledger`, which
/// the caller can inspect between requests. Runs on the current tokio
/// runtime until every sender is dropped or [`Command::Shutdown`].
pub fn fake_driver_on(ledger: Arc<Mutex<FakeLedger>>) -> mpsc::Sender<Command> {
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(c) = rx.recv().await {
            if matches!(c, Command::Shutdown) {
                break;
            }
            answer(&mut ledger.lock().unwrap_or_else(|e| e.into_inner()), c);
        }
    });
    tx
}
