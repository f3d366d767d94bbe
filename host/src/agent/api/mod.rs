//! The agent's HTTP API (axum), on `p2p.mesh.api` (default
//! `127.0.0.1:8080`, or a unix socket made with mode 0600):
//!
//! - `GET /api/summary`: this node ([`Summary`]).
//! - `GET /api/machines`: the other members ([`Machine`]).
//!
//! Handlers ask the driver over its command channel and wait for the
//! answer, so what they return is the node's state at that moment; the API
//! never holds the node. Errors are JSON `{"error": "..."}` with a 4xx/5xx
//! status. The issue on the API adds the rest (ledger, nodes, dashboard).

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};

use super::driver::Command;
use super::status::{Machine, Summary};
use crate::config::agent::ApiAddress;

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    /// The driver is gone (the agent is stopping).
    Stopping,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Stopping => (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "the agent is stopping"})),
            )
                .into_response(),
        }
    }
}

/// The API's routes, answering through `commands`.
pub fn router(commands: mpsc::Sender<Command>) -> Router {
    Router::new()
        .route("/api/summary", get(summary))
        .route("/api/machines", get(machines))
        .fallback(not_found)
        .with_state(commands)
}

async fn ask<T>(
    commands: &mpsc::Sender<Command>,
    make: impl FnOnce(oneshot::Sender<T>) -> Command,
) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    commands.send(make(tx)).await.map_err(|_| ApiError::Stopping)?;
    rx.await.map_err(|_| ApiError::Stopping)
}

async fn summary(State(commands): State<mpsc::Sender<Command>>) -> Result<Json<Summary>, ApiError> {
    ask(&commands, Command::Summary).await.map(Json)
}

async fn machines(State(commands): State<mpsc::Sender<Command>>) -> Result<Json<Vec<Machine>>, ApiError> {
    ask(&commands, Command::Machines).await.map(Json)
}

async fn not_found(uri: axum::http::Uri) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": format!("no such endpoint: {}", uri.path())})),
    )
        .into_response()
}

/// A bound API listener.
#[derive(Debug)]
pub enum ApiListener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket (the agent removes it when it stops).
    Unix(UnixListener),
}

/// Binds the API address. A stale unix socket file (from a crash) is
/// replaced; any other file at that path is left alone and refused.
pub async fn bind(addr: &ApiAddress) -> io::Result<ApiListener> {
    match addr {
        ApiAddress::Tcp(a) => Ok(ApiListener::Tcp(TcpListener::bind(a).await?)),
        ApiAddress::Unix(path) => {
            remove_stale_socket(path)?;
            let listener = UnixListener::bind(path)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
            Ok(ApiListener::Unix(listener))
        }
    }
}

fn remove_stale_socket(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => std::fs::remove_file(path),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a file that is not a socket is in the way",
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Serves `router` on `listener` until the task is aborted.
pub async fn serve(listener: ApiListener, router: Router) -> io::Result<()> {
    match listener {
        ApiListener::Tcp(l) => axum::serve(l, router).await,
        ApiListener::Unix(l) => axum::serve(l, router).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::status::Path as MeshPath;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    fn fake_summary() -> Summary {
        Summary {
            node_id: "abcdefghijklmnopqrstuvwxyz".into(),
            network_id: "kairos".into(),
            interface: Some("kairos0".into()),
            ipv4: Some("10.1.0.7".into()),
            ipv6: "fd12:3456:789a::1".into(),
            overlay: "10.1.0.0/24".into(),
            listen: "[::]:51820".into(),
            members: 2,
            peers_up: 2,
            direct: 1,
            relayed: 1,
            role: None,
            uptime_s: 3,
            version: "0.1.0".into(),
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
            },
        ]
    }

    /// A driver that answers every command with the fakes.
    fn fake_driver() -> mpsc::Sender<Command> {
        let (tx, mut rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Some(c) = rx.recv().await {
                match c {
                    Command::Summary(reply) => drop(reply.send(fake_summary())),
                    Command::Machines(reply) => drop(reply.send(fake_machines())),
                    Command::Shutdown => break,
                }
            }
        });
        tx
    }

    async fn get_json(router: Router, uri: &str) -> (StatusCode, serde_json::Value) {
        let response = router
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test(flavor = "current_thread")]
    async fn summary_has_the_documented_fields() {
        let (status, j) = get_json(router(fake_driver()), "/api/summary").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(j["node_id"], "abcdefghijklmnopqrstuvwxyz");
        assert_eq!(j["network_id"], "kairos");
        assert_eq!(j["interface"], "kairos0");
        assert_eq!(j["ipv4"], "10.1.0.7");
        assert_eq!(j["ipv6"], "fd12:3456:789a::1");
        assert_eq!(j["listen"], "[::]:51820");
        assert_eq!(j["members"], 2);
        assert_eq!(j["peers_up"], 2);
        assert_eq!(j["direct"], 1);
        assert_eq!(j["relayed"], 1);
        assert_eq!(j["uptime_s"], 3);
        assert!(j["role"].is_null());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn machines_is_an_array_with_paths_and_nulls() {
        let (status, j) = get_json(router(fake_driver()), "/api/machines").await;
        assert_eq!(status, StatusCode::OK);
        let list = j.as_array().expect("an array");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["path"], "relayed");
        assert_eq!(list[0]["up"], true);
        assert_eq!(list[0]["endpoint"], "192.0.2.1:51820");
        assert_eq!(list[0]["relay"], "aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(list[0]["ipv4"], "10.1.0.9");
        assert_eq!(list[1]["path"], "none");
        assert!(list[1]["ipv4"].is_null());
        assert!(list[1]["relay"].is_null());
        assert!(list[1]["endpoint"].is_null());
        for m in list {
            for key in ["node_id", "ipv4", "ipv6", "up", "path", "endpoint"] {
                assert!(m.get(key).is_some(), "{key} missing in {m}");
            }
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn unknown_paths_and_a_stopped_driver_answer_json() {
        let (status, j) = get_json(router(fake_driver()), "/api/nope").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(j["error"], "no such endpoint: /api/nope");

        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let (status, j) = get_json(router(tx), "/api/summary").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(j["error"], "the agent is stopping");
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
}
