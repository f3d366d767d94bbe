//! End-to-end tests of the operator commands (`status`, `peers`, `ledger`,
//! `get-kubeconfig`) through the built `kairos` binary, against a small fake
//! of the agent's HTTP API (axum, in a background thread) that answers with
//! canned JSON shaped as the API contract says and records every request.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

/// A kubeconfig as k3s writes it.
const K3S_KUBECONFIG: &str = "apiVersion: v1
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

const UNREACHABLE: &str = "is `kairos agent` or `kairos bridge` running? (set --api or KAIROS_API)";

/// One request the fake API received.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    /// The path as sent, still percent-encoded.
    path: String,
    body: Vec<u8>,
}

/// What the fake API serves.
#[derive(Debug, Clone)]
struct Canned {
    summary: Value,
    machines: Value,
    peers: Value,
    ledger: Value,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    token: Option<String>,
    /// When set, `/api/summary` answers this (200, not JSON).
    summary_not_json: Option<&'static str>,
    /// Keys of the ledger that a member other than the master wrote
    /// (`/api/writers`); the master wrote the rest.
    not_by_master: Vec<&'static str>,
}

impl Default for Canned {
    fn default() -> Self {
        Canned {
            summary: json!({
                "node_id": "aaaaaaaaaaaaaaaaaaaaaaaaaa", "hostname": "edge-1", "kind": "agent",
                "network_id": "kairos", "interface": "kairos0", "ipv4": "10.1.0.7", "ipv6": "fd12::7",
                "overlay": "10.1.0.0/24", "listen": "[::]:51820", "members": 2, "peers_up": 1,
                "direct": 1, "relayed": 0, "role": "master", "uptime_s": 65, "version": "0.1.0",
                "NodeID": "aaaaaaaaaaaaaaaaaaaaaaaaaa", "Machines": 3, "Peers": 1
            }),
            machines: json!([
                {"node_id": "bbbbbbbbbbbbbbbbbbbbbbbbbb", "hostname": "edge-2", "ipv4": "10.1.0.8",
                 "ipv6": "fd12::8", "up": true, "path": "direct", "endpoint": "192.168.1.8:51820",
                 "relay": null, "last_seen_s": 1, "network_id": "kairos", "role": "worker",
                 "kind": "agent", "rtt_ms": 0.61},
                {"node_id": "cccccccccccccccccccccccccc", "hostname": "laptop", "ipv4": "10.1.0.9",
                 "ipv6": "fd12::9", "up": false, "path": "none", "endpoint": null, "relay": null,
                 "last_seen_s": null, "network_id": null, "role": null, "kind": "bridge", "rtt_ms": null}
            ]),
            peers: json!([
                {"node_id": "bbbbbbbbbbbbbbbbbbbbbbbbbb", "hostname": "edge-2", "ipv4": "10.1.0.8",
                 "ipv6": "fd12::8", "up": true, "path": "direct", "endpoint": "192.168.1.8:51820",
                 "relay": null, "rtt_ms": 0.61, "rx_bytes": 2048, "tx_bytes": 100, "handshakes": 2,
                 "last_handshake_s": 30, "live": true, "advertised_s": 5}
            ]),
            ledger: json!({
                "kairos": {
                    "master-kubeconfig": K3S_KUBECONFIG,
                    "ip-master": "10.1.0.7",
                    "uuid-1-role": "master"
                },
                "owner/info": {"aaaaaaaaaaaaaaaaaaaaaaaaaa": "{\"hostname\":\"edge-1\"}"}
            }),
            token: None,
            summary_not_json: None,
            not_by_master: Vec::new(),
        }
    }
}

/// A fake API running in a background thread, until the test ends.
struct FakeApi {
    /// The `--api` value that reaches it.
    api: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    _dir: Option<tempfile::TempDir>,
}

impl FakeApi {
    /// Serves `canned` on 127.0.0.1, a free port.
    fn tcp(canned: Canned) -> FakeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let api = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = router(canned, seen.clone());
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, router).await.unwrap();
            })
        });
        FakeApi { api, seen, _dir: None }
    }

    /// Serves `canned` on a unix socket in a temporary directory.
    fn unix(canned: Canned) -> FakeApi {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let router = router(canned, seen.clone());
        std::thread::spawn(move || {
            runtime().block_on(async move {
                let listener = tokio::net::UnixListener::from_std(listener).unwrap();
                axum::serve(listener, router).await.unwrap();
            })
        });
        FakeApi {
            api: format!("unix://{}", path.display()),
            seen,
            _dir: Some(dir),
        }
    }

    /// The requests received so far.
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests received so far other than GETs.
    fn writes(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.method != "GET").collect()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn router(canned: Canned, seen: Arc<Mutex<Vec<Seen>>>) -> Router {
    Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let canned = canned.clone();
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(Seen {
                method: method.to_string(),
                path: uri.path().to_owned(),
                body: body.to_vec(),
            });
            answer(&canned, &method, uri.path(), &headers, &body)
        }
    })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// The fake's answer, following the contract.
fn answer(canned: &Canned, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Response {
    if let Some(token) = &canned.token {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        if auth != Some(format!("Bearer {token}").as_str()) {
            return error(StatusCode::UNAUTHORIZED, "missing or wrong API token");
        }
    }
    let json = |v: &Value| axum::Json(v.clone()).into_response();
    let segments: Vec<String> = path.split('/').skip(1).map(decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match (method.as_str(), segments.as_slice()) {
        ("GET", ["api", "summary"]) => match canned.summary_not_json {
            Some(text) => text.into_response(),
            None => json(&canned.summary),
        },
        ("GET", ["api", "machines"]) => json(&canned.machines),
        ("GET", ["api", "peers"]) => json(&canned.peers),
        ("GET", ["api", "ledger"]) => json(&canned.ledger),
        ("GET", ["api", "ledger", bucket]) => json(canned.ledger.get(*bucket).unwrap_or(&json!({}))),
        ("GET", ["api", "ledger", bucket, key]) => match canned.ledger.get(*bucket).and_then(|b| b.get(*key)) {
            Some(v) => json(v),
            None => error(StatusCode::NOT_FOUND, &format!("no key {key} in bucket {bucket}")),
        },
        ("GET", ["api", "writers", bucket]) => {
            let entries = canned
                .ledger
                .get(*bucket)
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let writers: serde_json::Map<String, Value> = entries
                .into_iter()
                .map(|(key, value)| {
                    let master = !canned.not_by_master.contains(&key.as_str());
                    let id = if master {
                        "aaaaaaaaaaaaaaaaaaaaaaaaaa"
                    } else {
                        "bbbbbbbbbbbbbbbbbbbbbbbbbb"
                    };
                    (key, json!({"node_id": id, "master": master, "value": value}))
                })
                .collect();
            json(&Value::Object(writers))
        }
        ("PUT", ["api", "ledger", "bad bucket", ..]) => error(
            StatusCode::BAD_REQUEST,
            "bucket name `bad bucket` has a space: names are 1-64 of a-z 0-9 - _ . /",
        ),
        ("PUT", ["api", "ledger", bucket, key]) => {
            json(&json!({"bucket": bucket, "key": key, "value": String::from_utf8_lossy(body)}))
        }
        ("PUT", ["api", "ledger", bucket, key, value]) => json(&json!({"bucket": bucket, "key": key, "value": value})),
        ("DELETE", ["api", "ledger", _, _]) => json(&json!({"deleted": 1})),
        ("DELETE", ["api", "ledger", _]) => json(&json!({"deleted": 3})),
        _ => error(StatusCode::NOT_FOUND, &format!("no such endpoint: {path}")),
    }
}

/// Percent-decoding of one path segment.
fn decode(s: &str) -> String {
    let mut out = Vec::new();
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().unwrap(), bytes.next().unwrap()];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).unwrap(), 16).unwrap());
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).unwrap()
}

/// Runs `kairos ARGS` with KAIROS_API and KAIROS_API_TOKEN[_FILE] unset unless in
/// `env`, feeding `stdin`.
fn kairos(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairos"));
    cmd.args(args)
        .env_remove("KAIROS_API")
        .env_remove("KAIROS_API_TOKEN")
        .env_remove("KAIROS_API_TOKEN_FILE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kairos binary runs");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

/// `kairos ARGS --api API`.
fn with_api(api: &FakeApi, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.extend(["--api", api.api.as_str()]);
    kairos(&all, &[], b"")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn assert_ok(o: &Output) {
    assert!(o.status.success(), "exit {:?}, stderr: {}", o.status.code(), stderr(o));
}

#[test]
fn status_prints_the_node_and_a_table_of_members() {
    let api = FakeApi::tcp(Canned::default());
    let o = with_api(&api, &["status"]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "Node:    edge-1 (agent, aaaaaaaaaaaaaaaaaaaaaaaaaa)\n\
         Network: kairos\n\
         Role:    master\n\
         Overlay: 10.1.0.7, fd12::7 on kairos0 (range 10.1.0.0/24)\n\
         Listen:  [::]:51820\n\
         Members: 2 others, 1 up (1 direct, 0 relayed)\n\
         Uptime:  1m 5s\n\
         Version: 0.1.0\n\
         \n\
         HOSTNAME  NODE      IPV4      PATH        RTT  ROLE      NETWORK\n\
         edge-2    bbbbbbbb  10.1.0.8  direct  0.61 ms  worker    kairos\n\
         laptop    cccccccc  10.1.0.9  none          -  (bridge)  -\n"
    );
    assert_eq!(stderr(&o), "");
    let paths: Vec<_> = api.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/api/summary", "/api/machines"]);
}

#[test]
fn status_json_is_both_replies() {
    let canned = Canned::default();
    let api = FakeApi::tcp(canned.clone());
    let o = with_api(&api, &["status", "--json"]);
    assert_ok(&o);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v, json!({"summary": canned.summary, "machines": canned.machines}));
}

#[test]
fn peers_prints_a_table_and_raw_json() {
    let api = FakeApi::tcp(Canned::default());
    let o = with_api(&api, &["peers"]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        "HOSTNAME  IPV4      PATH    VIA                    RTT       RX     TX  HANDSHAKE  LIVE\n\
         edge-2    10.1.0.8  direct  192.168.1.8:51820  0.61 ms  2.0 KiB  100 B  30s ago    yes (5s ago)\n"
    );
    let o = with_api(&api, &["peers", "--json"]);
    assert_ok(&o);
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v, Canned::default().peers);
}

#[test]
fn ledger_get_lists_a_bucket_and_prints_values_raw() {
    let api = FakeApi::tcp(Canned::default());
    let o = with_api(&api, &["ledger", "get", "kairos", "ip-master"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "10.1.0.7\n");

    let o = with_api(&api, &["ledger", "get", "kairos", "master-kubeconfig"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), K3S_KUBECONFIG, "a multi-line value is printed as it is");

    let o = with_api(&api, &["ledger", "get", "owner/info"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "aaaaaaaaaaaaaaaaaaaaaaaaaa = {\"hostname\":\"edge-1\"}\n");

    let o = with_api(&api, &["ledger", "get", "kairos", "ip-master", "--json"]);
    assert_ok(&o);
    assert_eq!(stdout(&o), "\"10.1.0.7\"\n");

    let paths: Vec<_> = api.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/api/ledger/kairos/ip-master",
            "/api/ledger/kairos/master-kubeconfig",
            "/api/ledger/owner%2Finfo",
            "/api/ledger/kairos/ip-master"
        ]
    );
}

#[test]
fn ledger_get_of_a_missing_key_says_so() {
    let api = FakeApi::tcp(Canned::default());
    let o = with_api(&api, &["ledger", "get", "kairos", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stderr(&o), "error: no key nope in bucket kairos\n");
    assert_eq!(stdout(&o), "");
}

#[test]
fn ledger_put_sends_short_values_in_the_url_and_others_as_the_body() {
    let api = FakeApi::tcp(Canned::default());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("value.bin");
    std::fs::write(&file, [0u8, 159, 146, 150]).unwrap();

    assert_ok(&with_api(&api, &["ledger", "put", "kairos", "ip-master", "10.1.0.7"]));
    assert_ok(&with_api(&api, &["ledger", "put", "kairos", "range", "10.1.0.0/24"]));
    assert_ok(&with_api(&api, &["ledger", "put", "my bucket", "k?", "a b"]));
    assert_ok(&with_api(
        &api,
        &["ledger", "put", "kairos", "blob", "--file", file.to_str().unwrap()],
    ));
    let o = kairos(
        &["ledger", "put", "kairos", "notes", "-", "--api", &api.api],
        &[],
        b"line 1\nline 2\n",
    );
    assert_ok(&o);
    assert_eq!(stderr(&o), "set notes in kairos (14 bytes)\n");
    assert_eq!(stdout(&o), "");

    let put = |path: &str, body: &[u8]| Seen {
        method: "PUT".into(),
        path: path.into(),
        body: body.to_vec(),
    };
    assert_eq!(
        api.writes(),
        [
            put("/api/ledger/kairos/ip-master/10.1.0.7", b""),
            put("/api/ledger/kairos/range", b"10.1.0.0/24"),
            put("/api/ledger/my%20bucket/k%3F/a%20b", b""),
            put("/api/ledger/kairos/blob", &[0, 159, 146, 150]),
            put("/api/ledger/kairos/notes", b"line 1\nline 2\n"),
        ]
    );
}

#[test]
fn ledger_put_refused_by_the_api_is_bad_input() {
    let api = FakeApi::tcp(Canned::default());
    let o = with_api(&api, &["ledger", "put", "bad bucket", "k", "v"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert_eq!(
        stderr(&o),
        "error: bucket name `bad bucket` has a space: names are 1-64 of a-z 0-9 - _ . /\n"
    );

    let big = vec![b'x'; 16 * 1024 + 1];
    let o = kairos(&["ledger", "put", "b", "k", "-", "--api", &api.api], &[], &big);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: the value has more than 16384 bytes (16 KiB), the most a ledger value may have\n"
    );
    assert_eq!(api.writes().len(), 1, "the value too large was not sent");
}

#[test]
fn ledger_rm_deletes_a_key_or_a_bucket() {
    let api = FakeApi::tcp(Canned::default());
    let o = with_api(&api, &["ledger", "rm", "kairos", "ip-master"]);
    assert_ok(&o);
    assert_eq!(stderr(&o), "deleted 1 key from kairos\n");
    let o = with_api(&api, &["ledger", "rm", "owner/info"]);
    assert_ok(&o);
    assert_eq!(stderr(&o), "deleted 3 keys from owner/info\n");
    let writes: Vec<_> = api.writes().into_iter().map(|s| (s.method, s.path)).collect();
    assert_eq!(
        writes,
        [
            ("DELETE".to_owned(), "/api/ledger/kairos/ip-master".to_owned()),
            ("DELETE".to_owned(), "/api/ledger/owner%2Finfo".to_owned()),
        ]
    );
}

#[test]
fn get_kubeconfig_prints_the_published_one_pointed_at_the_master() {
    let api = FakeApi::tcp(Canned::default());
    let o = with_api(&api, &["get-kubeconfig"]);
    assert_ok(&o);
    assert_eq!(
        stdout(&o),
        K3S_KUBECONFIG.replace("https://127.0.0.1:6443", "https://10.1.0.7:6443")
    );
    assert_eq!(
        stderr(&o),
        "kubeconfig of network_id kairos, server https://10.1.0.7:6443\n"
    );
    let paths: Vec<_> = api.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/api/ledger", "/api/writers/kairos"]);
}

#[test]
fn get_kubeconfig_takes_only_what_the_master_wrote() {
    // Another member overwrote the kubeconfig: refused, naming the writer.
    let api = FakeApi::tcp(Canned {
        not_by_master: vec!["master-kubeconfig"],
        ..Canned::default()
    });
    let o = with_api(&api, &["get-kubeconfig"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "");
    assert!(
        stderr(&o).starts_with(
            "error: the kubeconfig of network_id kairos was written by node bbbbbbbb, which is not its master: refusing it"
        ),
        "{}",
        stderr(&o)
    );
    // Another member overwrote ip-master: ignored, the servers kept.
    let mut canned = Canned {
        not_by_master: vec!["ip-master"],
        ..Canned::default()
    };
    canned.ledger["kairos"]["master-kubeconfig"] = json!(K3S_KUBECONFIG.replace("127.0.0.1", "10.1.0.7"));
    let api = FakeApi::tcp(canned);
    let o = with_api(&api, &["get-kubeconfig"]);
    assert_ok(&o);
    assert!(stdout(&o).contains("server: https://10.1.0.7:6443"), "{}", stdout(&o));
    assert!(
        stderr(&o)
            .contains("ip-master in bucket kairos was not written by the master of network_id kairos; it is ignored"),
        "{}",
        stderr(&o)
    );
}

fn two_clusters() -> Canned {
    let mut canned = Canned::default();
    canned.ledger["edge"] = json!({
        "master-kubeconfig": K3S_KUBECONFIG.replace("127.0.0.1:6443", "localhost:7443"),
        "ip-master": "10.1.0.20"
    });
    canned
}

#[test]
fn get_kubeconfig_with_several_clusters_needs_network_id() {
    let api = FakeApi::tcp(two_clusters());
    let o = with_api(&api, &["get-kubeconfig"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        stderr(&o),
        "error: several clusters on this network: edge, kairos; pick one with --network-id\n"
    );
    assert_eq!(stdout(&o), "");

    let o = with_api(&api, &["get-kubeconfig", "--network-id", "edge"]);
    assert_ok(&o);
    assert!(
        stdout(&o).contains("    server: https://10.1.0.20:7443\n"),
        "{}",
        stdout(&o)
    );

    let o = with_api(&api, &["get-kubeconfig", "--network-id", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: no master has published a kubeconfig for network_id nope; clusters that have one: edge, kairos\n"
    );
}

#[test]
fn get_kubeconfig_without_a_master_lists_the_members_seen() {
    let canned = Canned {
        ledger: json!({"kairos": {"uuid-2-role": "worker"}}),
        ..Canned::default()
    };
    let api = FakeApi::tcp(canned);
    let o = with_api(&api, &["get-kubeconfig"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        "error: no master has published a kubeconfig yet; members seen:\n  \
         edge-2 (node bbbbbbbb): network_id kairos, role worker\n  \
         laptop (node cccccccc): network_id -, role none (a bridge)\n"
    );
    assert_eq!(stdout(&o), "");

    let canned = Canned {
        ledger: json!({}),
        machines: json!([]),
        ..Canned::default()
    };
    let api = FakeApi::tcp(canned);
    let o = with_api(&api, &["get-kubeconfig"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).starts_with("error: no master has published a kubeconfig yet; no members seen"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn an_unreachable_api_names_the_address_and_the_fix() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let api = format!("127.0.0.1:{port}");
    let o = kairos(&["status", "--api", &api], &[], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("error: cannot reach the kairos API at {api}: {UNREACHABLE}\n")
    );

    // KAIROS_API replaces the default; --api wins over it.
    let o = kairos(
        &["ledger", "get", "kairos"],
        &[("KAIROS_API", &format!("http://{api}"))],
        b"",
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains(&format!("at {api}:")), "{}", stderr(&o));

    let o = kairos(&["peers", "--api", "unix:///nonexistent/kairos.sock"], &[], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("error: cannot reach the kairos API at unix:///nonexistent/kairos.sock: {UNREACHABLE}\n")
    );
}

#[test]
fn a_silent_api_times_out() {
    // The kernel accepts the connection into the backlog; nobody answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let api = listener.local_addr().unwrap().to_string();
    let started = std::time::Instant::now();
    let o = kairos(&["peers", "--api", &api], &[], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!("error: the kairos API at {api} did not answer GET /api/peers within 5 s\n")
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(9));
    drop(listener);
}

#[test]
fn a_bad_api_address_is_a_usage_error() {
    let o = kairos(&["status", "--api", "https://10.1.0.7:8080"], &[], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("plain HTTP"), "{}", stderr(&o));
}

#[test]
fn the_api_over_a_unix_socket() {
    let api = FakeApi::unix(Canned::default());
    let o = with_api(&api, &["status"]);
    assert_ok(&o);
    assert!(stdout(&o).starts_with("Node:    edge-1 (agent, "), "{}", stdout(&o));
    let o = kairos(&["get-kubeconfig"], &[("KAIROS_API", &api.api)], b"");
    assert_ok(&o);
    assert!(stdout(&o).contains("server: https://10.1.0.7:6443"));
}

#[test]
fn a_token_is_sent_when_the_api_wants_one() {
    let canned = Canned {
        token: Some("s3cret".into()),
        ..Canned::default()
    };
    let api = FakeApi::tcp(canned);

    let o = with_api(&api, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "error: missing or wrong API token (the kairos API at {} needs its token: pass \
             --api-token-file FILE or set KAIROS_API_TOKEN)\n",
            api.api
        )
    );

    let o = kairos(&["status", "--api", &api.api], &[("KAIROS_API_TOKEN", "nope")], b"");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "error: missing or wrong API token (the kairos API at {} refused the token given: check \
             --api-token-file, KAIROS_API_TOKEN or KAIROS_API_TOKEN_FILE)\n",
            api.api
        )
    );

    let o = kairos(&["status", "--api", &api.api], &[("KAIROS_API_TOKEN", "s3cret")], b"");
    assert_ok(&o);

    let dir = tempfile::tempdir().unwrap();
    let file: PathBuf = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let o = kairos(
        &[
            "ledger",
            "get",
            "kairos",
            "ip-master",
            "--api-token-file",
            file.to_str().unwrap(),
            "--api",
            &api.api,
        ],
        &[("KAIROS_API_TOKEN", "wrong")],
        b"",
    );
    assert_ok(&o);
    assert_eq!(stdout(&o), "10.1.0.7\n");

    // The agent's own variable for a token file works too.
    let o = kairos(
        &["peers", "--api", &api.api],
        &[("KAIROS_API_TOKEN_FILE", file.to_str().unwrap())],
        b"",
    );
    assert_ok(&o);
    assert!(stdout(&o).starts_with("HOSTNAME"), "{}", stdout(&o));
}

#[test]
fn a_reply_that_is_not_json_is_named() {
    let canned = Canned {
        summary_not_json: Some("<html>\n  <body>a proxy page</body>\n</html>"),
        ..Canned::default()
    };
    let api = FakeApi::tcp(canned);
    let o = with_api(&api, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o),
        format!(
            "error: the kairos API at {} answered GET /api/summary with something that is not JSON: \
             <html> <body>a proxy page</body> </html>\n",
            api.api
        )
    );
}

#[test]
fn every_operator_command_explains_itself() {
    for cmd in [
        &["status", "--help"][..],
        &["peers", "--help"],
        &["ledger", "get", "--help"],
        &["ledger", "put", "--help"],
        &["ledger", "rm", "--help"],
        &["get-kubeconfig", "--help"],
    ] {
        let o = kairos(cmd, &[], b"");
        assert_ok(&o);
        let help = stdout(&o);
        assert!(help.contains("--api <URL>"), "{cmd:?}: {help}");
        assert!(help.contains("KAIROS_API"), "{cmd:?}: {help}");
    }
    let o = kairos(&["ledger", "--help"], &[], b"");
    assert_ok(&o);
    assert!(stdout(&o).contains("kairos ledger put BUCKET KEY --file FILE"));
}
