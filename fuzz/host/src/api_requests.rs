//! `api_requests`: HTTP requests to the agent's API router
//! (`agent::api::router`, every route, its middleware and body limit) with
//! the router tests' fake driver behind the command channel: a fixed small
//! node state and a ledger in a map, which the target inspects between
//! requests. One tokio current-thread runtime, driver and router (with
//! and without a token) per process; the ledger, the fake node's only
//! state, is emptied for every input; requests go in with `tower`'s
//! `oneshot`.
//!
//! Input: a mode byte (bit 0: the API has a token), then requests, each
//! `flags, body mode (and Host), path length (1 byte), path, [body length
//! (2 bytes LE), body]` (see [`Request`]). A path that is no valid request target is
//! skipped (hyper refuses it before the router).
//!
//! Checks after every request, beyond "never panics":
//!
//! - the status is a valid HTTP status and never 5xx: the fake driver
//!   never stops and its ledger never fills (the only 5xx the API gives:
//!   503 when the agent is stopping, 507 when the ledger is full, 500 for a
//!   ledger error no request can cause);
//! - every 4xx is JSON `{"error": "..."}` with a message (HEAD: no body);
//! - without the right token (when there is one), no route but the page
//!   answers 2xx;
//! - the ledger changes only through a PUT or DELETE that answered 2xx on a
//!   ledger path, and then exactly as the path says: the bucket and key are
//!   the percent-decoded path segments (`%2F` is how a name gets a `/`;
//!   `..` or `%2e%2e` is the name `..`: the ledger is a flat map, names are
//!   never paths), the value is the body or the third segment; a write
//!   answers with what it wrote, respects the limits and the owner-only
//!   rule, and is read back by a GET of the same path;
//! - a PUT body over the ledger's value limit on a well-formed path gets 413;
//! - a tokenless API refuses (403) a request that names it by a host name
//!   (DNS rebinding), whatever the route.

use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{header, HeaderValue, Method, StatusCode, Uri};
use http_body_util::BodyExt;
use kairos::fuzzing::{
    fake_driver_on, is_owner_only, router, show_value, ApiOptions, FakeLedger, MAX_BUCKET_LEN, MAX_KEY_LEN,
    MAX_VALUE_LEN, ME,
};
use tokio::runtime::Runtime;
use tower::ServiceExt;

use crate::input::Reader;

/// The API token when the mode byte asks for one.
pub const TOKEN: &str = "s3cret";
/// Most requests per input.
pub const MAX_REQUESTS: usize = 16;

/// The methods a request byte picks from (low 3 bits).
pub const METHODS: [Method; 8] = [
    Method::GET,
    Method::PUT,
    Method::DELETE,
    Method::POST,
    Method::HEAD,
    Method::PATCH,
    Method::OPTIONS,
    Method::GET,
];

/// The `Authorization` a request byte picks (bits 3-4).
pub mod auth {
    /// None.
    pub const NONE: u8 = 0;
    /// `Bearer s3cret`.
    pub const RIGHT: u8 = 1 << 3;
    /// `Bearer nope`.
    pub const WRONG: u8 = 2 << 3;
    /// `bearer  s3cret ` (lowercase scheme, spaces: accepted).
    pub const LOOSE: u8 = 3 << 3;
}
/// Flag: send `Content-Type: application/json`.
pub const JSON: u8 = 1 << 5;
/// Flag: send a `Content-Length` (the body's length).
pub const LENGTH: u8 = 1 << 6;
/// Flag: the path is `/api/ledger/` followed by the path bytes.
pub const LEDGER: u8 = 1 << 7;

/// The body a body-mode byte picks (low 2 bits).
pub mod body {
    /// Length-prefixed bytes from the input.
    pub const INPUT: u8 = 0;
    /// Exactly the value limit.
    pub const LIMIT: u8 = 1;
    /// One byte over the limit.
    pub const OVER: u8 = 2;
    /// Four times the limit.
    pub const HUGE: u8 = 3;
}

/// The `Host` header a body-mode byte picks (bits 2-3).
pub mod host {
    /// None (as the seeds send).
    pub const NONE: u8 = 0;
    /// `127.0.0.1:8080`.
    pub const LOOPBACK: u8 = 1 << 2;
    /// `evil.example:8080`: a name, as a DNS rebinding page sends.
    pub const NAME: u8 = 2 << 2;
    /// The path bytes, as they are (when they make a header value).
    pub const PATH: u8 = 3 << 2;
}

/// One request of an input.
#[derive(Debug, Clone)]
pub struct Request {
    /// Method, authorization and flags.
    pub flags: u8,
    /// Body mode ([`body`], low 2 bits) and `Host` ([`host`], bits 2-3).
    pub body_mode: u8,
    /// Path bytes (after `/api/ledger/` with [`LEDGER`]), at most 255.
    pub path: Vec<u8>,
    /// The body for [`body::INPUT`].
    pub body: Vec<u8>,
}

impl Request {
    /// The bytes of this request in an input.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.flags);
        out.push(self.body_mode);
        out.push(u8::try_from(self.path.len()).expect("a path of at most 255 bytes"));
        out.extend_from_slice(&self.path);
        if self.body_mode & 3 == body::INPUT {
            let len = u16::try_from(self.body.len()).expect("a body of at most 65535 bytes");
            out.extend_from_slice(&len.to_le_bytes());
            out.extend_from_slice(&self.body);
        }
    }

    fn decode(r: &mut Reader) -> Option<Request> {
        let flags = r.byte()?;
        let body_mode = r.byte()?;
        let len = r.byte()?;
        let path = r.bytes(usize::from(len)).to_vec();
        let body = if body_mode & 3 == body::INPUT {
            let len = r.u16().unwrap_or(0);
            r.bytes(usize::from(len)).to_vec()
        } else {
            Vec::new()
        };
        Some(Request {
            flags,
            body_mode,
            path,
            body,
        })
    }

    /// The `Host` header to send, if any.
    fn host(&self) -> Option<HeaderValue> {
        match self.body_mode & (3 << 2) {
            host::NONE => None,
            host::LOOPBACK => Some(HeaderValue::from_static("127.0.0.1:8080")),
            host::NAME => Some(HeaderValue::from_static("evil.example:8080")),
            _ => HeaderValue::from_bytes(&self.path).ok(),
        }
    }

    fn method(&self) -> Method {
        METHODS[usize::from(self.flags & 7)].clone()
    }

    fn body_bytes(&self) -> Vec<u8> {
        match self.body_mode & 3 {
            body::INPUT => self.body.clone(),
            body::LIMIT => vec![b'v'; MAX_VALUE_LEN],
            body::OVER => vec![b'v'; MAX_VALUE_LEN + 1],
            _ => vec![b'v'; 4 * MAX_VALUE_LEN],
        }
    }

    fn uri(&self) -> Option<Uri> {
        let mut target = Vec::new();
        if self.flags & LEDGER != 0 {
            target.extend_from_slice(b"/api/ledger/");
        }
        target.extend_from_slice(&self.path);
        Uri::try_from(target).ok()
    }
}

/// How far an input got (for the seed checks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Requests the router answered.
    pub requests: u32,
    /// Requests answered 2xx.
    pub ok: u32,
    /// Ledger writes that succeeded (and were read back).
    pub writes: u32,
    /// Ledger deletes that removed something.
    pub deletes: u32,
}

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Runs the target on one input.
pub fn run(data: &[u8]) -> Stats {
    let mut r = Reader::new(data);
    let with_token = r.byte().is_some_and(|m| m & 1 != 0);
    let mut requests = Vec::new();
    while requests.len() < MAX_REQUESTS {
        match Request::decode(&mut r) {
            Some(q) => requests.push(q),
            None => break,
        }
    }
    runtime().block_on(async move {
        let mut api = Api::new(with_token);
        for q in &requests {
            api.send(q).await;
        }
        api.stats
    })
}

/// An answer, read whole.
struct Answer {
    status: StatusCode,
    json_type: bool,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// The router under test, the fake driver's ledger, and the counts.
struct Api {
    router: axum::Router,
    ledger: Arc<Mutex<FakeLedger>>,
    with_token: bool,
    stats: Stats,
}

/// The router (with or without the token) and its driver's ledger, made
/// once per process: building the router costs more than most inputs.
fn fixture(with_token: bool) -> &'static (axum::Router, Arc<Mutex<FakeLedger>>) {
    static FIXTURES: [OnceLock<(axum::Router, Arc<Mutex<FakeLedger>>)>; 2] = [OnceLock::new(), OnceLock::new()];
    FIXTURES[usize::from(with_token)].get_or_init(|| {
        // The driver task lives on the process's runtime.
        let _runtime = runtime().enter();
        let ledger = Arc::new(Mutex::new(FakeLedger::new()));
        let options = ApiOptions {
            token: with_token.then(|| TOKEN.to_owned()),
        };
        (router(fake_driver_on(ledger.clone()), options), ledger)
    })
}

impl Api {
    /// The fixture's router with an empty ledger: the ledger is the fake
    /// node's only state, so every input starts from the same node.
    fn new(with_token: bool) -> Api {
        let (router, ledger) = fixture(with_token);
        ledger.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Api {
            router: router.clone(),
            ledger: ledger.clone(),
            with_token,
            stats: Stats::default(),
        }
    }

    fn ledger(&self) -> FakeLedger {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn call(&self, method: Method, uri: Uri, authorization: Option<&str>, q: Option<&Request>) -> Answer {
        let mut b = axum::http::Request::builder().method(method.clone()).uri(uri);
        if let Some(a) = authorization {
            b = b.header(header::AUTHORIZATION, a);
        }
        if let Some(h) = q.and_then(Request::host) {
            b = b.header(header::HOST, h);
        }
        let body = q.map(Request::body_bytes).unwrap_or_default();
        if let Some(q) = q {
            if q.flags & JSON != 0 {
                b = b.header(header::CONTENT_TYPE, "application/json");
            }
            if q.flags & LENGTH != 0 {
                b = b.header(header::CONTENT_LENGTH, body.len());
            }
        }
        let request = b.body(Body::from(body)).expect("a request from a valid URI");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("the router is infallible");
        let status = response.status();
        let json_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        let body = response
            .into_body()
            .collect()
            .await
            .expect("a response body in memory")
            .to_bytes()
            .to_vec();
        let a = Answer {
            status,
            json_type,
            body,
        };
        check_answer(&method, &a);
        a
    }

    async fn send(&mut self, q: &Request) {
        let Some(uri) = q.uri() else { return };
        let method = q.method();
        let authorization = match q.flags & (3 << 3) {
            auth::NONE => None,
            auth::RIGHT => Some(format!("Bearer {TOKEN}")),
            auth::WRONG => Some("Bearer nope".to_owned()),
            _ => Some(format!("bearer  {TOKEN} ")),
        };
        let authorized = !self.with_token || matches!(q.flags & (3 << 3), auth::RIGHT | auth::LOOSE);
        let path = uri.path().to_owned();
        let body = q.body_bytes();
        let before = self.ledger();
        let a = self.call(method.clone(), uri, authorization.as_deref(), Some(q)).await;
        let after = self.ledger();
        self.stats.requests += 1;
        let ledger_path = LedgerPath::of(&path);

        if !self.with_token && q.body_mode & (3 << 2) == host::NAME {
            assert_eq!(
                a.status,
                StatusCode::FORBIDDEN,
                "{method} {path} to a tokenless API by a host name (DNS rebinding)"
            );
        }
        if !authorized && !matches!(path.as_str(), "/" | "/app") {
            assert!(
                !a.status.is_success(),
                "{method} {path} without the token: {}",
                a.status
            );
        }
        // A tokenless API refuses a request by a host name before anything
        // else (the path bytes as `Host` may be one).
        let host_may_be_refused = !self.with_token && matches!(q.body_mode & (3 << 2), host::NAME | host::PATH);
        if method == Method::PUT && body.len() > MAX_VALUE_LEN && authorized && !host_may_be_refused {
            if let Some(LedgerPath::Key(..)) = &ledger_path {
                assert_eq!(
                    a.status,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PUT {path} with {} bytes",
                    body.len()
                );
            }
        }
        if !a.status.is_success() {
            assert!(
                after == before,
                "{method} {path} answered {} but changed the ledger",
                a.status
            );
            return;
        }
        self.stats.ok += 1;
        match (&method, ledger_path) {
            (&Method::PUT, Some(LedgerPath::Key(bucket, key))) => {
                self.wrote(&path, &a, &before, &after, bucket, key, body).await;
            }
            (&Method::PUT, Some(LedgerPath::Value(bucket, key, value))) => {
                self.wrote(&path, &a, &before, &after, bucket, key, value.into_bytes())
                    .await;
            }
            (&Method::DELETE, Some(LedgerPath::Key(bucket, key))) => {
                let mut expected = before.clone();
                let k = (bucket.into_bytes(), key.into_bytes());
                assert!(expected.remove(&k).is_some(), "DELETE {path}: 2xx for an absent key");
                assert!(
                    !is_owner_only(&k.0) || k.1 == ME.as_bytes(),
                    "DELETE {path}: not this node's key"
                );
                assert!(after == expected, "DELETE {path} removed something else");
                assert_eq!(a.json(), serde_json::json!({"deleted": 1}));
                self.stats.deletes += 1;
            }
            (&Method::DELETE, Some(LedgerPath::Bucket(bucket))) => {
                let b = bucket.into_bytes();
                let mut expected = before.clone();
                expected.retain(|(eb, k), _| *eb != b || (is_owner_only(eb) && k != ME.as_bytes()));
                assert!(after == expected, "DELETE {path} removed something else");
                assert_eq!(a.json(), serde_json::json!({"deleted": before.len() - after.len()}));
                self.stats.deletes += u32::from(after.len() < before.len());
            }
            (m, _) => {
                assert!(
                    matches!(*m, Method::GET | Method::HEAD),
                    "{m} {path} answered {} off the ledger write routes",
                    a.status
                );
                assert!(after == before, "{m} {path} changed the ledger");
            }
        }
    }

    /// A PUT answered 2xx: the ledger holds the value under the names the
    /// path gives, and nothing else changed; a GET reads it back.
    #[allow(clippy::too_many_arguments)] // one call site per route
    async fn wrote(
        &mut self,
        path: &str,
        a: &Answer,
        before: &FakeLedger,
        after: &FakeLedger,
        bucket: String,
        key: String,
        value: Vec<u8>,
    ) {
        let (b, k) = (bucket.as_bytes(), key.as_bytes());
        assert!((1..=MAX_BUCKET_LEN).contains(&b.len()), "PUT {path}: bucket length");
        assert!((1..=MAX_KEY_LEN).contains(&k.len()), "PUT {path}: key length");
        assert!(value.len() <= MAX_VALUE_LEN, "PUT {path}: value length");
        assert!(
            !is_owner_only(b) || k == ME.as_bytes(),
            "PUT {path}: not this node's key"
        );
        let shown = show_value(b, &value);
        let mut expected = before.clone();
        expected.insert((b.to_vec(), k.to_vec()), value);
        assert!(*after == expected, "PUT {path} wrote something else");
        assert_eq!(
            a.json(),
            serde_json::json!({"bucket": bucket, "key": key, "value": shown}),
            "PUT {path}"
        );
        let raw: Vec<&str> = path.split('/').collect();
        let back = format!("/api/ledger/{}/{}", raw[3], raw[4]);
        let uri = Uri::try_from(back.as_str()).expect("segments of a valid path");
        let authorization = self.with_token.then(|| format!("Bearer {TOKEN}"));
        let r = self.call(Method::GET, uri, authorization.as_deref(), None).await;
        assert_eq!(r.status, StatusCode::OK, "GET {back} after PUT {path}");
        assert_eq!(
            r.json(),
            serde_json::Value::String(shown),
            "GET {back} after PUT {path}"
        );
        self.stats.writes += 1;
    }
}

/// Every answer: a valid status, never 5xx; an error is JSON with a message.
fn check_answer(method: &Method, a: &Answer) {
    let code = a.status.as_u16();
    assert!((100..600).contains(&code), "status {code}");
    assert!(
        !a.status.is_server_error(),
        "{method}: {} {:?}",
        a.status,
        String::from_utf8_lossy(&a.body)
    );
    if a.status.is_client_error() {
        assert!(a.json_type, "{method}: a {} that is not JSON", a.status);
        if *method != Method::HEAD {
            let j = a.json();
            let message = j["error"].as_str().unwrap_or_else(|| panic!("no error message: {j}"));
            assert!(!message.trim().is_empty(), "an empty error message");
        }
    }
}

/// A path of the ledger routes, with its segments percent-decoded as the
/// router must decode them (`None` when the path is no ledger route or a
/// segment is not UTF-8 once decoded).
enum LedgerPath {
    Bucket(String),
    Key(String, String),
    Value(String, String, String),
}

impl LedgerPath {
    fn of(path: &str) -> Option<LedgerPath> {
        let segments: Vec<&str> = path.split('/').collect();
        let names = match segments.as_slice() {
            ["", "api", "ledger", names @ ..] if (1..=3).contains(&names.len()) => names,
            _ => return None,
        };
        let mut decoded = Vec::new();
        for s in names {
            if s.is_empty() {
                return None;
            }
            decoded.push(String::from_utf8(percent_decode(s.as_bytes())).ok()?);
        }
        let mut d = decoded.into_iter();
        let (first, second, third) = (d.next(), d.next(), d.next());
        Some(match (first, second, third) {
            (Some(b), None, None) => LedgerPath::Bucket(b),
            (Some(b), Some(k), None) => LedgerPath::Key(b, k),
            (Some(b), Some(k), Some(v)) => LedgerPath::Value(b, k, v),
            _ => return None,
        })
    }
}

/// `%XY` with two hex digits is the byte `0xXY`; anything else, a `%`
/// without them included, stays as it is (RFC 3986 decoding as the
/// `percent-encoding` crate does it, written out here as the model).
fn percent_decode(s: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' && i + 2 < s.len() {
            if let (Some(h), Some(l)) = (hex(s[i + 1]), hex(s[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_as_rfc_3986_says() {
        assert_eq!(percent_decode(b"owner%2Finfo"), b"owner/info");
        assert_eq!(percent_decode(b"%2e%2E"), b"..");
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
        assert_eq!(percent_decode(b"%41%"), b"A%");
        assert_eq!(percent_decode(b"%FF"), [0xff]);
    }
}
