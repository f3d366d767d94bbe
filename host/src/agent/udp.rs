//! [`MeshSocket`]: the agent's one UDP socket for mesh traffic (handshakes,
//! transport, hellos, control), on `p2p.mesh.listen_port`.
//!
//! It is dual-stack (`[::]:port` with `IPV6_V6ONLY` off) so IPv4 and IPv6
//! peers share one port; where the kernel has no IPv6 it falls back to
//! `0.0.0.0:port`. Addresses crossing this module are canonical: the core
//! sees `1.2.3.4:5`, never `[::ffff:1.2.3.4]:5`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

/// Kernel socket buffers asked for: room for bursts of full-size datagrams.
const SOCKET_BUFFER: usize = 4 << 20;

/// See the module docs.
#[derive(Debug)]
pub struct MeshSocket {
    socket: UdpSocket,
    dual_stack: bool,
}

impl MeshSocket {
    /// Binds `port` (0: any free port) on every address.
    pub fn bind(port: u16) -> io::Result<MeshSocket> {
        let (socket, dual_stack) = match bind_dual_stack(port) {
            Ok(s) => (s, true),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(_) => (bind_v4(port)?, false),
        };
        let socket = UdpSocket::from_std(socket)?;
        Ok(MeshSocket { socket, dual_stack })
    }

    /// The bound address (with the port the kernel chose for port 0).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr().map(canonical)
    }

    /// Receives one datagram; its source in canonical form.
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        let (n, from) = self.socket.recv_from(buf).await?;
        Ok((n, canonical(from)))
    }

    /// Sends one datagram to `to`.
    pub async fn send_to(&self, buf: &[u8], to: SocketAddr) -> io::Result<usize> {
        let to = match (to, self.dual_stack) {
            (SocketAddr::V4(v4), true) => SocketAddr::new(IpAddr::V6(v4.ip().to_ipv6_mapped()), v4.port()),
            (SocketAddr::V6(_), false) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "this host has no IPv6: cannot reach an IPv6 endpoint",
                ))
            }
            (to, _) => to,
        };
        self.socket.send_to(buf, to).await
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
}
