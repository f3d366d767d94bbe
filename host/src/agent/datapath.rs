//! The data path: overlay packets between the interface and the mesh socket,
//! in batches. [`TxPath`] owns what goes from the interface out, [`RxPath`]
//! what comes in from the socket; both are driven by the data path thread
//! ([`super::pump`]) with the node locked (every packet is sealed and
//! opened by the node's sessions, in place in these buffers), and a
//! [`TxPath`] by the [`super::driver`] for the userspace stack's packets.
//! Nothing here waits for anything but room in a full socket.
//!
//! With interface offloads on ([`super::tun::Offload::On`]):
//!
//! - out: a read from the interface is one packet or a TCP super-packet of
//!   up to 64 KiB. [`Segmenter`] cuts it into MSS-size segments, each
//!   written straight into its place in one send buffer with room for the
//!   transport header before it and the tag after it; the node seals each
//!   in place, so the datagrams lie back to back and equal-size runs to one
//!   endpoint leave in one `sendmsg` (UDP GSO, at most
//!   [`GSO_BYTES`] per send).
//! - in: one `recvmmsg` takes up to [`BATCH`] messages, each holding many
//!   datagrams of one sender (UDP GRO); the node opens each in place, and
//!   [`Coalescer`] merges consecutive TCP segments of a flow into one
//!   interface write with a GSO header, so the kernel's TCP sees the same
//!   super-packets the sender's kernel made.
//!
//! Without them the same code carries one packet per read and write. No
//! buffer is allocated per packet: every buffer here is made once.

use std::io::{self, IoSliceMut};
use std::net::SocketAddr;

use kairos_core::node::{Input, Outbound, HEADROOM, RELAY_HEADROOM, TAILROOM};
use kairos_core::offload::{complete_checksum, Coalescer, GsoKind, Push, Segmenter, VnetHdr, VNET_HDR_LEN};
use kairos_core::session::DropReason;
use kairos_core::time::Instant;
use quinn_udp::RecvMeta;

use super::mesh::MeshNode;
use super::tun::TunIo;
use super::udp::MeshSocket;

/// Where received packets go: the interface, the userspace stack, or a
/// test's sink. A write never waits.
pub trait PacketSink {
    /// Writes one packet (after its `virtio_net_hdr` when offloads are on).
    fn write(&self, packet: &[u8]) -> io::Result<usize>;
}

impl PacketSink for TunIo {
    fn write(&self, packet: &[u8]) -> io::Result<usize> {
        self.send(packet)
    }
}

/// Messages taken per receive call.
pub const BATCH: usize = 4;
/// The largest message received (a GRO message is at most 64 KiB).
const MAX_MESSAGE: usize = 65535;
/// The largest IP packet read from the interface.
const MAX_PACKET: usize = 65535;
/// The most bytes one GSO send carries: a UDP payload over IPv4 is at most
/// 65507 bytes, GSO or not.
pub const GSO_BYTES: usize = 65507;
/// Further receive calls without waiting before the merged packets are
/// written: bigger writes when traffic is flowing, no wait when it is not.
const DRAIN: usize = 8;
/// The send buffer: two 64 KiB GSO sends with their segments' headroom.
const SEGMENT_BUF: usize = 2 * 65536 + 16 * 1024;

/// Counters of the data path (in `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DatapathStats {
    /// Super-packets read from the interface (TSO).
    pub tso_packets: u64,
    /// Segments cut from them.
    pub tso_segments: u64,
    /// Sends of several datagrams at once (UDP GSO).
    pub gso_sends: u64,
    /// Receive calls (each up to [`BATCH`] messages).
    pub receives: u64,
    /// Datagrams received (GRO messages count each of theirs).
    pub datagrams: u64,
    /// Interface writes of merged TCP segments.
    pub gro_writes: u64,
    /// Segments written inside merged writes.
    pub gro_segments: u64,
    /// Packets from the interface dropped for a malformed offload header.
    pub offload_errors: u64,
    /// Datagrams the node refused, by [`DropReason::index`].
    pub rx_drops: [u64; DropReason::KINDS],
    /// Packets from the interface the node did not send, by reason.
    pub tx_drops: [u64; DropReason::KINDS],
}

/// One run of datagrams to one endpoint, back to back in the send buffer.
struct Batch {
    to: SocketAddr,
    start: usize,
    end: usize,
    /// The size of each datagram (the last may be shorter, which closes it).
    segment: usize,
    count: usize,
    closed: bool,
}

/// Interface -> node -> socket. See the module docs.
pub struct TxPath {
    offload: bool,
    /// One read from the interface: its `virtio_net_hdr` (with offloads)
    /// ends at `HEADROOM`, where the packet starts.
    buf: Vec<u8>,
    /// Segments sealed into datagrams, back to back.
    seg: Vec<u8>,
}

impl TxPath {
    /// Buffers for an interface with (`offload`) or without offloads.
    pub fn new(offload: bool) -> TxPath {
        TxPath {
            offload,
            buf: vec![0; HEADROOM + MAX_PACKET + TAILROOM],
            seg: if offload { vec![0; SEGMENT_BUF] } else { Vec::new() },
        }
    }

    /// Where a read from the interface goes: the packet starts at
    /// `HEADROOM`, after its `virtio_net_hdr` when offloads are on.
    fn read_buf(&mut self) -> &mut [u8] {
        let start = if self.offload {
            HEADROOM - VNET_HDR_LEN
        } else {
            HEADROOM
        };
        &mut self.buf[start..HEADROOM + MAX_PACKET]
    }

    /// Places `bytes` as if read from the interface; returns the count
    /// [`TxPath::handle`] takes.
    #[cfg(test)]
    fn load(&mut self, bytes: &[u8]) -> usize {
        self.read_buf()[..bytes.len()].copy_from_slice(bytes);
        bytes.len()
    }

    /// Reads the next packet from `tun`; `WouldBlock` when none is queued.
    pub fn try_recv(&mut self, tun: &TunIo) -> io::Result<usize> {
        tun.recv(self.read_buf())
    }

    /// Sends what a read of `n` bytes from the interface holds.
    pub fn handle(
        &mut self,
        node: &mut MeshNode,
        now: Instant,
        socket: &MeshSocket,
        stats: &mut DatapathStats,
        n: usize,
    ) {
        if !self.offload {
            return self.single(node, now, socket, stats, n);
        }
        let Some(len) = n.checked_sub(VNET_HDR_LEN) else {
            stats.offload_errors += 1;
            return;
        };
        let hdr = match VnetHdr::parse(&self.buf[HEADROOM - VNET_HDR_LEN..HEADROOM]) {
            Ok(h) => h,
            Err(e) => {
                stats.offload_errors += 1;
                tracing::debug!(error = %e, "packet from the interface with a bad offload header");
                return;
            }
        };
        if hdr.gso == GsoKind::None {
            if let Err(e) = complete_checksum(&hdr, &mut self.buf[HEADROOM..HEADROOM + len]) {
                stats.offload_errors += 1;
                tracing::debug!(error = %e, "packet from the interface with a bad checksum request");
                return;
            }
            return self.single(node, now, socket, stats, len);
        }
        let TxPath { buf, seg, .. } = self;
        let mut segments = match Segmenter::new(&hdr, &buf[HEADROOM..HEADROOM + len]) {
            Ok(s) => s,
            Err(e) => {
                stats.offload_errors += 1;
                tracing::debug!(error = %e, "super-packet from the interface not segmented");
                return;
            }
        };
        stats.tso_packets += 1;
        let max = socket.offload().gso_segments.max(1);
        let room = HEADROOM + segments.segment_len() + TAILROOM;
        let origin = seg.as_ptr() as usize;
        let mut batch: Option<Batch> = None;
        // Where the next segment's area starts: its datagram, sealed for a
        // direct path, begins at `base + RELAY_HEADROOM`, right where the
        // previous one ended.
        let mut base = 0;
        loop {
            if base + room > seg.len() {
                flush(&mut batch, seg, socket, stats);
                base = 0;
            }
            let seg_len = match segments.next_into(&mut seg[base + HEADROOM..]) {
                None => break,
                Some(Ok(l)) => l,
                Some(Err(e)) => {
                    stats.offload_errors += 1;
                    tracing::debug!(error = %e, "segmenting failed");
                    break;
                }
            };
            stats.tso_segments += 1;
            let sealed = match node.handle_ip_packet(now, &mut seg[base..], seg_len) {
                Ok(Outbound::Datagram { to, datagram }) => {
                    Some((to, datagram.as_ptr() as usize - origin, datagram.len()))
                }
                Ok(Outbound::Queued) => None,
                Err(reason) => {
                    stats.tx_drops[reason.index()] += 1;
                    tracing::trace!(?reason, "overlay packet dropped");
                    None
                }
            };
            // Queued or dropped: the area is free again.
            let Some((to, at, len)) = sealed else { continue };
            if at != base + RELAY_HEADROOM {
                // Wrapped for a relay, so not where the run continues: alone.
                flush(&mut batch, seg, socket, stats);
                send(socket, &seg[at..at + len], to);
                base = 0;
                continue;
            }
            match &mut batch {
                Some(b)
                    if b.to == to
                        && b.end == at
                        && len <= b.segment
                        && !b.closed
                        && b.count < max
                        && b.end + len - b.start <= GSO_BYTES =>
                {
                    b.end += len;
                    b.count += 1;
                    b.closed = len < b.segment;
                }
                _ => {
                    flush(&mut batch, seg, socket, stats);
                    batch = Some(Batch {
                        to,
                        start: at,
                        end: at + len,
                        segment: len,
                        count: 1,
                        closed: false,
                    });
                }
            }
            base = at + len - RELAY_HEADROOM;
        }
        flush(&mut batch, seg, socket, stats);
    }

    /// Seals and sends one IP packet made inside the process (the
    /// userspace stack's), copied into place; one packet, no offloads.
    pub fn handle_packet(
        &mut self,
        node: &mut MeshNode,
        now: Instant,
        socket: &MeshSocket,
        stats: &mut DatapathStats,
        packet: &[u8],
    ) {
        let Some(room) = self.buf.get_mut(HEADROOM..HEADROOM + packet.len()) else {
            tracing::debug!(
                len = packet.len(),
                "overlay packet larger than any interface read; dropped"
            );
            return;
        };
        room.copy_from_slice(packet);
        self.single(node, now, socket, stats, packet.len());
    }

    /// The packet at `buf[HEADROOM..][..len]`, checksums complete: sealed and sent.
    fn single(
        &mut self,
        node: &mut MeshNode,
        now: Instant,
        socket: &MeshSocket,
        stats: &mut DatapathStats,
        len: usize,
    ) {
        match node.handle_ip_packet(now, &mut self.buf, len) {
            Ok(Outbound::Datagram { to, datagram }) => send(socket, datagram, to),
            Ok(Outbound::Queued) => {}
            Err(reason) => {
                stats.tx_drops[reason.index()] += 1;
                tracing::trace!(?reason, "overlay packet dropped");
            }
        }
    }
}

/// Sends the run in `batch`, if any.
fn flush(batch: &mut Option<Batch>, seg: &[u8], socket: &MeshSocket, stats: &mut DatapathStats) {
    let Some(b) = batch.take() else { return };
    if b.count > 1 {
        stats.gso_sends += 1;
    }
    if let Err(e) = socket.send_segments(&seg[b.start..b.end], b.segment, b.to) {
        tracing::debug!(error = %e, to = %b.to, "send failed");
    }
}

/// Socket -> node -> interface. See the module docs.
pub struct RxPath {
    offload: bool,
    /// [`BATCH`] messages of up to [`MAX_MESSAGE`] bytes.
    buf: Vec<u8>,
    meta: [RecvMeta; BATCH],
    coalescer: Coalescer,
    /// The merged packet after its `virtio_net_hdr`.
    gro: Vec<u8>,
    /// Whether the current [`RxPath::handle`] wrote to the interface.
    wrote: bool,
}

impl RxPath {
    /// Buffers for an interface with (`offload`) or without offloads.
    pub fn new(offload: bool) -> RxPath {
        RxPath {
            offload,
            buf: vec![0; BATCH * MAX_MESSAGE],
            meta: [RecvMeta::default(); BATCH],
            coalescer: Coalescer::new(),
            gro: if offload {
                vec![0; VNET_HDR_LEN + 65535]
            } else {
                Vec::new()
            },
            wrote: false,
        }
    }

    /// Takes the datagrams queued on `socket` (up to [`BATCH`] messages);
    /// returns how many messages; `WouldBlock` when nothing is queued.
    pub fn try_recv(&mut self, socket: &MeshSocket) -> io::Result<usize> {
        let mut bufs = slices(&mut self.buf);
        socket.try_recv_batch(&mut bufs, &mut self.meta)
    }

    /// Hands the `msgs` messages just received to the node, then whatever
    /// else is queued on the socket (up to [`DRAIN`] more calls while each
    /// call fills all [`BATCH`] messages), and writes what they carry to
    /// the interface. Returns whether anything was written to it.
    pub fn handle<T: PacketSink>(
        &mut self,
        node: &mut MeshNode,
        now: Instant,
        socket: &MeshSocket,
        tun: Option<&T>,
        stats: &mut DatapathStats,
        msgs: usize,
    ) -> bool {
        self.wrote = false;
        let mut msgs = msgs;
        for round in 0..=DRAIN {
            stats.receives += 1;
            for j in 0..msgs {
                let m = self.meta[j];
                let stride = if m.stride == 0 { m.len } else { m.stride };
                let mut at = j * MAX_MESSAGE;
                let end = at + m.len.min(MAX_MESSAGE);
                while at < end {
                    let len = (end - at).min(stride);
                    stats.datagrams += 1;
                    self.one(node, now, socket, tun, stats, m.addr, at, len);
                    at += len;
                }
            }
            // Fewer messages than asked for: the socket's queue was empty
            // when the call returned, so another call would only say so.
            if round == DRAIN || msgs < BATCH {
                break;
            }
            let mut bufs = slices(&mut self.buf);
            match socket.try_recv_batch(&mut bufs, &mut self.meta) {
                Ok(n) => msgs = n,
                Err(_) => break,
            }
        }
        self.flush_gro(tun, stats);
        self.wrote
    }

    /// One datagram at `buf[at..][..len]` from `from`.
    #[allow(clippy::too_many_arguments)]
    fn one<T: PacketSink>(
        &mut self,
        node: &mut MeshNode,
        now: Instant,
        socket: &MeshSocket,
        tun: Option<&T>,
        stats: &mut DatapathStats,
        from: SocketAddr,
        at: usize,
        len: usize,
    ) {
        let origin = self.buf.as_ptr() as usize;
        let delivered = match node.handle_datagram(now, from, &mut self.buf[at..at + len]) {
            Ok(Input::Deliver(packet)) => Some((packet.as_ptr() as usize - origin, packet.len())),
            Ok(Input::Send { to, datagram }) => {
                send(socket, datagram, to);
                None
            }
            Ok(Input::Consumed) => None,
            Err(reason) => {
                stats.rx_drops[reason.index()] += 1;
                tracing::trace!(%from, ?reason, "datagram dropped");
                None
            }
        };
        if let (Some((at, len)), Some(tun)) = (delivered, tun) {
            self.deliver(tun, stats, at, len);
        }
    }

    /// Writes the packet at `buf[at..][..len]` to the interface, merged
    /// with its neighbours where it can be.
    fn deliver<T: PacketSink>(&mut self, tun: &T, stats: &mut DatapathStats, at: usize, len: usize) {
        self.wrote = true;
        if !self.offload {
            write(tun, &self.buf[at..at + len]);
            return;
        }
        let mut push = self.coalescer.push(&mut self.gro, &self.buf[at..at + len]);
        if push == Push::Mismatch {
            self.flush_gro(Some(tun), stats);
            push = self.coalescer.push(&mut self.gro, &self.buf[at..at + len]);
        }
        if push == Push::Merged {
            return;
        }
        // Alone, after what is pending (order kept). The transport header
        // before the packet is spent: its header goes there.
        self.flush_gro(Some(tun), stats);
        VnetHdr::NONE.emit(&mut self.buf[at - VNET_HDR_LEN..at]);
        write(tun, &self.buf[at - VNET_HDR_LEN..at + len]);
    }

    /// Writes the merged packet, if any.
    fn flush_gro<T: PacketSink>(&mut self, tun: Option<&T>, stats: &mut DatapathStats) {
        let segments = self.coalescer.segments();
        let Some(n) = self.coalescer.finish(&mut self.gro) else {
            return;
        };
        if segments > 1 {
            stats.gro_writes += 1;
            stats.gro_segments += segments as u64;
        }
        if let Some(tun) = tun {
            write(tun, &self.gro[..n]);
        }
    }
}

/// The receive buffer as [`BATCH`] message buffers.
fn slices(buf: &mut [u8]) -> [IoSliceMut<'_>; BATCH] {
    let mut chunks = buf.chunks_mut(MAX_MESSAGE);
    std::array::from_fn(|_| IoSliceMut::new(chunks.next().expect("BATCH chunks")))
}

fn send(socket: &MeshSocket, datagram: &[u8], to: SocketAddr) {
    if let Err(e) = socket.send_to(datagram, to) {
        tracing::debug!(error = %e, %to, "send failed");
    }
}

fn write<T: PacketSink>(tun: &T, packet: &[u8]) {
    if let Err(e) = tun.write(packet) {
        tracing::debug!(error = %e, "cannot write to the interface");
    }
}

#[cfg(test)]
mod tests {
    //! Two real nodes on loopback sockets, the offload path end to end
    //! without an interface (a sink stands in for it), under a counting
    //! allocator: a steady stream allocates nothing.

    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::{Cell, RefCell};

    use kairos_core::election::MemberView;
    use kairos_core::identity::Identity;
    use kairos_core::ledger::Ed25519Verifier;
    use kairos_core::node::{MemberSlot, Node, NodeConfig, Path};
    use kairos_core::token::NetworkKeys;
    use rand_core::OsRng;

    use super::*;
    use crate::agent::mesh::{AgentLedger, Provider};
    use crate::clock::Clock;

    /// Counts allocations per thread (tests run on many threads at once).
    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    fn count() {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
    }

    fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }

    // SAFETY: every call goes to the system allocator unchanged.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count();
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            count();
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            count();
            unsafe { System.realloc(ptr, layout, new_size) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;

    /// Collects the TCP payload of what is written to it (an IPv6 packet
    /// after its `virtio_net_hdr`), in a buffer made once.
    struct Sink {
        payload: RefCell<Vec<u8>>,
        writes: Cell<u64>,
    }

    impl PacketSink for Sink {
        fn write(&self, bytes: &[u8]) -> io::Result<usize> {
            let hdr = VnetHdr::parse(bytes).expect("a virtio header");
            let packet = &bytes[VNET_HDR_LEN..];
            assert_eq!(packet[0] >> 4, 6, "IPv6");
            assert_eq!(packet[6], 6, "TCP");
            let tcp = &packet[40..];
            let data = (tcp[12] >> 4) as usize * 4;
            if hdr.gso != GsoKind::None {
                assert!(hdr.needs_csum && hdr.gso_size as usize == MSS);
            }
            let mut payload = self.payload.borrow_mut();
            assert!(
                payload.len() + tcp.len() - data <= payload.capacity(),
                "the sink never grows"
            );
            payload.extend_from_slice(&tcp[data..]);
            self.writes.set(self.writes.get() + 1);
            Ok(bytes.len())
        }
    }

    struct Side {
        node: MeshNode,
        socket: MeshSocket,
        tx: TxPath,
        rx: RxPath,
        stats: DatapathStats,
        out: Vec<u8>,
    }

    impl Side {
        /// `bytes` (a virtio header and a packet) as if read from the
        /// interface, handled by the send path.
        fn send_super(&mut self, bytes: &[u8], now: Instant) {
            let n = self.tx.load(bytes);
            let Side {
                node,
                socket,
                tx,
                stats,
                ..
            } = self;
            tx.handle(node, now, socket, stats, n);
        }
    }

    const MSS: usize = 1280;
    const PAYLOAD: usize = 50 * MSS + 700;

    fn side(keys: &NetworkKeys, clock: &Clock, socket: MeshSocket, peer_port: u16) -> Side {
        let mut config = NodeConfig::default();
        config.port = socket.local_addr().unwrap().port();
        config.lan_beacons = false;
        config.roles = None;
        config
            .bootstrap
            .push(SocketAddr::from(([127, 0, 0, 1], peer_port)))
            .unwrap();
        let slots: Box<[MemberSlot<Provider>]> = (0..4).map(|_| None).collect();
        let node = Node::new(
            Identity::generate(&mut OsRng),
            keys,
            config,
            OsRng,
            slots,
            kairos_core::node::BoxedTunnels::new(4),
            Box::<AgentLedger>::default(),
            Ed25519Verifier,
            vec![MemberView::default(); 5].into_boxed_slice(),
            clock.wall_at_zero(),
        );
        Side {
            node,
            socket,
            tx: TxPath::new(true),
            rx: RxPath::new(true),
            stats: DatapathStats::default(),
            out: vec![0; 4096],
        }
    }

    /// Runs `side`'s timers, sends what it wants sent and takes what
    /// arrived.
    fn pump(side: &mut Side, clock: &Clock, sink: &Sink) {
        let now = clock.now();
        if side.node.poll_timeout().is_some_and(|t| t <= now) {
            side.node.handle_timeout(now);
        }
        while let Some(t) = side.node.poll_transmit(now, &mut side.out) {
            if let kairos_core::node::Destination::Unicast(to) = t.destination {
                side.socket.send_to(&side.out[..t.len], to).unwrap();
            }
        }
        if let Ok(msgs) = side.rx.try_recv(&side.socket) {
            let Side {
                node,
                socket,
                rx,
                stats,
                ..
            } = side;
            rx.handle(node, now, socket, Some(sink), stats, msgs);
        }
    }

    /// An IPv6 TCP super-packet of `PAYLOAD` bytes at `seq`, as a TUN
    /// with TSO hands it over.
    fn super_packet(src: std::net::Ipv6Addr, dst: std::net::Ipv6Addr, seq: u32, fill: u8) -> Vec<u8> {
        let mut p = vec![0u8; VNET_HDR_LEN + 40 + 20 + PAYLOAD];
        VnetHdr {
            needs_csum: true,
            gso: GsoKind::TcpV6,
            hdr_len: 60,
            gso_size: MSS as u16,
            csum_start: 40,
            csum_offset: 16,
        }
        .emit(&mut p[..VNET_HDR_LEN]);
        let ip = &mut p[VNET_HDR_LEN..];
        ip[0] = 0x60;
        ip[4..6].copy_from_slice(&((20 + PAYLOAD) as u16).to_be_bytes());
        ip[6] = 6;
        ip[7] = 64;
        ip[8..24].copy_from_slice(&src.octets());
        ip[24..40].copy_from_slice(&dst.octets());
        let tcp = &mut ip[40..];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5201u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        tcp[8..12].copy_from_slice(&1u32.to_be_bytes());
        tcp[12] = 5 << 4;
        tcp[13] = 0x18; // ACK, PSH
        tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
        for (i, b) in tcp[20..].iter_mut().enumerate() {
            *b = fill.wrapping_add((i % 251) as u8);
        }
        p
    }

    #[test]
    fn a_steady_stream_is_segmented_sent_in_runs_merged_and_allocates_nothing() {
        on_big_stack(stream);
    }

    #[test]
    fn replayed_forged_truncated_made_up_and_reflected_datagrams_are_dropped_and_counted_by_reason() {
        on_big_stack(forgeries);
    }

    /// Two nodes on loopback sockets with a direct session up.
    fn met(clock: &Clock, sink: &Sink) -> (Side, Side) {
        let keys = NetworkKeys::derive(&[7; 32]);
        let (sa, sb) = (MeshSocket::bind(0).unwrap(), MeshSocket::bind(0).unwrap());
        let (pa, pb) = (sa.local_addr().unwrap().port(), sb.local_addr().unwrap().port());
        let mut a = side(&keys, clock, sa, pb);
        let mut b = side(&keys, clock, sb, pa);
        let (ida, idb) = (a.node.node_id(), b.node.node_id());
        let start = std::time::Instant::now();
        while !(matches!(a.node.path(&idb), Some(Path::Direct(_)))
            && matches!(b.node.path(&ida), Some(Path::Direct(_))))
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(10),
                "the two nodes never met"
            );
            pump(&mut a, clock, sink);
            pump(&mut b, clock, sink);
            // Until either socket has something, or a timer may be due.
            let _ = crate::agent::udp::wait(
                &b.socket,
                rustix::event::PollFlags::IN,
                Some(std::time::Duration::from_millis(1)),
            );
        }
        (a, b)
    }

    /// Runs `f` on a thread with room for two nodes.
    fn on_big_stack(f: impl FnOnce() + Send + 'static) {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(f)
            .unwrap()
            .join()
            .unwrap();
    }

    fn sink() -> Sink {
        Sink {
            payload: RefCell::new(Vec::with_capacity(2 * PAYLOAD)),
            writes: Cell::new(0),
        }
    }

    /// Pumps `side` until `done` holds; fails with `what` and its drops at
    /// `deadline`.
    fn pump_until(
        side: &mut Side,
        clock: &Clock,
        sink: &Sink,
        deadline: std::time::Instant,
        what: &str,
        done: impl Fn(&Side) -> bool,
    ) {
        while !done(side) {
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {:?}",
                side.stats.rx_drops
            );
            pump(side, clock, sink);
            std::thread::yield_now();
        }
    }

    fn forgeries() {
        let clock = Clock::start();
        let sink = sink();
        let (mut a, mut b) = met(&clock, &sink);
        let packet = super_packet(a.node.ipv6(), b.node.ipv6(), 1, 0);
        a.send_super(&packet, clock.now());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while sink.payload.borrow().len() < PAYLOAD {
            assert!(std::time::Instant::now() < deadline, "the stream arrives");
            pump(&mut b, &clock, &sink);
            std::thread::yield_now();
        }
        // The run's first datagram, still sealed in a's send buffer.
        let first = RELAY_HEADROOM..RELAY_HEADROOM + 60 + MSS + kairos_core::wire::TRANSPORT_OVERHEAD;
        let sealed = a.tx.seg[first].to_vec();
        // A counter never used: past the replay check, so the tag decides.
        let mut forged = sealed.clone();
        forged[8..16].copy_from_slice(&(1u64 << 40).to_le_bytes());
        let to = SocketAddr::from(([127, 0, 0, 1], b.socket.local_addr().unwrap().port()));
        for d in [&sealed[..], &forged[..], &sealed[..10]] {
            a.socket.send_to(d, to).unwrap();
        }
        // Counted from here: the meeting may have dropped announcements.
        let before = b.stats.rx_drops;
        let truncated = DropReason::Malformed(kairos_core::wire::Error::Truncated).index();
        let kinds = [DropReason::Replayed.index(), DropReason::Decrypt.index(), truncated];
        let new = |b: &Side, k: usize| b.stats.rx_drops[k] - before[k];
        pump_until(&mut b, &clock, &sink, deadline, "the three arrive", |b| {
            kinds.iter().all(|&k| new(b, k) >= 1)
        });
        let d = b.stats.rx_drops;
        assert_eq!(new(&b, kinds[0]), 1, "the replay: {d:?}");
        assert_eq!(new(&b, kinds[1]), 1, "the forgery: {d:?}");
        assert_eq!(new(&b, kinds[2]), 1, "the truncated one: {d:?}");
        assert_eq!(sink.payload.borrow().len(), PAYLOAD, "nothing more was delivered");

        // Handshake messages of every type, made up: an initiation and a
        // response of the right length with junk MACs, an unsolicited cookie
        // reply, and a truncated initiation.
        use kairos_core::wire::{COOKIE_REPLY_LEN, INITIATION_LEN, RESPONSE_LEN};
        let junk = |ty: u8, len: usize| {
            let mut d = vec![0x5au8; len];
            d[..4].copy_from_slice(&[ty, 0, 0, 0]);
            d
        };
        let made_up = [
            junk(1, INITIATION_LEN),
            junk(2, RESPONSE_LEN),
            junk(3, COOKIE_REPLY_LEN),
            junk(1, INITIATION_LEN - 20),
        ];
        for d in &made_up {
            a.socket.send_to(d, to).unwrap();
        }
        let bad_mac1 = DropReason::BadMac1.index();
        let unknown = DropReason::UnknownIndex.index();
        pump_until(&mut b, &clock, &sink, deadline, "the made-up handshakes arrive", |b| {
            new(b, bad_mac1) >= 1 && new(b, unknown) >= 2 && new(b, truncated) >= 2
        });
        let d = b.stats.rx_drops;
        assert_eq!(new(&b, bad_mac1), 1, "the initiation with a junk MAC1: {d:?}");
        // A response or cookie reply names the session it answers: none of ours.
        assert_eq!(new(&b, unknown), 2, "response and cookie reply: {d:?}");
        assert_eq!(new(&b, truncated), 2, "and the truncated initiation: {d:?}");

        // a's own datagram reflected back to it: not a session of a's.
        let a_before = a.stats.rx_drops[unknown];
        let back = SocketAddr::from(([127, 0, 0, 1], a.socket.local_addr().unwrap().port()));
        b.socket.send_to(&sealed, back).unwrap();
        pump_until(&mut a, &clock, &sink, deadline, "the reflection arrives", |a| {
            a.stats.rx_drops[unknown] > a_before
        });
        // It names b's session index, which is none of a's.
        assert_eq!(
            a.stats.rx_drops[unknown] - a_before,
            1,
            "the reflection: {:?}",
            a.stats.rx_drops
        );
        assert_eq!(sink.payload.borrow().len(), PAYLOAD, "nothing more was delivered");
    }

    fn stream() {
        let clock = Clock::start();
        let sink = sink();
        let (mut a, mut b) = met(&clock, &sink);
        let (src, dst) = (a.node.ipv6(), b.node.ipv6());
        let packets: Vec<Vec<u8>> = (0..4u8).map(|k| super_packet(src, dst, 1, k)).collect();

        let mut seq = 1u32;
        let mut counted = 0;
        for round in 0..60 {
            let packet = &packets[round % packets.len()];
            let mut packet = packet.clone();
            packet[VNET_HDR_LEN + 44..VNET_HDR_LEN + 48].copy_from_slice(&seq.to_be_bytes());
            sink.payload.borrow_mut().clear();
            let before = allocations();
            let now = clock.now();
            a.send_super(&packet, now);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while sink.payload.borrow().len() < PAYLOAD {
                let msgs = match b.rx.try_recv(&b.socket) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        assert!(
                            std::time::Instant::now() < deadline,
                            "round {round}: the datagrams arrive"
                        );
                        std::thread::yield_now();
                        continue;
                    }
                    Err(e) => panic!("receive: {e}"),
                };
                let Side {
                    node,
                    socket,
                    rx,
                    stats,
                    ..
                } = &mut b;
                rx.handle(node, clock.now(), socket, Some(&sink), stats, msgs);
            }
            // The first rounds warm up (socket state, lazily made buffers).
            if round >= 10 {
                counted += allocations() - before;
            }
            assert_eq!(
                sink.payload.borrow().as_slice(),
                &packet[VNET_HDR_LEN + 60..],
                "round {round}: the payload arrived intact and in order"
            );
            seq = seq.wrapping_add(PAYLOAD as u32);
        }
        assert_eq!(counted, 0, "allocations in 50 rounds of 64 KiB super-packets");
        let (sa, sb) = (a.stats, b.stats);
        assert_eq!(sa.tso_packets, 60);
        assert_eq!(sa.tso_segments, 60 * 51);
        assert!(sa.gso_sends >= 60, "each super-packet left in GSO runs: {sa:?}");
        assert!(
            sb.gro_writes >= 60 && sb.gro_segments > 50 * 40,
            "merged on arrival: {sb:?}"
        );
        assert!(
            sink.writes.get() < 60 * 10,
            "far fewer writes than segments: {}",
            sink.writes.get()
        );
    }
}
