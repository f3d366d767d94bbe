//! Interface addresses through rtnetlink: what `ip address add/del` does,
//! in process, with the kernel's error codes instead of a child process's
//! text. Adding an address with its prefix also installs the kernel's
//! connected route for the prefix (the overlay range, or the /64 of the
//! IPv6 ULA), so no separate route is needed.
//!
//! IPv6 addresses are added with `IFA_F_NODAD`: overlay addresses are
//! conflict free by construction, and duplicate address detection would
//! keep the address tentative (unusable) for a second after start.

use std::net::IpAddr;

use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::Handle;

/// A netlink request failed.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The netlink socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Open(#[source] std::io::Error),
    /// The kernel refused a request.
    #[error("cannot {action} {addr}/{prefix} on interface index {index}: {source}")]
    Address {
        /// "add" or "remove".
        action: &'static str,
        /// The address.
        addr: IpAddr,
        /// Its prefix length.
        prefix: u8,
        /// The interface.
        index: u32,
        /// The kernel's answer.
        source: rtnetlink::Error,
    },
}

/// An address this module added, to remove it later.
#[derive(Debug, Clone)]
pub struct Added {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    message: AddressMessage,
    index: u32,
}

/// A netlink connection (its task runs on the current tokio runtime).
#[derive(Debug, Clone)]
pub struct Netlink {
    handle: Handle,
}

impl Netlink {
    /// Opens the connection and spawns its task.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Open)?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    /// Adds `addr/prefix` to the interface `index` (replacing the same
    /// address if present, e.g. left by a crash).
    pub async fn add(&self, index: u32, addr: IpAddr, prefix: u8) -> Result<Added, NetlinkError> {
        let mut request = self.handle.address().add(index, addr, prefix).replace();
        if addr.is_ipv6() {
            request
                .message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        let message = request.message_mut().clone();
        request.execute().await.map_err(|source| NetlinkError::Address {
            action: "add",
            addr,
            prefix,
            index,
            source,
        })?;
        Ok(Added {
            addr,
            prefix,
            message,
            index,
        })
    }

    /// Sets the transmit queue length of interface `index`: a longer
    /// queue lets bursts of super-packets wait instead of being dropped.
    pub async fn set_txqueuelen(&self, index: u32, len: u32) -> Result<(), rtnetlink::Error> {
        let message = rtnetlink::LinkUnspec::new_with_index(index).txqueuelen(len).build();
        self.handle.link().set(message).execute().await
    }

    /// Removes an address added with [`Self::add`].
    pub async fn remove(&self, added: &Added) -> Result<(), NetlinkError> {
        self.handle
            .address()
            .del(added.message.clone())
            .execute()
            .await
            .map_err(|source| NetlinkError::Address {
                action: "remove",
                addr: added.addr,
                prefix: added.prefix,
                index: added.index,
                source,
            })
    }
}
