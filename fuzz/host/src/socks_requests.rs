//! `socks_requests`: the input is what a SOCKS5 client sends to a rootless
//! bridge (`kairos bridge --userspace`): a greeting, then a request, read
//! the way the bridge reads them, a piece at a time as the bytes arrive
//! (`parse_greeting`, then `parse_request` on what follows; the first
//! input byte sets where each read ends).
//!
//! Checks, beyond "never panics":
//!
//! - a parser never claims more bytes than it was given, and a message it
//!   takes whole is taken the same from a longer buffer (what follows it
//!   stays unread); every shorter prefix of a whole message reads as
//!   incomplete, never as a refusal, so a client that sends slowly is
//!   never refused for it;
//! - reading the stream in pieces gives the same greeting and request as
//!   reading it at once;
//! - a target in text or a member's name resolves through the mesh's names
//!   only: a name nobody has gives no address; an address resolves to
//!   itself;
//! - every reply is 10 bytes for IPv4 (22 for IPv6), version 5, with the
//!   code asked for.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use kairos::fuzzing::{parse_greeting, parse_request, reply, resolve, Host, Names, Refusal, ReplyCode, Target};

/// What an input came to (for the seed checks).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The greeting was whole and offered "no authentication".
    pub greeted: bool,
    /// The request was whole and asked to connect to this.
    pub target: Option<String>,
    /// A refusal, with its reply code (`None` for "not SOCKS5").
    pub refused: Option<Option<u8>>,
}

fn names() -> Names {
    Names::new(&[
        Host {
            hostname: "node-a".into(),
            network_id: Some("kairos".into()),
            ipv4: Some(Ipv4Addr::new(10, 1, 0, 7)),
            ipv6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7),
        },
        Host {
            hostname: "bridge".into(),
            network_id: None,
            ipv4: None,
            ipv6: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9),
        },
    ])
}

/// One parser on `buf`, with the prefix checks.
fn checked<T: Clone + PartialEq + std::fmt::Debug>(
    buf: &[u8],
    parse: impl Fn(&[u8]) -> Result<Option<(usize, T)>, Refusal>,
) -> Result<Option<(usize, T)>, Refusal> {
    let whole = parse(buf);
    if let Ok(Some((used, ref value))) = whole {
        assert!(used > 0 && used <= buf.len(), "claimed {used} of {}", buf.len());
        let again = parse(&buf[..used]);
        assert_eq!(
            again,
            Ok(Some((used, value.clone()))),
            "the message alone reads the same"
        );
        for cut in 0..used {
            assert_eq!(parse(&buf[..cut]), Ok(None), "a prefix of {cut} bytes is incomplete");
        }
    }
    whole
}

/// Feeds `stream` in pieces of `step` bytes: the greeting, then the request.
fn in_pieces(stream: &[u8], step: usize) -> (Option<bool>, Option<Result<Target, Refusal>>) {
    let mut buf = Vec::new();
    let mut at = 0;
    let greeted = loop {
        match parse_greeting(&buf) {
            Ok(Some((used, no_auth))) => {
                buf.drain(..used);
                break Some(no_auth);
            }
            Err(_) => return (None, None),
            Ok(None) if at >= stream.len() => return (None, None),
            Ok(None) => {}
        }
        let end = (at + step).min(stream.len());
        buf.extend_from_slice(&stream[at..end]);
        at = end;
    };
    loop {
        match parse_request(&buf) {
            Ok(Some((_, t))) => return (greeted, Some(Ok(t))),
            Err(r) => return (greeted, Some(Err(r))),
            Ok(None) if at >= stream.len() => return (greeted, None),
            Ok(None) => {}
        }
        let end = (at + step).min(stream.len());
        buf.extend_from_slice(&stream[at..end]);
        at = end;
    }
}

/// Runs one input.
pub fn run(data: &[u8]) -> Outcome {
    let mut out = Outcome::default();
    let Some((&step, stream)) = data.split_first() else {
        return out;
    };
    let names = names();
    let at_once = match checked(stream, parse_greeting) {
        Ok(Some((used, no_auth))) => {
            out.greeted = no_auth;
            match checked(&stream[used..], parse_request) {
                Ok(Some((_, t))) => Some((Some(no_auth), Some(Ok(t)))),
                Ok(None) => Some((Some(no_auth), None)),
                Err(r) => Some((Some(no_auth), Some(Err(r)))),
            }
        }
        Ok(None) => None,
        Err(_) => None,
    };
    if let Some(expected) = at_once.clone() {
        assert_eq!(
            in_pieces(stream, usize::from(step % 16) + 1),
            expected,
            "pieces read as a whole"
        );
    }
    match at_once {
        Some((_, Some(Ok(target)))) => {
            let resolved = resolve(&target, &names);
            match &target {
                Target::Addr(a) => assert_eq!(resolved, Some(*a)),
                Target::Name(name, port) => {
                    if let Some(a) = resolved {
                        assert_eq!(a.port(), *port);
                        let bare = name.trim_start_matches('[').trim_end_matches(']');
                        let known = [
                            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7)),
                            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 7)),
                            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 9)),
                        ];
                        assert!(
                            bare.parse::<IpAddr>().is_ok() || known.contains(&a.ip()),
                            "{name:?} resolved to {a} outside the mesh's names"
                        );
                    }
                }
            }
            out.target = Some(format!("{target:?}"));
        }
        Some((_, Some(Err(r)))) => {
            out.refused = Some(match r {
                Refusal::NotSocks5 => None,
                Refusal::Reply(code) => Some(code as u8),
            })
        }
        _ => {}
    }
    for code in [ReplyCode::Succeeded, ReplyCode::HostUnreachable] {
        let v4 = reply(
            code,
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 9)), u16::from(step)),
        );
        assert_eq!((v4.len(), v4[0], v4[1]), (10, 5, code as u8));
        let v6 = reply(code, SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 1080));
        assert_eq!((v6.len(), v6[0], v6[1]), (22, 5, code as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/corpus/socks_requests/{name}", env!("CARGO_MANIFEST_DIR"))).expect("a seed")
    }

    #[test]
    fn the_seeds_reach_what_they_were_made_for() {
        let ok = run(&seed("connect_ipv4.bin"));
        assert!(
            ok.greeted && ok.target.as_deref().is_some_and(|t| t.contains("10.1.0.7:80")),
            "{ok:?}"
        );
        assert!(run(&seed("connect_name.bin"))
            .target
            .is_some_and(|t| t.contains("node-a")));
        assert!(run(&seed("connect_ipv6.bin")).target.is_some());
        assert!(run(&seed("trailing_data.bin")).target.is_some());
        assert_eq!(run(&seed("bind_refused.bin")).refused, Some(Some(7)));
        assert_eq!(run(&seed("bad_atyp.bin")).refused, Some(Some(8)));
        let pass = run(&seed("userpass_only.bin"));
        assert!(!pass.greeted && pass.target.is_some(), "{pass:?}");
        assert_eq!(run(&seed("socks4.bin")), Outcome::default());
    }

    #[test]
    fn names_resolve_through_the_mesh_only() {
        let names = names();
        let name = |n: &str| Target::Name(n.into(), 80);
        assert_eq!(
            resolve(&name("node-a"), &names),
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7)), 80))
        );
        assert_eq!(resolve(&name("example"), &names), None);
    }
}
