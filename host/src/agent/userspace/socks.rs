//! The SOCKS5 proxy of a userspace bridge (RFC 1928, the part clients
//! use): no authentication (method `00`), the CONNECT command, and IPv4,
//! domain-name and IPv6 targets. The listener is on loopback unless the
//! operator says otherwise, so "no authentication" means "this machine's
//! users".
//!
//! A domain name is resolved without the system resolver: an address in
//! text (`10.1.0.7`, `fd00::7`) is taken as is, and any other name through
//! the mesh's names (`<hostname>`, `<hostname>.mesh`,
//! `<hostname>.<network_id>.mesh`, as the DNS of `bridge --dns` answers
//! them). A name the mesh does not know is refused with "host
//! unreachable" (`04`): nothing leaves the overlay.
//!
//! The parsing is sans-IO ([`parse_greeting`], [`parse_request`],
//! [`reply`]); [`serve`] accepts, and [`handshake`] runs one client.
//! Hand-written rather than a crate: the subset is ~150 lines, and the
//! crates that implement it (fast-socks5, socks5-server) own the outbound
//! connect, which here is a smoltcp socket behind the stack's channel.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::stack::{OpenError, StackHandle};
use crate::agent::dns::Names;

/// The protocol version byte.
const VERSION: u8 = 5;
/// Method: no authentication.
const NO_AUTH: u8 = 0x00;
/// Method: none of the offered ones is acceptable.
const NO_ACCEPTABLE: u8 = 0xff;
/// Command: CONNECT.
const CONNECT: u8 = 0x01;
/// How long a client has for its greeting and request.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest greeting or request (a 255-byte domain name).
const MAX_MESSAGE: usize = 4 + 1 + 255 + 2;

/// A reply code (RFC 1928 section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ReplyCode {
    /// `00`: succeeded.
    Succeeded = 0,
    /// `01`: general SOCKS server failure.
    GeneralFailure = 1,
    /// `03`: network unreachable.
    NetworkUnreachable = 3,
    /// `04`: host unreachable.
    HostUnreachable = 4,
    /// `05`: connection refused.
    ConnectionRefused = 5,
    /// `07`: command not supported.
    CommandNotSupported = 7,
    /// `08`: address type not supported.
    AddressTypeNotSupported = 8,
}

impl From<OpenError> for ReplyCode {
    fn from(e: OpenError) -> ReplyCode {
        match e {
            OpenError::NoAddress | OpenError::NotOverlay => ReplyCode::NetworkUnreachable,
            OpenError::Timeout => ReplyCode::HostUnreachable,
            OpenError::Refused => ReplyCode::ConnectionRefused,
            OpenError::TooMany | OpenError::Stopped => ReplyCode::GeneralFailure,
        }
    }
}

/// Where a CONNECT goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An address.
    Addr(SocketAddr),
    /// A domain name and port.
    Name(String, u16),
}

/// What is wrong with a client's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not SOCKS version 5: closed without a reply.
    NotSocks5,
    /// A request to refuse with this code.
    Reply(ReplyCode),
}

/// Reads the greeting (`05 N methods...`) at the start of `buf`: `None`
/// while incomplete, else the bytes it took and whether "no
/// authentication" is among the methods.
pub fn parse_greeting(buf: &[u8]) -> Result<Option<(usize, bool)>, Refusal> {
    let (Some(&version), Some(&n)) = (buf.first(), buf.get(1)) else {
        return Ok(None);
    };
    if version != VERSION {
        return Err(Refusal::NotSocks5);
    }
    let end = 2 + usize::from(n);
    match buf.get(2..end) {
        None => Ok(None),
        Some(methods) => Ok(Some((end, methods.contains(&NO_AUTH)))),
    }
}

/// Reads the request (`05 CMD 00 ATYP ADDR PORT`) at the start of `buf`:
/// `None` while incomplete, else the bytes it took and the target.
pub fn parse_request(buf: &[u8]) -> Result<Option<(usize, Target)>, Refusal> {
    if buf.len() < 4 {
        return Ok(None);
    }
    if buf[0] != VERSION {
        return Err(Refusal::NotSocks5);
    }
    let (addr_len, at) = match buf[3] {
        1 => (4, 4),
        4 => (16, 4),
        3 => match buf.get(4) {
            None => return Ok(None),
            Some(&n) => (usize::from(n), 5),
        },
        _ => return Err(Refusal::Reply(ReplyCode::AddressTypeNotSupported)),
    };
    let end = at + addr_len + 2;
    let Some(bytes) = buf.get(at..end) else {
        return Ok(None);
    };
    // The command is checked once the request is whole, so the refusal
    // is the reply to this request, not to half of it.
    if buf[1] != CONNECT {
        return Err(Refusal::Reply(ReplyCode::CommandNotSupported));
    }
    let (addr, port) = bytes.split_at(addr_len);
    let port = u16::from_be_bytes([port[0], port[1]]);
    let target = match buf[3] {
        1 => Target::Addr(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(addr).expect("4 bytes"))),
            port,
        )),
        4 => Target::Addr(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).expect("16 bytes"))),
            port,
        )),
        _ => {
            let name = std::str::from_utf8(addr).map_err(|_| Refusal::Reply(ReplyCode::HostUnreachable))?;
            Target::Name(name.to_owned(), port)
        }
    };
    Ok(Some((end, target)))
}

/// The reply with `code` and the bound address `bound`.
pub fn reply(code: ReplyCode, bound: SocketAddr) -> Vec<u8> {
    let mut out = vec![VERSION, code as u8, 0];
    match bound.ip() {
        IpAddr::V4(a) => {
            out.push(1);
            out.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.push(4);
            out.extend_from_slice(&a.octets());
        }
    }
    out.extend_from_slice(&bound.port().to_be_bytes());
    out
}

/// The address of `target`: an address in text as is, a name through the
/// mesh's `names` (IPv4 first); `None` for a name the mesh does not know.
pub fn resolve(target: &Target, names: &Names) -> Option<SocketAddr> {
    match target {
        Target::Addr(a) => Some(*a),
        Target::Name(name, port) => {
            let bare = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')).unwrap_or(name);
            if let Ok(ip) = bare.parse::<IpAddr>() {
                return Some(SocketAddr::new(ip, *port));
            }
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let addrs = names.lookup(&name)?;
            let pick = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first())?;
            Some(SocketAddr::new(*pick, *port))
        }
    }
}

/// Accepts SOCKS clients on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, stack: StackHandle, names: watch::Receiver<Names>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let (stack, names) = (stack.clone(), names.clone());
                tokio::spawn(async move {
                    if let Err(e) = handshake(stream, &stack, &names).await {
                        tracing::debug!(%peer, error = %e, "SOCKS client refused");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then go on.
                tracing::warn!(error = %e, "SOCKS listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Why a SOCKS client got no connection.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// Reading or writing the client's stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The client was too slow.
    #[error("no complete request within {} s", HANDSHAKE_TIMEOUT.as_secs())]
    Timeout,
    /// Not SOCKS5, or a request refused with a reply code.
    #[error("{0}")]
    Refused(String),
}

/// Runs one client: greeting, request, connect over the overlay, reply,
/// then hands the stream to the stack.
pub async fn handshake(
    mut stream: TcpStream,
    stack: &StackHandle,
    names: &watch::Receiver<Names>,
) -> Result<(), HandshakeError> {
    let unspecified = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);
    let mut buf = Vec::with_capacity(MAX_MESSAGE);
    let request = tokio::time::timeout(HANDSHAKE_TIMEOUT, async {
        let no_auth = loop {
            if let Some((used, no_auth)) = parse_greeting(&buf).map_err(refusal)? {
                buf.drain(..used);
                break no_auth;
            }
            read_more(&mut stream, &mut buf).await?;
        };
        if !no_auth {
            stream.write_all(&[VERSION, NO_ACCEPTABLE]).await?;
            return Err(HandshakeError::Refused(
                "the client offers no method without authentication".into(),
            ));
        }
        stream.write_all(&[VERSION, NO_AUTH]).await?;
        loop {
            match parse_request(&buf) {
                Ok(Some((used, target))) => {
                    buf.drain(..used);
                    return Ok(target);
                }
                Ok(None) => read_more(&mut stream, &mut buf).await?,
                Err(Refusal::Reply(code)) => {
                    stream.write_all(&reply(code, unspecified)).await?;
                    return Err(HandshakeError::Refused(format!("request refused with {code:?}")));
                }
                Err(r) => return Err(refusal(r)),
            }
        }
    })
    .await
    .map_err(|_| HandshakeError::Timeout)??;
    let Some(target) = resolve(&request, &names.borrow()) else {
        stream
            .write_all(&reply(ReplyCode::HostUnreachable, unspecified))
            .await?;
        return Err(HandshakeError::Refused(format!(
            "{request:?}: not an address and not a member's name"
        )));
    };
    match stack.open(target).await {
        Ok(opened) => {
            stream.write_all(&reply(ReplyCode::Succeeded, opened.local)).await?;
            tracing::debug!(%target, "SOCKS connection open");
            // Bytes after the request (a client that did not wait for the
            // reply) go first.
            stack.attach(opened, stream, buf).await;
            Ok(())
        }
        Err(e) => {
            stream.write_all(&reply(e.into(), unspecified)).await?;
            Err(HandshakeError::Refused(format!("{target}: {e}")))
        }
    }
}

fn refusal(r: Refusal) -> HandshakeError {
    HandshakeError::Refused(format!("{r:?}"))
}

/// Reads more of the handshake into `buf` (EOF and overlong are errors).
async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), HandshakeError> {
    if buf.len() >= MAX_MESSAGE {
        return Err(HandshakeError::Refused("message too long".into()));
    }
    let mut chunk = [0u8; MAX_MESSAGE];
    let n = stream.read(&mut chunk[..MAX_MESSAGE - buf.len()]).await?;
    if n == 0 {
        return Err(HandshakeError::Refused("the client closed during the handshake".into()));
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::dns::Host;

    #[test]
    fn greetings() {
        assert_eq!(parse_greeting(&[]), Ok(None));
        assert_eq!(parse_greeting(&[5]), Ok(None));
        assert_eq!(parse_greeting(&[5, 2, 0]), Ok(None), "one method of two");
        assert_eq!(parse_greeting(&[5, 1, 0]), Ok(Some((3, true))));
        assert_eq!(
            parse_greeting(&[5, 2, 2, 0, 9]),
            Ok(Some((4, true))),
            "trailing bytes kept"
        );
        assert_eq!(parse_greeting(&[5, 1, 2]), Ok(Some((3, false))), "password only");
        assert_eq!(parse_greeting(&[5, 0]), Ok(Some((2, false))));
        assert_eq!(parse_greeting(&[4, 1, 0]), Err(Refusal::NotSocks5));
    }

    #[test]
    fn requests() {
        let v4 = [5, 1, 0, 1, 10, 1, 0, 7, 0x1f, 0x90];
        assert_eq!(
            parse_request(&v4),
            Ok(Some((10, Target::Addr("10.1.0.7:8080".parse().unwrap()))))
        );
        for cut in 0..v4.len() {
            assert_eq!(parse_request(&v4[..cut]), Ok(None), "{cut} bytes");
        }
        let mut v6 = vec![5, 1, 0, 4];
        v6.extend_from_slice(&"fd00::7".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0, 80]);
        assert_eq!(
            parse_request(&v6),
            Ok(Some((22, Target::Addr("[fd00::7]:80".parse().unwrap()))))
        );
        let mut name = vec![5, 1, 0, 3, 6];
        name.extend_from_slice(b"e2e-a.");
        name.extend_from_slice(&[1, 187]);
        assert_eq!(parse_request(&name), Ok(Some((13, Target::Name("e2e-a.".into(), 443)))));
        assert_eq!(parse_request(&name[..8]), Ok(None));
        assert_eq!(
            parse_request(&[5, 2, 0, 1, 10, 1, 0, 7, 0, 80]),
            Err(Refusal::Reply(ReplyCode::CommandNotSupported)),
            "BIND"
        );
        assert_eq!(
            parse_request(&[5, 3, 0, 1, 10, 1, 0, 7, 0, 80]),
            Err(Refusal::Reply(ReplyCode::CommandNotSupported)),
            "UDP ASSOCIATE"
        );
        assert_eq!(
            parse_request(&[5, 1, 0, 2, 1, 2]),
            Err(Refusal::Reply(ReplyCode::AddressTypeNotSupported))
        );
        assert_eq!(parse_request(&[4, 1, 0, 1]), Err(Refusal::NotSocks5));
        assert_eq!(
            parse_request(&[5, 1, 0, 3, 2, 0xff, 0xfe, 0, 80]),
            Err(Refusal::Reply(ReplyCode::HostUnreachable)),
            "a name that is not UTF-8"
        );
    }

    /// Any bytes: the parsers never panic, take at most what they were
    /// given, and a prefix of a message they accept is incomplete, never
    /// an error (seeded, so a failure repeats).
    #[test]
    fn the_parsers_take_any_bytes() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = (next() % 40) as usize;
            let mut buf: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            // Mostly well-formed heads, so the deeper branches run.
            if len > 3 && next() % 4 != 0 {
                buf[0] = VERSION;
                buf[1] = [CONNECT, 2, 3][(next() % 3) as usize];
                buf[3] = [1, 3, 4, 9][(next() % 4) as usize];
                if buf[3] == 3 && len > 4 {
                    buf[4] %= 32;
                }
            }
            if let Ok(Some((used, _))) = parse_greeting(&buf) {
                assert!(used <= buf.len());
                for cut in 0..used {
                    assert_eq!(parse_greeting(&buf[..cut]), Ok(None), "{buf:?} cut at {cut}");
                }
            }
            if let Ok(Some((used, _))) = parse_request(&buf) {
                assert!(used <= buf.len());
                for cut in 0..used {
                    assert_eq!(parse_request(&buf[..cut]), Ok(None), "{buf:?} cut at {cut}");
                }
            }
        }
    }

    #[test]
    fn replies() {
        assert_eq!(
            reply(ReplyCode::Succeeded, "10.1.0.9:49152".parse().unwrap()),
            [5, 0, 0, 1, 10, 1, 0, 9, 0xc0, 0x00]
        );
        let r = reply(ReplyCode::ConnectionRefused, "[fd00::9]:1".parse().unwrap());
        assert_eq!(&r[..4], [5, 5, 0, 4]);
        assert_eq!(r.len(), 4 + 16 + 2);
        assert_eq!(ReplyCode::from(OpenError::Refused), ReplyCode::ConnectionRefused);
        assert_eq!(ReplyCode::from(OpenError::Timeout), ReplyCode::HostUnreachable);
        assert_eq!(ReplyCode::from(OpenError::NotOverlay), ReplyCode::NetworkUnreachable);
        assert_eq!(ReplyCode::from(OpenError::NoAddress), ReplyCode::NetworkUnreachable);
        assert_eq!(ReplyCode::from(OpenError::Stopped), ReplyCode::GeneralFailure);
    }

    #[test]
    fn names_resolve_through_the_mesh_only() {
        let names = Names::new(&[Host {
            hostname: "E2E-A".into(),
            network_id: Some("kairos".into()),
            ipv4: Some(Ipv4Addr::new(10, 1, 0, 7)),
            ipv6: "fd00::7".parse().unwrap(),
        }]);
        let name = |n: &str| Target::Name(n.into(), 80);
        let want = Some("10.1.0.7:80".parse().unwrap());
        assert_eq!(resolve(&name("e2e-a"), &names), want);
        assert_eq!(resolve(&name("E2E-A.kairos.mesh."), &names), want);
        assert_eq!(resolve(&name("10.1.0.8"), &names), Some("10.1.0.8:80".parse().unwrap()));
        assert_eq!(
            resolve(&name("[fd00::8]"), &names),
            Some("[fd00::8]:80".parse().unwrap())
        );
        assert_eq!(resolve(&name("example.com"), &names), None);
    }

    /// A client's whole exchange: a target outside the overlay is refused
    /// with "network unreachable", after the method reply.
    #[tokio::test]
    async fn a_client_is_told_why() {
        let (stack, handle, channels) =
            super::super::stack::Stack::new(1400, Some(Ipv4Addr::new(10, 1, 0, 1)), 24, "fd00::1".parse().unwrap());
        let stack_task = tokio::spawn(stack.run());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_names_tx, names) = watch::channel(Names::default());
        let server = tokio::spawn(serve(listener, handle, names));
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&[5, 1, 0, 5, 1, 0, 1, 192, 0, 2, 7, 0, 80]).await.unwrap();
        let mut answer = [0u8; 12];
        c.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer[..2], [5, 0], "no authentication");
        assert_eq!(answer[2..4], [5, ReplyCode::NetworkUnreachable as u8]);
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&[5, 1, 0, 5, 1, 0, 3, 4, b'n', b'o', b'n', b'e', 0, 80])
            .await
            .unwrap();
        c.read_exact(&mut answer).await.unwrap();
        assert_eq!(answer[2..4], [5, ReplyCode::HostUnreachable as u8], "unknown name");
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(&[5, 1, 2]).await.unwrap();
        let mut two = [0u8; 2];
        c.read_exact(&mut two).await.unwrap();
        assert_eq!(two, [5, 0xff], "password authentication only");
        server.abort();
        drop(channels);
        stack_task.await.unwrap();
    }
}
