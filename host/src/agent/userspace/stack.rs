//! [`Stack`]: the overlay TCP/IP stack of a userspace bridge, on smoltcp,
//! in one task. It owns the smoltcp interface (the bridge's overlay
//! addresses on a [`QueueDevice`]), one TCP socket per proxied connection,
//! and the loopback `TcpStream` each is spliced to. It never touches the
//! node: packets come in from the driver on a bounded channel and go back
//! on another, and the driver calls `handle_datagram` / `handle_ip_packet`.
//!
//! A connection goes through:
//!
//! 1. [`StackHandle::open`]: a SOCKS or forward task asks for a TCP
//!    connection to an overlay address; a smoltcp socket sends its SYN.
//! 2. The answer: established ([`Opened`]), or an [`OpenError`]
//!    (refused by an RST, no answer within [`CONNECT_TIMEOUT`], not an
//!    overlay address, no address of ours yet), which the SOCKS task turns
//!    into its reply code.
//! 3. [`StackHandle::attach`]: the task hands over its loopback stream and
//!    the stack splices the two: bytes go each way only as far as the
//!    other side has room (the smoltcp socket's send buffer, the kernel's
//!    socket buffer), so a slow reader slows the writer instead of filling
//!    memory. A FIN on one side half-closes the other; an RST (or an I/O
//!    error) on one side resets the other.
//!
//! The task is one `poll_fn`: it wakes on a packet, a request, a stream
//! becoming readable or writable, or smoltcp's `poll_delay` (and the
//! connections' own deadlines), never on a schedule of its own.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant as StdInstant};

use rand_core::{OsRng, RngCore};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, State};
use smoltcp::time::Instant;
use smoltcp::wire::{HardwareAddress, IpCidr};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Sleep;

use super::device::QueueDevice;

/// How long a connection may take to be answered (SYN to SYN-ACK).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long an established connection waits for its stream.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a closing connection may take to finish its FIN exchange.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(60);
/// An established connection whose data goes unacknowledged this long is
/// reset (smoltcp's socket timeout).
const IDLE_ACK_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes buffered per direction per connection (smoltcp's socket buffers;
/// the window it offers).
pub const SOCKET_BUFFER: usize = 64 * 1024;
/// The most connections at once (each holds two [`SOCKET_BUFFER`]s).
pub const MAX_CONNECTIONS: usize = 256;
/// The prefix length of the overlay IPv6 addresses.
const IPV6_PREFIX: u8 = 64;
/// Rounds of work one wake-up does before yielding to the other tasks.
const ROUNDS: usize = 16;
/// The local ports of the stack's connections.
const EPHEMERAL: std::ops::RangeInclusive<u16> = 49152..=65535;

/// Why a connection could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The mesh has not given this bridge an IPv4 address (within
    /// [`CONNECT_TIMEOUT`] of asking).
    #[error("this bridge has no overlay IPv4 address yet")]
    NoAddress,
    /// The target is outside the overlay ranges.
    #[error("not an overlay address (outside the overlay range)")]
    NotOverlay,
    /// No SYN-ACK within [`CONNECT_TIMEOUT`].
    #[error("no answer within {} s", CONNECT_TIMEOUT.as_secs())]
    Timeout,
    /// The target answered with a reset.
    #[error("connection refused")]
    Refused,
    /// [`MAX_CONNECTIONS`] are open.
    #[error("too many connections ({MAX_CONNECTIONS})")]
    TooMany,
    /// The stack has stopped (the bridge is shutting down).
    #[error("the userspace stack has stopped")]
    Stopped,
}

/// An established connection, waiting for [`StackHandle::attach`].
#[derive(Debug)]
pub struct Opened {
    id: u64,
    /// The stack's end of the connection (the bridge's overlay address).
    pub local: SocketAddr,
}

/// What the tasks ask of the stack.
#[derive(Debug)]
enum Request {
    Open {
        target: SocketAddr,
        reply: oneshot::Sender<Result<Opened, OpenError>>,
    },
    Attach {
        id: u64,
        stream: TcpStream,
        early: Vec<u8>,
    },
}

/// The tasks' side of the stack: cheap to clone.
#[derive(Debug, Clone)]
pub struct StackHandle {
    requests: mpsc::Sender<Request>,
}

impl StackHandle {
    /// Opens a TCP connection to `target` on the overlay.
    pub async fn open(&self, target: SocketAddr) -> Result<Opened, OpenError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Open { target, reply })
            .await
            .map_err(|_| OpenError::Stopped)?;
        answer.await.unwrap_or(Err(OpenError::Stopped))
    }

    /// Splices `stream` to the connection `opened`; `early`: bytes the
    /// client sent before it was answered (a SOCKS client that did not
    /// wait), which go first.
    pub async fn attach(&self, opened: Opened, stream: TcpStream, early: Vec<u8>) {
        let _ = self
            .requests
            .send(Request::Attach {
                id: opened.id,
                stream,
                early,
            })
            .await;
    }
}

/// The driver's ends of the stack's channels.
#[derive(Debug)]
pub struct Channels {
    /// Overlay packets the node delivered, for the stack.
    pub inbound: mpsc::Sender<Vec<u8>>,
    /// Overlay packets the stack made, for `handle_ip_packet`.
    pub outbound: mpsc::UnboundedReceiver<Vec<u8>>,
    /// This node's overlay IPv4 address, when the mesh assigns it.
    pub address: mpsc::UnboundedSender<Ipv4Addr>,
}

/// Packets from the driver waiting for the stack.
const INBOUND: usize = 1024;

/// A connection asked for before this node had an IPv4 address.
struct Unaddressed {
    target: SocketAddr,
    reply: oneshot::Sender<Result<Opened, OpenError>>,
    deadline: StdInstant,
}

/// One proxied connection.
struct Conn {
    handle: SocketHandle,
    port: u16,
    phase: Phase,
}

enum Phase {
    Connecting {
        reply: oneshot::Sender<Result<Opened, OpenError>>,
        deadline: StdInstant,
    },
    /// Established; waiting for the stream.
    Waiting {
        deadline: StdInstant,
    },
    Piping(Pipe),
    /// The stream is gone; the socket finishes its FIN exchange.
    Closing {
        deadline: StdInstant,
    },
}

struct Pipe {
    stream: TcpStream,
    /// Bytes of the client read before the splice, sent first.
    early: Vec<u8>,
    /// The client sent its FIN (the overlay side was closed after it).
    client_eof: bool,
    /// The overlay side's FIN was passed on (the stream's write half shut).
    client_shut: bool,
}

/// See the module docs.
pub struct Stack {
    iface: Interface,
    device: QueueDevice,
    sockets: SocketSet<'static>,
    conns: HashMap<u64, Conn>,
    /// Opens waiting for the IPv4 address (at most [`CONNECT_TIMEOUT`]).
    unaddressed: Vec<Unaddressed>,
    next_id: u64,
    next_port: u16,
    ipv4: Option<Ipv4Addr>,
    ipv4_prefix: u8,
    ipv6: Ipv6Addr,
    requests: mpsc::Receiver<Request>,
    requests_open: bool,
    inbound: mpsc::Receiver<Vec<u8>>,
    outbound: mpsc::UnboundedSender<Vec<u8>>,
    addresses: mpsc::UnboundedReceiver<Ipv4Addr>,
    addresses_open: bool,
    timer: Pin<Box<Sleep>>,
}

impl Stack {
    /// A stack for an overlay with `mtu`, this node's `ipv6` and (once
    /// assigned) `ipv4` in a range of `/ipv4_prefix`; the handle for the
    /// tasks and the channels for the driver.
    pub fn new(mtu: usize, ipv4: Option<Ipv4Addr>, ipv4_prefix: u8, ipv6: Ipv6Addr) -> (Stack, StackHandle, Channels) {
        let mut device = QueueDevice::new(mtu);
        let mut config = Config::new(HardwareAddress::Ip);
        config.random_seed = OsRng.next_u64();
        let iface = Interface::new(config, &mut device, Instant::now());
        let (requests_tx, requests) = mpsc::channel(64);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND);
        let (outbound, outbound_rx) = mpsc::unbounded_channel();
        let (address_tx, addresses) = mpsc::unbounded_channel();
        let mut stack = Stack {
            iface,
            device,
            sockets: SocketSet::new(Vec::new()),
            conns: HashMap::new(),
            unaddressed: Vec::new(),
            next_id: 0,
            next_port: *EPHEMERAL.start() + (OsRng.next_u32() % 16384) as u16,
            ipv4: None,
            ipv4_prefix,
            ipv6,
            requests,
            requests_open: true,
            inbound,
            outbound,
            addresses,
            addresses_open: true,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
        };
        stack.set_addresses(ipv4);
        let channels = Channels {
            inbound: inbound_tx,
            outbound: outbound_rx,
            address: address_tx,
        };
        (stack, StackHandle { requests: requests_tx }, channels)
    }

    /// Runs until the driver drops its channels. The connections still
    /// spliced then are reset on the client's side (`Drop for Pipe`); the
    /// overlay side hears nothing more, as when the bridge leaves.
    pub async fn run(mut self) {
        std::future::poll_fn(|cx| self.poll(cx)).await;
        tracing::debug!(connections = self.conns.len(), "userspace stack stopped");
    }

    fn set_addresses(&mut self, ipv4: Option<Ipv4Addr>) {
        if ipv4.is_some() && ipv4 != self.ipv4 && self.ipv4.is_some() {
            // Connections from the old address cannot go on.
            let old: Vec<u64> = self
                .conns
                .iter()
                .filter(|(_, c)| {
                    let s = self.sockets.get::<tcp::Socket>(c.handle);
                    s.local_endpoint()
                        .is_some_and(|e| e.addr.version() == smoltcp::wire::IpVersion::Ipv4)
                })
                .map(|(id, _)| *id)
                .collect();
            for id in old {
                self.reset(id);
            }
        }
        if ipv4.is_some() {
            self.ipv4 = ipv4;
        }
        let (v4, v4_prefix, v6) = (self.ipv4, self.ipv4_prefix, self.ipv6);
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            if let Some(a) = v4 {
                let _ = addrs.push(IpCidr::new(a.into(), v4_prefix));
            }
            let _ = addrs.push(IpCidr::new(v6.into(), IPV6_PREFIX));
        });
        if let Some(a) = ipv4 {
            tracing::info!(ipv4 = %a, "userspace stack addressed");
            for u in std::mem::take(&mut self.unaddressed) {
                self.on_request(Request::Open {
                    target: u.target,
                    reply: u.reply,
                });
            }
        }
    }

    /// Fails the opens that waited for the address too long, and forgets
    /// those whose client went away; `true` if any went.
    fn expire_unaddressed(&mut self) -> bool {
        if self.unaddressed.is_empty() {
            return false;
        }
        let now = StdInstant::now();
        let (gone, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unaddressed)
            .into_iter()
            .partition(|u| now >= u.deadline || u.reply.is_closed());
        self.unaddressed = waiting;
        let any = !gone.is_empty();
        for u in gone {
            let _ = u.reply.send(Err(OpenError::NoAddress));
        }
        any
    }

    /// One wake-up: everything that can be done without waiting.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..ROUNDS {
            let mut progress = false;
            while self.addresses_open {
                match self.addresses.poll_recv(cx) {
                    Poll::Ready(Some(a)) => self.set_addresses(Some(a)),
                    Poll::Ready(None) => self.addresses_open = false,
                    Poll::Pending => break,
                }
            }
            while self.requests_open {
                match self.requests.poll_recv(cx) {
                    Poll::Ready(Some(r)) => {
                        self.on_request(r);
                        progress = true;
                    }
                    Poll::Ready(None) => self.requests_open = false,
                    Poll::Pending => break,
                }
            }
            while self.device.rx_has_room() {
                match self.inbound.poll_recv(cx) {
                    Poll::Ready(Some(p)) => {
                        self.device.push_rx(p);
                        progress = true;
                    }
                    Poll::Ready(None) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            let now = Instant::now();
            progress |= self.iface.poll(now, &mut self.device, &mut self.sockets) != smoltcp::iface::PollResult::None;
            progress |= self.step_connections(cx);
            progress |= self.expire_unaddressed();
            // What the connections wrote goes out in this round.
            self.iface.poll(now, &mut self.device, &mut self.sockets);
            while let Some(p) = self.device.pop_tx() {
                if self.outbound.send(p).is_err() {
                    return Poll::Ready(());
                }
            }
            if !progress {
                self.arm_timer(cx);
                return Poll::Pending;
            }
        }
        // Busy: let the other tasks (the driver) run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Sets the timer to the earliest of smoltcp's next poll and the
    /// connections' deadlines, and registers it.
    fn arm_timer(&mut self, cx: &mut Context<'_>) {
        let now = StdInstant::now();
        let smol = self
            .iface
            .poll_delay(Instant::now(), &self.sockets)
            .map(|d| now + Duration::from_micros(d.total_micros()));
        let deadlines = self
            .conns
            .values()
            .filter_map(|c| match &c.phase {
                Phase::Connecting { deadline, .. } | Phase::Waiting { deadline } | Phase::Closing { deadline } => {
                    Some(*deadline)
                }
                Phase::Piping(_) => None,
            })
            .chain(self.unaddressed.iter().map(|u| u.deadline));
        let Some(at) = smol.into_iter().chain(deadlines).min() else {
            return;
        };
        self.timer.as_mut().reset(at.into());
        if self.timer.as_mut().poll(cx).is_ready() {
            cx.waker().wake_by_ref();
        }
    }

    fn on_request(&mut self, request: Request) {
        match request {
            Request::Open { target, reply } => match self.connect(target) {
                Ok((id, handle, port)) => {
                    self.conns.insert(
                        id,
                        Conn {
                            handle,
                            port,
                            phase: Phase::Connecting {
                                reply,
                                deadline: StdInstant::now() + CONNECT_TIMEOUT,
                            },
                        },
                    );
                }
                Err(OpenError::NoAddress) => {
                    // The mesh assigns it within seconds of the start:
                    // wait for it rather than fail a client started with
                    // the bridge.
                    let deadline = StdInstant::now() + CONNECT_TIMEOUT;
                    self.unaddressed.push(Unaddressed {
                        target,
                        reply,
                        deadline,
                    });
                }
                Err(e) => {
                    tracing::debug!(%target, error = %e, "userspace connection not opened");
                    let _ = reply.send(Err(e));
                }
            },
            Request::Attach { id, stream, early } => match self.conns.get_mut(&id) {
                Some(conn) if matches!(conn.phase, Phase::Waiting { .. }) => {
                    conn.phase = Phase::Piping(Pipe {
                        stream,
                        early,
                        client_eof: false,
                        client_shut: false,
                    });
                }
                // Gone meanwhile (reset, timed out): the client sees a reset.
                _ => reset_stream(stream),
            },
        }
    }

    /// Starts a connection to `target`: its id, socket and local port.
    fn connect(&mut self, target: SocketAddr) -> Result<(u64, SocketHandle, u16), OpenError> {
        match target.ip() {
            IpAddr::V4(v4) => {
                let Some(own) = self.ipv4 else {
                    return Err(OpenError::NoAddress);
                };
                if !same_network(own.into(), v4.into(), self.ipv4_prefix) {
                    return Err(OpenError::NotOverlay);
                }
            }
            IpAddr::V6(v6) => {
                if !same_network(self.ipv6.into(), v6.into(), IPV6_PREFIX) {
                    return Err(OpenError::NotOverlay);
                }
            }
        }
        if self.conns.len() >= MAX_CONNECTIONS {
            return Err(OpenError::TooMany);
        }
        let port = self.free_port().ok_or(OpenError::TooMany)?;
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
            tcp::SocketBuffer::new(vec![0; SOCKET_BUFFER]),
        );
        // Proxied bytes are already batched by the client's writes.
        socket.set_nagle_enabled(false);
        socket
            .connect(self.iface.context(), target, port)
            .map_err(|_| OpenError::NotOverlay)?;
        let handle = self.sockets.add(socket);
        let id = self.next_id;
        self.next_id += 1;
        Ok((id, handle, port))
    }

    /// A local port no connection of the stack uses.
    fn free_port(&mut self) -> Option<u16> {
        let span = (EPHEMERAL.end() - EPHEMERAL.start()) as usize + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port == *EPHEMERAL.end() {
                *EPHEMERAL.start()
            } else {
                port + 1
            };
            if !self.conns.values().any(|c| c.port == port) {
                return Some(port);
            }
        }
        None
    }

    /// Resets connection `id` on both sides and forgets it.
    fn reset(&mut self, id: u64) {
        if let Some(conn) = self.conns.remove(&id) {
            let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
            socket.abort();
            // The RST goes out at the next poll; then the socket can go.
            self.iface.poll(Instant::now(), &mut self.device, &mut self.sockets);
            self.sockets.remove(conn.handle);
            match conn.phase {
                // Dropped unfinished: an RST (see `Drop for Pipe`).
                Phase::Piping(pipe) => drop(pipe),
                Phase::Connecting { reply, .. } => {
                    let _ = reply.send(Err(OpenError::Stopped));
                }
                Phase::Waiting { .. } | Phase::Closing { .. } => {}
            }
        }
    }

    /// Advances every connection; `true` if anything moved.
    fn step_connections(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let now = StdInstant::now();
        let ids: Vec<u64> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(conn) = self.conns.get_mut(&id) else { continue };
            let socket = self.sockets.get_mut::<tcp::Socket>(conn.handle);
            let next = match &mut conn.phase {
                Phase::Connecting { reply, deadline } => match socket.state() {
                    State::SynSent | State::SynReceived if now >= *deadline => Step::Fail(OpenError::Timeout),
                    State::SynSent | State::SynReceived if reply.is_closed() => Step::Reset,
                    State::SynSent | State::SynReceived => Step::Stay,
                    State::Closed | State::TimeWait => Step::Fail(OpenError::Refused),
                    _ => Step::Established,
                },
                Phase::Waiting { deadline } if now >= *deadline => Step::Reset,
                Phase::Waiting { .. } => match socket.state() {
                    State::Closed => Step::Reset,
                    _ => Step::Stay,
                },
                Phase::Piping(pipe) => pump(cx, socket, pipe, &mut progress),
                Phase::Closing { deadline } => match socket.state() {
                    State::Closed | State::TimeWait => Step::Remove,
                    _ if now >= *deadline => Step::Reset,
                    _ => Step::Stay,
                },
            };
            match next {
                Step::Stay => {}
                Step::Established => {
                    progress = true;
                    socket.set_timeout(Some(smoltcp::time::Duration::from_secs(IDLE_ACK_TIMEOUT.as_secs())));
                    let local = socket
                        .local_endpoint()
                        .map(|e| SocketAddr::new(e.addr.into(), e.port))
                        .unwrap_or_else(|| SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0));
                    let old = std::mem::replace(
                        &mut conn.phase,
                        Phase::Waiting {
                            deadline: now + ATTACH_TIMEOUT,
                        },
                    );
                    if let Phase::Connecting { reply, .. } = old {
                        if reply.send(Ok(Opened { id, local })).is_err() {
                            self.reset(id);
                        }
                    }
                }
                Step::Fail(e) => {
                    progress = true;
                    if let Some(conn) = self.conns.remove(&id) {
                        self.sockets.get_mut::<tcp::Socket>(conn.handle).abort();
                        self.sockets.remove(conn.handle);
                        if let Phase::Connecting { reply, .. } = conn.phase {
                            let _ = reply.send(Err(e));
                        }
                    }
                }
                Step::Reset => {
                    progress = true;
                    self.reset(id);
                }
                Step::Close => {
                    progress = true;
                    // Both FINs passed on: the stream closes normally.
                    conn.phase = Phase::Closing {
                        deadline: now + CLOSE_TIMEOUT,
                    };
                }
                Step::Remove => {
                    progress = true;
                    if let Some(conn) = self.conns.remove(&id) {
                        self.sockets.remove(conn.handle);
                    }
                }
            }
        }
        progress
    }
}

impl Drop for Pipe {
    /// A splice dropped before both FINs were passed on (a reset, an
    /// address move, the stack stopping) resets the client's stream, so it
    /// never takes a cut-off transfer for a complete one.
    fn drop(&mut self) {
        if !(self.client_eof && self.client_shut) {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

/// What a connection does next.
enum Step {
    Stay,
    Established,
    Fail(OpenError),
    Reset,
    Close,
    Remove,
}

/// Moves bytes between `socket` and the stream as far as both have room.
fn pump(cx: &mut Context<'_>, socket: &mut tcp::Socket<'_>, pipe: &mut Pipe, progress: &mut bool) -> Step {
    if socket.state() == State::Closed {
        // Both FINs passed on and acknowledged: done. Otherwise the target
        // reset it (or it timed out) before both sides finished.
        return if pipe.client_eof && pipe.client_shut {
            Step::Close
        } else {
            Step::Reset
        };
    }
    // Overlay -> client.
    while socket.can_recv() {
        let written = socket.recv(|data| match Pin::new(&mut pipe.stream).poll_write(cx, data) {
            Poll::Ready(Ok(n)) => (n, Ok(n)),
            Poll::Ready(Err(e)) => (0, Err(e)),
            Poll::Pending => (0, Ok(0)),
        });
        match written {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(_)) => *progress = true,
            Ok(Err(e)) => return client_gone(&e),
        }
    }
    let remote_fin = matches!(
        socket.state(),
        State::CloseWait | State::LastAck | State::Closing | State::TimeWait
    );
    if remote_fin && !pipe.client_shut && socket.recv_queue() == 0 {
        match Pin::new(&mut pipe.stream).poll_shutdown(cx) {
            Poll::Ready(Ok(())) => {
                pipe.client_shut = true;
                *progress = true;
            }
            Poll::Ready(Err(e)) => return client_gone(&e),
            Poll::Pending => {}
        }
    }
    // Client -> overlay: what was read before the splice, then the stream.
    if !pipe.early.is_empty() && socket.can_send() {
        if let Ok(n) = socket.send_slice(&pipe.early) {
            pipe.early.drain(..n);
            *progress = true;
        }
    }
    while pipe.early.is_empty() && !pipe.client_eof && socket.may_send() && socket.can_send() {
        let read = socket.send(|buf| {
            let mut rb = ReadBuf::new(buf);
            match Pin::new(&mut pipe.stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    (n, Ok(Some(n)))
                }
                Poll::Ready(Err(e)) => (0, Err(e)),
                Poll::Pending => (0, Ok(None)),
            }
        });
        match read {
            Ok(Ok(Some(0))) => {
                pipe.client_eof = true;
                socket.close();
                *progress = true;
            }
            Ok(Ok(Some(_))) => *progress = true,
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(e)) => return client_gone(&e),
        }
    }
    if pipe.client_eof && pipe.client_shut {
        Step::Close
    } else {
        Step::Stay
    }
}

/// The client's stream failed (reset, broken pipe): reset the target too.
fn client_gone(e: &io::Error) -> Step {
    tracing::debug!(error = %e, "userspace connection: the client's side failed; resetting");
    Step::Reset
}

/// Closes `stream` with an RST instead of a FIN (linger 0).
fn reset_stream(stream: TcpStream) {
    let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
    drop(stream);
}

/// Whether `a` and `b` share their first `prefix` bits.
fn same_network(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix.min(128))).unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_ranges() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(same_network(ip("10.1.0.5"), ip("10.1.0.200"), 24));
        assert!(!same_network(ip("10.1.0.5"), ip("10.1.1.5"), 24));
        assert!(same_network(ip("10.1.0.5"), ip("192.0.2.1"), 0));
        assert!(same_network(ip("fd00:1::1"), ip("fd00:1::ffff:2"), 64));
        assert!(!same_network(ip("fd00:1::1"), ip("fd00:2::1"), 64));
        assert!(!same_network(ip("10.1.0.5"), ip("fd00:1::1"), 0));
    }

    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::Notify;

    /// The far end of the overlay: a bare smoltcp interface at 10.1.0.2
    /// with TCP sockets the test drives by hand, wired to the stack under
    /// test through the driver's channels.
    struct Far {
        iface: Interface,
        device: QueueDevice,
        sockets: SocketSet<'static>,
    }

    impl Far {
        fn listen(&mut self, port: u16) -> SocketHandle {
            let mut s = tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0; 8192]),
                tcp::SocketBuffer::new(vec![0; 8192]),
            );
            s.listen(port).unwrap();
            self.sockets.add(s)
        }

        fn socket(&mut self, h: SocketHandle) -> &mut tcp::Socket<'static> {
            self.sockets.get_mut::<tcp::Socket>(h)
        }
    }

    struct Wire {
        far: Arc<Mutex<Far>>,
        kick: Arc<Notify>,
    }

    impl Wire {
        /// The stack under test (10.1.0.1/24) and the far end, running.
        fn start() -> (StackHandle, Wire) {
            let (handle, wire, _) = Wire::start_with(Some(Ipv4Addr::new(10, 1, 0, 1)));
            (handle, wire)
        }

        /// [`Wire::start`] with the stack's IPv4 address `ipv4` (maybe
        /// none yet), and the sender that assigns it.
        fn start_with(ipv4: Option<Ipv4Addr>) -> (StackHandle, Wire, mpsc::UnboundedSender<Ipv4Addr>) {
            let v6 = |n: u16| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, n);
            let (stack, handle, mut ch) = Stack::new(1400, ipv4, 24, v6(1));
            let address = ch.address.clone();
            tokio::spawn(stack.run());
            let mut device = QueueDevice::new(1400);
            let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut device, Instant::now());
            iface.update_ip_addrs(|a| {
                let _ = a.push(IpCidr::new(Ipv4Addr::new(10, 1, 0, 2).into(), 24));
            });
            let far = Arc::new(Mutex::new(Far {
                iface,
                device,
                sockets: SocketSet::new(Vec::new()),
            }));
            let kick = Arc::new(Notify::new());
            let (far2, kick2) = (far.clone(), kick.clone());
            tokio::spawn(async move {
                loop {
                    let delay = {
                        let mut f = far2.lock().unwrap();
                        let Far { iface, device, sockets } = &mut *f;
                        while let Ok(p) = ch.outbound.try_recv() {
                            device.push_rx(p);
                        }
                        iface.poll(Instant::now(), device, sockets);
                        while let Some(p) = device.pop_tx() {
                            let _ = ch.inbound.try_send(p);
                        }
                        iface
                            .poll_delay(Instant::now(), sockets)
                            .map_or(Duration::from_millis(50), |d| Duration::from_micros(d.total_micros()))
                    };
                    tokio::select! {
                        Some(p) = ch.outbound.recv() => { far2.lock().unwrap().device.push_rx(p); }
                        () = tokio::time::sleep(delay) => {}
                        () = kick2.notified() => {}
                    };
                }
            });
            (handle, Wire { far, kick }, address)
        }

        /// Does `f` to the far end and lets it send what it made.
        fn with<R>(&self, f: impl FnOnce(&mut Far) -> R) -> R {
            let r = f(&mut self.far.lock().unwrap());
            self.kick.notify_one();
            r
        }

        /// Waits (5 s at most) until `f` says yes about the far end.
        async fn until(&self, what: &str, mut f: impl FnMut(&mut Far) -> bool) {
            let deadline = StdInstant::now() + Duration::from_secs(5);
            while !self.with(&mut f) {
                assert!(StdInstant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    }

    /// A loopback stream pair: the client's end and the one the stack gets.
    async fn stream_pair() -> (TcpStream, TcpStream) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        (client, server)
    }

    /// Refused, outside the overlay, and a connection whose halves close
    /// one at a time: each FIN reaches the other side while the other
    /// direction still carries data.
    #[tokio::test]
    async fn bytes_and_half_closes_cross_the_stack() {
        let (stack, wire) = Wire::start();
        let refused = stack.open("10.1.0.2:81".parse().unwrap()).await;
        assert_eq!(refused.unwrap_err(), OpenError::Refused, "nothing listens: an RST");
        assert_eq!(
            stack.open("192.0.2.1:80".parse().unwrap()).await.unwrap_err(),
            OpenError::NotOverlay
        );
        assert_eq!(
            stack.open("[fd01::2]:80".parse().unwrap()).await.unwrap_err(),
            OpenError::NotOverlay
        );

        let h = wire.with(|f| f.listen(80));
        let opened = stack.open("10.1.0.2:80".parse().unwrap()).await.unwrap();
        assert_eq!(opened.local.ip(), IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)));
        let (mut client, server) = stream_pair().await;
        stack.attach(opened, server, b"early ".to_vec()).await;

        client.write_all(b"ping").await.unwrap();
        let mut got = Vec::new();
        wire.until("ping at the far end", |f| {
            let s = f.socket(h);
            if s.can_recv() {
                s.recv(|d| {
                    got.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            got == b"early ping"
        })
        .await;
        // The far end answers and closes its half.
        wire.with(|f| {
            let s = f.socket(h);
            s.send_slice(b"pong").unwrap();
            s.close();
        });
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer, b"pong", "the data, then EOF: the FIN passed on");
        // The other half still carries data, then its FIN.
        client.write_all(b"more").await.unwrap();
        client.shutdown().await.unwrap();
        let mut got = Vec::new();
        wire.until("more and the client's FIN at the far end", |f| {
            let s = f.socket(h);
            while s.can_recv() {
                s.recv(|d| {
                    got.extend_from_slice(d);
                    (d.len(), ())
                })
                .unwrap();
            }
            got == b"more" && !s.is_active()
        })
        .await;
    }

    /// A reset on either side resets the other.
    #[tokio::test]
    async fn resets_cross_the_stack() {
        let (stack, wire) = Wire::start();
        // The far end resets: the client's read fails.
        let h = wire.with(|f| f.listen(80));
        let opened = stack.open("10.1.0.2:80".parse().unwrap()).await.unwrap();
        let (mut client, server) = stream_pair().await;
        stack.attach(opened, server, Vec::new()).await;
        wire.until("established", |f| f.socket(h).may_send()).await;
        wire.with(|f| f.socket(h).abort());
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the client hears of it");
        assert_eq!(
            r.map_err(|e| e.kind()),
            Err(io::ErrorKind::ConnectionReset),
            "an RST, not a clean close"
        );

        // The client resets: the far end's socket is reset.
        let h = wire.with(|f| f.listen(80));
        let opened = stack.open("10.1.0.2:80".parse().unwrap()).await.unwrap();
        let (client, server) = stream_pair().await;
        stack.attach(opened, server, Vec::new()).await;
        wire.until("established", |f| f.socket(h).may_send()).await;
        reset_stream(client);
        wire.until("the far end reset", |f| f.socket(h).state() == State::Closed)
            .await;
    }

    /// An IPv4 connection asked for before the mesh assigns an address
    /// waits for it; when the address moves, the connections from the old
    /// one are reset.
    #[tokio::test]
    async fn the_address_comes_and_moves() {
        let (stack, wire, address) = Wire::start_with(None);
        let h = wire.with(|f| f.listen(80));
        // Asked for before the address: it waits for it.
        let early = tokio::spawn({
            let stack = stack.clone();
            async move { stack.open("10.1.0.2:80".parse().unwrap()).await }
        });
        tokio::task::yield_now().await;
        assert!(!early.is_finished(), "waits for the address");
        address.send(Ipv4Addr::new(10, 1, 0, 1)).unwrap();
        let opened = early.await.unwrap().unwrap();
        assert_eq!(opened.local.ip(), IpAddr::V4(Ipv4Addr::new(10, 1, 0, 1)));
        let (mut client, server) = stream_pair().await;
        stack.attach(opened, server, Vec::new()).await;
        wire.until("established", |f| f.socket(h).may_send()).await;

        address.send(Ipv4Addr::new(10, 1, 0, 3)).unwrap();
        let mut buf = [0u8; 8];
        let r = tokio::time::timeout(Duration::from_secs(5), client.read(&mut buf))
            .await
            .expect("the client hears of it");
        assert_eq!(r.map_err(|e| e.kind()), Err(io::ErrorKind::ConnectionReset));
        wire.until("the far end reset", |f| f.socket(h).state() == State::Closed)
            .await;
        let h = wire.with(|f| f.listen(80));
        let opened = stack.open("10.1.0.2:80".parse().unwrap()).await.unwrap();
        assert_eq!(
            opened.local.ip(),
            IpAddr::V4(Ipv4Addr::new(10, 1, 0, 3)),
            "the new address"
        );
        wire.until("established", |f| f.socket(h).may_send()).await;
    }
}
