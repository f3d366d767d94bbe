//! Where the operator commands find the kairos API ([`ApiEndpoint`], parsed
//! from `--api` / `KAIROS_API`) and how a ledger path is written into a URL
//! ([`encode_segment`]). Pure: nothing here opens a socket.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// The API address when neither `--api` nor `KAIROS_API` is given: the
/// agent's and the bridge's default listen address.
pub const DEFAULT_API: &str = "127.0.0.1:8080";

/// An API address: `HOST:PORT`, `http://HOST[:PORT][/]` or `unix:///PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiEndpoint {
    /// Plain HTTP over TCP.
    Tcp {
        /// A host name or an IP literal (IPv6 without brackets).
        host: String,
        /// The port.
        port: u16,
    },
    /// HTTP over a unix socket.
    Unix(PathBuf),
}

impl ApiEndpoint {
    /// The `Host` header to send.
    pub fn host_header(&self) -> String {
        match self {
            ApiEndpoint::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            ApiEndpoint::Tcp { host, port } => format!("{host}:{port}"),
            ApiEndpoint::Unix(_) => "localhost".to_owned(),
        }
    }
}

impl fmt::Display for ApiEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiEndpoint::Tcp { .. } => f.write_str(&self.host_header()),
            ApiEndpoint::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl FromStr for ApiEndpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(path) = s.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(format!(
                    "`{s}`: a unix socket needs an absolute path, e.g. unix:///run/kairos-mesh.sock"
                ));
            }
            return Ok(ApiEndpoint::Unix(PathBuf::from(path)));
        }
        if s.starts_with("https://") {
            return Err(
                "the kairos API speaks plain HTTP: use http://HOST:PORT (reach a remote one over \
                        the overlay or an ssh tunnel)"
                    .into(),
            );
        }
        let (rest, default_port) = match s.strip_prefix("http://") {
            Some(rest) => (rest.strip_suffix('/').unwrap_or(rest), Some(80)),
            None if s.contains("://") => {
                return Err(format!("`{s}`: expected HOST:PORT, http://HOST:PORT or unix:///PATH"));
            }
            None => (s, None),
        };
        if rest.contains('/') {
            return Err(format!(
                "`{s}`: the API address takes no path (the commands add /api/...)"
            ));
        }
        let (host, port) =
            split_host_port(rest).ok_or_else(|| format!("`{s}`: expected HOST:PORT, e.g. 127.0.0.1:8080"))?;
        let port = match (port, default_port) {
            (Some(p), _) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("`{p}` is not a port (1 to 65535)"))?,
            (None, Some(d)) => d,
            (None, None) => return Err(format!("`{s}` has no port: write HOST:PORT, e.g. {host}:8080")),
        };
        let valid_host = !host.is_empty()
            && (host.parse::<std::net::IpAddr>().is_ok()
                || host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'));
        if !valid_host {
            return Err(format!("`{host}` is not a host name or an IP address"));
        }
        Ok(ApiEndpoint::Tcp {
            host: host.to_owned(),
            port,
        })
    }
}

/// Splits `host:port`, `[v6]:port`, `[v6]` or `host` (port `None`).
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match s.rsplit_once(':') {
        // A bare IPv6 literal without brackets cannot carry a port.
        Some((host, _)) if host.contains(':') => None,
        Some((host, port)) => Some((host, Some(port))),
        None => Some((s, None)),
    }
}

/// Percent-encodes one URL path segment: everything but the unreserved
/// characters of RFC 3986 (`A-Z a-z 0-9 - . _ ~`), so that a `/`, `?`, `#`,
/// `%` or space in a bucket, key or value stays inside its segment.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> ApiEndpoint {
        ApiEndpoint::Tcp {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("127.0.0.1:8080".parse(), Ok(tcp("127.0.0.1", 8080)));
        assert_eq!("localhost:9000".parse(), Ok(tcp("localhost", 9000)));
        assert_eq!("[::1]:8080".parse(), Ok(tcp("::1", 8080)));
        assert_eq!("http://10.1.0.7:8080".parse(), Ok(tcp("10.1.0.7", 8080)));
        assert_eq!("http://10.1.0.7:8080/".parse(), Ok(tcp("10.1.0.7", 8080)));
        assert_eq!("http://edge-1".parse(), Ok(tcp("edge-1", 80)));
        assert_eq!("http://[fd00::1]:81".parse(), Ok(tcp("fd00::1", 81)));
        assert_eq!(
            "unix:///run/kairos-mesh.sock".parse(),
            Ok(ApiEndpoint::Unix("/run/kairos-mesh.sock".into()))
        );
    }

    #[test]
    fn refuses_what_it_cannot_dial() {
        for bad in [
            "127.0.0.1",
            "127.0.0.1:0",
            "127.0.0.1:99999",
            "https://10.1.0.7:8080",
            "ftp://x:1",
            "http://10.1.0.7:8080/api",
            "unix://relative.sock",
            "::1:8080",
            "bad host:80",
            "",
        ] {
            assert!(bad.parse::<ApiEndpoint>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn displays_as_dialled() {
        assert_eq!(tcp("127.0.0.1", 8080).to_string(), "127.0.0.1:8080");
        assert_eq!(tcp("::1", 8080).to_string(), "[::1]:8080");
        assert_eq!(
            ApiEndpoint::Unix("/run/k.sock".into()).to_string(),
            "unix:///run/k.sock"
        );
        assert_eq!(DEFAULT_API.parse::<ApiEndpoint>().unwrap().to_string(), DEFAULT_API);
    }

    #[test]
    fn encodes_segments() {
        assert_eq!(encode_segment("kairos"), "kairos");
        assert_eq!(encode_segment("a/b c%?#"), "a%2Fb%20c%25%3F%23");
        assert_eq!(encode_segment("10.1.0.7"), "10.1.0.7");
        assert_eq!(encode_segment("é"), "%C3%A9");
    }
}
