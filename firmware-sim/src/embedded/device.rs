//! The embedded node's network device: an IP-medium
//! `embassy_net_driver::Driver` attached to the simulator's links.
//!
//! The simulated network carries UDP payloads between hosts; an embedded
//! node's stack speaks IPv4. [`Frames`] sits between the two: a datagram
//! the network delivers becomes a real IPv4/UDP packet
//! ([`Frames::deliver`]) that embassy-net parses, and each packet
//! embassy-net transmits is parsed back into the datagram the network
//! carries ([`Frames::take_transmitted`]). Packets that are not UDP over
//! IPv4 (none are expected) are counted and dropped. The device never
//! decides where anything goes: the network routes, through NATs and all.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::task::{Context, Waker};

use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{IpProtocol, Ipv4Packet, Ipv4Repr, UdpPacket, UdpRepr};

/// The device's MTU (the simulator's links carry 1500-byte IP packets).
pub const MTU: usize = 1500;
/// IPv4 and UDP headers.
const HEADERS: usize = 20 + 8;

/// One datagram the node sent, as the network carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The node's source port.
    pub src_port: u16,
    /// Where it goes.
    pub to: SocketAddr,
    /// The UDP payload.
    pub payload: Vec<u8>,
}

#[derive(Default)]
struct Queues {
    rx: VecDeque<Vec<u8>>,
    tx: VecDeque<Vec<u8>>,
    waker: Option<Waker>,
    malformed: u64,
}

/// The packet queues between the network and the device, shared by the
/// world and the node's stack. See the module docs.
#[derive(Clone, Default)]
pub struct Frames(Rc<RefCell<Queues>>);

impl Frames {
    /// Hands the device a datagram from `from` to `to` as an IPv4/UDP packet.
    pub fn deliver(&self, from: SocketAddr, to: SocketAddrV4, payload: &[u8]) {
        let mut q = self.0.borrow_mut();
        let SocketAddr::V4(from) = from else {
            q.malformed += 1;
            return;
        };
        if HEADERS + payload.len() > MTU {
            q.malformed += 1;
            return;
        }
        let udp = UdpRepr {
            src_port: from.port(),
            dst_port: to.port(),
        };
        let ip = Ipv4Repr {
            src_addr: *from.ip(),
            dst_addr: *to.ip(),
            next_header: IpProtocol::Udp,
            payload_len: 8 + payload.len(),
            hop_limit: 64,
        };
        let mut frame = vec![0u8; HEADERS + payload.len()];
        let caps = ChecksumCapabilities::default();
        let mut packet = Ipv4Packet::new_unchecked(&mut frame[..]);
        ip.emit(&mut packet, &caps);
        udp.emit(
            &mut UdpPacket::new_unchecked(packet.payload_mut()),
            &(*from.ip()).into(),
            &(*to.ip()).into(),
            payload.len(),
            |b| b.copy_from_slice(payload),
            &caps,
        );
        q.rx.push_back(frame);
        if let Some(w) = q.waker.take() {
            w.wake();
        }
    }

    /// The datagrams the node transmitted since the last call, in order.
    pub fn take_transmitted(&self) -> Vec<Datagram> {
        let mut q = self.0.borrow_mut();
        let frames: Vec<Vec<u8>> = q.tx.drain(..).collect();
        let mut out = Vec::with_capacity(frames.len());
        for frame in frames {
            match parse(&frame) {
                Some(d) => out.push(d),
                None => q.malformed += 1,
            }
        }
        out
    }

    /// Packets dropped as not UDP over IPv4 (or too large).
    pub fn malformed(&self) -> u64 {
        self.0.borrow().malformed
    }
}

fn parse(frame: &[u8]) -> Option<Datagram> {
    let caps = ChecksumCapabilities::default();
    let packet = Ipv4Packet::new_checked(frame).ok()?;
    let ip = Ipv4Repr::parse(&packet, &caps).ok()?;
    if ip.next_header != IpProtocol::Udp {
        return None;
    }
    let udp_packet = UdpPacket::new_checked(packet.payload()).ok()?;
    let udp = UdpRepr::parse(&udp_packet, &ip.src_addr.into(), &ip.dst_addr.into(), &caps).ok()?;
    Some(Datagram {
        src_port: udp.src_port,
        to: SocketAddr::V4(SocketAddrV4::new(ip.dst_addr, udp.dst_port)),
        payload: udp_packet.payload().to_vec(),
    })
}

/// The driver embassy-net runs on.
pub struct SimDevice {
    frames: Frames,
}

impl SimDevice {
    /// A device on `frames`.
    pub fn new(frames: Frames) -> Self {
        SimDevice { frames }
    }
}

/// Reads one delivered packet.
pub struct RxToken(Vec<u8>);

/// Sends one packet.
pub struct TxToken<'a>(&'a Frames);

impl embassy_net_driver::RxToken for RxToken {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(mut self, f: F) -> R {
        f(&mut self.0)
    }
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let r = f(&mut frame);
        self.0 .0.borrow_mut().tx.push_back(frame);
        r
    }
}

impl embassy_net_driver::Driver for SimDevice {
    type RxToken<'a>
        = RxToken
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context<'_>) -> Option<(RxToken, TxToken<'_>)> {
        let mut q = self.frames.0.borrow_mut();
        match q.rx.pop_front() {
            Some(frame) => {
                drop(q);
                Some((RxToken(frame), TxToken(&self.frames)))
            }
            None => {
                q.waker = Some(cx.waker().clone());
                None
            }
        }
    }

    fn transmit(&mut self, _cx: &mut Context<'_>) -> Option<TxToken<'_>> {
        // The world takes everything transmitted after each poll.
        Some(TxToken(&self.frames))
    }

    fn link_state(&mut self, _cx: &mut Context<'_>) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ip
    }
}

/// The address a node on `addr` uses as its gateway (any other address
/// of its /24: on an IP-medium link it only makes a default route).
pub fn gateway_for(addr: Ipv4Addr) -> Ipv4Addr {
    let [a, b, c, d] = addr.octets();
    Ipv4Addr::new(a, b, c, if d == 1 { 2 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use embassy_net_driver::{Driver, RxToken as _, TxToken as _};

    #[test]
    fn datagrams_become_ipv4_udp_packets_and_back() {
        let frames = Frames::default();
        let mut dev = SimDevice::new(frames.clone());
        let from: SocketAddr = "203.0.113.7:4000".parse().unwrap();
        let me = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 51820);
        frames.deliver(from, me, b"payload");
        let mut cx = Context::from_waker(Waker::noop());
        let (rx, tx) = dev.receive(&mut cx).expect("a packet");
        let packet = rx.consume(|p| p.to_vec());
        let parsed = parse(&packet).expect("IPv4/UDP");
        assert_eq!((parsed.src_port, parsed.to), (4000, SocketAddr::V4(me)));
        assert_eq!(parsed.payload, b"payload");
        // What the stack transmits comes out as the network's datagram.
        tx.consume(packet.len(), |b| b.copy_from_slice(&packet));
        assert_eq!(frames.take_transmitted(), vec![parsed]);
        assert!(dev.receive(&mut cx).is_none());
        // Not UDP: counted, dropped.
        let mut bad = packet.clone();
        bad[9] = 6;
        dev.transmit(&mut cx)
            .unwrap()
            .consume(bad.len(), |b| b.copy_from_slice(&bad));
        assert!(frames.take_transmitted().is_empty());
        assert_eq!(frames.malformed(), 1);
    }
}
