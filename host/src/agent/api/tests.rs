//! Router tests: each route family against the fake driver ([`super::fake`]),
//! which keeps a small ledger (with the owner-only rule and the limits) in a map.

use std::os::unix::fs::PermissionsExt;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use kairos_core::ledger::{MAX_BUCKET_LEN, MAX_KEY_LEN, MAX_VALUE_LEN};
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::fake::{fake_driver, ME};
use super::*;

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
        "live",
        "advertised_s",
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
    let writer = |value: &str| serde_json::json!({"node_id": super::fake::ME, "master": true, "value": value});
    assert_eq!(
        get(&app, "/api/writers/kairos").await.json(),
        serde_json::json!({"ip-master": writer("10.1.0.1"), "master-kubeconfig": writer(kubeconfig)})
    );
    assert_eq!(get(&app, "/api/writers/empty").await.json(), serde_json::json!({}));

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

async fn get_at(router: &Router, uri: &str, host: &str, authorization: Option<&str>) -> Answer {
    let mut r = Request::get(uri).header(header::HOST, host);
    if let Some(v) = authorization {
        r = r.header(header::AUTHORIZATION, v);
    }
    call(router, r.body(Body::empty()).unwrap()).await
}

#[tokio::test(flavor = "current_thread")]
async fn a_tokenless_api_answers_only_ip_literals_and_localhost() {
    // DNS rebinding: a page of evil.example that resolves to 127.0.0.1
    // is same-origin with the API; the ledger holds the kubeconfig.
    let app = app();
    for host in ["evil.example", "evil.example:8080", "127.0.0.1.evil.example:8080"] {
        for uri in ["/api/ledger", "/api/summary", "/"] {
            let a = get_at(&app, uri, host, None).await;
            assert_eq!(a.status, StatusCode::FORBIDDEN, "{host} {uri}");
            assert!(a.error().contains("DNS rebinding"), "{}", a.error());
        }
    }
    let a = call(
        &app,
        Request::builder()
            .method(Method::PUT)
            .uri("/api/ledger/b/k/v")
            .header(header::HOST, "evil.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080"] {
        assert_eq!(
            get_at(&app, "/api/summary", host, None).await.status,
            StatusCode::OK,
            "{host}"
        );
    }
    // With a token the name does not matter: the token does.
    let guarded = with_token("s3cret");
    let a = get_at(&guarded, "/api/summary", "edge-1.lan:8080", Some("Bearer s3cret")).await;
    assert_eq!(a.status, StatusCode::OK);
    let a = get_at(&guarded, "/api/summary", "evil.example", None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
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
