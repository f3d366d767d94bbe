//! The `virtio_net_hdr` that a TUN opened with `IFF_VNET_HDR` puts in front
//! of every packet it hands out, and expects in front of every packet
//! written to it: the legacy 10-byte layout (no `num_buffers`), fields
//! little-endian (`TUNSETVNETLE`, or a little-endian host).

use super::OffloadError;

/// Length of the legacy `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`.
const F_NEEDS_CSUM: u8 = 1;

/// What kind of segmentation offload a packet carries (`gso_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GsoKind {
    /// A plain packet (`VIRTIO_NET_HDR_GSO_NONE`, 0).
    None,
    /// An IPv4 TCP super-packet (`VIRTIO_NET_HDR_GSO_TCPV4`, 1).
    TcpV4,
    /// An IPv6 TCP super-packet (`VIRTIO_NET_HDR_GSO_TCPV6`, 4).
    TcpV6,
}

impl GsoKind {
    fn from_byte(b: u8) -> Result<GsoKind, OffloadError> {
        match b {
            0 => Ok(GsoKind::None),
            1 => Ok(GsoKind::TcpV4),
            4 => Ok(GsoKind::TcpV6),
            // UDP (3), UDP_L4 (5), and anything with the ECN bit (0x80):
            // not negotiated, so not handled.
            other => Err(OffloadError::Unsupported(other)),
        }
    }

    fn to_byte(self) -> u8 {
        match self {
            GsoKind::None => 0,
            GsoKind::TcpV4 => 1,
            GsoKind::TcpV6 => 4,
        }
    }
}

/// A parsed `virtio_net_hdr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VnetHdr {
    /// The transport checksum is partial (`flags & 1`): the field at
    /// `csum_start + csum_offset` holds the pseudo-header sum only.
    pub needs_csum: bool,
    /// The segmentation offload type.
    pub gso: GsoKind,
    /// Length of the IP and transport headers (a hint; never trusted).
    pub hdr_len: u16,
    /// The payload bytes of every segment but the last (the MSS).
    pub gso_size: u16,
    /// Where the checksummed bytes start (the transport header).
    pub csum_start: u16,
    /// Offset of the checksum field from `csum_start` (16 for TCP).
    pub csum_offset: u16,
}

impl VnetHdr {
    /// The header of a plain packet with a complete checksum: all zero.
    pub const NONE: VnetHdr = VnetHdr {
        needs_csum: false,
        gso: GsoKind::None,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Parses the first [`VNET_HDR_LEN`] bytes of `bytes`. Flags other
    /// than `NEEDS_CSUM` (`DATA_VALID`, `RSC_INFO`) are ignored.
    pub fn parse(bytes: &[u8]) -> Result<VnetHdr, OffloadError> {
        let b: &[u8; VNET_HDR_LEN] = bytes
            .get(..VNET_HDR_LEN)
            .and_then(|b| b.try_into().ok())
            .ok_or(OffloadError::Truncated)?;
        let le = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Ok(VnetHdr {
            needs_csum: b[0] & F_NEEDS_CSUM != 0,
            gso: GsoKind::from_byte(b[1])?,
            hdr_len: le(2),
            gso_size: le(4),
            csum_start: le(6),
            csum_offset: le(8),
        })
    }

    /// Writes the header into `out[..VNET_HDR_LEN]`.
    ///
    /// # Panics
    /// If `out` is shorter than [`VNET_HDR_LEN`] (a caller bug).
    pub fn emit(&self, out: &mut [u8]) {
        let out = &mut out[..VNET_HDR_LEN];
        out[0] = if self.needs_csum { F_NEEDS_CSUM } else { 0 };
        out[1] = self.gso.to_byte();
        out[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        out[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        out[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        out[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_tso_header_as_the_kernel_writes_it() {
        // flags NEEDS_CSUM, TCPV4, hdr_len 66, gso_size 1448, csum_start 20, csum_offset 16.
        let bytes = [1, 1, 66, 0, 0xa8, 0x05, 20, 0, 16, 0, 0xee];
        let h = VnetHdr::parse(&bytes).unwrap();
        assert_eq!(
            h,
            VnetHdr {
                needs_csum: true,
                gso: GsoKind::TcpV4,
                hdr_len: 66,
                gso_size: 1448,
                csum_start: 20,
                csum_offset: 16,
            }
        );
        let mut out = [0xffu8; VNET_HDR_LEN];
        h.emit(&mut out);
        assert_eq!(out, bytes[..VNET_HDR_LEN]);
    }

    #[test]
    fn none_is_all_zero_and_round_trips() {
        let mut out = [0xffu8; VNET_HDR_LEN];
        VnetHdr::NONE.emit(&mut out);
        assert_eq!(out, [0; VNET_HDR_LEN]);
        assert_eq!(VnetHdr::parse(&out), Ok(VnetHdr::NONE));
        let v6 = VnetHdr {
            gso: GsoKind::TcpV6,
            ..VnetHdr::NONE
        };
        v6.emit(&mut out);
        assert_eq!(out[1], 4);
        assert_eq!(VnetHdr::parse(&out), Ok(v6));
    }

    #[test]
    fn other_flags_are_ignored() {
        let h = VnetHdr::parse(&[2 | 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap();
        assert_eq!(h, VnetHdr::NONE);
    }

    #[test]
    fn refuses_short_input_and_unnegotiated_gso_types() {
        assert_eq!(VnetHdr::parse(&[0; 9]), Err(OffloadError::Truncated));
        assert_eq!(VnetHdr::parse(&[]), Err(OffloadError::Truncated));
        for t in [3u8, 5, 0x81, 0x84, 2, 0xff] {
            let mut b = [0u8; VNET_HDR_LEN];
            b[1] = t;
            assert_eq!(VnetHdr::parse(&b), Err(OffloadError::Unsupported(t)), "gso_type {t}");
        }
    }

    #[test]
    #[should_panic]
    fn emit_into_a_short_buffer_panics() {
        VnetHdr::NONE.emit(&mut [0u8; 9]);
    }
}
