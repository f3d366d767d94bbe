//! The userspace overlay of `kairos bridge --userspace`: no TUN, no root.
//! The bridge's overlay addresses live on a smoltcp interface inside the
//! process, and local programs reach the mesh through it:
//!
//! | file | owns |
//! |---|---|
//! | `device` | the smoltcp device: bounded packet queues in and out |
//! | `stack` | the smoltcp interface and sockets, one task, the splicing |
//! | `socks` | the SOCKS5 proxy (RFC 1928 CONNECT, no auth) |
//! | `forward` | `--forward LISTEN=TARGET` port forwards |
//!
//! The data path thread hands the packets the node delivers to the stack
//! ([`Link::sink`] is its [`PacketSink`] in place of the TUN), and the
//! driver gives the packets the stack makes to `handle_ip_packet`, one
//! per call (no offloads: smoltcp's segments are MTU-size already). It
//! tells the stack the overlay address when the mesh assigns or moves it,
//! and the members' names for SOCKS domain names.
//!
//! Only TCP is carried (SOCKS CONNECT and forwards); the stack answers
//! nothing else (no ping, no UDP). The listeners are bound at start, before
//! the node joins, so a port in use is an error at once.

pub mod device;
pub mod forward;
pub mod socks;
pub mod stack;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::datapath::PacketSink;
use super::dns::Names;
pub use forward::ForwardSpec;
use stack::{Channels, Stack};

/// The interface name the API shows for the userspace stack.
pub const INTERFACE: &str = "userspace";
/// The SOCKS5 proxy's default address.
pub const DEFAULT_SOCKS: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 1080);

/// What `--userspace` offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserspaceConfig {
    /// The SOCKS5 proxy's address, `None` with `--socks off`.
    pub socks: Option<SocketAddr>,
    /// The port forwards.
    pub forwards: Vec<ForwardSpec>,
}

/// The userspace listeners, as `GET /api/summary` shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserspaceInfo {
    /// The SOCKS5 proxy's address, `null` when off.
    pub socks: Option<String>,
    /// The forwards, `LISTEN=TARGET`.
    pub forwards: Vec<String>,
}

/// The listeners, bound.
#[derive(Debug)]
pub struct Listeners {
    socks: Option<TcpListener>,
    forwards: Vec<(TcpListener, SocketAddr)>,
    info: UserspaceInfo,
}

/// A listener that cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {source}")]
pub struct BindError {
    /// `SOCKS` or `forward`.
    pub what: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    pub source: io::Error,
}

impl Listeners {
    /// Binds the SOCKS and forward listeners of `config`.
    pub async fn bind(config: &UserspaceConfig) -> Result<Listeners, BindError> {
        let bind = |what: &'static str, addr: SocketAddr| async move {
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| BindError { what, addr, source })?;
            let local = listener
                .local_addr()
                .map_err(|source| BindError { what, addr, source })?;
            Ok::<_, BindError>((listener, local))
        };
        let mut info = UserspaceInfo::default();
        let socks = match config.socks {
            Some(addr) => {
                let (l, local) = bind("SOCKS", addr).await?;
                info.socks = Some(local.to_string());
                Some(l)
            }
            None => None,
        };
        let mut forwards = Vec::new();
        for f in &config.forwards {
            let (l, local) = bind("forward", f.listen).await?;
            info.forwards.push(format!("{local}={}", f.target));
            forwards.push((l, f.target));
        }
        Ok(Listeners { socks, forwards, info })
    }

    /// What the API shows.
    pub fn info(&self) -> &UserspaceInfo {
        &self.info
    }
}

/// The driver's side of the running stack. Dropping it stops the stack
/// and its listeners.
#[derive(Debug)]
pub struct Link {
    channels: Channels,
    names: watch::Sender<Names>,
    tasks: Vec<JoinHandle<()>>,
}

impl Link {
    /// The mesh assigned (or moved) this node's overlay IPv4 address.
    pub fn set_address(&self, addr: Ipv4Addr) {
        let _ = self.channels.address.send(addr);
    }

    /// Where delivered packets go.
    pub fn sink(&self) -> StackSink {
        StackSink(self.channels.inbound.clone())
    }

    /// The members' names, for SOCKS domain names.
    pub fn names(&self) -> &watch::Sender<Names> {
        &self.names
    }

    /// The next packet the stack made (never returns `None` while the
    /// stack runs).
    pub async fn recv(&mut self) -> Option<Vec<u8>> {
        self.channels.outbound.recv().await
    }

    /// A packet the stack made, without waiting.
    pub fn try_recv(&mut self) -> Option<Vec<u8>> {
        self.channels.outbound.try_recv().ok()
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Where the data path thread writes packets for the stack.
#[derive(Debug, Clone)]
pub struct StackSink(mpsc::Sender<Vec<u8>>);

impl PacketSink for StackSink {
    fn write(&self, packet: &[u8]) -> io::Result<usize> {
        // A full queue drops the packet, as a NIC's ring would; TCP
        // sends it again.
        if self.0.try_send(packet.to_vec()).is_err() {
            tracing::trace!(len = packet.len(), "the userspace stack is behind; packet dropped");
        }
        Ok(packet.len())
    }
}

/// Starts the stack for an overlay with `mtu` and this node's addresses
/// (`ipv4` once assigned, in a `/ipv4_prefix` range), and the listeners'
/// tasks. Needs a tokio runtime.
pub fn start(listeners: Listeners, mtu: usize, ipv4: Option<Ipv4Addr>, ipv4_prefix: u8, ipv6: Ipv6Addr) -> Link {
    let (stack, handle, channels) = Stack::new(mtu, ipv4, ipv4_prefix, ipv6);
    let (names, names_rx) = watch::channel(Names::default());
    let mut tasks = vec![tokio::spawn(stack.run())];
    if let Some(l) = listeners.socks {
        tasks.push(tokio::spawn(socks::serve(l, handle.clone(), names_rx)));
    }
    for (l, target) in listeners.forwards {
        tasks.push(tokio::spawn(forward::serve(l, target, handle.clone())));
    }
    tracing::info!(
        socks = listeners.info.socks.as_deref().unwrap_or("off"),
        forwards = %listeners.info.forwards.join(" "),
        "userspace stack started (no interface)"
    );
    Link { channels, names, tasks }
}
