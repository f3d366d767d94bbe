//! TSO segmentation: one super-packet read from the TUN becomes the IP
//! packets a NIC would have put on the wire (Linux's `tcp_gso_segment`,
//! wireguard-go's `gsoSplit`), each then sealed into one mesh datagram.
//!
//! Every segment gets a copy of the IP and TCP headers with its own
//! lengths, IPv4 id (`id + i`), sequence number (`seq + i * gso_size`) and
//! flags (FIN and PSH only on the last, CWR only on the first), and fresh
//! IPv4 header and TCP checksums, computed while the payload is copied (one
//! pass over the data). The headers are read from the packet, never from
//! the vnet header's `hdr_len`, `csum_start` or `csum_offset`.

use super::checksum::{add, copy_add, fill_ipv4_header, fold, partial_field, store_complement, tcp_pseudo_header};
use super::{flags, GsoKind, OffloadError, TcpHeaders, VnetHdr, TCP_CHECKSUM_OFFSET, TCP_FLAGS_OFFSET};

/// The largest IPv4 total length, and IPv6 payload length.
const MAX_IP_LEN: usize = 65535;

/// How a packet is cut.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Not a super-packet: one copy, with the partial checksum at `field`
    /// (summed from `start`) completed if there is one.
    Whole { partial: Option<(usize, usize)> },
    /// A TCP super-packet.
    Tcp {
        headers: TcpHeaders,
        gso_size: usize,
        /// Pseudo-header sum without the length (addresses and protocol).
        pseudo: u64,
    },
}

/// TSO segmentation of one packet read from the TUN (the IP packet after
/// the vnet header). Borrows the packet; writes each segment into the
/// caller's buffer.
#[derive(Debug, Clone)]
pub struct Segmenter<'a> {
    packet: &'a [u8],
    plan: Plan,
    count: usize,
    next: usize,
}

impl<'a> Segmenter<'a> {
    /// For gso [`TcpV4`](GsoKind::TcpV4) / [`TcpV6`](GsoKind::TcpV6):
    /// validates the IPv4 (no fragments; options allowed, copied) or IPv6
    /// (next header TCP directly, else `Unsupported`) and TCP headers of the
    /// packet itself, and `gso_size > 0`. For gso [`None`](GsoKind::None):
    /// one "segment", the packet, with [`complete_checksum`] applied when
    /// `needs_csum` (a copy and the completion in one pass).
    ///
    /// [`complete_checksum`]: super::complete_checksum
    pub fn new(hdr: &VnetHdr, packet: &'a [u8]) -> Result<Segmenter<'a>, OffloadError> {
        let v6 = match hdr.gso {
            GsoKind::None => {
                let partial = if hdr.needs_csum {
                    Some(partial_field(hdr, packet.len())?)
                } else {
                    None
                };
                return Ok(Segmenter {
                    packet,
                    plan: Plan::Whole { partial },
                    count: 1,
                    next: 0,
                });
            }
            GsoKind::TcpV4 => false,
            GsoKind::TcpV6 => true,
        };
        let headers = TcpHeaders::parse(packet)?;
        if headers.v6 != v6 || hdr.gso_size == 0 {
            return Err(OffloadError::Malformed);
        }
        let gso_size = usize::from(hdr.gso_size);
        let payload = packet.len() - headers.len();
        // The largest segment must fit the IP length field.
        let largest = headers.len() + payload.min(gso_size);
        let ip_len_field = if v6 { largest - headers.ip_len } else { largest };
        if ip_len_field > MAX_IP_LEN {
            return Err(OffloadError::Malformed);
        }
        Ok(Segmenter {
            packet,
            plan: Plan::Tcp {
                headers,
                gso_size,
                pseudo: tcp_pseudo_header(headers.addrs(packet), 0),
            },
            count: payload.div_ceil(gso_size).max(1),
            next: 0,
        })
    }

    /// The number of segments (at least 1).
    pub fn count(&self) -> usize {
        self.count
    }

    /// The length of the first, largest segment; all but the last have it.
    pub fn segment_len(&self) -> usize {
        match self.plan {
            Plan::Whole { .. } => self.packet.len(),
            Plan::Tcp { headers, gso_size, .. } => headers.len() + (self.packet.len() - headers.len()).min(gso_size),
        }
    }

    /// Writes the next segment, a complete IP packet with a valid IPv4
    /// header checksum and a valid TCP checksum, into `out[..n]` and returns
    /// `n`; `None` when all were written. `BufferTooSmall` leaves the
    /// segment to the next call.
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<Result<usize, OffloadError>> {
        if self.next >= self.count {
            return None;
        }
        let n = match self.plan {
            Plan::Whole { partial } => {
                let n = self.packet.len();
                let Some(out) = out.get_mut(..n) else {
                    return Some(Err(OffloadError::BufferTooSmall));
                };
                match partial {
                    None => out.copy_from_slice(self.packet),
                    Some((start, field)) => {
                        out[..start].copy_from_slice(&self.packet[..start]);
                        let acc = copy_add(0, &mut out[start..], &self.packet[start..]);
                        store_complement(out, field, acc);
                    }
                }
                n
            }
            Plan::Tcp {
                headers,
                gso_size,
                pseudo,
            } => {
                let i = self.next;
                let hl = headers.len();
                let start = hl + i * gso_size;
                let end = (start + gso_size).min(self.packet.len());
                let n = hl + (end - start);
                let Some(out) = out.get_mut(..n) else {
                    return Some(Err(OffloadError::BufferTooSmall));
                };
                out[..hl].copy_from_slice(&self.packet[..hl]);
                self.fix_headers(out, headers, i, (i * gso_size) as u32);
                let (head, data) = out.split_at_mut(hl);
                let tcp_len = (n - headers.ip_len) as u16; // checked in new()
                let mut acc = super::checksum::add_u16(pseudo, tcp_len);
                acc = add(acc, &head[headers.ip_len..]);
                acc = copy_add(acc, data, &self.packet[start..end]);
                let at = headers.ip_len + TCP_CHECKSUM_OFFSET;
                out[at..at + 2].copy_from_slice(&(!fold(acc)).to_be_bytes());
                n
            }
        };
        self.next += 1;
        Some(Ok(n))
    }

    /// Sets the IP length, id and header checksum, and the TCP sequence
    /// number and flags of segment `i` (already copied headers in
    /// `out`, which is the whole segment), and zeroes the TCP checksum.
    fn fix_headers(&self, out: &mut [u8], h: TcpHeaders, i: usize, offset: u32) {
        let n = out.len();
        if h.v6 {
            out[4..6].copy_from_slice(&((n - h.ip_len) as u16).to_be_bytes());
        } else {
            out[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            let id = u16::from_be_bytes([out[4], out[5]]).wrapping_add(i as u16);
            out[4..6].copy_from_slice(&id.to_be_bytes());
            fill_ipv4_header(&mut out[..h.ip_len]);
        }
        let tcp = &mut out[h.ip_len..];
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]).wrapping_add(offset);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        let mut f = tcp[TCP_FLAGS_OFFSET];
        if i + 1 != self.count {
            f &= !(flags::FIN | flags::PSH);
        }
        if i != 0 {
            f &= !flags::CWR;
        }
        tcp[TCP_FLAGS_OFFSET] = f;
        tcp[TCP_CHECKSUM_OFFSET..TCP_CHECKSUM_OFFSET + 2].fill(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{build, check, payload, Seen, Spec};

    fn tso(v6: bool, gso_size: u16) -> VnetHdr {
        VnetHdr {
            needs_csum: true,
            gso: if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 },
            hdr_len: 0, // never trusted
            gso_size,
            csum_start: if v6 { 40 } else { 20 },
            csum_offset: 16,
        }
    }

    /// Segments `packet` and checks every segment; returns what they hold
    /// and the concatenated payload.
    fn segment_all(hdr: &VnetHdr, packet: &[u8], seen: &mut [Seen], data: &mut [u8]) -> usize {
        let mut s = Segmenter::new(hdr, packet).unwrap();
        let count = s.count();
        let mut out = [0u8; 70000];
        let mut at = 0;
        for (i, slot) in seen.iter_mut().enumerate().take(count) {
            let n = s.next_into(&mut out).unwrap().unwrap();
            if i + 1 < count {
                assert_eq!(n, s.segment_len());
            } else {
                assert!(n <= s.segment_len());
            }
            *slot = check(&out[..n]);
            let pl = slot.payload_len;
            data[at..at + pl].copy_from_slice(&out[n - pl..n]);
            at += pl;
        }
        assert!(s.next_into(&mut out).is_none());
        assert!(s.next_into(&mut out).is_none());
        assert_eq!(at, packet.len() - seen[0].header_len);
        count
    }

    #[test]
    fn cuts_a_super_packet_into_mss_segments() {
        let mut pl = [0u8; 65000];
        for v6 in [false, true] {
            for (len, mss, want) in [
                (4000usize, 1000u16, 4),
                (4001, 1000, 5),
                (999, 1000, 1),
                (1000, 1000, 1),
                (1, 1, 1),
                (7, 2, 4),
                (14480, 1448, 10),
            ] {
                let d = payload(len, &mut pl);
                let mut spec = if v6 { Spec::v6(d) } else { Spec::v4(d) };
                spec.seq = u32::MAX - 1500; // wraps
                spec.id = u16::MAX - 1; // wraps
                spec.psh = true;
                spec.fin = true;
                spec.cwr = true;
                let mut p = [0u8; 66000];
                let n = build(&spec, &mut p);
                let mut seen = [Seen::default(); 64];
                let mut data = [0u8; 65000];
                let count = segment_all(&tso(v6, mss), &p[..n], &mut seen, &mut data);
                assert_eq!(count, want, "{len} / {mss}");
                assert_eq!(&data[..len], d);
                for (i, s) in seen[..count].iter().enumerate() {
                    let last = i + 1 == count;
                    assert_eq!(s.seq, spec.seq.wrapping_add(i as u32 * u32::from(mss)));
                    assert_eq!(s.id, (!v6).then(|| spec.id.wrapping_add(i as u16)));
                    assert_eq!((s.psh, s.fin, s.cwr), (last, last, i == 0), "flags of {i}/{count}");
                    assert_eq!(s.header_len, if v6 { 72 } else { 52 });
                    let want_len = if last {
                        len - (count - 1) * usize::from(mss)
                    } else {
                        usize::from(mss)
                    };
                    assert_eq!(s.payload_len, want_len);
                }
            }
        }
    }

    #[test]
    fn copies_ipv4_options() {
        // A packet with 8 bytes of IPv4 options (two NOPs and an end of list, padded).
        let mut pl = [0u8; 3000];
        let d = payload(2500, &mut pl);
        let mut plain = [0u8; 3100];
        let n = build(&Spec::v4(d), &mut plain);
        let mut p = [0u8; 3100];
        p[..20].copy_from_slice(&plain[..20]);
        p[0] = 0x47;
        p[20..28].copy_from_slice(&[1, 1, 1, 0, 0, 0, 0, 0]);
        p[28..n + 8].copy_from_slice(&plain[20..n]);
        let mut s = Segmenter::new(&tso(false, 1200), &p[..n + 8]).unwrap();
        assert_eq!(s.count(), 3);
        let mut out = [0u8; 1500];
        let mut total = 0;
        while let Some(r) = s.next_into(&mut out) {
            let k = r.unwrap();
            assert_eq!(&out[20..28], &p[20..28]);
            let seen = check(&out[..k]);
            assert_eq!(seen.header_len, 28 + 32);
            total += seen.payload_len;
        }
        assert_eq!(total, 2500);
    }

    #[test]
    fn gso_none_copies_and_completes() {
        let mut p = [0u8; 200];
        let n = build(&Spec::v4(&[5; 33]), &mut p);
        // The kernel's partial form: the pseudo-header sum in the field.
        let pseudo = fold(tcp_pseudo_header(&p[12..20], (n - 20) as u16));
        let good = p;
        p[36..38].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VnetHdr {
            needs_csum: true,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::NONE
        };
        let mut s = Segmenter::new(&hdr, &p[..n]).unwrap();
        assert_eq!((s.count(), s.segment_len()), (1, n));
        let mut out = [0u8; 200];
        assert_eq!(s.next_into(&mut out[..n - 1]), Some(Err(OffloadError::BufferTooSmall)));
        assert_eq!(s.next_into(&mut out), Some(Ok(n)));
        assert_eq!(&out[..n], &good[..n]);
        assert_eq!(s.next_into(&mut out), None);

        // Without NEEDS_CSUM: a plain copy, whatever the bytes.
        let junk = [0xabu8; 17];
        let mut s = Segmenter::new(&VnetHdr::NONE, &junk).unwrap();
        assert_eq!(s.next_into(&mut out), Some(Ok(17)));
        assert_eq!(&out[..17], &junk);
        assert_eq!(s.next_into(&mut out), None);
        let mut s = Segmenter::new(&VnetHdr::NONE, &[]).unwrap();
        assert_eq!(s.next_into(&mut out), Some(Ok(0)));
        assert_eq!(s.next_into(&mut out), None);
        // A field outside the packet.
        assert_eq!(Segmenter::new(&hdr, &p[..37]).unwrap_err(), OffloadError::Malformed);
    }

    #[test]
    fn a_short_buffer_keeps_the_segment() {
        let mut pl = [0u8; 3000];
        let mut p = [0u8; 3100];
        let n = build(&Spec::v6(payload(3000, &mut pl)), &mut p);
        let mut s = Segmenter::new(&tso(true, 1400), &p[..n]).unwrap();
        let len = s.segment_len();
        assert_eq!(len, 72 + 1400);
        let mut out = [0u8; 1500];
        assert_eq!(
            s.next_into(&mut out[..len - 1]),
            Some(Err(OffloadError::BufferTooSmall))
        );
        assert_eq!(s.next_into(&mut out[..len]), Some(Ok(len)));
        assert_eq!(check(&out[..len]).seq, 1000);
    }

    #[test]
    fn header_only_super_packet_is_one_segment() {
        let mut p = [0u8; 100];
        let n = build(&Spec::v4(&[]), &mut p);
        let mut s = Segmenter::new(&tso(false, 1000), &p[..n]).unwrap();
        assert_eq!(s.count(), 1);
        let mut out = [0u8; 100];
        let k = s.next_into(&mut out).unwrap().unwrap();
        assert_eq!(k, n);
        assert_eq!(check(&out[..k]).payload_len, 0);
    }

    #[test]
    fn refuses_what_it_cannot_cut() {
        let mut p = [0u8; 3100];
        let mut pl = [0u8; 3000];
        let n = build(&Spec::v4(payload(3000, &mut pl)), &mut p);
        // Wrong version for the GSO type, zero gso_size.
        assert_eq!(
            Segmenter::new(&tso(true, 1000), &p[..n]).unwrap_err(),
            OffloadError::Malformed
        );
        assert_eq!(
            Segmenter::new(&tso(false, 0), &p[..n]).unwrap_err(),
            OffloadError::Malformed
        );
        // A fragment.
        let mut q = p;
        q[7] = 1;
        assert_eq!(
            Segmenter::new(&tso(false, 1000), &q[..n]).unwrap_err(),
            OffloadError::Malformed
        );
        // UDP inside.
        let mut q = p;
        q[9] = 17;
        assert_eq!(
            Segmenter::new(&tso(false, 1000), &q[..n]).unwrap_err(),
            OffloadError::Unsupported(17)
        );
        // Every truncation of the headers.
        for cut in 0..52 {
            assert!(Segmenter::new(&tso(false, 1000), &p[..cut]).is_err(), "cut {cut}");
        }
        // IPv6 with an extension header.
        let n6 = build(&Spec::v6(&[1; 100]), &mut p);
        p[6] = 43;
        assert_eq!(
            Segmenter::new(&tso(true, 10), &p[..n6]).unwrap_err(),
            OffloadError::Unsupported(43)
        );
    }

    #[test]
    fn segments_must_fit_the_ip_length_field() {
        let mut pl = [0u8; 65600];
        let d = payload(65600, &mut pl);
        let mut p = [0u8; 65700];
        // A 64 KiB IPv6 packet cut at 65535 - 32: the segment's payload length is exactly 65535.
        let n = build(&Spec::v6(&d[..65600]), &mut p);
        let s = Segmenter::new(&tso(true, 65535 - 32), &p[..n]).unwrap();
        assert_eq!((s.count(), s.segment_len()), (2, 40 + 65535));
        assert_eq!(
            Segmenter::new(&tso(true, 65535 - 31), &p[..n]).unwrap_err(),
            OffloadError::Malformed
        );
        // IPv4: the total length counts the IP header.
        let n = build(&Spec::v4(&d[..65600]), &mut p);
        assert!(Segmenter::new(&tso(false, 65535 - 52), &p[..n]).is_ok());
        assert_eq!(
            Segmenter::new(&tso(false, 65535 - 51), &p[..n]).unwrap_err(),
            OffloadError::Malformed
        );
    }
}
