//! Router tests: each route family against a fake driver that keeps a
//! small ledger (with the owner-only rule and the limits) in a map.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kairos_core::ledger::buckets::is_owner_only;
use kairos_core::ledger::{LedgerError, MAX_BUCKET_LEN, MAX_KEY_LEN, MAX_VALUE_LEN};
use kairos_core::node::NodeStats;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::*;
use crate::agent::info::Kind;
use crate::agent::status::{
    show_name, show_value, Blockchain, Machine, Metrics, NodeEntry, Path as MeshPath, Peer, PeerstoreEntry, Summary,
};

/// This (fake) node's id.
const ME: &str = "abcdefghijklmnopqrstuvwxyz";

pub(crate) fn fake_summary() -> Summary {
    Summary {
        node_id: ME.into(),
        network_id: Some("kairos".into()),
        interface: Some("kairos0".into()),
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

pub(crate) fn fake_peers() -> Vec<Peer> {
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
        })
        .collect()
}

pub(crate) fn fake_metrics() -> Metrics {
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
type FakeLedger = BTreeMap<(Vec<u8>, Vec<u8>), Vec<u8>>;

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

/// A driver that answers every command from the fakes and its ledger.
fn fake_driver() -> mpsc::Sender<Command> {
    let (tx, mut rx) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut ledger = FakeLedger::new();
        while let Some(c) = rx.recv().await {
            if matches!(c, Command::Shutdown) {
                break;
            }
            answer(&mut ledger, c);
        }
    });
    tx
}

fn app() -> Router {
    router(fake_driver(), ApiOptions::default())
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    fn error(&self) -> String {
        self.json()["error"].as_str().expect("an error message").to_owned()
    }
}

async fn call(router: &Router, request: Request<Body>) -> Answer {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, headers, body }
}

async fn send(router: &Router, method: Method, uri: &str, body: impl Into<Body>) -> Answer {
    call(
        router,
        Request::builder().method(method).uri(uri).body(body.into()).unwrap(),
    )
    .await
}

async fn get(router: &Router, uri: &str) -> Answer {
    send(router, Method::GET, uri, Body::empty()).await
}

#[tokio::test(flavor = "current_thread")]
async fn summary_has_the_documented_fields() {
    let a = get(&app(), "/api/summary").await;
    assert_eq!(a.status, StatusCode::OK);
    let j = a.json();
    assert_eq!(j["node_id"], ME);
    assert_eq!(j["network_id"], "kairos");
    assert_eq!(j["interface"], "kairos0");
    assert_eq!(j["ipv4"], "10.1.0.7");
    assert_eq!(j["ipv6"], "fd12:3456:789a::1");
    assert_eq!(j["listen"], "[::]:51820");
    assert_eq!(j["members"], 2);
    assert_eq!(j["peers_up"], 1);
    assert_eq!(j["relayed"], 1);
    assert_eq!(j["uptime_s"], 3);
    assert!(j["role"].is_null());
    assert_eq!(j["hostname"], "edge-1");
    assert_eq!(j["kind"], "agent");
    assert_eq!(j["NodeID"], ME);
    assert_eq!(j["Machines"], 3);
    assert_eq!(j["Peers"], 1);
    for k in ["Users", "Services", "Files", "BlockChain", "OnChainNodes"] {
        assert!(j[k].is_u64(), "{k}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn machines_carry_snake_case_and_edgevpn_fields() {
    let a = get(&app(), "/api/machines").await;
    assert_eq!(a.status, StatusCode::OK);
    let j = a.json();
    let list = j.as_array().expect("an array");
    assert_eq!(list.len(), 2);
    let (m, n) = (&list[0], &list[1]);
    assert_eq!(m["path"], "relayed");
    assert_eq!(m["up"], true);
    assert_eq!(m["endpoint"], "192.0.2.1:51820");
    assert_eq!(m["relay"], "aaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(m["hostname"], "edge-2");
    assert_eq!(m["network_id"], "kairos");
    assert_eq!(m["role"], "master");
    assert_eq!(m["kind"], "agent");
    assert_eq!(m["rtt_ms"], 12.5);
    assert_eq!(m["PeerID"], m["node_id"]);
    assert_eq!(m["Hostname"], "edge-2");
    assert_eq!(m["OS"], "linux");
    assert_eq!(m["Address"], "10.1.0.9");
    assert_eq!(m["Connected"], true);
    assert_eq!(m["Online"], true);
    assert_eq!(m["OnChain"], false);
    assert_eq!(n["path"], "none");
    for k in [
        "ipv4",
        "relay",
        "endpoint",
        "hostname",
        "network_id",
        "role",
        "kind",
        "rtt_ms",
        "Address",
    ] {
        assert!(n[k].is_null(), "{k} of {n}");
    }
    assert_eq!(n["Hostname"], "");
}

#[tokio::test(flavor = "current_thread")]
async fn nodes_peers_peerstore_and_blockchain() {
    let app = app();
    let j = get(&app, "/api/nodes").await.json();
    assert_eq!(j[0]["ID"], ME);
    assert_eq!(j[0]["Online"], true);
    let j = get(&app, "/api/peers").await.json();
    for k in [
        "node_id",
        "hostname",
        "ipv4",
        "ipv6",
        "up",
        "path",
        "endpoint",
        "relay",
        "rtt_ms",
        "rx_bytes",
        "tx_bytes",
        "handshakes",
        "last_handshake_s",
    ] {
        assert!(j[0].get(k).is_some(), "{k} missing");
    }
    assert_eq!(j[0]["rx_bytes"], 1000);
    let j = get(&app, "/api/peerstore").await.json();
    assert_eq!(j[0]["Addrs"][0], "192.0.2.1:51820");
    let j = get(&app, "/api/blockchain").await.json();
    assert_eq!(j["Index"], 42);
    assert_eq!(j["clock"], 42);
    assert!(j["Hash"].is_string());
    assert!(j["entries"].is_u64());
}

#[tokio::test(flavor = "current_thread")]
async fn edgevpn_buckets_are_maps() {
    let app = app();
    assert_eq!(get(&app, "/api/users").await.json(), serde_json::json!({}));
    let a = send(
        &app,
        Method::PUT,
        "/api/ledger/services/web/10.1.0.9%3A80",
        Body::empty(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    assert_eq!(
        get(&app, "/api/services").await.json(),
        serde_json::json!({"web": "10.1.0.9:80"})
    );
    for p in ["/api/dns", "/api/files"] {
        assert!(get(&app, p).await.json().is_object(), "{p}");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn ledger_writes_reads_and_deletes() {
    let app = app();
    let a = send(
        &app,
        Method::PUT,
        "/api/ledger/kairos/ip-master/10.1.0.1",
        Body::empty(),
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(
        a.json(),
        serde_json::json!({"bucket": "kairos", "key": "ip-master", "value": "10.1.0.1"})
    );
    let kubeconfig = "apiVersion: v1\nclusters: []\n";
    let a = send(&app, Method::PUT, "/api/ledger/kairos/master-kubeconfig", kubeconfig).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["value"], kubeconfig);

    let a = get(&app, "/api/ledger/kairos/master-kubeconfig").await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), serde_json::json!(kubeconfig), "the value as a JSON string");
    assert_eq!(
        get(&app, "/api/ledger/kairos").await.json(),
        serde_json::json!({"ip-master": "10.1.0.1", "master-kubeconfig": kubeconfig})
    );
    assert_eq!(
        get(&app, "/api/ledger").await.json(),
        serde_json::json!({"kairos": {"ip-master": "10.1.0.1", "master-kubeconfig": kubeconfig}})
    );
    assert_eq!(get(&app, "/api/ledger/empty").await.json(), serde_json::json!({}));

    // Binary values come back as base64.
    let a = send(&app, Method::PUT, "/api/ledger/bin/k", vec![0xffu8, 0x00]).await;
    assert_eq!(a.json()["value"], "base64:/wA=");
    assert_eq!(get(&app, "/api/ledger/bin/k").await.json(), "base64:/wA=");

    let a = send(&app, Method::DELETE, "/api/ledger/kairos/ip-master", Body::empty()).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json(), serde_json::json!({"deleted": 1}));
    let a = get(&app, "/api/ledger/kairos/ip-master").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.error(), "no key ip-master in bucket kairos");
    let a = send(&app, Method::DELETE, "/api/ledger/kairos/ip-master", Body::empty()).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);

    send(&app, Method::PUT, "/api/ledger/kairos/a/1", Body::empty()).await;
    let a = send(&app, Method::DELETE, "/api/ledger/kairos", Body::empty()).await;
    assert_eq!(a.json(), serde_json::json!({"deleted": 2}));
    assert_eq!(get(&app, "/api/ledger/kairos").await.json(), serde_json::json!({}));
}

#[tokio::test(flavor = "current_thread")]
async fn owner_only_buckets_take_only_this_nodes_key() {
    let app = app();
    // `owner/info` travels percent-encoded as one path segment.
    let mine = format!("/api/ledger/owner%2Finfo/{ME}");
    let a = send(&app, Method::PUT, &mine, "{}").await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.json());
    assert_eq!(a.json()["bucket"], "owner/info");
    assert_eq!(get(&app, &mine).await.json(), "{}");
    let other = "/api/ledger/owner%2Finfo/bbbbbbbbbbbbbbbbbbbbbbbbbb";
    let a = send(&app, Method::PUT, other, "{}").await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.error().contains("owner-only"), "{}", a.error());
    let a = send(&app, Method::PUT, "/api/ledger/machines/someone/x", Body::empty()).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = send(&app, Method::DELETE, "/api/ledger/owner%2Finfo", Body::empty()).await;
    assert_eq!(a.json(), serde_json::json!({"deleted": 1}));
}

#[tokio::test(flavor = "current_thread")]
async fn bad_names_and_values_name_the_limit() {
    let app = app();
    let long_key = "k".repeat(MAX_KEY_LEN + 1);
    let a = send(&app, Method::PUT, &format!("/api/ledger/b/{long_key}/v"), Body::empty()).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains(&MAX_KEY_LEN.to_string()), "{}", a.error());
    let long_bucket = "b".repeat(MAX_BUCKET_LEN + 1);
    let a = get(&app, &format!("/api/ledger/{long_bucket}")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains(&MAX_BUCKET_LEN.to_string()), "{}", a.error());
    let a = get(&app, &format!("/api/ledger/b/{long_key}")).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Not UTF-8 once decoded.
    let a = get(&app, "/api/ledger/%FF/k").await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().starts_with("bad path"), "{}", a.error());
    let long_value = "v".repeat(MAX_VALUE_LEN + 1);
    let a = send(
        &app,
        Method::PUT,
        &format!("/api/ledger/b/k/{long_value}"),
        Body::empty(),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains(&MAX_VALUE_LEN.to_string()), "{}", a.error());
}

#[tokio::test(flavor = "current_thread")]
async fn a_body_over_the_limit_is_413_json() {
    let app = app();
    let exact = vec![b'x'; MAX_VALUE_LEN];
    let a = send(&app, Method::PUT, "/api/ledger/b/k", exact).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = send(&app, Method::PUT, "/api/ledger/b/k", vec![b'x'; MAX_VALUE_LEN + 1]).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.error().contains("16384"), "{}", a.error());
    // Announced with a Content-Length: refused before reading.
    let big = vec![b'x'; 2 * MAX_VALUE_LEN];
    let request = Request::put("/api/ledger/b/k")
        .header(header::CONTENT_LENGTH, big.len())
        .body(Body::from(big))
        .unwrap();
    let a = call(&app, request).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(a.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    a.error();
}

#[tokio::test(flavor = "current_thread")]
async fn unknown_routes_wrong_methods_and_a_stopped_driver_answer_json() {
    let app = app();
    let a = get(&app, "/api/nope").await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    assert_eq!(a.error(), "no such endpoint: /api/nope");
    let a = send(&app, Method::POST, "/api/summary", Body::empty()).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a.error(), "method POST is not allowed on /api/summary");
    assert!(a.headers.contains_key(header::ALLOW));
    let a = send(&app, Method::PATCH, "/api/ledger/b/k", Body::empty()).await;
    assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
    a.error();

    let (tx, rx) = mpsc::channel(1);
    drop(rx);
    let a = get(&router(tx, ApiOptions::default()), "/api/summary").await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.error(), "the agent is stopping");
}

fn with_token(token: &str) -> Router {
    router(
        fake_driver(),
        ApiOptions {
            token: Some(token.into()),
        },
    )
}

async fn get_with(router: &Router, uri: &str, authorization: Option<&str>) -> Answer {
    let mut r = Request::get(uri);
    if let Some(v) = authorization {
        r = r.header(header::AUTHORIZATION, v);
    }
    call(router, r.body(Body::empty()).unwrap()).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_token_guards_every_route_but_the_page() {
    let app = with_token("s3cret");
    let a = get_with(&app, "/api/summary", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.error().contains("Bearer"), "{}", a.error());
    assert_eq!(a.headers[header::WWW_AUTHENTICATE], "Bearer");
    let a = get_with(&app, "/api/summary", Some("Bearer wrong")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.error(), "the API token is wrong");
    let a = get_with(&app, "/api/summary", Some("Basic czNjcmV0")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let a = get_with(&app, "/api/summary", Some("Bearer s3cret")).await;
    assert_eq!(a.status, StatusCode::OK);
    for guarded in ["/metrics", "/api/openapi.json", "/api/ledger"] {
        assert_eq!(
            get_with(&app, guarded, None).await.status,
            StatusCode::UNAUTHORIZED,
            "{guarded}"
        );
    }
    let a = send(&app, Method::PUT, "/api/ledger/b/k/v", Body::empty()).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    for page in ["/", "/app"] {
        assert_eq!(get_with(&app, page, None).await.status, StatusCode::OK, "{page}");
    }
    // An empty token is no token.
    let open = with_token("");
    assert_eq!(get_with(&open, "/api/summary", None).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "current_thread")]
async fn metrics_openapi_and_the_page_have_their_types() {
    let app = app();
    let a = get(&app, "/metrics").await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.headers[header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let text = String::from_utf8(a.body).unwrap();
    assert!(text.contains("kairos_members 2"));
    let a = get(&app, "/api/openapi.json").await;
    assert_eq!(a.headers[header::CONTENT_TYPE], "application/json");
    assert!(a.json()["paths"]["/api/summary"]["get"].is_object());
    for page in ["/", "/app"] {
        let a = get(&app, page).await;
        assert!(a.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"));
        assert!(String::from_utf8(a.body).unwrap().contains("data-node-id"));
    }
}

/// Every route of the table is served (the router is built from it, and
/// the OpenAPI test compares the table with the document).
#[tokio::test(flavor = "current_thread")]
async fn every_route_of_the_table_is_served() {
    let app = app();
    for r in routes() {
        let uri = r
            .path
            .replace("{bucket}", "kairos")
            .replace("{key}", "k")
            .replace("{value}", "v");
        let a = send(&app, r.method.clone(), &uri, Body::empty()).await;
        assert!(
            a.status != StatusCode::METHOD_NOT_ALLOWED
                && !(a.status == StatusCode::NOT_FOUND && a.error().starts_with("no such endpoint")),
            "{} {}: {}",
            r.method,
            r.path,
            a.status
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_unix_socket_is_0600_and_a_stale_one_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("api.sock");
    let addr = ApiAddress::Unix(path.clone());
    let first = bind(&addr).await.unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    drop(first); // a crash leaves the file behind
    bind(&addr).await.expect("stale socket replaced");
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(bind(&ApiAddress::Unix(file.clone())).await.is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"x", "never removed");
}
