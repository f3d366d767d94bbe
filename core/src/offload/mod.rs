//! The packet transforms behind Linux TUN offloads (`IFF_VNET_HDR` plus
//! `TUNSETOFFLOAD` with `TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6`): the kernel
//! then hands the TUN reader TCP super-packets of up to 64 KiB with a
//! partial checksum, and accepts such super-packets back, so one read or
//! write moves dozens of segments instead of one.
//!
//! This module owns:
//! - the 10-byte `virtio_net_hdr` in front of every packet ([`VnetHdr`]);
//! - completing a partial checksum ([`complete_checksum`]);
//! - TSO segmentation of a super-packet read from the TUN into MSS-sized IP
//!   packets, one per mesh datagram ([`Segmenter`], Linux's
//!   `tcp_gso_segment`, wireguard-go's `gsoSplit`);
//! - GRO: coalescing consecutive received TCP segments of one flow into one
//!   super-packet for a single TUN write ([`Coalescer`], Linux's
//!   `tcp_gro_receive`, wireguard-go's `tcpGRO`).
//!
//! It never touches a file descriptor (the host opens the TUN and sets the
//! offload flags), never allocates, and never verifies incoming checksums:
//! a packet from the mesh was authenticated by the AEAD and its sender
//! completed its checksum; a packet from the TUN comes from our own kernel.
//! Every length is checked against the bytes, so a malformed packet gets an
//! error (or [`Push::Unsuitable`]) and never a panic.
//!
//! The host must not set `TUN_F_TSO_ECN` (nor the UDP offloads): those GSO
//! types are refused as [`OffloadError::Unsupported`].

mod checksum;
mod coalesce;
mod segment;
mod vnet;

pub use checksum::complete_checksum;
pub use coalesce::{Coalescer, Push};
pub use segment::Segmenter;
pub use vnet::{GsoKind, VnetHdr, VNET_HDR_LEN};

use core::fmt;

/// Why a vnet header or a packet cannot be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffloadError {
    /// Shorter than a vnet header, or than the IP and TCP headers it declares.
    Truncated,
    /// A GSO type (the byte) or an IP protocol / IPv6 next header (the byte)
    /// this module does not segment.
    Unsupported(u8),
    /// Inconsistent headers: a wrong IP version for the GSO type, a fragment,
    /// a zero `gso_size`, a checksum offset outside the packet, a segment
    /// longer than an IP length field can say.
    Malformed,
    /// The output buffer cannot hold the segment.
    BufferTooSmall,
}

impl fmt::Display for OffloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OffloadError::Truncated => f.write_str("packet truncated"),
            OffloadError::Unsupported(t) => write!(f, "unsupported offload or protocol type {t}"),
            OffloadError::Malformed => f.write_str("malformed offload packet"),
            OffloadError::BufferTooSmall => f.write_str("output buffer too small"),
        }
    }
}

impl core::error::Error for OffloadError {}

/// The IP protocol number of TCP.
const PROTO_TCP: u8 = 6;
/// The fixed IPv4 header.
const IPV4_HEADER_LEN: usize = 20;
/// The fixed IPv6 header.
const IPV6_HEADER_LEN: usize = 40;
/// The TCP header without options.
const TCP_HEADER_LEN: usize = 20;
/// Offset of the checksum in the TCP header.
const TCP_CHECKSUM_OFFSET: usize = 16;
/// Offset of the flags byte in the TCP header.
const TCP_FLAGS_OFFSET: usize = 13;

/// The TCP flag bits used here (the byte at offset 13).
mod flags {
    pub const FIN: u8 = 0x01;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const CWR: u8 = 0x80;
}

/// Where the headers of one IPv4 or IPv6 TCP packet end, read from the
/// packet itself.
#[derive(Debug, Clone, Copy)]
struct TcpHeaders {
    v6: bool,
    /// IP header length (20..=60 for IPv4, 40 for IPv6).
    ip_len: usize,
    /// TCP header length, options included (20..=60).
    tcp_len: usize,
    /// The packet length the IP header states (IPv4 total length, IPv6
    /// 40 + payload length); may differ from the slice's.
    stated_len: usize,
}

impl TcpHeaders {
    /// IP plus TCP header length.
    fn len(&self) -> usize {
        self.ip_len + self.tcp_len
    }

    /// The source and destination addresses, contiguous in both versions
    /// (the part of the pseudo-header that comes from the packet).
    fn addrs<'p>(&self, packet: &'p [u8]) -> &'p [u8] {
        if self.v6 {
            &packet[8..40]
        } else {
            &packet[12..20]
        }
    }

    /// Parses the IP and TCP headers at the start of `packet`. Refuses IPv4
    /// fragments and IPv6 extension headers; allows IPv4 options.
    fn parse(packet: &[u8]) -> Result<TcpHeaders, OffloadError> {
        let first = *packet.first().ok_or(OffloadError::Truncated)?;
        let (v6, ip_len, stated_len) = match first >> 4 {
            4 => {
                if packet.len() < IPV4_HEADER_LEN {
                    return Err(OffloadError::Truncated);
                }
                let ihl = usize::from(first & 0x0f) * 4;
                if ihl < IPV4_HEADER_LEN {
                    return Err(OffloadError::Malformed);
                }
                // More-fragments bit or a fragment offset.
                if u16::from_be_bytes([packet[6], packet[7]]) & 0x3fff != 0 {
                    return Err(OffloadError::Malformed);
                }
                if packet[9] != PROTO_TCP {
                    return Err(OffloadError::Unsupported(packet[9]));
                }
                (false, ihl, usize::from(u16::from_be_bytes([packet[2], packet[3]])))
            }
            6 => {
                if packet.len() < IPV6_HEADER_LEN {
                    return Err(OffloadError::Truncated);
                }
                if packet[6] != PROTO_TCP {
                    return Err(OffloadError::Unsupported(packet[6]));
                }
                let payload = usize::from(u16::from_be_bytes([packet[4], packet[5]]));
                (true, IPV6_HEADER_LEN, IPV6_HEADER_LEN + payload)
            }
            _ => return Err(OffloadError::Malformed),
        };
        let tcp = packet
            .get(ip_len..ip_len + TCP_HEADER_LEN)
            .ok_or(OffloadError::Truncated)?;
        let tcp_len = usize::from(tcp[12] >> 4) * 4;
        if tcp_len < TCP_HEADER_LEN {
            return Err(OffloadError::Malformed);
        }
        if packet.len() < ip_len + tcp_len {
            return Err(OffloadError::Truncated);
        }
        Ok(TcpHeaders {
            v6,
            ip_len,
            tcp_len,
            stated_len,
        })
    }
}

/// Test helpers shared by the submodules' tests: packets built with
/// smoltcp, and checks that parse them back.
#[cfg(test)]
mod testutil {
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{
        IpAddress, IpProtocol, Ipv4Address, Ipv4Packet, Ipv4Repr, Ipv6Address, Ipv6Packet, Ipv6Repr, TcpControl,
        TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
    };

    pub const V4_SRC: Ipv4Address = Ipv4Address::new(10, 1, 0, 1);
    pub const V4_DST: Ipv4Address = Ipv4Address::new(10, 1, 0, 2);
    pub const V6_SRC: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    pub const V6_DST: Ipv6Address = Ipv6Address::new(0xfd00, 0, 0, 0, 0, 0, 0, 2);

    /// What varies between the test packets.
    #[derive(Clone, Copy)]
    pub struct Spec<'a> {
        pub v6: bool,
        pub seq: u32,
        pub ack: u32,
        pub id: u16,
        pub psh: bool,
        pub fin: bool,
        pub cwr: bool,
        pub timestamp: Option<(u32, u32)>,
        pub payload: &'a [u8],
    }

    impl<'a> Spec<'a> {
        pub fn v4(payload: &'a [u8]) -> Spec<'a> {
            Spec {
                v6: false,
                seq: 1000,
                ack: 77,
                id: 0x1234,
                psh: false,
                fin: false,
                cwr: false,
                timestamp: Some((11, 22)),
                payload,
            }
        }

        pub fn v6(payload: &'a [u8]) -> Spec<'a> {
            Spec {
                v6: true,
                ..Spec::v4(payload)
            }
        }
    }

    pub fn addrs(v6: bool) -> (IpAddress, IpAddress) {
        if v6 {
            (IpAddress::Ipv6(V6_SRC), IpAddress::Ipv6(V6_DST))
        } else {
            (IpAddress::Ipv4(V4_SRC), IpAddress::Ipv4(V4_DST))
        }
    }

    /// Writes the packet of `spec` into `out` (valid checksums), returns its length.
    pub fn build(spec: &Spec<'_>, out: &mut [u8]) -> usize {
        let tcp = TcpRepr {
            src_port: 40000,
            dst_port: 5201,
            control: if spec.fin {
                TcpControl::Fin
            } else if spec.psh {
                TcpControl::Psh
            } else {
                TcpControl::None
            },
            seq_number: TcpSeqNumber(spec.seq as i32),
            ack_number: Some(TcpSeqNumber(spec.ack as i32)),
            window_len: 502,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: spec.timestamp.map(|(a, b)| TcpTimestampRepr::new(a, b)),
            payload: spec.payload,
        };
        let caps = ChecksumCapabilities::default();
        let (src, dst) = addrs(spec.v6);
        let ip_len = if spec.v6 {
            let ip = Ipv6Repr {
                src_addr: V6_SRC,
                dst_addr: V6_DST,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            };
            ip.emit(&mut Ipv6Packet::new_unchecked(&mut out[..]));
            40
        } else {
            let ip = Ipv4Repr {
                src_addr: V4_SRC,
                dst_addr: V4_DST,
                next_header: IpProtocol::Tcp,
                payload_len: tcp.buffer_len(),
                hop_limit: 64,
            };
            let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
            ip.emit(&mut p, &caps);
            p.set_ident(spec.id);
            p.fill_checksum();
            20
        };
        let n = ip_len + tcp.buffer_len();
        let mut t = TcpPacket::new_unchecked(&mut out[ip_len..n]);
        tcp.emit(&mut t, &src, &dst, &caps);
        if spec.fin && spec.psh {
            t.set_psh(true);
        }
        if spec.cwr {
            t.set_cwr(true);
        }
        t.fill_checksum(&src, &dst);
        n
    }

    /// What a checked packet holds.
    #[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
    pub struct Seen {
        pub id: Option<u16>,
        pub seq: u32,
        pub psh: bool,
        pub fin: bool,
        pub cwr: bool,
        pub header_len: usize,
        pub payload_len: usize,
    }

    /// Parses `packet` with smoltcp, asserts that its lengths and checksums
    /// are valid, and returns what it holds.
    pub fn check(packet: &[u8]) -> Seen {
        let (ip_len, id, src, dst, tcp_bytes) = if packet[0] >> 4 == 6 {
            let ip = Ipv6Packet::new_checked(packet).expect("an IPv6 packet");
            assert_eq!(ip.payload_len() as usize + 40, packet.len());
            (
                40,
                None,
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                &packet[40..],
            )
        } else {
            let ip = Ipv4Packet::new_checked(packet).expect("an IPv4 packet");
            assert!(ip.verify_checksum(), "IPv4 header checksum");
            assert_eq!(ip.total_len() as usize, packet.len());
            let hl = ip.header_len() as usize;
            (
                hl,
                Some(ip.ident()),
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                &packet[hl..],
            )
        };
        let tcp = TcpPacket::new_checked(tcp_bytes).expect("a TCP segment");
        assert!(tcp.verify_checksum(&src, &dst), "TCP checksum");
        Seen {
            id,
            seq: tcp.seq_number().0 as u32,
            psh: tcp.psh(),
            fin: tcp.fin(),
            cwr: tcp.cwr(),
            header_len: ip_len + tcp.header_len() as usize,
            payload_len: tcp.payload().len(),
        }
    }

    /// A payload of `n` bytes that differ from one position to the next.
    pub fn payload(n: usize, out: &mut [u8]) -> &[u8] {
        for (i, b) in out[..n].iter_mut().enumerate() {
            *b = (i * 7 + i / 251) as u8;
        }
        &out[..n]
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::{build, payload, Spec};
    use super::*;

    #[test]
    fn parses_headers_of_both_versions() {
        let mut p = [0u8; 200];
        let mut pl = [0u8; 100];
        for v6 in [false, true] {
            let spec = if v6 {
                Spec::v6(payload(100, &mut pl))
            } else {
                Spec::v4(payload(100, &mut pl))
            };
            let n = build(&spec, &mut p);
            let h = TcpHeaders::parse(&p[..n]).unwrap();
            assert_eq!(h.v6, v6);
            assert_eq!(h.tcp_len, 32, "20 bytes + timestamps, padded");
            assert_eq!(h.stated_len, n);
            assert_eq!(h.len() + 100, n);
        }
    }

    #[test]
    fn refuses_truncated_and_inconsistent_headers() {
        let mut p = [0u8; 200];
        let n = build(&Spec::v4(&[1, 2, 3]), &mut p);
        for cut in 0..52 {
            assert!(TcpHeaders::parse(&p[..cut]).is_err(), "cut at {cut}");
        }
        assert!(TcpHeaders::parse(&p[..n]).is_ok());
        let mut q = p;
        q[0] = 0x44; // IHL 4
        assert_eq!(TcpHeaders::parse(&q[..n]).unwrap_err(), OffloadError::Malformed);
        let mut q = p;
        q[6] |= 0x20; // more fragments
        assert_eq!(TcpHeaders::parse(&q[..n]).unwrap_err(), OffloadError::Malformed);
        let mut q = p;
        q[9] = 17;
        assert_eq!(TcpHeaders::parse(&q[..n]).unwrap_err(), OffloadError::Unsupported(17));
        let mut q = p;
        q[20 + 12] = 0x40; // data offset 4
        assert_eq!(TcpHeaders::parse(&q[..n]).unwrap_err(), OffloadError::Malformed);
        let mut q = p;
        q[0] = 0x55;
        assert_eq!(TcpHeaders::parse(&q[..n]).unwrap_err(), OffloadError::Malformed);
        let n6 = build(&Spec::v6(&[1, 2, 3]), &mut p);
        let mut q = p;
        q[6] = 0; // hop-by-hop options
        assert_eq!(TcpHeaders::parse(&q[..n6]).unwrap_err(), OffloadError::Unsupported(0));
        assert_eq!(TcpHeaders::parse(&p[..39]).unwrap_err(), OffloadError::Truncated);
    }

    #[test]
    fn errors_display() {
        use std::string::ToString;
        assert_eq!(
            OffloadError::Unsupported(3).to_string(),
            "unsupported offload or protocol type 3"
        );
        assert_eq!(OffloadError::BufferTooSmall.to_string(), "output buffer too small");
    }
}
