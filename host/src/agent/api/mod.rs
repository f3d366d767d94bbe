//! The agent's HTTP API (axum), on `p2p.mesh.api` (default
//! `127.0.0.1:8080`, or a unix socket made with mode 0600). Every route is
//! in [`routes`], the one table the router and the OpenAPI document
//! (`openapi.json`, checked by a test) are made from; `docs/api.md`
//! describes each.
//!
//! | file | owns |
//! |---|---|
//! | `mod.rs` | the route table, the router, errors, binding and serving |
//! | `auth` | the bearer token and the exposure check |
//! | `host` | the `Host` check of a tokenless API (DNS rebinding) |
//! | `reads` | node, member and bucket reads |
//! | `ledger` | the ledger browser and writes |
//! | `metrics` | the Prometheus text |
//! | `openapi` | the OpenAPI document |
//! | `dashboard` | the HTML page at `/` and `/app` |
//! | `fake` | a fake driver for the tests and the fuzz target (not built into the agent) |
//!
//! Handlers ask the driver over its command channel and wait for the
//! answer, so what they return is the node's state at that moment; the API
//! never holds the node. Every error, axum's own rejections included, is
//! JSON `{"error": "..."}` with a 4xx/5xx status.

mod auth;
mod dashboard;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fake;
mod host;
mod ledger;
mod metrics;
mod openapi;
mod reads;
#[cfg(test)]
mod tests;

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put, MethodRouter};
use axum::{Json, Router};
use kairos_core::ledger::{LedgerError, MAX_VALUE_LEN};
use serde_json::json;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{mpsc, oneshot};

use super::driver::Command;
use crate::config::agent::ApiAddress;

pub use auth::{check_exposure, token_from_env};

/// The handlers' state: the driver's command channel.
type Commands = mpsc::Sender<Command>;

/// How the API is reached: who may call it.
#[derive(Clone, Default)]
pub struct ApiOptions {
    /// The bearer token every request but the dashboard page must carry
    /// (`Authorization: Bearer <token>`); `None`: no authentication (only
    /// on loopback or a unix socket, see [`check_exposure`]).
    pub token: Option<String>,
}

impl std::fmt::Debug for ApiOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One route: method, path (axum's syntax, `{name}` for a segment, which
/// is also OpenAPI's), whether it needs the token, and its handler.
pub(crate) struct Route {
    /// Read by the tests that hold the table, the router and the OpenAPI
    /// document together (the handler carries its own method filter).
    #[cfg_attr(not(test), allow(dead_code))]
    pub method: Method,
    pub path: &'static str,
    pub authenticated: bool,
    pub handler: MethodRouter<Commands>,
}

fn route(method: Method, path: &'static str, handler: MethodRouter<Commands>) -> Route {
    Route {
        method,
        path,
        authenticated: true,
        handler,
    }
}

/// Every route of the API. The dashboard page is the only one served
/// without the token: it holds no data, and a browser cannot send a header
/// when it opens a page (the page sends the token itself, from
/// `#token=...`).
pub(crate) fn routes() -> Vec<Route> {
    let page = |path| Route {
        method: Method::GET,
        path,
        authenticated: false,
        handler: get(dashboard::page),
    };
    vec![
        page("/"),
        page("/app"),
        route(Method::GET, "/api/summary", get(reads::summary)),
        route(Method::GET, "/api/machines", get(reads::machines)),
        route(Method::GET, "/api/nodes", get(reads::nodes)),
        route(Method::GET, "/api/peers", get(reads::peers)),
        route(Method::GET, "/api/peerstore", get(reads::peerstore)),
        route(Method::GET, "/api/users", get(reads::users)),
        route(Method::GET, "/api/services", get(reads::services)),
        route(Method::GET, "/api/dns", get(reads::dns)),
        route(Method::GET, "/api/files", get(reads::files)),
        route(Method::GET, "/api/blockchain", get(reads::blockchain)),
        route(Method::GET, "/api/ledger", get(ledger::all)),
        route(Method::GET, "/api/ledger/{bucket}", get(ledger::bucket)),
        route(Method::DELETE, "/api/ledger/{bucket}", delete(ledger::delete_bucket)),
        route(Method::GET, "/api/ledger/{bucket}/{key}", get(ledger::get_key)),
        route(Method::GET, "/api/writers/{bucket}", get(ledger::writers)),
        route(Method::PUT, "/api/ledger/{bucket}/{key}", put(ledger::put_body)),
        route(Method::DELETE, "/api/ledger/{bucket}/{key}", delete(ledger::delete_key)),
        route(Method::PUT, "/api/ledger/{bucket}/{key}/{value}", put(ledger::put_path)),
        route(Method::GET, "/metrics", get(metrics::metrics)),
        route(Method::GET, "/api/openapi.json", get(openapi::document)),
    ]
}

/// The API's routes, answering through `commands`, guarded as `options`
/// says. Bodies are limited to the ledger's value limit (16 KiB).
pub fn router(commands: mpsc::Sender<Command>, options: ApiOptions) -> Router {
    let (mut open, mut guarded) = (Router::new(), Router::new());
    for r in routes() {
        if r.authenticated {
            guarded = guarded.route(r.path, r.handler);
        } else {
            open = open.route(r.path, r.handler);
        }
    }
    let tokenless = match options.token.filter(|t| !t.is_empty()) {
        Some(token) => {
            let token: Arc<str> = token.into();
            guarded = guarded.route_layer(middleware::from_fn_with_state(token, auth::require_token));
            false
        }
        None => true,
    };
    let mut app = open.merge(guarded).fallback(not_found);
    if tokenless {
        app = app.layer(middleware::from_fn(host::require_local_host));
    }
    app.layer(DefaultBodyLimit::max(MAX_VALUE_LEN))
        .layer(middleware::from_fn(json_errors))
        .with_state(commands)
}

/// Why a request failed: a status and one sentence naming the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// The `error` of the JSON body.
    pub message: String,
}

impl ApiError {
    /// `status` with `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// The driver is gone (the agent is stopping).
    pub fn stopping() -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "the agent is stopping")
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        let status = match e {
            LedgerError::BucketLength | LedgerError::KeyLength | LedgerError::ValueTooLong => StatusCode::BAD_REQUEST,
            LedgerError::NotOwner => StatusCode::FORBIDDEN,
            LedgerError::Full => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        error_response(self.status, &self.message)
    }
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// Sends the command `make` builds and waits for the driver's answer.
async fn ask<T>(commands: &Commands, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, ApiError> {
    let (tx, rx) = oneshot::channel();
    commands.send(make(tx)).await.map_err(|_| ApiError::stopping())?;
    rx.await.map_err(|_| ApiError::stopping())
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

/// The longest non-JSON error body read to turn it into JSON.
const MAX_ERROR_BODY: usize = 4096;

/// Makes every error JSON: axum's own answers (a rejected extractor, 405
/// for a method a path does not serve) come as plain text or empty.
async fn json_errors(request: Request, next: Next) -> Response {
    let (method, path) = (request.method().clone(), request.uri().path().to_owned());
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        format!("method {method} is not allowed on {path}")
    } else {
        let text = axum::body::to_bytes(body, MAX_ERROR_BODY).await.unwrap_or_default();
        let text = String::from_utf8_lossy(&text).trim().to_owned();
        if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text
        }
    };
    let mut out = error_response(status, &message);
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    if let Some(v) = parts.headers.get(header::WWW_AUTHENTICATE) {
        out.headers_mut().insert(header::WWW_AUTHENTICATE, v.clone());
    }
    out
}

/// `Content-Type` of JSON documents served as static bytes.
const JSON_TYPE: HeaderValue = HeaderValue::from_static("application/json");

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
            // Made 0600 from the start (a umask of 0177 around `bind`): a
            // mode set afterwards leaves a moment in which anyone could
            // connect. The agent's other threads create no files with
            // looser modes meanwhile; the mode is set again to be sure.
            let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
            let listener = UnixListener::bind(path);
            rustix::process::umask(old);
            let listener = listener?;
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
