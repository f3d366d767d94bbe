//! DNS rebinding: a page in a local browser that names the API by a host
//! name it controls (and then resolves to 127.0.0.1) is same-origin with
//! it and may read and write everything a tokenless API serves (the ledger
//! holds the kubeconfig). So an API without a token answers only requests
//! that name it by an IP literal or `localhost`, which no other site can
//! be. Command-line clients and scripts send those anyway; a request
//! without a `Host` (HTTP/1.0, some unix-socket clients) comes from no
//! browser and passes.
//!
//! With a token nothing here applies: every route with data needs it, and
//! a rebinding page does not have it.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiError;

/// The middleware of a tokenless API: 403 unless the `Host` header names
/// the API by an IP literal or `localhost`.
pub(super) async fn require_local_host(request: Request, next: Next) -> Response {
    match request.headers().get(header::HOST).map(|v| v.to_str()) {
        None => next.run(request).await,
        Some(Ok(host)) if names_this_machine(host) => next.run(request).await,
        Some(host) => {
            let shown = host.unwrap_or("(not text)");
            ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "this API has no token, so it answers only requests to an IP address or localhost, \
                     not to {shown:?} (a web page could reach it through such a name by DNS rebinding); \
                     use http://127.0.0.1:<port>, or set a token"
                ),
            )
            .into_response()
        }
    }
}

/// Whether a `Host` value (`name`, `name:port`, `[v6]` or `[v6]:port`)
/// is an IP literal or `localhost`.
fn names_this_machine(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.strip_prefix(':').is_some_and(valid_port) => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok()
            }
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if valid_port(port) => name,
            Some(_) => return false,
            None => host,
        }
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    name.parse::<std::net::Ipv4Addr>().is_ok() || name.eq_ignore_ascii_case("localhost")
}

/// A port number.
fn valid_port(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u16>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::names_this_machine;

    #[test]
    fn ip_literals_and_localhost_name_this_machine() {
        for ok in [
            "127.0.0.1",
            "127.0.0.1:8080",
            "10.1.0.7:8080",
            "localhost",
            "LOCALHOST:8080",
            "localhost.:8080",
            "[::1]",
            "[::1]:8080",
            "[fd12:3456:789a::1]:80",
        ] {
            assert!(names_this_machine(ok), "{ok}");
        }
    }

    #[test]
    fn other_names_do_not() {
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "localhost.evil.example:8080",
            "127.0.0.1:80:80",
            "127.0.0.1:http",
            "[::1",
            "[::1]x",
            "[::1]:99999",
            "[evil.example]:80",
            "",
        ] {
            assert!(!names_this_machine(bad), "{bad}");
        }
    }
}
