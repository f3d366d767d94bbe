//! [`Interface`]: the overlay's TUN device (`p2p.mesh.interface`, default
//! `kairos0`): created up with the configured MTU, given the node's IPv6
//! ULA at once and its IPv4 address when the core assigns one (each with
//! its prefix, which brings the route for the overlay range), and read and
//! written one IP packet at a time.
//!
//! The device is not persistent: when the agent exits, or crashes, the
//! kernel deletes it with its addresses and routes. Nothing is left behind
//! to clean up.
//!
//! The `tun` crate makes the device (the `TUNSETIFF` ioctl, MTU, up);
//! addresses go through [`super::netlink`]. Packets go through a [`TunIo`],
//! a non-blocking descriptor of the device for the data path thread
//! ([`super::pump`]), which waits on it with `poll(2)`: the runtime never
//! watches the device.
//!
//! Offloads: unless turned off, the device is made with `IFF_VNET_HDR` and
//! `TUNSETOFFLOAD` (checksum, TSO for IPv4 and IPv6), so the kernel hands
//! over TCP super-packets of up to 64 KiB with their checksums left to do,
//! and takes coalesced ones back; every read and write then starts with a
//! `virtio_net_hdr` ([`kairos_core::offload`] parses, segments and
//! coalesces). Where the kernel refuses, the device is made again without,
//! and [`Offload::Off`] says why.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use tun::AbstractDevice;

use super::netlink::{Added, Netlink, NetlinkError};

/// Prefix length of the overlay IPv6 addresses (`core::node::ula_prefix` is a /64).
pub const IPV6_PREFIX: u8 = 64;

/// Why the interface could not be made or configured.
#[derive(Debug, thiserror::Error)]
pub enum TunError {
    /// The device could not be created.
    #[error(
        "cannot create the interface {name}: {source} (is another agent or VPN using that name? set \
         p2p.mesh.interface to another one)"
    )]
    Create {
        /// The interface name.
        name: String,
        /// What the tun crate said.
        source: tun::Error,
    },
    /// The kernel did not report an index for it.
    #[error("cannot find the index of the interface {name}: {source}")]
    Index {
        /// The interface name.
        name: String,
        /// What the tun crate said.
        source: tun::Error,
    },
    /// Adding or removing an address failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// Whether the device carries a `virtio_net_hdr` on every packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offload {
    /// Checksum and TSO offloads are on.
    On,
    /// One packet per read and write, checksums complete; the reason.
    Off(String),
}

/// The `TUNSETOFFLOAD` flags asked for: checksums, TSO over IPv4 and IPv6.
const OFFLOADS: libc::c_uint = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;

/// The interface's transmit queue with offloads (the kernel's default is 500).
const TX_QUEUE_LEN: u32 = 5000;

nix::ioctl_write_int!(tun_set_offload, b'T', 208);

/// See the module docs.
pub struct Interface {
    device: tun::Device,
    offload: Offload,
    name: String,
    index: u32,
    netlink: Netlink,
    ipv4: Option<Added>,
}

impl std::fmt::Debug for Interface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interface")
            .field("name", &self.name)
            .field("index", &self.index)
            .finish()
    }
}

impl Interface {
    /// Creates `name` with `mtu`, up, with the overlay IPv6 address `ipv6`;
    /// with offloads when `offload` and the kernel allows them.
    pub async fn create(
        name: &str,
        mtu: u16,
        ipv6: Ipv6Addr,
        netlink: Netlink,
        offload: bool,
    ) -> Result<Interface, TunError> {
        let open = |vnet: bool| {
            let mut config = tun::Configuration::default();
            config.tun_name(name).mtu(mtu).up();
            config.platform_config(|c| {
                c.vnet_hdr(vnet);
            });
            let device = tun::create(&config).map_err(|source| TunError::Create {
                name: name.to_owned(),
                source,
            })?;
            device.set_nonblock().map_err(|e| TunError::Create {
                name: name.to_owned(),
                source: e.into(),
            })?;
            Ok::<_, TunError>(device)
        };
        let (device, offload) = if !offload {
            (open(false)?, Offload::Off("turned off (KAIROS_OFFLOAD=off)".to_owned()))
        } else if !cfg!(target_endian = "little") {
            (
                open(false)?,
                Offload::Off("virtio headers are read as little-endian only".to_owned()),
            )
        } else {
            let device = open(true)?;
            // SAFETY: TUNSETOFFLOAD takes an unsigned int by value on the
            // TUN file descriptor, which `device` keeps open.
            match unsafe { tun_set_offload(device.as_raw_fd(), OFFLOADS as _) } {
                Ok(_) => (device, Offload::On),
                Err(e) => {
                    // Not persistent: closing it deletes it, and the name is free again.
                    drop(device);
                    (
                        open(false)?,
                        Offload::Off(format!("the kernel refused TUNSETOFFLOAD: {e}")),
                    )
                }
            }
        };
        let index = device.tun_index().map_err(|source| TunError::Index {
            name: name.to_owned(),
            source,
        })? as u32;
        let interface = Interface {
            device,
            offload,
            name: name.to_owned(),
            index,
            netlink,
            ipv4: None,
        };
        if interface.offload == Offload::On {
            // Measured: 5.4 -> 5.9 Gbit/s for one TCP stream with the default 500.
            if let Err(e) = interface.netlink.set_txqueuelen(index, TX_QUEUE_LEN).await {
                tracing::debug!(error = %e, "cannot lengthen the interface's transmit queue");
            }
        }
        interface.netlink.add(index, IpAddr::V6(ipv6), IPV6_PREFIX).await?;
        Ok(interface)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether reads and writes carry a `virtio_net_hdr`.
    pub fn offload(&self) -> &Offload {
        &self.offload
    }

    /// Gives the interface `addr/prefix` in place of its previous IPv4 address.
    pub async fn set_ipv4(&mut self, addr: Ipv4Addr, prefix: u8) -> Result<(), TunError> {
        if let Some(old) = self.ipv4.take() {
            if old.addr == IpAddr::V4(addr) && old.prefix == prefix {
                self.ipv4 = Some(old);
                return Ok(());
            }
            if let Err(e) = self.netlink.remove(&old).await {
                tracing::warn!(error = %e, "cannot remove the previous overlay address");
            }
        }
        self.ipv4 = Some(self.netlink.add(self.index, IpAddr::V4(addr), prefix).await?);
        Ok(())
    }

    /// A descriptor of the device for reading and writing packets.
    pub fn io(&self) -> io::Result<TunIo> {
        // SAFETY: the descriptor is open while `self.device` lives, and it
        // is only borrowed here, to duplicate it.
        let fd = unsafe { BorrowedFd::borrow_raw(self.device.as_raw_fd()) };
        Ok(TunIo {
            fd: fd.try_clone_to_owned()?,
        })
    }
}

/// A duplicate descriptor of the [`Interface`]'s device: reads and writes
/// whole packets (after their `virtio_net_hdr` with offloads on), never
/// waiting. The device is deleted when the last descriptor closes.
#[derive(Debug)]
pub struct TunIo {
    fd: OwnedFd,
}

impl TunIo {
    /// Reads one packet into `buf`; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match rustix::io::read(&self.fd, &mut *buf) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }

    /// Writes one packet.
    pub fn send(&self, packet: &[u8]) -> io::Result<usize> {
        loop {
            match rustix::io::write(&self.fd, packet) {
                Err(rustix::io::Errno::INTR) => continue,
                r => return r.map_err(io::Error::from),
            }
        }
    }
}

impl AsFd for TunIo {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}
