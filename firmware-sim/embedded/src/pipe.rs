//! The overlay device: fixed packet queues between the core and the
//! overlay IP stack, seen by embassy-net as an IP-medium driver.
//!
//! The core delivers decrypted overlay packets ([`Pipe::push_to_stack`]);
//! the overlay stack reads them through [`TunnelDevice`], as it would read a
//! TUN device. What the stack sends lands in the other queue, which the node
//! task drains ([`Pipe::pop_from_stack`]) into `handle_ip_packet`. Each
//! queue holds [`PIPE_PACKETS`] packets of at most [`OVERLAY_MTU`] bytes; a
//! packet that does not fit is dropped and counted, as a full NIC ring
//! drops a frame.
//!
//! The pipe owns the queues and their wakers only. It never parses or
//! changes a packet, and never blocks: both sides are one task.

use core::cell::RefCell;
use core::task::{Context, Poll};

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::WakerRegistration;
use heapless::Deque;

/// The overlay interface's MTU: a sealed packet (plus the core's transport
/// header, tag and relay envelope) must fit an underlay datagram.
pub const OVERLAY_MTU: usize = 1280;
/// Packets each direction of the pipe holds.
pub const PIPE_PACKETS: usize = 2;

/// One packet in a queue.
pub struct Packet {
    len: u16,
    bytes: [u8; OVERLAY_MTU],
}

impl Packet {
    const fn empty() -> Self {
        Packet {
            len: 0,
            bytes: [0; OVERLAY_MTU],
        }
    }

    /// The packet's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// Packets the pipe refused because a queue was full or they were too large.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipeDrops {
    /// Delivered by the core while the stack's queue was full or too large.
    pub to_stack: u32,
    /// Sent by the stack while the core's queue was full.
    pub from_stack: u32,
}

struct Queues {
    to_stack: Deque<Packet, PIPE_PACKETS>,
    from_stack: Deque<Packet, PIPE_PACKETS>,
    /// The overlay stack's runner, waiting for a packet to read.
    stack_waker: WakerRegistration,
    /// The node task, waiting for a packet the stack sent.
    node_waker: WakerRegistration,
    drops: PipeDrops,
}

/// See the module docs.
pub struct Pipe {
    queues: RefCell<Queues>,
}

impl Default for Pipe {
    fn default() -> Self {
        Self::new()
    }
}

impl Pipe {
    /// An empty pipe.
    pub const fn new() -> Self {
        Pipe {
            queues: RefCell::new(Queues {
                to_stack: Deque::new(),
                from_stack: Deque::new(),
                stack_waker: WakerRegistration::new(),
                node_waker: WakerRegistration::new(),
                drops: PipeDrops {
                    to_stack: 0,
                    from_stack: 0,
                },
            }),
        }
    }

    /// Hands a packet the core delivered to the overlay stack. Returns
    /// whether it was queued (a full queue or an oversized packet drops it).
    pub fn push_to_stack(&self, packet: &[u8]) -> bool {
        let mut q = self.queues.borrow_mut();
        if packet.len() > OVERLAY_MTU || q.to_stack.is_full() {
            q.drops.to_stack += 1;
            return false;
        }
        let mut p = Packet::empty();
        p.bytes[..packet.len()].copy_from_slice(packet);
        p.len = packet.len() as u16;
        let _ = q.to_stack.push_back(p);
        q.stack_waker.wake();
        true
    }

    /// Ready when the overlay stack has sent a packet; otherwise registers
    /// the node task's waker.
    pub fn poll_from_stack(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = self.queues.borrow_mut();
        if q.from_stack.is_empty() {
            q.node_waker.register(cx.waker());
            return Poll::Pending;
        }
        Poll::Ready(())
    }

    /// Copies the oldest packet the overlay stack sent into `out` (which
    /// must hold [`OVERLAY_MTU`] bytes) and returns its length.
    pub fn pop_from_stack(&self, out: &mut [u8]) -> Option<usize> {
        let mut q = self.queues.borrow_mut();
        let p = q.from_stack.pop_front()?;
        let n = p.len as usize;
        out[..n].copy_from_slice(p.as_bytes());
        // The stack may be waiting for room to transmit.
        q.stack_waker.wake();
        Some(n)
    }

    /// What the pipe dropped so far.
    pub fn drops(&self) -> PipeDrops {
        self.queues.borrow().drops
    }
}

/// The overlay stack's side of a [`Pipe`]: an IP-medium
/// `embassy_net_driver::Driver`, like a TUN device.
pub struct TunnelDevice<'a> {
    pipe: &'a Pipe,
}

impl<'a> TunnelDevice<'a> {
    /// The device over `pipe`.
    pub fn new(pipe: &'a Pipe) -> Self {
        TunnelDevice { pipe }
    }
}

/// Reads one packet the core delivered.
pub struct RxToken<'a> {
    pipe: &'a Pipe,
}

/// Queues one packet for the core.
pub struct TxToken<'a> {
    pipe: &'a Pipe,
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        // `receive` checked that a packet is there, and nothing runs between.
        let mut p = self
            .pipe
            .queues
            .borrow_mut()
            .to_stack
            .pop_front()
            .unwrap_or(Packet::empty());
        let n = p.len as usize;
        f(&mut p.bytes[..n])
    }
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = Packet::empty();
        let n = len.min(OVERLAY_MTU);
        let r = f(&mut p.bytes[..n]);
        p.len = n as u16;
        let mut q = self.pipe.queues.borrow_mut();
        if q.from_stack.push_back(p).is_err() {
            q.drops.from_stack += 1;
        }
        q.node_waker.wake();
        r
    }
}

impl embassy_net_driver::Driver for TunnelDevice<'_> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let mut q = self.pipe.queues.borrow_mut();
        if q.to_stack.is_empty() {
            q.stack_waker.register(cx.waker());
            return None;
        }
        Some((RxToken { pipe: self.pipe }, TxToken { pipe: self.pipe }))
    }

    fn transmit(&mut self, cx: &mut Context<'_>) -> Option<TxToken<'_>> {
        let mut q = self.pipe.queues.borrow_mut();
        if q.from_stack.is_full() {
            // The node task drains the queue and wakes the stack's runner
            // through the socket it serves; register so a drain retries.
            q.stack_waker.register(cx.waker());
            return None;
        }
        Some(TxToken { pipe: self.pipe })
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = OVERLAY_MTU;
        caps.max_burst_size = Some(PIPE_PACKETS);
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::task::Waker;
    use embassy_net_driver::{Driver, RxToken as _, TxToken as _};

    fn cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn packets_cross_in_order_and_overflow_is_counted() {
        let pipe = Pipe::new();
        let mut dev = TunnelDevice::new(&pipe);
        assert!(dev.receive(&mut cx()).is_none());
        assert!(pipe.push_to_stack(b"one"));
        assert!(pipe.push_to_stack(b"two"));
        assert!(!pipe.push_to_stack(b"three"), "the queue holds two");
        assert!(!pipe.push_to_stack(&[0; OVERLAY_MTU + 1]), "too large");
        assert_eq!(pipe.drops().to_stack, 2);
        for want in [&b"one"[..], b"two"] {
            let (rx, _) = dev.receive(&mut cx()).expect("a packet");
            rx.consume(|p| assert_eq!(p, want));
        }
        assert!(dev.receive(&mut cx()).is_none());

        let mut out = [0u8; OVERLAY_MTU];
        assert_eq!(pipe.poll_from_stack(&mut cx()), Poll::Pending);
        assert_eq!(pipe.pop_from_stack(&mut out), None);
        for p in [&b"abc"[..], b"de"] {
            dev.transmit(&mut cx())
                .expect("room")
                .consume(p.len(), |b| b.copy_from_slice(p));
        }
        assert!(dev.transmit(&mut cx()).is_none(), "full until the node drains it");
        assert_eq!(pipe.poll_from_stack(&mut cx()), Poll::Ready(()));
        assert_eq!(pipe.pop_from_stack(&mut out), Some(3));
        assert_eq!(&out[..3], b"abc");
        assert_eq!(pipe.pop_from_stack(&mut out), Some(2));
        assert_eq!(&out[..2], b"de");
    }
}
