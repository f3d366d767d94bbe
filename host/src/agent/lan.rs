//! [`LanBeacons`]: the LAN discovery socket. The core seals beacons and
//! says `Destination::LanMulticast`; this module sends them to
//! [`LAN_GROUP`] on every usable IPv4 interface and hears the beacons of
//! others.
//!
//! The group and port are fixed (the core defines none): every node of
//! every network uses them, and a beacon names the sender's mesh port
//! inside its sealed body, so the mesh port itself may be anything. A node
//! without the token cannot open a beacon; one with it learns the sender's
//! keys and `source address:announced port`.
//!
//! The socket binds `0.0.0.0:LAN_PORT` with `SO_REUSEADDR` and
//! `SO_REUSEPORT`, so several agents on one host all hear the group. TTL 1:
//! beacons never leave the link. Interfaces are rescanned before each
//! beacon, so an interface that comes up later joins the group; the overlay
//! interface never does.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::UdpSocket;

use super::mesh::{host_addresses, HostAddress};

/// The IPv4 multicast group of LAN beacons: in the IPv4 Local Scope
/// (239.255.0.0/16, RFC 2365), which routers do not forward off-site.
pub const LAN_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 77, 73);
/// The UDP port of LAN beacons (one below the mesh's default port).
pub const LAN_PORT: u16 = 51819;

/// See the module docs.
#[derive(Debug)]
pub struct LanBeacons {
    socket: UdpSocket,
    /// The overlay interface, never used for beacons.
    overlay: String,
    /// Interface addresses the group was joined on.
    joined: BTreeSet<Ipv4Addr>,
}

impl LanBeacons {
    /// Opens the beacon socket and joins the group on the usable interfaces
    /// (on the default one when none is found).
    pub fn open(overlay_interface: &str) -> io::Result<LanBeacons> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.set_multicast_ttl_v4(1)?;
        // Two agents on one host (and the tests on loopback) hear each other;
        // a node ignores its own beacon.
        s.set_multicast_loop_v4(true)?;
        s.set_nonblocking(true)?;
        s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), LAN_PORT).into())?;
        let socket = UdpSocket::from_std(s.into())?;
        let mut lan = LanBeacons {
            socket,
            overlay: overlay_interface.to_owned(),
            joined: BTreeSet::new(),
        };
        lan.rescan();
        if lan.joined.is_empty() {
            SockRef::from(&lan.socket).join_multicast_v4(&LAN_GROUP, &Ipv4Addr::UNSPECIFIED)?;
        }
        Ok(lan)
    }

    /// Joins the group on interfaces that appeared since the last scan.
    fn rescan(&mut self) {
        for a in beacon_interfaces(&host_addresses(), &self.overlay) {
            if !self.joined.contains(&a) {
                match SockRef::from(&self.socket).join_multicast_v4(&LAN_GROUP, &a) {
                    Ok(()) => {
                        tracing::debug!(interface = %a, "joined the LAN beacon group");
                        self.joined.insert(a);
                    }
                    Err(e) if e.raw_os_error() == Some(libc_eaddrinuse()) => {
                        self.joined.insert(a);
                    }
                    Err(e) => tracing::debug!(interface = %a, error = %e, "cannot join the LAN beacon group"),
                }
            }
        }
    }

    /// Receives one beacon (or anything else sent to the group port).
    pub async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    /// Sends a sealed beacon to the group on every usable interface. Fails
    /// only if it could be sent on none.
    pub async fn send(&mut self, beacon: &[u8]) -> io::Result<()> {
        self.rescan();
        let to = SocketAddr::V4(SocketAddrV4::new(LAN_GROUP, LAN_PORT));
        let interfaces: Vec<Ipv4Addr> = self.joined.iter().copied().collect();
        if interfaces.is_empty() {
            return self.socket.send_to(beacon, to).await.map(drop);
        }
        let mut last_error = None;
        let mut sent = false;
        for a in interfaces {
            // One driver task owns this socket: the option cannot change
            // between setting it and the send.
            if let Err(e) = SockRef::from(&self.socket).set_multicast_if_v4(&a) {
                last_error = Some(e);
                continue;
            }
            match self.socket.send_to(beacon, to).await {
                Ok(_) => sent = true,
                Err(e) => last_error = Some(e),
            }
        }
        match (sent, last_error) {
            (false, Some(e)) => Err(e),
            _ => Ok(()),
        }
    }
}

/// `EADDRINUSE`: already a member on that interface.
fn libc_eaddrinuse() -> i32 {
    nix::errno::Errno::EADDRINUSE as i32
}

/// The IPv4 addresses of interfaces beacons go out on: up, not loopback,
/// not the overlay, one address per interface.
pub fn beacon_interfaces(addresses: &[HostAddress], overlay: &str) -> Vec<Ipv4Addr> {
    let mut seen: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for a in addresses {
        if !a.usable || a.interface == overlay || seen.contains(&a.interface.as_str()) {
            continue;
        }
        if let IpAddr::V4(v4) = a.addr {
            if !v4.is_loopback() && !v4.is_unspecified() {
                seen.push(&a.interface);
                out.push(v4);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_per_usable_interface_never_the_overlay() {
        let h = |i: &str, a: &str, usable| HostAddress {
            interface: i.into(),
            addr: a.parse().unwrap(),
            usable,
        };
        let addrs = [
            h("lo", "127.0.0.1", false),
            h("kairos0", "10.1.0.5", true),
            h("eth0", "192.168.0.9", true),
            h("eth0", "192.168.0.10", true),
            h("eth0", "fe80::1", true),
            h("eth1", "172.16.0.2", false),
            h("veth1", "10.0.0.2", true),
        ];
        assert_eq!(
            beacon_interfaces(&addrs, "kairos0"),
            vec![Ipv4Addr::new(192, 168, 0, 9), Ipv4Addr::new(10, 0, 0, 2)]
        );
    }

    #[test]
    fn the_group_is_local_scope() {
        assert!(LAN_GROUP.is_multicast());
        assert_eq!(LAN_GROUP.octets()[..2], [239, 255]);
    }
}
