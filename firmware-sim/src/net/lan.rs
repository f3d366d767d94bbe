//! LAN segments: how a group of hosts is attached to the internet.
//!
//! A LAN is either *public* (its hosts have public addresses and talk to the
//! internet directly) or *behind one NAT* (its hosts have addresses of a
//! private [`Subnet`](super::addr::Subnet) and reach the internet through
//! the [`NatBox`]). Either way, hosts of one LAN reach each other directly
//! and hear each other's multicast; nothing crosses a NAT inwards without a
//! mapping.
//!
//! This module owns a LAN's configuration and its attachment (addresses,
//! member hosts, gateway). It never routes: the [`Network`](super::Network)
//! does.

use std::net::Ipv4Addr;

use super::addr::Subnet;
use super::link::LinkConfig;
use super::nat::{NatBox, NatConfig};
use super::HostId;

/// How a LAN is built.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LanConfig {
    /// The NAT between this LAN and the internet, or `None` for a LAN whose
    /// hosts have public addresses.
    pub nat: Option<NatConfig>,
    /// Each host's link to the LAN segment. A datagram between two hosts of
    /// the LAN crosses two of them (sender's and receiver's). Default
    /// [`LinkConfig::lan`].
    pub lan_link: LinkConfig,
    /// The LAN's (or its NAT's) link to the internet core. A datagram between
    /// two LANs crosses both uplinks. Default [`LinkConfig::uplink`].
    pub uplink: LinkConfig,
    /// The private subnet `(address, prefix length)` behind the NAT; `None`
    /// picks the next free 10.a.b.0/24. Subnets of different LANs may
    /// overlap, as home networks do. Ignored for public LANs.
    pub subnet: Option<(Ipv4Addr, u8)>,
}

impl LanConfig {
    /// A LAN on the internet: hosts get public addresses, no NAT.
    pub const fn public() -> Self {
        LanConfig {
            nat: None,
            lan_link: LinkConfig::lan(),
            uplink: LinkConfig::uplink(),
            subnet: None,
        }
    }
    /// A private LAN behind one NAT.
    pub const fn behind_nat(nat: NatConfig) -> Self {
        LanConfig {
            nat: Some(nat),
            ..Self::public()
        }
    }
    /// With this host-to-segment link.
    pub const fn with_lan_link(mut self, link: LinkConfig) -> Self {
        self.lan_link = link;
        self
    }
    /// With this uplink.
    pub const fn with_uplink(mut self, link: LinkConfig) -> Self {
        self.uplink = link;
        self
    }
    /// With this private subnet (prefix length 8 ..= 30).
    pub const fn with_subnet(mut self, addr: Ipv4Addr, prefix: u8) -> Self {
        self.subnet = Some((addr, prefix));
        self
    }
}

/// How a LAN reaches the internet.
#[derive(Debug)]
pub(crate) enum Gateway {
    /// Hosts have public addresses.
    Public,
    /// Hosts have private addresses behind a NAT.
    Nat { subnet: Subnet, nat: Box<NatBox> },
}

/// A LAN in the running network.
#[derive(Debug)]
pub(crate) struct Lan {
    pub(crate) lan_link: LinkConfig,
    pub(crate) uplink: LinkConfig,
    pub(crate) gateway: Gateway,
    /// Member hosts, in the order they joined.
    pub(crate) hosts: Vec<HostId>,
    /// Behind a NAT, who has each private address: `subnet.host(i)` is
    /// `addressed[i]` (`None` once that host moved away; addresses are not
    /// reused).
    pub(crate) addressed: Vec<Option<HostId>>,
    /// Partition group (0: not named in the current partition).
    pub(crate) group: u32,
}

impl Lan {
    /// The host of this private LAN that has `ip`.
    pub(crate) fn private_host(&self, ip: Ipv4Addr) -> Option<HostId> {
        match &self.gateway {
            Gateway::Nat { subnet, .. } => subnet
                .index_of(ip)
                .and_then(|i| self.addressed.get(i).copied().flatten()),
            Gateway::Public => None,
        }
    }
}
