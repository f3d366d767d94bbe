//! [`Pump`]: the data path thread, and [`Shared`], the node it shares with
//! the [`super::driver`].
//!
//! The thread blocks in `poll(2)` on the mesh socket, the interface and an
//! eventfd (the driver's stop signal), and moves packets between socket
//! and interface through the node, locked for each batch: datagrams in
//! ([`RxPath`]), the packets the kernel answers at once (an echo reply, a
//! TCP ACK, read right after the writes that caused them), and packets out
//! ([`TxPath`]). It never enters the async runtime: a packet's way through
//! the agent is one wake-up of one thread and a few system calls, where a
//! runtime task took the reactor's turn, the task's wake-up and a poll of
//! every source it waits on (measured: about 34% of the agent's CPU per
//! ping went to that, against 14% for boringtun's threads).
//!
//! The driver keeps everything else (timers, the API, LAN beacons, events
//! to disk and to the interface's addresses) and locks the node for it.
//! After each batch the thread sends what the node has to send (LAN
//! beacons excepted: the driver owns their socket) and checks whether the
//! node now has something for the driver: an event or a beacon wake the
//! driver at once; a timer earlier than the one the driver
//! waits on wakes it when that timer is due (the thread's `poll` ends
//! then). A stream of data packets wakes only this thread.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use kairos_core::node::Destination;
use kairos_core::time::Instant;
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec};

use super::datapath::{DatapathStats, PacketSink, RxPath, TxPath};
use super::mesh::MeshNode;
use super::tun::TunIo;
use super::udp::MeshSocket;
use super::userspace::StackSink;
use crate::clock::Clock;

/// Reads from the interface right after writes to it (the kernel's
/// immediate answers to what was written; a bulk receive's ACKs come a
/// few at a time).
const TURNAROUND: usize = 8;
/// Reads from the interface per batch, before the lock is let go (the
/// driver's turn) and the socket looked at again.
const TUN_BATCH: usize = 8;

/// Room for any datagram the node writes with `poll_transmit` (a held
/// packet of up to 1500 bytes plus the relay headroom and tags).
pub const TRANSMIT_BUF: usize = 4096;

/// Beacons held for the driver at most.
const MAX_BEACONS: usize = 4;

/// What both threads hold.
pub struct Locked {
    /// The node.
    pub node: Box<MeshNode>,
    /// The data path's counters (the driver counts beacon drops and the
    /// userspace stack's packets here too).
    pub stats: DatapathStats,
    /// LAN beacons the node gave the thread, for the driver to send (it
    /// owns the beacon socket).
    pub beacons: Vec<Vec<u8>>,
}

impl Locked {
    /// Sends what the node has to send from `socket` (`out` is room for
    /// one datagram), and holds its LAN beacons for the driver, which owns
    /// their socket.
    pub fn transmit(&mut self, now: Instant, out: &mut [u8], socket: &MeshSocket) {
        while let Some(t) = self.node.poll_transmit(now, out) {
            match t.destination {
                Destination::Unicast(to) => {
                    if let Err(e) = socket.send_to(&out[..t.len], to) {
                        tracing::debug!(%to, error = %e, "cannot send");
                    }
                }
                // Beacons repeat; a few waiting is already stale.
                Destination::LanMulticast if self.beacons.len() < MAX_BEACONS => {
                    self.beacons.push(out[..t.len].to_vec());
                }
                Destination::LanMulticast => {}
            }
        }
    }
}

/// The node behind its lock, and how the thread wakes the driver.
pub struct Shared {
    locked: Mutex<Locked>,
    /// The node's `poll_timeout` when the driver last set its timer, in
    /// microseconds (`u64::MAX`: none).
    driver_timer: AtomicU64,
    /// Wakes the driver.
    notify: tokio::sync::Notify,
    /// The thread stopped on an error the agent cannot run without.
    failed: AtomicBool,
}

impl Shared {
    /// `node` with no counters yet.
    pub fn new(node: Box<MeshNode>) -> Arc<Shared> {
        Arc::new(Shared {
            locked: Mutex::new(Locked {
                node,
                stats: DatapathStats::default(),
                beacons: Vec::new(),
            }),
            driver_timer: AtomicU64::new(u64::MAX),
            notify: tokio::sync::Notify::new(),
            failed: AtomicBool::new(false),
        })
    }

    /// The node and counters. A panic while they were locked has already
    /// ended the agent's usefulness, but not the need to save its state:
    /// the lock is taken anyway.
    pub fn lock(&self) -> MutexGuard<'_, Locked> {
        self.locked.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The driver's timer is set for the node's `at` (with the node locked,
    /// so the thread compares against the deadline the driver waits on).
    pub fn set_driver_timer(&self, at: Option<Instant>) {
        let micros = at.map_or(u64::MAX, Instant::as_micros);
        self.driver_timer.store(micros, Ordering::Relaxed);
    }

    /// Until the thread has something for the driver (at once if it had
    /// while the driver was busy).
    pub async fn notified(&self) {
        self.notify.notified().await;
    }

    /// Whether the thread stopped on an error (it logged which).
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed)
    }

    /// When the driver must see `node`: now (`Some(ZERO)`) if it has
    /// events or a datagram to send, at a timer earlier than the one the
    /// driver waits on, or never (`None`).
    fn driver_due(&self, node: &MeshNode) -> Option<Instant> {
        if node.has_events() {
            return Some(Instant::ZERO);
        }
        node.poll_timeout()
            .filter(|t| t.as_micros() < self.driver_timer.load(Ordering::Relaxed))
    }
}

/// Where the thread writes what the node delivers.
pub enum Sink {
    /// The interface.
    Tun(TunIo),
    /// The userspace stack (`bridge --userspace`).
    Stack(StackSink),
}

impl PacketSink for Sink {
    fn write(&self, packet: &[u8]) -> io::Result<usize> {
        match self {
            Sink::Tun(t) => t.write(packet),
            Sink::Stack(s) => s.write(packet),
        }
    }
}

/// The running thread. [`Pump::stop`] ends it.
pub struct Pump {
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
}

/// What the thread owns.
struct Thread {
    shared: Arc<Shared>,
    socket: Arc<MeshSocket>,
    sink: Option<Sink>,
    clock: Clock,
    stop: Arc<AtomicBool>,
    wake: Arc<OwnedFd>,
    rx: RxPath,
    tx: TxPath,
    /// A timer of the node the driver waits for no earlier than this: the
    /// thread wakes the driver then.
    driver_due: Option<Instant>,
    /// What `poll_transmit` writes.
    out: Vec<u8>,
}

impl Pump {
    /// Starts the thread on `socket` and `sink` (with interface offloads
    /// when `offload`).
    pub fn start(
        shared: Arc<Shared>,
        socket: Arc<MeshSocket>,
        sink: Option<Sink>,
        clock: Clock,
        offload: bool,
    ) -> io::Result<Pump> {
        let wake = Arc::new(rustix::event::eventfd(
            0,
            EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
        )?);
        let stop = Arc::new(AtomicBool::new(false));
        let thread = Thread {
            shared,
            socket,
            sink,
            clock,
            stop: stop.clone(),
            wake: wake.clone(),
            rx: RxPath::new(offload),
            tx: TxPath::new(offload),
            driver_due: None,
            out: vec![0; TRANSMIT_BUF],
        };
        let thread = std::thread::Builder::new().name("datapath".into()).spawn(move || {
            let (shared, stop) = (thread.shared.clone(), thread.stop.clone());
            // A panic ends the thread, not the agent: the driver hears of
            // it and stops the agent in order (state saved).
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.run())).is_err() {
                tracing::error!("the data path thread panicked");
            }
            if !stop.load(Ordering::Relaxed) {
                shared.failed.store(true, Ordering::Relaxed);
                shared.notify.notify_one();
            }
        })?;
        Ok(Pump {
            thread: Some(thread),
            stop,
            wake,
        })
    }

    /// Ends the thread and waits for it (it ends within one batch).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Pump {
    fn drop(&mut self) {
        self.halt();
    }
}

impl Thread {
    fn run(mut self) {
        while !self.stop.load(Ordering::Relaxed) {
            let (socket, tun) = match self.wait() {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "the data path cannot wait for packets; stopping");
                    break;
                }
            };
            if self.stop.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = self.batch(socket, tun) {
                tracing::error!(error = %e, "cannot read from the interface; stopping");
                break;
            }
        }
    }

    /// Blocks until the socket or the interface has something, the driver
    /// signals, or a timer the driver does not know of is due (then wakes
    /// the driver); returns which are ready.
    fn wait(&mut self) -> io::Result<(bool, bool)> {
        let timeout = self.driver_due.map(|due| {
            let left = due.as_micros().saturating_sub(self.clock.now().as_micros());
            Timespec {
                tv_sec: (left / 1_000_000) as _,
                tv_nsec: ((left % 1_000_000) * 1000) as _,
            }
        });
        let tun = match &self.sink {
            Some(Sink::Tun(t)) => Some(t.as_fd()),
            _ => None,
        };
        let mut fds = [
            PollFd::new(&*self.socket, PollFlags::IN),
            PollFd::new(&*self.wake, PollFlags::IN),
            PollFd::from_borrowed_fd(tun.unwrap_or(self.wake.as_fd()), PollFlags::IN),
        ];
        let n = if tun.is_some() { 3 } else { 2 };
        loop {
            match rustix::event::poll(&mut fds[..n], timeout.as_ref()) {
                Ok(0) => {
                    self.driver_due = None;
                    self.shared.notify.notify_one();
                    break;
                }
                Ok(_) => break,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        if !fds[1].revents().is_empty() {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(&*self.wake, &mut count);
        }
        let ready = |f: &PollFd<'_>| !f.revents().is_empty();
        Ok((ready(&fds[0]), n == 3 && ready(&fds[2])))
    }

    /// One batch with the node locked: what the socket holds, the
    /// interface's answers to it, then what the interface holds. An error
    /// is the interface's, which the agent cannot run without.
    fn batch(&mut self, socket_ready: bool, tun_ready: bool) -> io::Result<()> {
        let Thread {
            shared,
            socket,
            sink,
            clock,
            rx,
            tx,
            out,
            ..
        } = self;
        let mut locked = shared.lock();
        let Locked { node, stats, .. } = &mut *locked;
        let now = clock.now();
        let sink = sink.as_ref();
        let tun = match sink {
            Some(Sink::Tun(t)) => Some(t),
            _ => None,
        };
        // Reads from the interface: what it holds, and right after writes
        // to it what the kernel answered to them.
        let mut reads = if tun_ready { TUN_BATCH } else { 0 };
        if socket_ready {
            match rx.try_recv(socket) {
                Ok(msgs) => {
                    if rx.handle(node, now, socket, sink, stats, msgs) {
                        reads = reads.max(TURNAROUND);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // ICMP errors of earlier sends could surface here; not fatal.
                Err(e) => tracing::debug!(error = %e, "receive error"),
            }
        }
        if let Some(tun) = tun {
            for _ in 0..reads {
                match tx.try_recv(tun) {
                    Ok(n) => tx.handle(node, now, socket, stats, n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
        }
        // What the packets gave the node to send (a session's handshake,
        // keepalive or confirmation, control replies): the node marks a
        // session for output after each of its packets, and this costs one
        // look where the driver's turn cost a wake-up of the runtime.
        locked.transmit(now, out, socket);
        let Locked { node, beacons, .. } = &mut *locked;
        if !beacons.is_empty() {
            shared.notify.notify_one();
        }
        // A timer the driver does not know of yet: it is told when the
        // timer is due, not now (a packet moves the sessions' timers
        // earlier often, and mostly far ahead: telling the driver at once
        // cost a wake-up of the runtime per packet).
        self.driver_due = match shared.driver_due(node) {
            Some(t) if t <= now => {
                shared.notify.notify_one();
                None
            }
            due => due,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::IoSliceMut;
    use std::net::SocketAddr;
    use std::time::Duration;

    use kairos_core::identity::Identity;
    use kairos_core::node::NodeConfig;
    use kairos_core::token::NetworkKeys;
    use quinn_udp::RecvMeta;
    use rand_core::OsRng;

    use super::*;
    use crate::agent::udp;

    /// A node that beacons and says hello to `peer`, on `socket`'s port.
    fn node(socket: &MeshSocket, peer: SocketAddr) -> Box<MeshNode> {
        let mut config = NodeConfig::default();
        config.port = socket.local_addr().unwrap().port();
        config.lan_beacons = true;
        config.bootstrap.push(peer).unwrap();
        crate::agent::mesh::new_node(
            Identity::generate(&mut OsRng),
            &NetworkKeys::derive(&[3; 32]),
            config,
            4,
            Box::default(),
            Duration::from_secs(1_800_000_000),
        )
    }

    /// The thread takes a datagram, sends what the node then has to send
    /// (its hello to the bootstrap peer) from the mesh socket, hands the
    /// beacon it cannot send to the driver at once, wakes the driver when a
    /// timer it does not know of is due, and stops when told.
    #[test]
    fn the_thread_moves_datagrams_sends_what_the_node_has_and_wakes_the_driver() {
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(thread_test());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    async fn thread_test() {
        let patience = Duration::from_secs(5);
        let clock = Clock::start();
        let peer = MeshSocket::bind(0).unwrap();
        let peer_addr = SocketAddr::from(([127, 0, 0, 1], peer.local_addr().unwrap().port()));
        let socket = Arc::new(MeshSocket::bind(0).unwrap());
        let addr = SocketAddr::from(([127, 0, 0, 1], socket.local_addr().unwrap().port()));
        let shared = Shared::new(node(&socket, peer_addr));
        // The driver's timer: far beyond any of the node's.
        let far = clock.now() + kairos_core::time::Duration::from_secs(3600);
        shared.set_driver_timer(Some(far));
        let pump = Pump::start(shared.clone(), socket.clone(), None, clock, false).unwrap();

        peer.send_to(b"not a mesh datagram", addr).unwrap();
        assert!(udp::wait(&peer, PollFlags::IN, Some(patience)).unwrap(), "no hello");
        let mut buf = [0u8; 2048];
        let mut meta = [RecvMeta::default()];
        let n = peer
            .try_recv_batch(&mut [IoSliceMut::new(&mut buf)], &mut meta)
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(meta[0].addr, addr, "sent from the mesh socket");
        assert!(meta[0].len > 32, "a sealed hello");

        // The beacon went to the driver, which was woken for it.
        tokio::time::timeout(patience, shared.notified())
            .await
            .expect("the driver was not woken for the beacon");
        let due = {
            let mut locked = shared.lock();
            assert_eq!(locked.beacons.len(), 1, "one beacon for the driver");
            locked.beacons.clear();
            let dropped: u64 = locked.stats.rx_drops.iter().sum();
            assert_eq!(dropped, 1, "the datagram was taken, and dropped");
            // What the driver does at its timer: the node's next ones move
            // into the future.
            locked.node.handle_timeout(clock.now());
            while locked.node.poll_transmit(clock.now(), &mut buf).is_some() {}
            while locked.node.poll_event().is_some() {}
            locked.node.poll_timeout().expect("a node always has a timer")
        };
        assert!(due > clock.now() && due < far);
        // Another batch; then no packet comes, and only the node's timer,
        // earlier than the driver's, can wake the driver once it is due
        // (earlier wake-ups, for timers of the first batch, are let pass).
        peer.send_to(b"not a mesh datagram", addr).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while clock.now() < due {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            tokio::time::timeout(left, shared.notified())
                .await
                .expect("the driver was not woken for the node's timer");
        }
        assert_eq!(shared.lock().stats.rx_drops.iter().sum::<u64>(), 2);
        assert!(!shared.failed());
        pump.stop();
        assert!(!shared.failed(), "a stop asked for is no failure");
    }
}
