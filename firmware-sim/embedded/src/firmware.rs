//! The node task: the core between two embassy-net stacks, and a small TCP
//! service on the overlay.
//!
//! [`start`] builds the underlay stack on the board's driver (a UDP socket
//! on [`PORT`](crate::PORT)) and the overlay stack on a [`TunnelDevice`];
//! the firmware then runs four tasks: both stacks' runners, [`mesh`] and
//! [`serve`].
//!
//! - The mesh loop waits for a datagram, a packet from the overlay stack or
//!   the core's next timer, hands it to the core, sends what the core wants
//!   sent and reads its events. When the core is given an overlay address
//!   from the ledger (`Event::AddressAssigned`), the overlay stack is
//!   configured with it.
//! - The service accepts TCP connections on
//!   [`SERVICE_PORT`](crate::SERVICE_PORT) and echoes each line back, then
//!   closes.
//!
//! All memory is the caller's: [`Resources`] (stacks, socket buffers, the
//! pipe), the [`CoreNode`] and the [`Status`] it reports through, plus the
//! tasks' futures (the mesh task's is one datagram buffer, mostly). Nothing here reads a clock but
//! `embassy_time`, and nothing allocates.

use core::cell::Cell;
use core::future::poll_fn;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use embassy_futures::select::{select3, Either3};
use embassy_net::tcp::TcpSocket;
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{Config, ConfigV4, IpAddress, IpEndpoint, Ipv4Cidr, Runner, Stack, StackResources, StaticConfigV4};
use embassy_net_driver::Driver;
use embassy_time::Timer;
use kairos_core::identity::Identity;
use kairos_core::node::{Destination, Event, Input, NodeConfig, Outbound, HEADROOM, TAILROOM};
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::pipe::{Pipe, TunnelDevice, OVERLAY_MTU};
use crate::{CoreNode, InlineLedger, PORT, SERVICE_PORT};

/// Datagrams the underlay UDP socket holds, each way.
pub const UDP_PACKETS: usize = 4;
/// Bytes of the underlay UDP socket's receive buffer.
pub const UDP_RX_BUFFER: usize = 4096;
/// Bytes of the underlay UDP socket's send buffer.
pub const UDP_TX_BUFFER: usize = 2048;
/// Bytes of each of the service socket's buffers.
pub const TCP_BUFFER: usize = 512;
/// The task's one datagram buffer: a received datagram, a datagram from
/// `poll_transmit` (1500 is safe) or an overlay packet with the room the
/// core seals it in, whichever is larger.
pub const DATAGRAM_BUFFER: usize = if HEADROOM + OVERLAY_MTU + TAILROOM > 1500 {
    HEADROOM + OVERLAY_MTU + TAILROOM
} else {
    1500
};

/// Everything the two stacks and their sockets need, in one place (a
/// firmware keeps it in a `static`).
pub struct Resources {
    underlay: StackResources<1>,
    overlay: StackResources<1>,
    udp_rx_meta: [PacketMetadata; UDP_PACKETS],
    udp_rx: [u8; UDP_RX_BUFFER],
    udp_tx_meta: [PacketMetadata; UDP_PACKETS],
    udp_tx: [u8; UDP_TX_BUFFER],
    tcp_rx: [u8; TCP_BUFFER],
    tcp_tx: [u8; TCP_BUFFER],
    pipe: Pipe,
}

impl Default for Resources {
    fn default() -> Self {
        Self::new()
    }
}

impl Resources {
    /// Empty resources.
    pub const fn new() -> Self {
        Resources {
            underlay: StackResources::new(),
            overlay: StackResources::new(),
            udp_rx_meta: [PacketMetadata::EMPTY; UDP_PACKETS],
            udp_rx: [0; UDP_RX_BUFFER],
            udp_tx_meta: [PacketMetadata::EMPTY; UDP_PACKETS],
            udp_tx: [0; UDP_TX_BUFFER],
            tcp_rx: [0; TCP_BUFFER],
            tcp_tx: [0; TCP_BUFFER],
            pipe: Pipe::new(),
        }
    }
}

/// What the node reports while it runs (for a status LED, a console, or
/// the simulator's tests).
#[derive(Default)]
pub struct Status {
    /// The overlay IPv4 address the ledger gave the node.
    pub ipv4: Cell<Option<Ipv4Addr>>,
    /// Members the node knows.
    pub members: Cell<usize>,
    /// Members with a session up.
    pub peers_up: Cell<usize>,
    /// Sessions refused because every pooled tunnel was busy.
    pub tunnel_pool_full: Cell<u64>,
    /// Quiet sessions closed to make room for another member's.
    pub tunnels_evicted: Cell<u64>,
    /// Connections the service answered to the end.
    pub served: Cell<u32>,
    /// Datagrams received on the underlay.
    pub rx_datagrams: Cell<u64>,
    /// Datagrams sent on the underlay.
    pub tx_datagrams: Cell<u64>,
    /// Datagrams the core refused.
    pub rx_refused: Cell<u64>,
    /// Overlay packets the core could not send (no route, no member).
    pub overlay_refused: Cell<u64>,
    /// Datagrams the core wanted sent that the node could not send (LAN
    /// multicast, IPv6 endpoints, socket errors).
    pub tx_skipped: Cell<u64>,
}

impl Status {
    fn bump(c: &Cell<u64>) {
        c.set(c.get() + 1);
    }
}

/// The core's node for an embedded member, built in place by the caller
/// (a firmware keeps it in a `static`). `seed` seeds its RNG (a firmware
/// takes it from its hardware RNG); `wall_at_zero` is the wall-clock time
/// at `embassy_time::Instant` zero (from an RTC, or the build time).
pub fn core_node(
    identity: Identity,
    network: &NetworkKeys,
    mut config: NodeConfig,
    seed: u64,
    wall_at_zero: Duration,
) -> CoreNode {
    config.neighbors = config.neighbors.min(crate::NEIGHBORS);
    CoreNode::new(
        identity,
        network,
        config,
        ChaCha20Rng::seed_from_u64(seed),
        core::array::from_fn(|_| None),
        core::array::from_fn(|_| None),
        InlineLedger::default(),
        kairos_core::ledger::Ed25519Verifier,
        [Default::default(); crate::VIEWS],
        wall_at_zero,
    )
}

/// The firmware's parts, built by [`start`]: each runs as its own task
/// (embassy-net wakes its runner on every socket access, so the runners
/// cannot share a task with the code that uses their sockets).
pub struct Firmware<'a, D: Driver> {
    /// The underlay stack's runner: `underlay.run()` is a task.
    pub underlay: Runner<'a, D>,
    /// The overlay stack's runner: `overlay.run()` is a task.
    pub overlay: Runner<'a, TunnelDevice<'a>>,
    /// The mesh's UDP socket (for [`mesh`]).
    pub udp: UdpSocket<'a>,
    /// The service's socket (for [`serve`]).
    pub tcp: TcpSocket<'a>,
    /// The overlay stack (for [`mesh`], which configures its address).
    pub overlay_stack: Stack<'a>,
    /// The pipe between the core and the overlay stack (for [`mesh`]).
    pub pipe: &'a Pipe,
}

/// Builds both stacks and the sockets in `resources`: the underlay on
/// `device` with the static address `underlay`, the overlay on the pipe
/// (addressed later, by [`mesh`]). `seed` seeds the stacks (TCP sequence
/// numbers, ports).
pub fn start<D: Driver>(device: D, underlay: StaticConfigV4, seed: u64, resources: &mut Resources) -> Firmware<'_, D> {
    let Resources {
        underlay: underlay_resources,
        overlay: overlay_resources,
        udp_rx_meta,
        udp_rx,
        udp_tx_meta,
        udp_tx,
        tcp_rx,
        tcp_tx,
        pipe,
    } = resources;
    let pipe: &Pipe = pipe;
    let (u_stack, u_runner) = embassy_net::new(device, Config::ipv4_static(underlay), underlay_resources, seed);
    let (o_stack, o_runner) = embassy_net::new(
        TunnelDevice::new(pipe),
        Config::default(),
        overlay_resources,
        seed.rotate_left(32),
    );
    let mut udp = UdpSocket::new(u_stack, udp_rx_meta, udp_rx, udp_tx_meta, udp_tx);
    // A fresh socket on a free port cannot fail to bind.
    let _ = udp.bind(PORT);
    Firmware {
        underlay: u_runner,
        overlay: o_runner,
        udp,
        tcp: TcpSocket::new(o_stack, tcp_rx, tcp_tx),
        overlay_stack: o_stack,
        pipe,
    }
}

/// The core's time: `embassy_time`'s, in microseconds.
fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

/// When to wake for the core's next timer (far away if it has none).
fn deadline(at: Option<Instant>) -> embassy_time::Instant {
    match at {
        // Past this the conversion to ticks could overflow: it is never.
        Some(t) if t.as_micros() < u64::MAX / 1024 => embassy_time::Instant::from_micros(t.as_micros()),
        _ => embassy_time::Instant::MAX,
    }
}

fn endpoint(to: SocketAddr) -> Option<IpEndpoint> {
    match to.ip() {
        IpAddr::V4(ip) => Some(IpEndpoint::new(IpAddress::Ipv4(ip), to.port())),
        IpAddr::V6(_) => None, // the underlay is IPv4 only
    }
}

async fn send(udp: &UdpSocket<'_>, to: SocketAddr, datagram: &[u8], status: &Status) {
    let sent = match endpoint(to) {
        Some(ep) => udp.send_to(datagram, ep).await.is_ok(),
        None => false,
    };
    Status::bump(if sent { &status.tx_datagrams } else { &status.tx_skipped });
}

/// The mesh task (see the module docs): the core between the UDP socket,
/// the pipe and its timers. `overlay_prefix` is the overlay range's prefix
/// length (the mesh's `NodeConfig::overlay`).
pub async fn mesh(
    node: &mut CoreNode,
    udp: &UdpSocket<'_>,
    pipe: &Pipe,
    overlay: Stack<'_>,
    overlay_prefix: u8,
    status: &Status,
) -> ! {
    let mut buf = [0u8; DATAGRAM_BUFFER];
    loop {
        flush(node, udp, &mut buf, overlay, overlay_prefix, status).await;
        let wake = deadline(node.poll_timeout());
        match select3(
            udp.recv_from(&mut buf),
            poll_fn(|cx| pipe.poll_from_stack(cx)),
            Timer::at(wake),
        )
        .await
        {
            Either3::First(Ok((n, meta))) => {
                Status::bump(&status.rx_datagrams);
                let from = match meta.endpoint.addr {
                    IpAddress::Ipv4(ip) => SocketAddr::new(IpAddr::V4(ip), meta.endpoint.port),
                    // Only with IPv6 switched on in smoltcp by another crate.
                    #[allow(unreachable_patterns)]
                    _ => {
                        Status::bump(&status.rx_refused);
                        continue;
                    }
                };
                match node.handle_datagram(now(), from, &mut buf[..n]) {
                    Ok(Input::Deliver(packet)) => {
                        pipe.push_to_stack(packet);
                    }
                    Ok(Input::Send { to, datagram }) => send(udp, to, datagram, status).await,
                    Ok(Input::Consumed) => {}
                    Err(_) => Status::bump(&status.rx_refused),
                }
            }
            // Truncated: larger than the buffer, so not a mesh datagram.
            Either3::First(Err(_)) => Status::bump(&status.rx_refused),
            Either3::Second(()) => {
                while let Some(n) = pipe.pop_from_stack(&mut buf[HEADROOM..][..OVERLAY_MTU]) {
                    match node.handle_ip_packet(now(), &mut buf, n) {
                        Ok(Outbound::Datagram { to, datagram }) => send(udp, to, datagram, status).await,
                        Ok(Outbound::Queued) => {}
                        Err(_) => Status::bump(&status.overlay_refused),
                    }
                }
            }
            Either3::Third(()) => node.handle_timeout(now()),
        }
    }
}

/// Sends what the core wants sent and reads its events.
async fn flush(
    node: &mut CoreNode,
    udp: &UdpSocket<'_>,
    buf: &mut [u8],
    overlay: Stack<'_>,
    overlay_prefix: u8,
    status: &Status,
) {
    while let Some(t) = node.poll_transmit(now(), buf) {
        match t.destination {
            Destination::Unicast(to) => send(udp, to, &buf[..t.len], status).await,
            // No multicast group on this underlay: the node finds the mesh
            // through its bootstrap endpoints.
            Destination::LanMulticast => Status::bump(&status.tx_skipped),
        }
    }
    while let Some(event) = node.poll_event() {
        if let Event::AddressAssigned(ip) = event {
            overlay.set_config_v4(ConfigV4::Static(StaticConfigV4 {
                address: Ipv4Cidr::new(ip, overlay_prefix),
                gateway: None,
                dns_servers: heapless::Vec::new(),
            }));
            status.ipv4.set(Some(ip));
        }
    }
    status.members.set(node.members().count());
    status.peers_up.set(node.members().filter(|m| m.is_up()).count());
    let stats = node.stats();
    status.tunnel_pool_full.set(stats.tunnel_pool_full);
    status.tunnels_evicted.set(stats.tunnels_evicted);
}

/// The service task: echoes each line it reads back, then closes.
pub async fn serve(mut tcp: TcpSocket<'_>, status: &Status) -> ! {
    let mut line = [0u8; 128];
    loop {
        if tcp.accept(SERVICE_PORT).await.is_err() {
            tcp.abort();
            continue;
        }
        let mut len = 0;
        let complete = loop {
            match tcp.read(&mut line[len..]).await {
                Ok(0) | Err(_) => break false,
                Ok(n) => len += n,
            }
            if line[..len].contains(&b'\n') || len == line.len() {
                break true;
            }
        };
        if complete && write_all(&mut tcp, &line[..len]).await {
            status.served.set(status.served.get() + 1);
        }
        tcp.close();
        // Waits for the peer to acknowledge what was written and the FIN.
        let _ = tcp.flush().await;
        tcp.abort();
        let _ = tcp.flush().await;
    }
}

async fn write_all(tcp: &mut TcpSocket<'_>, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        match tcp.write(bytes).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => bytes = &bytes[n..],
        }
    }
    true
}
