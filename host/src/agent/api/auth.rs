//! Who may call the API: the bearer token ([`require_token`]), where the
//! agent reads it ([`token_from_env`]), and the rule that an API reachable
//! from other machines must have one ([`check_exposure`]).
//!
//! The token is compared in constant time. It is never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;
use crate::config::agent::ApiAddress;

/// The environment variable holding the API token.
pub const TOKEN_ENV: &str = "KAIROS_API_TOKEN";
/// The environment variable naming a file that holds the API token (read
/// when [`TOKEN_ENV`] is not set; surrounding whitespace is ignored).
pub const TOKEN_FILE_ENV: &str = "KAIROS_API_TOKEN_FILE";

/// The API token from [`TOKEN_ENV`], else from the file [`TOKEN_FILE_ENV`]
/// names; `Ok(None)` when neither is set (or the value is empty).
pub fn token_from_env() -> Result<Option<String>, String> {
    if let Some(t) = std::env::var_os(TOKEN_ENV) {
        let t = t.into_string().map_err(|_| format!("{TOKEN_ENV} is not valid UTF-8"))?;
        return Ok(non_empty(t.trim()));
    }
    let Some(path) = std::env::var_os(TOKEN_FILE_ENV) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the API token file {}: {e}", path.to_string_lossy()))?;
    Ok(non_empty(text.trim()))
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

/// Refuses an API on a TCP address other machines can reach (not
/// loopback) without a token: anyone there could read and write the ledger.
pub fn check_exposure(addr: &ApiAddress, token: Option<&str>) -> Result<(), String> {
    match addr {
        ApiAddress::Tcp(a) if !a.ip().is_loopback() && token.is_none_or(str::is_empty) => Err(format!(
            "the API on {a} would be reachable from other machines without authentication: set a token with \
             {TOKEN_ENV} (or {TOKEN_FILE_ENV}), or listen on 127.0.0.1:{} or a unix socket",
            a.port()
        )),
        _ => Ok(()),
    }
}

/// The middleware of the guarded routes: 401 unless the request carries
/// `Authorization: Bearer <token>`.
pub(super) async fn require_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    match given {
        Some(t) if same(t.as_bytes(), token.as_bytes()) => next.run(request).await,
        Some(_) => unauthorized("the API token is wrong"),
        None => unauthorized("this API needs a token: send Authorization: Bearer <token>"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, message).into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Whether `a == b`, in time that depends only on their lengths.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reachable_api_needs_a_token() {
        let public = ApiAddress::Tcp("0.0.0.0:8080".parse().unwrap());
        let err = check_exposure(&public, None).unwrap_err();
        assert!(err.contains(TOKEN_ENV), "{err}");
        assert!(check_exposure(&public, Some("")).is_err());
        assert_eq!(check_exposure(&public, Some("s3cret")), Ok(()));
        let lo = ApiAddress::Tcp("127.0.0.1:8080".parse().unwrap());
        assert_eq!(check_exposure(&lo, None), Ok(()));
        let lo6 = ApiAddress::Tcp("[::1]:8080".parse().unwrap());
        assert_eq!(check_exposure(&lo6, None), Ok(()));
        let unix = ApiAddress::Unix("/run/kairos.sock".into());
        assert_eq!(check_exposure(&unix, None), Ok(()));
    }

    #[test]
    fn comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
        assert!(same(b"", b""));
    }
}
