//! [`MeshSocket`]: the agent's one UDP socket for mesh traffic (handshakes,
//! transport, hellos, control), on `p2p.mesh.listen_port`.
//!
//! It is dual-stack (`[::]:port` with `IPV6_V6ONLY` off) so IPv4 and IPv6
//! peers share one port; where the kernel has no IPv6 it falls back to
//! `0.0.0.0:port`. Addresses crossing this module are canonical: the core
//! sees `1.2.3.4:5`, never `[::ffff:1.2.3.4]:5`.
//!
//! Bulk traffic goes through quinn-udp: [`MeshSocket::recv_batch`] takes
//! several messages per `recvmmsg`, each of which may carry many datagrams
//! of one sender (UDP GRO: `stride` bytes apart), and
//! [`MeshSocket::send_segments`] sends a run of equal-size datagrams to one
//! endpoint with one `sendmsg` (UDP GSO). Where the kernel or the device
//! lacks either, quinn-udp reports one segment and the same calls carry one
//! datagram at a time.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsFd;

use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

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
    /// Registered with the runtime for reads only: a registration for
    /// writes too would wake the agent after every send (the kernel frees
    /// a sent datagram's memory right away and says the socket is writable
    /// again), and a send that finds the socket full waits on a
    /// registration of its own ([`MeshSocket::writable`]).
    socket: AsyncFd<std::net::UdpSocket>,
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
        // SAFETY: the `UdpSocket` owns its descriptor, and the `AsyncFd`
        // owns the socket until it is dropped.
        let socket =
            unsafe { AsyncFd::register_with_interest(socket, Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
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

    /// Receives at least one message: `bufs[i]` gets message `i`, whose
    /// datagrams start every `meta[i].stride` bytes up to `meta[i].len`
    /// (the last may be shorter), all from `meta[i].addr` (canonical).
    /// Returns how many messages were filled.
    pub async fn recv_batch(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let n = self
            .socket
            .async_io(Interest::READABLE, |s| self.state.recv(s.into(), bufs, meta))
            .await?;
        self.drained(n, bufs.len().min(meta.len()));
        canonical_meta(&mut meta[..n]);
        Ok(n)
    }

    /// [`MeshSocket::recv_batch`] without waiting: `WouldBlock` when
    /// nothing is queued.
    pub fn try_recv_batch(&self, bufs: &mut [IoSliceMut<'_>], meta: &mut [RecvMeta]) -> io::Result<usize> {
        let n = self
            .socket
            .try_io(Interest::READABLE, |s| self.state.recv(s.into(), bufs, meta))?;
        self.drained(n, bufs.len().min(meta.len()));
        canonical_meta(&mut meta[..n]);
        Ok(n)
    }

    /// Called right after a receive that filled fewer messages than
    /// asked for, so the socket's queue was empty: tells the runtime so,
    /// and it waits for the next datagram rather than trying one more
    /// receive that would only fail (a system call saved after every
    /// receive that is not part of a burst, before the agent sleeps). No
    /// datagram is missed: the socket is registered edge-triggered, so one
    /// that arrived after that receive wakes the runtime's next wait, and
    /// nothing yields to the runtime in between. (`recvmmsg` also stops
    /// short when a receive fails partway; on this socket only a fault
    /// could, as ICMP errors are not queued on it: no `IP_RECVERR`.)
    fn drained(&self, filled: usize, asked: usize) {
        if filled < asked {
            let _ = self.socket.try_io(Interest::READABLE, |_| {
                Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
            });
        }
    }

    /// Sends `buf` to `to` as datagrams of `segment` bytes each (the last
    /// may be shorter): one `sendmsg` with UDP GSO, or one per datagram
    /// where GSO fails (quinn-udp then turns it off for later sends).
    pub async fn send_segments(&self, buf: &[u8], segment: usize, to: SocketAddr) -> io::Result<()> {
        if buf.len() <= segment {
            return self.send_to(buf, to).await.map(|_| ());
        }
        let destination = self.destination(to)?;
        let transmit = Transmit {
            destination,
            ecn: None,
            contents: buf,
            segment_size: Some(segment),
            src_ip: None,
        };
        let sent = self.sending(|s| self.state.try_send(s.into(), &transmit)).await;
        match sent {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!(error = %e, segment, len = buf.len(), "GSO send failed; sending one datagram at a time");
                for chunk in buf.chunks(segment) {
                    self.send_to(chunk, to).await?;
                }
                Ok(())
            }
        }
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.get_ref().local_addr().map(canonical)
    }

    /// Receives one datagram; its source in canonical form.
    #[cfg(test)]
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.async_io(Interest::READABLE, |s| s.recv_from(buf)).await?;
        Ok((n, canonical(from)))
    }

    /// Sends one datagram to `to`.
    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = self.destination(to)?;
        self.sending(|s| s.send_to(buf, to)).await
    }

    /// Runs the send `f` until it does not find the socket full.
    async fn sending<R>(&self, mut f: impl FnMut(&std::net::UdpSocket) -> io::Result<R>) -> io::Result<R> {
        loop {
            match f(self.socket.get_ref()) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable().await?,
                r => return r,
            }
        }
    }

    /// Waits until the socket has room to send, on a registration for
    /// writes made for this wait only (of a duplicate descriptor: the
    /// socket's own is registered for reads). A socket that has room again
    /// by the time it is registered is reported writable at once.
    async fn writable(&self) -> io::Result<()> {
        let fd = self.socket.get_ref().as_fd().try_clone_to_owned()?;
        // SAFETY: `fd` is an `OwnedFd`, owned by the `AsyncFd` until it is dropped.
        let wait = unsafe { AsyncFd::register_with_interest(fd, Interest::WRITABLE) }.map_err(|e| e.into_parts().1)?;
        wait.writable().await?.retain_ready();
        Ok(())
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

    #[tokio::test(flavor = "current_thread")]
    async fn ipv4_peers_talk_to_the_dual_stack_socket_on_loopback() {
        let a = MeshSocket::bind(0).unwrap();
        let b = MeshSocket::bind(0).unwrap();
        let b_port = b.local_addr().unwrap().port();
        let to: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), b_port);
        a.send_to(b"hello", to).await.unwrap();
        let mut buf = [0u8; 16];
        let (n, from) = b.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST), "canonical source");
        assert_eq!(from.port(), a.local_addr().unwrap().port());
    }

    /// After a receive that emptied the queue, the next datagram still
    /// wakes the receiver; after one that filled every buffer, what is
    /// left is received without a new datagram to wake it.
    #[tokio::test(flavor = "current_thread")]
    async fn a_receive_that_empties_the_queue_misses_nothing_after_it() {
        let a = MeshSocket::bind(0).unwrap();
        let b = MeshSocket::bind(0).unwrap();
        let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), b.local_addr().unwrap().port());
        let mut buf = vec![0u8; 4 * 2048];
        let mut meta = [RecvMeta::default(); 4];
        async fn recv(b: &MeshSocket, buf: &mut [u8], meta: &mut [RecvMeta], messages: usize) -> usize {
            let mut chunks = buf.chunks_mut(2048);
            let mut bufs: Vec<IoSliceMut<'_>> =
                (0..messages).map(|_| IoSliceMut::new(chunks.next().unwrap())).collect();
            let wait = b.recv_batch(&mut bufs, &mut meta[..messages]);
            tokio::time::timeout(std::time::Duration::from_secs(5), wait)
                .await
                .expect("a queued datagram was never received")
                .unwrap()
        }
        a.send_to(b"one", to).await.unwrap();
        assert_eq!(
            recv(&b, &mut buf, &mut meta, 4).await,
            1,
            "one of four: the queue was empty"
        );
        a.send_to(b"two", to).await.unwrap();
        assert_eq!(recv(&b, &mut buf, &mut meta, 4).await, 1);
        assert_eq!(&buf[..3], b"two");
        // Two queued, one taken: the second must not wait for a third.
        a.send_to(b"three", to).await.unwrap();
        a.send_to(b"four!", to).await.unwrap();
        let seen = async {
            while b.socket.try_io(Interest::READABLE, |_| Ok(())).is_err() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(5), seen)
            .await
            .expect("never readable");
        assert_eq!(recv(&b, &mut buf, &mut meta, 1).await, 1);
        assert_eq!(recv(&b, &mut buf, &mut meta, 1).await, 1);
        assert_eq!(&buf[..5], b"four!");
    }

    /// The wait for room registers a duplicate of the socket for writes
    /// beside the socket's own registration for reads, and a socket with
    /// room is reported writable at once (twice: the first registration is
    /// gone with its wait).
    #[tokio::test(flavor = "current_thread")]
    async fn a_wait_for_room_ends_at_once_on_a_socket_with_room() {
        let a = MeshSocket::bind(0).unwrap();
        for _ in 0..2 {
            tokio::time::timeout(std::time::Duration::from_secs(5), a.writable())
                .await
                .expect("a socket with room never reported writable")
                .unwrap();
        }
    }

    /// A GSO send of five datagrams arrives as five datagrams of the
    /// segment size (the last shorter), in order, whether the kernel
    /// coalesces them again (GRO) or not.
    #[tokio::test(flavor = "current_thread")]
    async fn a_segmented_send_arrives_as_its_datagrams() {
        let a = MeshSocket::bind(0).unwrap();
        let b = MeshSocket::bind(0).unwrap();
        let to = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), b.local_addr().unwrap().port());
        let segment = 1200;
        let payload: std::vec::Vec<u8> = (0..segment * 4 + 300).map(|i| (i % 251) as u8).collect();
        a.send_segments(&payload, segment, to).await.unwrap();
        let mut got: std::vec::Vec<std::vec::Vec<u8>> = std::vec::Vec::new();
        let mut storage = vec![vec![0u8; 65536]; 4];
        while got.len() < 5 {
            let mut meta = [RecvMeta::default(); 4];
            let mut bufs: std::vec::Vec<IoSliceMut<'_>> = storage.iter_mut().map(|b| IoSliceMut::new(b)).collect();
            let n = b.recv_batch(&mut bufs, &mut meta).await.unwrap();
            for (m, buf) in meta[..n].iter().zip(&bufs) {
                assert_eq!(m.addr.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
                for d in buf[..m.len].chunks(m.stride) {
                    got.push(d.to_vec());
                }
            }
        }
        let want: std::vec::Vec<&[u8]> = payload.chunks(segment).collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert_eq!(g.as_slice(), w);
        }
        assert!(a.offload().gso_segments >= 1 && b.offload().gro_segments >= 1);
    }
}
