//! [`MeshSocket`]: the agent's one UDP socket for mesh traffic (handshakes,
//! transport, hellos, control), on `p2p.mesh.listen_port`.
//!
//! It is dual-stack (`[::]:port` with `IPV6_V6ONLY` off) so IPv4 and IPv6
//! peers share one port; where the kernel has no IPv6 it falls back to
//! `0.0.0.0:port`. Addresses crossing this module are canonical: the core
//! sees `1.2.3.4:5`, never `[::ffff:1.2.3.4]:5`.
//!
//! Bulk traffic goes through quinn-udp: [`MeshSocket::try_recv_batch`] takes
//! several messages per `recvmmsg`, each of which may carry many datagrams
//! of one sender (UDP GRO: `stride` bytes apart), and
//! [`MeshSocket::send_segments`] sends a run of equal-size datagrams to one
//! endpoint with one `sendmsg` (UDP GSO). Where the kernel or the device
//! lacks either, quinn-udp reports one segment and the same calls carry one
//! datagram at a time.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use std::time::Duration;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use rustix::event::{PollFd, PollFlags, Timespec};
use socket2::{Domain, Protocol, Socket, Type};

/// Kernel socket buffers asked for: room for bursts of full-size datagrams.
const SOCKET_BUFFER: usize = 4 << 20;

/// Lets the kernel and routers fragment outer datagrams (no DF bit;
/// IPv6: the sender fragments to the path's MTU). quinn-udp sets DF
/// (`IP_PMTUDISC_PROBE`) for QUIC's own path MTU discovery, which the
/// overlay does not do: with DF, a path whose MTU is smaller than the
/// interface's drops every full-size datagram, and TCP over the overlay
/// stalls (a black hole). Fragments cost speed on such a path, not
/// correctness. A UDP GSO send whose segments do not fit the route's MTU
/// fails with `EINVAL`; [`MeshSocket::send_segments`] then sends the
/// datagrams one by one (and quinn-udp stops using GSO on this socket).
fn allow_fragments(socket: &std::net::UdpSocket, dual_stack: bool) {
    #[cfg(target_os = "linux")]
    {
        use rustix::net::sockopt::{self, Ipv4PathMtuDiscovery, Ipv6PathMtuDiscovery};
        if let Err(e) = sockopt::set_ip_mtu_discover(socket, Ipv4PathMtuDiscovery::DONT) {
            tracing::debug!(error = %e, "cannot clear DF on the mesh socket");
        }
        if dual_stack {
            if let Err(e) = sockopt::set_ipv6_mtu_discover(socket, Ipv6PathMtuDiscovery::DONT) {
                tracing::debug!(error = %e, "cannot allow IPv6 fragments on the mesh socket");
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (socket, dual_stack);
}

/// See the module docs.
#[derive(Debug)]
pub struct MeshSocket {
    /// Non-blocking, and registered with no runtime: the data path thread
    /// waits on it with `poll(2)` ([`super::pump`]), and a send that finds
    /// it full waits for room the same way ([`MeshSocket::send_to`]).
    socket: std::net::UdpSocket,
    state: UdpSocketState,
    dual_stack: bool,
}

/// What the socket can batch (reported in the API's summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct UdpOffload {
    /// Datagrams per send (UDP GSO); 1 without it.
    pub gso_segments: usize,
    /// Datagrams per receive (UDP GRO); 1 without it.
    pub gro_segments: usize,
}

/// The longest a send waits for room in a full socket before it gives up
/// on the datagram (as a full device queue drops one). The queue is 4 MiB
/// and drains at link speed: a wait this long means the socket is stuck.
const SEND_WAIT: Duration = Duration::from_secs(1);

impl MeshSocket {
    /// Binds `port` (0: any free port) on every address.
    pub fn bind(port: u16) -> io::Result<MeshSocket> {
        let (socket, dual_stack) = match bind_dual_stack(port) {
            Ok(s) => (s, true),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => (bind_v4(port)?, false),
        };
        let state = UdpSocketState::new((&socket).into())?;
        // quinn-udp asks for receive timestamps, which nothing here reads:
        // off, so the kernel does not stamp every packet for them.
        #[cfg(target_os = "linux")]
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::ReceiveTimestampns, &false);
        allow_fragments(&socket, dual_stack);
        Ok(MeshSocket {
            socket,
            state,
            dual_stack,
        })
    }

    /// What the socket can batch.
    pub fn offload(&self) -> UdpOffload {
        UdpOffload {
            gso_segments: self.state.max_gso_segments(),
            gro_segments: self.state.gro_segments(),
        }
    }

    /// Receives what is queued, without waiting (`WouldBlock` when nothing
    /// is): `bufs[i]` gets message `i`, whose datagrams start every
    /// `meta[i].stride` bytes up to `meta[i].len` (the last may be
    /// shorter), all from `meta[i].addr` (canonical). Returns how many
    /// messages were filled; fewer than asked for means the queue is empty
    /// now.
    pub fn try_recv_batch(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let n = self.state.recv((&self.socket).into(), bufs, meta)?;
        canonical_meta(&mut meta[..n]);
        Ok(n)
    }

    /// Sends `buf` to `to` as datagrams of `segment` bytes each (the last
    /// may be shorter): one `sendmsg` with UDP GSO, or one per datagram
    /// where GSO fails (quinn-udp then turns it off for later sends).
    pub fn send_segments(&self, buf: &[u8], segment: usize, to: SocketAddr) -> io::Result<()> {
        if buf.len() <= segment {
            return self.send_to(buf, to).map(|_| ());
        }
        let destination = self.destination(to)?;
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: buf,
            segment_size: Some(segment),
            src_ip: None,
        };
        match self.sending(|s| self.state.try_send(s.into(), &transmit)) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, segment, len = buf.len(), "GSO send failed; sending one datagram at a time");
                for chunk in buf.chunks(segment) {
                    self.send_to(chunk, to)?;
                }
                Ok(())
            }
        }
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr().map(canonical)
    }

    /// Sends one datagram to `to`; waits for room (up to [`SEND_WAIT`])
    /// when the socket is full.
    pub fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = self.destination(to)?;
        self.sending(|s| s.send_to(buf, to))
    }

    /// Runs the send `f` until it does not find the socket full.
    fn sending<R>(&self, mut f: impl FnMut(&std::net::UdpSocket) -> io::Result<R>) -> io::Result<R> {
        loop {
            match f(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !wait(&self.socket, PollFlags::OUT, Some(SEND_WAIT))? {
                        return Err(io::Error::new(
                            io::ErrorKind::WouldBlock,
                            "the mesh socket stayed full; datagram dropped",
                        ));
                    }
                }
                r => return r,
            }
        }
    }

    /// `to` as this socket's family spells it.
    fn destination(&self, to: SocketAddr) -> io::Result<SocketAddr> {
        match (to, self.dual_stack) {
            (SocketAddr::V4(v4), true) => Ok(SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port())),
            (SocketAddr::V6(_), false) => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "this host has no IPv6: cannot reach an IPv6 endpoint",
            )),
            (to, _) => Ok(to),
        }
    }
}

fn canonical_meta(meta: &mut [RecvMeta]) {
    for m in meta {
        m.addr = canonical(m.addr);
    }
}

fn bind_dual_stack(port: u16) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_only_v6(false)?;
    tune(&s);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
    Ok(s.into())
}

fn bind_v4(port: u16) -> io::Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    tune(&s);
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())?;
    Ok(s.into())
}

/// Larger buffers where the kernel allows them; the defaults still work.
fn tune(s: &Socket) {
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
}

impl AsFd for MeshSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// Waits until `fd` is ready for `events` (or has an error to report), at
/// most `timeout` (`None`: as long as it takes). Returns whether it is.
pub fn wait(fd: &impl AsFd, events: PollFlags, timeout: Option<Duration>) -> io::Result<bool> {
    let timeout = timeout.map(|t| Timespec {
        tv_sec: t.as_secs() as _,
        tv_nsec: t.subsec_nanos() as _,
    });
    let mut fds = [PollFd::new(fd, events)];
    loop {
        match rustix::event::poll(&mut fds, timeout.as_ref()) {
            Ok(n) => return Ok(n > 0),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// `[::ffff:a.b.c.d]:p` as `a.b.c.d:p`; other addresses unchanged.
pub fn canonical(a: SocketAddr) -> SocketAddr {
    match a {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => a,
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.1]:5".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.1:5".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::1]:5".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }

    const PATIENCE: Option<Duration> = Some(Duration::from_secs(5));

    /// Receives into `bufs` what is queued, waiting for the first datagram.
    fn recv(b: &MeshSocket, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> usize {
        assert!(wait(b, PollFlags::IN, PATIENCE).unwrap(), "nothing arrived");
        b.try_recv_batch(bufs, meta).unwrap()
    }

    fn to(b: &MeshSocket) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), b.local_addr().unwrap().port())
    }

    #[test]
    fn ipv4_peers_talk_to_the_dual_stack_socket_on_loopback() {
        let a = MeshSocket::bind(0).unwrap();
        let b = MeshSocket::bind(0).unwrap();
        a.send_to(b"hello", to(&b)).unwrap();
        let mut buf = [0u8; 16];
        let mut meta = [RecvMeta::default()];
        assert_eq!(recv(&b, &mut [IoSliceMut::new(&mut buf)], &mut meta), 1);
        assert_eq!(&buf[..meta[0].len], b"hello");
        let from = meta[0].addr;
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "canonical source");
        assert_eq!(from.port(), a.local_addr().unwrap().port());
    }

    /// A receive takes what is queued up to its buffers, fails with
    /// `WouldBlock` on an empty queue, and the wait reports an empty queue
    /// as not ready and a socket with room as ready to send.
    #[test]
    fn a_receive_takes_what_is_queued_and_the_waits_report_readiness() {
        let a = MeshSocket::bind(0).unwrap();
        let b = MeshSocket::bind(0).unwrap();
        assert!(wait(&a, PollFlags::OUT, PATIENCE).unwrap(), "room to send");
        assert!(!wait(&b, PollFlags::IN, Some(Duration::from_millis(10))).unwrap());
        let mut storage = vec![0u8; 4 * 2048];
        let mut meta = [RecvMeta::default(); 4];
        let empty = {
            let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(2048).map(IoSliceMut::new).collect();
            b.try_recv_batch(&mut bufs, &mut meta).unwrap_err()
        };
        assert_eq!(empty.kind(), io::ErrorKind::WouldBlock);
        for d in [&b"one"[..], b"two", b"three"] {
            a.send_to(d, to(&b)).unwrap();
        }
        let mut got: Vec<Vec<u8>> = Vec::new();
        while got.len() < 3 {
            let mut bufs: Vec<IoSliceMut<'_>> = storage.chunks_mut(2048).map(IoSliceMut::new).collect();
            let n = recv(&b, &mut bufs[..2], &mut meta[..2]);
            assert!((1..=2).contains(&n), "at most the buffers given");
            for (m, buf) in meta[..n].iter().zip(&bufs) {
                got.push(buf[..m.len].to_vec());
            }
        }
        assert_eq!(got, [&b"one"[..], b"two", b"three"]);
    }

    /// A GSO send of five datagrams arrives as five datagrams of the
    /// segment size (the last shorter), in order, whether the kernel
    /// coalesces them again (GRO) or not.
    #[test]
    fn a_segmented_send_arrives_as_its_datagrams() {
        let a = MeshSocket::bind(0).unwrap();
        let b = MeshSocket::bind(0).unwrap();
        let segment = 1200;
        let payload: Vec<u8> = (0..segment * 4 + 300).map(|i| (i % 251) as u8).collect();
        a.send_segments(&payload, segment, to(&b)).unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut storage = vec![vec![0u8; 65536]; 4];
        while got.len() < 5 {
            let mut meta = [RecvMeta::default(); 4];
            let mut bufs: Vec<IoSliceMut<'_>> = storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let n = recv(&b, &mut bufs, &mut meta);
            for (m, buf) in meta[..n].iter().zip(&bufs) {
                assert_eq!(m.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
                for d in buf[..m.len].chunks(m.stride) {
                    got.push(d.to_vec());
                }
            }
        }
        let want: Vec<&[u8]> = payload.chunks(segment).collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.as_slice(), w);
        }
        assert!(a.offload().gso_segments >= 1 && b.offload().gro_segments >= 1);
    }
}
