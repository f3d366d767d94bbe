//! [`QueueDevice`]: the smoltcp `phy::Device` of the userspace stack. It
//! has no wire: its receive queue is filled with the overlay packets the
//! node delivers (opened by the node's sessions), and what smoltcp
//! transmits lands in its transmit queue, which the stack hands to the
//! driver for `Node::handle_ip_packet`. Medium IP: packets are bare IPv4 or
//! IPv6, as on the TUN.
//!
//! Both queues are bounded ([`RX_QUEUE`], [`TX_QUEUE`] packets), like a
//! NIC's rings: a packet that finds its queue full is dropped and counted,
//! and TCP retransmits it. It never blocks and never reads a clock.

use std::collections::VecDeque;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// Packets waiting for smoltcp.
pub const RX_QUEUE: usize = 512;
/// Packets smoltcp made that the driver has not taken yet.
pub const TX_QUEUE: usize = 512;

/// See the module docs.
#[derive(Debug)]
pub struct QueueDevice {
    mtu: usize,
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    /// Packets dropped because the receive queue was full.
    pub rx_dropped: u64,
}

impl QueueDevice {
    /// A device with empty queues for packets of up to `mtu` bytes.
    pub fn new(mtu: usize) -> QueueDevice {
        QueueDevice {
            mtu,
            rx: VecDeque::with_capacity(RX_QUEUE),
            tx: VecDeque::with_capacity(TX_QUEUE),
            rx_dropped: 0,
        }
    }

    /// Queues a packet the node delivered; `false` (and counted) when the
    /// queue is full or the packet is larger than the MTU.
    pub fn push_rx(&mut self, packet: Vec<u8>) -> bool {
        if self.rx.len() >= RX_QUEUE || packet.len() > self.mtu {
            self.rx_dropped += 1;
            return false;
        }
        self.rx.push_back(packet);
        true
    }

    /// Whether the receive queue has room for another packet.
    pub fn rx_has_room(&self) -> bool {
        self.rx.len() < RX_QUEUE
    }

    /// The oldest packet smoltcp transmitted.
    pub fn pop_tx(&mut self) -> Option<Vec<u8>> {
        self.tx.pop_front()
    }
}

impl phy::Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken, TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        // A full queue: smoltcp keeps the data in its socket buffers and
        // tries again at the next poll.
        (self.tx.len() < TX_QUEUE).then_some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // One packet per call: smoltcp's TCP sends in MSS-size segments.
        caps.max_burst_size = None;
        caps
    }
}

/// One received packet.
pub struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

/// Room for one packet in the transmit queue.
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        // A reply token may be used while the queue is full (receive gives
        // one per packet): the packet is dropped, as a NIC would.
        if self.0.len() < TX_QUEUE {
            self.0.push_back(packet);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::{Device, RxToken as _, TxToken as _};

    #[test]
    fn packets_go_through_the_queues_in_order() {
        let mut dev = QueueDevice::new(1400);
        let now = Instant::from_millis(0);
        assert!(dev.receive(now).is_none());
        assert!(dev.push_rx(vec![1, 2, 3]));
        assert!(dev.push_rx(vec![4]));
        let (rx, _) = dev.receive(now).unwrap();
        assert_eq!(rx.consume(|p| p.to_vec()), [1, 2, 3]);
        let (rx, _) = dev.receive(now).unwrap();
        assert_eq!(rx.consume(|p| p.to_vec()), [4]);
        assert!(dev.receive(now).is_none());

        dev.transmit(now).unwrap().consume(2, |b| b.copy_from_slice(&[9, 8]));
        dev.transmit(now).unwrap().consume(1, |b| b[0] = 7);
        assert_eq!(dev.pop_tx(), Some(vec![9, 8]));
        assert_eq!(dev.pop_tx(), Some(vec![7]));
        assert_eq!(dev.pop_tx(), None);
        let caps = dev.capabilities();
        assert_eq!(caps.medium, Medium::Ip);
        assert_eq!(caps.max_transmission_unit, 1400);
    }

    #[test]
    fn full_queues_drop_instead_of_growing() {
        let mut dev = QueueDevice::new(1400);
        let now = Instant::from_millis(0);
        for _ in 0..RX_QUEUE {
            assert!(dev.push_rx(vec![0; 20]));
        }
        assert!(!dev.rx_has_room());
        assert!(!dev.push_rx(vec![0; 20]));
        assert!(!QueueDevice::new(100).push_rx(vec![0; 101]), "larger than the MTU");
        assert_eq!(dev.rx_dropped, 1);

        for _ in 0..TX_QUEUE {
            dev.transmit(now).unwrap().consume(1, |_| ());
        }
        assert!(dev.transmit(now).is_none(), "no token while the queue is full");
        // A reply token taken with a received packet drops on a full queue.
        let (_, tx) = dev.receive(now).unwrap();
        tx.consume(1, |_| ());
        assert_eq!(dev.tx.len(), TX_QUEUE);
    }
}
