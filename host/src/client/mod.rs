//! The operator side of the kairos HTTP API: a small blocking client that the
//! operator commands (`status`, `peers`, `ledger`, `get-kubeconfig`) use to
//! talk to a running `kairos agent` or `kairos bridge`.
//!
//! One request is one HTTP/1.1 connection (hyper's client `conn`) over TCP or
//! a unix socket, on a current-thread tokio runtime owned by the client.
//! Connecting and the exchange each have a 5 s deadline. Every failure is an
//! [`ApiError`] whose `Display` is the one line the operator reads: an API
//! that is not there, the server's own `{"error"}` text, a reply that is not
//! JSON. This module never prints anything and never retries.

mod endpoint;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};
use tokio::runtime::Runtime;

pub use endpoint::{encode_segment, ApiEndpoint, DEFAULT_API};

/// How long connecting, and then the request and its reply, may each take.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a call to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Nothing listens there (connection refused, no socket file).
    #[error(
        "cannot reach the kairos API at {api}: is `kairos agent` or `kairos bridge` running? (set --api or KAIROS_API)"
    )]
    Unreachable {
        /// The address dialled.
        api: ApiEndpoint,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// The socket exists but this user may not open it.
    #[error("cannot connect to the kairos API at {api}: permission denied (the socket is mode 0600: run as its owner, e.g. with sudo)")]
    PermissionDenied {
        /// The address dialled.
        api: ApiEndpoint,
    },
    /// Any other connect failure (a name that does not resolve, no route).
    #[error("cannot connect to the kairos API at {api}: {source}")]
    Connect {
        /// The address dialled.
        api: ApiEndpoint,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// Connecting or the exchange took longer than [`TIMEOUT`].
    #[error("the kairos API at {api} did not {what} within {} s", TIMEOUT.as_secs())]
    Timeout {
        /// The address dialled.
        api: ApiEndpoint,
        /// `accept the connection` or `answer METHOD PATH`.
        what: String,
    },
    /// The HTTP exchange broke (connection reset, not HTTP).
    #[error("the HTTP exchange with the kairos API at {api} failed: {source}")]
    Http {
        /// The address dialled.
        api: ApiEndpoint,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// 401 without a token: the API wants one.
    #[error("{message} (the kairos API at {api} needs its token: pass --api-token-file FILE or set KAIROS_API_TOKEN)")]
    NeedsToken {
        /// The address dialled.
        api: ApiEndpoint,
        /// The server's `error` text.
        message: String,
    },
    /// 401 with a token: not the API's.
    #[error("{message} (the kairos API at {api} refused the token given: check --api-token-file, KAIROS_API_TOKEN or KAIROS_API_TOKEN_FILE)")]
    WrongToken {
        /// The address dialled.
        api: ApiEndpoint,
        /// The server's `error` text.
        message: String,
    },
    /// Any other 4xx/5xx; `message` is the server's `error` text.
    #[error("{message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The server's `error` text (or a description of the reply without one).
        message: String,
    },
    /// A 2xx reply whose body is not the JSON the command needs.
    #[error("the kairos API at {api} answered {request} with something that is not {expected}: {snippet}")]
    BadReply {
        /// The address dialled.
        api: ApiEndpoint,
        /// `METHOD PATH`.
        request: String,
        /// What was expected (`JSON`, `a JSON object`, ...).
        expected: &'static str,
        /// The start of the body.
        snippet: String,
    },
    /// The token file could not be read.
    #[error("cannot read the API token from {}: {source}", path.display())]
    ReadToken {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The token file or variable is empty.
    #[error("the API token from {from} is empty")]
    EmptyToken {
        /// `--api-token-file PATH` or `KAIROS_API_TOKEN`.
        from: String,
    },
    /// The async runtime could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
}

impl ApiError {
    /// Whether the operator's input is to blame (exit 2): the server refused a
    /// bucket, key or value (400) or a value too large (413), or a token
    /// given was empty. Everything else is an operational failure (exit 1).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ApiError::Status { status: 400 | 413, .. } | ApiError::EmptyToken { .. }
        )
    }
}

/// Where the bearer token can come from, in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct TokenSources {
    /// `--api-token-file FILE`.
    pub file: Option<PathBuf>,
    /// `KAIROS_API_TOKEN`: the token itself (ignored when empty).
    pub env_token: Option<String>,
    /// `KAIROS_API_TOKEN_FILE`: a file holding it (as the agent reads it).
    pub env_file: Option<PathBuf>,
}

impl TokenSources {
    /// The sources of this process: `file` from the command line, the rest
    /// from the environment.
    pub fn from_process(file: Option<PathBuf>) -> Self {
        TokenSources {
            file,
            env_token: std::env::var("KAIROS_API_TOKEN").ok(),
            env_file: std::env::var_os("KAIROS_API_TOKEN_FILE").map(PathBuf::from),
        }
    }

    /// The token: `--api-token-file`, else `KAIROS_API_TOKEN`, else the file
    /// `KAIROS_API_TOKEN_FILE`, else none. Surrounding whitespace is dropped;
    /// an empty token file is an error.
    pub fn load(&self) -> Result<Option<String>, ApiError> {
        let read = |path: &Path, from: &str| -> Result<(String, String), ApiError> {
            let text = std::fs::read_to_string(path).map_err(|source| ApiError::ReadToken {
                path: path.to_owned(),
                source,
            })?;
            Ok((text, format!("{from} {}", path.display())))
        };
        let env_token = self.env_token.as_deref().filter(|t| !t.trim().is_empty());
        let (text, from) = match (&self.file, env_token, &self.env_file) {
            (Some(path), _, _) => read(path, "--api-token-file")?,
            (None, Some(token), _) => (token.to_owned(), "KAIROS_API_TOKEN".to_owned()),
            (None, None, Some(path)) => read(path, "KAIROS_API_TOKEN_FILE")?,
            (None, None, None) => return Ok(None),
        };
        let token = text.trim();
        if token.is_empty() {
            return Err(ApiError::EmptyToken { from });
        }
        Ok(Some(token.to_owned()))
    }
}

/// A successful (2xx) reply.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `METHOD PATH`, for messages.
    pub request: String,
    /// The body as received.
    pub body: Bytes,
}

/// A client of one API address.
#[derive(Debug)]
pub struct ApiClient {
    endpoint: ApiEndpoint,
    token: Option<String>,
    runtime: Runtime,
}

impl ApiClient {
    /// A client of `endpoint`, sending `token` as a bearer token if given.
    pub fn new(endpoint: ApiEndpoint, token: Option<String>) -> Result<Self, ApiError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(ApiError::Runtime)?;
        Ok(ApiClient {
            endpoint,
            token,
            runtime,
        })
    }

    /// `GET path`, the reply parsed as JSON.
    pub fn get_json(&self, path: &str) -> Result<serde_json::Value, ApiError> {
        let reply = self.request(Method::GET, path, None)?;
        self.json(&reply)
    }

    /// Parses a reply's body as JSON.
    pub fn json(&self, reply: &Reply) -> Result<serde_json::Value, ApiError> {
        serde_json::from_slice(&reply.body).map_err(|_| self.bad_reply(reply, "JSON"))
    }

    /// The error for a reply that is not what the command expected.
    pub fn bad_reply(&self, reply: &Reply, expected: &'static str) -> ApiError {
        ApiError::BadReply {
            api: self.endpoint.clone(),
            request: reply.request.clone(),
            expected,
            snippet: snippet(&reply.body),
        }
    }

    /// Sends one request and returns its 2xx reply; any other status is an
    /// error carrying the server's `error` text.
    pub fn request(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Result<Reply, ApiError> {
        let request = format!("{method} {path}");
        let (status, body) = self.runtime.block_on(self.exchange(method, path, body))?;
        if status.is_success() {
            return Ok(Reply { request, body });
        }
        let message = error_text(&body).unwrap_or_else(|| {
            let text = snippet(&body);
            let reason = status.canonical_reason().unwrap_or("");
            if text.is_empty() {
                format!(
                    "the kairos API answered {request} with HTTP {} {reason}",
                    status.as_u16()
                )
            } else {
                format!(
                    "the kairos API answered {request} with HTTP {} {reason}: {text}",
                    status.as_u16()
                )
            }
        });
        if status == StatusCode::UNAUTHORIZED {
            let api = self.endpoint.clone();
            return Err(match self.token {
                None => ApiError::NeedsToken { api, message },
                Some(_) => ApiError::WrongToken { api, message },
            });
        }
        Err(ApiError::Status {
            status: status.as_u16(),
            message,
        })
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let timeout = |what: String| ApiError::Timeout {
            api: self.endpoint.clone(),
            what,
        };
        let connected = tokio::time::timeout(TIMEOUT, self.connect())
            .await
            .map_err(|_| timeout("accept the connection".into()))?;
        let what = format!("answer {method} {path}");
        match connected? {
            Connected::Tcp(s) => tokio::time::timeout(TIMEOUT, self.send(s, method, path, body)).await,
            Connected::Unix(s) => tokio::time::timeout(TIMEOUT, self.send(s, method, path, body)).await,
        }
        .map_err(|_| timeout(what))?
    }

    async fn connect(&self) -> Result<Connected, ApiError> {
        let connected = match &self.endpoint {
            ApiEndpoint::Tcp { host, port } => TcpStream::connect((host.as_str(), *port)).await.map(Connected::Tcp),
            ApiEndpoint::Unix(path) => UnixStream::connect(path).await.map(Connected::Unix),
        };
        connected.map_err(|source| {
            let api = self.endpoint.clone();
            match source.kind() {
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => ApiError::Unreachable { api, source },
                io::ErrorKind::PermissionDenied => ApiError::PermissionDenied { api },
                _ => ApiError::Connect { api, source },
            }
        })
    }

    async fn send<S>(
        &self,
        stream: S,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ApiError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http = |source| ApiError::Http {
            api: self.endpoint.clone(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        // The connection is driven beside the request; it ends when the reply
        // has been read and `sender` is dropped.
        let driver = tokio::spawn(conn);
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.endpoint.host_header());
        if let Some(token) = &self.token {
            builder = builder.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if body.is_some() {
            builder = builder.header(CONTENT_TYPE, "application/octet-stream");
        }
        let request = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .expect("a request built from a parsed method, an encoded path and plain headers is valid");
        let response = sender.send_request(request).await.map_err(http)?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(http)?.to_bytes();
        drop(sender);
        driver.abort();
        Ok((status, body))
    }
}

enum Connected {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The `error` field of a JSON error body.
fn error_text(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    Some(v.get("error")?.as_str()?.to_owned())
}

/// The start of a body, on one line, for an error message.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 80;
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}...")
    } else if one_line.is_empty() {
        "an empty body".to_owned()
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_sources_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        let env_file = dir.path().join("env-token");
        std::fs::write(&file, "  s3cret\n").unwrap();
        std::fs::write(&env_file, "from-env-file\n").unwrap();
        let load = |file: Option<&Path>, env_token: Option<&str>, env_file: Option<&Path>| {
            TokenSources {
                file: file.map(Path::to_owned),
                env_token: env_token.map(str::to_owned),
                env_file: env_file.map(Path::to_owned),
            }
            .load()
        };
        let ok = |r: Result<Option<String>, ApiError>| r.unwrap();
        assert_eq!(
            ok(load(Some(&file), Some("env"), Some(&env_file))).as_deref(),
            Some("s3cret")
        );
        assert_eq!(ok(load(None, Some("env\n"), Some(&env_file))).as_deref(), Some("env"));
        assert_eq!(
            ok(load(None, Some(""), Some(&env_file))).as_deref(),
            Some("from-env-file")
        );
        assert_eq!(ok(load(None, None, Some(&env_file))).as_deref(), Some("from-env-file"));
        assert_eq!(ok(load(None, Some(" "), None)), None);
        assert_eq!(ok(load(None, None, None)), None);
        std::fs::write(&file, "\n").unwrap();
        let e = load(Some(&file), None, None).unwrap_err();
        assert!(e.is_bad_input(), "{e}");
        assert!(e.to_string().starts_with("the API token from --api-token-file "), "{e}");
        let e = load(Some(&dir.path().join("missing")), None, None).unwrap_err();
        assert!(matches!(e, ApiError::ReadToken { .. }) && !e.is_bad_input(), "{e}");
    }

    #[test]
    fn error_text_is_the_servers() {
        assert_eq!(
            error_text(br#"{"error": "no key k in bucket b"}"#).as_deref(),
            Some("no key k in bucket b")
        );
        assert_eq!(error_text(b"<html>"), None);
        assert_eq!(error_text(br#"{"message": "x"}"#), None);
    }

    #[test]
    fn snippets_are_one_short_line() {
        assert_eq!(snippet(b"<html>\n  <body>"), "<html> <body>");
        assert_eq!(snippet(b""), "an empty body");
        let long = "x".repeat(200);
        assert_eq!(snippet(long.as_bytes()).len(), 83);
    }

    #[test]
    fn unreachable_names_the_address_and_the_fix() {
        let client = ApiClient::new("unix:///nonexistent/kairos.sock".parse().unwrap(), None).unwrap();
        let e = client.get_json("/api/summary").unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot reach the kairos API at unix:///nonexistent/kairos.sock: is `kairos agent` or \
             `kairos bridge` running? (set --api or KAIROS_API)"
        );
    }
}
