//! Parsers for the text of each setting, shared by the YAML reader and the
//! environment overrides so both accept exactly the same values, plus the
//! lints that turn a legal but suspicious value into a warning, and
//! [`describe`], which says what a YAML value is for "found ..." messages.
//!
//! A parser's error is the "expected ..." part of a message; the caller adds
//! what it found. Nothing here ever echoes a network token.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use kairos_core::token::{NetworkToken, OverlayRange};
use serde_yaml_ng::Value;

use super::agent::{ApiAddress, Endpoint, LogLevel, Role, RELAYED_OVERHEAD};

/// Longest network id accepted.
const MAX_NETWORK_ID: usize = 64;
/// Longest interface name Linux accepts (IFNAMSIZ - 1).
const MAX_INTERFACE: usize = 15;
/// Longest unix socket path (sun_path is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// A network token. The error names the failed check, never the token.
pub fn token(s: &str) -> Result<NetworkToken, String> {
    if s.trim().is_empty() {
        return Err("expected a network token, found an empty string (make one with `kairos generate-token`)".into());
    }
    NetworkToken::decode(s).map_err(|e| format!("invalid network token: {e}"))
}

/// A network id: which cluster of the network a node belongs to.
pub fn network_id(s: &str) -> Result<String, String> {
    if s.len() > MAX_NETWORK_ID || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "expected a network id of at most {MAX_NETWORK_ID} characters without spaces"
        ));
    }
    Ok(s.to_owned())
}

/// `master`, `worker` or `auto` (any case).
pub fn role(s: &str) -> Result<Role, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "master" => Ok(Role::Master),
        "worker" => Ok(Role::Worker),
        "auto" | "" => Ok(Role::Auto),
        _ => Err("expected a role: master, worker or auto".into()),
    }
}

/// A log level, as Kairos and its Go loggers name them.
pub fn log_level(s: &str) -> Result<LogLevel, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "trace" => Ok(LogLevel::Trace),
        "debug" => Ok(LogLevel::Debug),
        "info" | "" => Ok(LogLevel::Info),
        "warn" | "warning" => Ok(LogLevel::Warn),
        "error" | "fatal" | "panic" => Ok(LogLevel::Error),
        _ => Err("expected a log level: trace, debug, info, warn or error".into()),
    }
}

/// A UDP port, 0 meaning any free port.
pub fn port(s: &str) -> Result<u16, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(p) = t.parse::<u16>() {
            return Ok(p);
        }
    }
    Err(PORT_EXPECTED.into())
}

/// The "expected" text of a port.
pub const PORT_EXPECTED: &str = "expected a port number 0-65535";

/// The "expected" text of an MTU.
pub const MTU_EXPECTED: &str = "expected an MTU from 1280 (the IPv6 minimum) to 9000 (jumbo frames)";

/// A member to dial: `IPv4:PORT`, `[IPv6]:PORT` or `HOST:PORT`.
pub fn endpoint(s: &str) -> Result<Endpoint, String> {
    const EXPECTED: &str = "expected HOST:PORT, e.g. 203.0.113.7:51820 or [2001:db8::1]:51820";
    let s = s.trim();
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err("expected an endpoint with a port other than 0 (port 0 cannot be dialled)".into());
        }
        if addr.ip().is_unspecified() {
            return Err("expected an endpoint with a real address (0.0.0.0 or :: cannot be dialled)".into());
        }
        return Ok(Endpoint::Addr(addr));
    }
    let (host, port) = s.rsplit_once(':').ok_or(EXPECTED)?;
    if host.contains(':') || host.starts_with('[') {
        return Err("expected an IPv6 endpoint as [ADDR]:PORT, e.g. [2001:db8::1]:51820".into());
    }
    if !is_host_name(host) {
        return Err(EXPECTED.into());
    }
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("{EXPECTED} (port 1-65535)")),
        Ok(port) => Ok(Endpoint::Name {
            host: host.to_owned(),
            port,
        }),
    }
}

/// Whether `h` is a DNS host name: dot-separated labels of letters, digits
/// and inner hyphens, not all digits (that would be a mangled IPv4 address).
fn is_host_name(h: &str) -> bool {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    !h.is_empty()
        && h.len() <= 253
        && h.trim_end_matches('.').split('.').all(label_ok)
        && !h.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// An overlay IPv4 range in CIDR form, with room for at least two nodes.
pub fn overlay(s: &str) -> Result<OverlayRange, String> {
    let r: OverlayRange = s.parse().map_err(|e| format!("{e}"))?;
    if r.prefix_len() > 30 {
        return Err("expected an IPv4 range with room for nodes (a prefix of /30 or shorter)".into());
    }
    Ok(r)
}

/// A Linux network interface name.
pub fn interface(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= MAX_INTERFACE
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "expected an interface name of 1 to {MAX_INTERFACE} letters, digits, '-', '_' or '.'"
        ))
    }
}

/// A directory path.
pub fn state_dir(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() || s.contains('\0') {
        return Err("expected a directory path, e.g. /var/lib/kairos-mesh".into());
    }
    Ok(PathBuf::from(s))
}

/// `IP:PORT`, `localhost:PORT` or `unix:///absolute/path.sock`.
pub fn api(s: &str) -> Result<ApiAddress, String> {
    const EXPECTED: &str = "expected IP:PORT (e.g. 127.0.0.1:8080) or unix:///path/to.sock";
    let s = s.trim();
    if let Some(path) = s.strip_prefix("unix://") {
        if !path.starts_with('/') {
            return Err("expected an absolute socket path after unix://, e.g. unix:///run/kairos-mesh.sock".into());
        }
        if path.len() > MAX_SOCKET_PATH || path.contains('\0') {
            return Err(format!("expected a socket path of at most {MAX_SOCKET_PATH} bytes"));
        }
        return Ok(ApiAddress::Unix(PathBuf::from(path)));
    }
    let addr = match s.strip_prefix("localhost:") {
        Some(p) => p
            .parse::<u16>()
            .map(|p| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p))
            .map_err(|_| EXPECTED.to_owned())?,
        None => s.parse::<SocketAddr>().map_err(|_| EXPECTED.to_owned())?,
    };
    if addr.port() == 0 {
        return Err("expected an API port other than 0 (clients could not find it)".into());
    }
    Ok(ApiAddress::Tcp(addr))
}

/// A warning for an MTU too large for relayed traffic on a 1500-byte underlay.
pub fn lint_mtu(mtu: u16) -> Option<String> {
    (mtu + RELAYED_OVERHEAD > 1500).then(|| {
        format!(
            "an MTU of {mtu} leaves no room for relayed traffic on a 1500-byte underlay ({mtu} + {RELAYED_OVERHEAD} \
             bytes of headers > 1500): relayed packets will be dropped unless every underlay path carries {} bytes",
            mtu + RELAYED_OVERHEAD
        )
    })
}

/// A warning for an API reachable from other machines: it needs a token there.
pub fn lint_api(api: &ApiAddress) -> Option<String> {
    match api {
        ApiAddress::Tcp(a) if !a.ip().is_loopback() => Some(format!(
            "{a} is reachable from other machines, so the API needs a bearer token there (the agent \
             refuses to start without KAIROS_API_TOKEN or KAIROS_API_TOKEN_FILE); prefer 127.0.0.1:{} or a \
             unix socket",
            a.port()
        )),
        _ => None,
    }
}

/// A warning for an overlay range that is not private address space.
pub fn lint_overlay(r: &OverlayRange) -> Option<String> {
    const PRIVATE: [([u8; 4], u8); 4] = [
        ([10, 0, 0, 0], 8),
        ([172, 16, 0, 0], 12),
        ([192, 168, 0, 0], 16),
        ([100, 64, 0, 0], 10),
    ];
    let inside = |&(net, len): &([u8; 4], u8)| {
        r.prefix_len() >= len && OverlayRange::new(Ipv4Addr::from(net), len).is_some_and(|b| b.contains(r.network()))
    };
    (!PRIVATE.iter().any(inside)).then(|| {
        format!(
            "{r} is not private address space (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10): \
             overlay addresses would hide real hosts of the internet"
        )
    })
}

/// A warning for a relative state directory.
pub fn lint_state_dir(p: &std::path::Path) -> Option<String> {
    p.is_relative().then(|| {
        format!(
            "{} is relative: it is resolved against the agent's working directory; use an absolute path",
            p.display()
        )
    })
}

/// What a YAML value is, for "found ..." in messages: a string quoted (and
/// shortened), a number or boolean as written, else its kind.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (an empty value)".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Sequence(_) => "a list".into(),
        Value::Mapping(_) => "a mapping".into(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// `s` in double quotes, escaped, cut to 60 characters.
pub fn quote(s: &str) -> String {
    const MAX: usize = 60;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}...")
    } else {
        format!("{s:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(port("51820"), Ok(51820));
        assert_eq!(port("0"), Ok(0));
        assert!(port("65536").is_err());
        assert!(port("+1").is_err());
        assert!(port("abc").is_err());
        assert!(port("").is_err());
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            endpoint("203.0.113.7:51820"),
            Ok(Endpoint::Addr("203.0.113.7:51820".parse().unwrap()))
        );
        assert!(matches!(endpoint("[2001:db8::1]:51820"), Ok(Endpoint::Addr(_))));
        assert_eq!(
            endpoint("seed.example.com:51820"),
            Ok(Endpoint::Name {
                host: "seed.example.com".into(),
                port: 51820
            })
        );
        assert!(endpoint("203.0.113.7:0").unwrap_err().contains("port 0"));
        assert!(endpoint("0.0.0.0:51820").unwrap_err().contains("real address"));
        assert!(endpoint("2001:db8::1:51820").unwrap_err().contains("[ADDR]:PORT"));
        assert!(
            endpoint("203.0.113:51820").is_err(),
            "a mangled IPv4 address is no host name"
        );
        assert!(endpoint("host").is_err());
        assert!(endpoint("bad_host:1").is_err());
        assert!(endpoint("host:0").is_err());
    }

    #[test]
    fn api_addresses() {
        assert_eq!(
            api("127.0.0.1:8080"),
            Ok(ApiAddress::Tcp("127.0.0.1:8080".parse().unwrap()))
        );
        assert_eq!(
            api("localhost:9090"),
            Ok(ApiAddress::Tcp("127.0.0.1:9090".parse().unwrap()))
        );
        assert_eq!(
            api("unix:///run/kairos-mesh.sock"),
            Ok(ApiAddress::Unix("/run/kairos-mesh.sock".into()))
        );
        assert!(api("unix://run/x.sock").unwrap_err().contains("absolute"));
        assert!(api(&format!("unix:///{}", "x".repeat(120))).is_err());
        assert!(api("127.0.0.1:0").unwrap_err().contains("other than 0"));
        assert!(api("8080").is_err());
        assert!(lint_api(&api("0.0.0.0:8080").unwrap()).is_some());
        assert!(lint_api(&api("[::1]:8080").unwrap()).is_none());
    }

    #[test]
    fn names_roles_levels() {
        assert_eq!(role("Master"), Ok(Role::Master));
        assert_eq!(role(""), Ok(Role::Auto));
        assert!(role("boss").is_err());
        assert_eq!(log_level("WARNING"), Ok(LogLevel::Warn));
        assert!(log_level("loud").is_err());
        assert_eq!(interface("kairos0"), Ok("kairos0".into()));
        assert!(interface("a-very-long-interface").is_err());
        assert!(interface("eth 0").is_err());
        assert!(interface("..").is_err());
        assert!(network_id("dev").is_ok());
        assert!(network_id("my net").is_err());
    }

    #[test]
    fn overlays() {
        assert!(overlay("10.1.0.0/24").is_ok());
        assert!(overlay("10.1.0.0/31").unwrap_err().contains("/30"));
        assert!(overlay("10.1.0.0").unwrap_err().contains("missing /prefix"));
        for private in ["10.1.0.0/24", "172.20.0.0/16", "192.168.5.0/24", "100.64.0.0/10"] {
            assert_eq!(lint_overlay(&private.parse().unwrap()), None, "{private}");
        }
        for public in ["8.8.8.0/24", "0.0.0.0/0", "10.0.0.0/7", "100.0.0.0/8"] {
            assert!(lint_overlay(&public.parse().unwrap()).is_some(), "{public}");
        }
    }

    #[test]
    fn mtus() {
        assert!(lint_mtu(1371).is_none());
        assert!(lint_mtu(1380).unwrap().contains("1509"));
    }

    #[test]
    fn tokens_errors_name_the_check_only() {
        let e = token("kairos_AAAA").unwrap_err();
        assert!(e.starts_with("invalid network token: "), "{e}");
        assert!(!e.contains("AAAA"));
        assert!(token("  ").unwrap_err().contains("generate-token"));
    }

    #[test]
    fn describes() {
        assert_eq!(describe(&Value::String("abc".into())), "\"abc\"");
        assert_eq!(describe(&Value::Number(7.into())), "7");
        assert_eq!(describe(&Value::Null), "nothing (an empty value)");
        assert_eq!(describe(&Value::Sequence(vec![])), "a list");
        assert!(quote(&"x".repeat(100)).ends_with("\"..."));
    }
}
