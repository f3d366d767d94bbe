//! GRO: consecutive TCP segments of one flow, received from the mesh, merged
//! into one super-packet for a single TUN write with a GSO vnet header
//! (Linux's `tcp_gro_receive`, wireguard-go's `tcpGRO`). The kernel then
//! takes the whole run in one `write`, and its TCP stack sees one large
//! segment, as from a NIC doing LRO.
//!
//! The coalescer owns no buffer: it remembers where the run stands and
//! reads the run's first headers back from the caller's buffer, which must
//! be the same one for every call of a run. It never reorders: a packet it
//! cannot take is handed back to the caller ([`Push::Mismatch`],
//! [`Push::Unsuitable`]), who writes the pending run first. It never
//! verifies checksums (the AEAD authenticated the packet, and its sender
//! completed them); the merged packet leaves with a partial TCP checksum
//! that the kernel completes or trusts.

use super::checksum::{fill_ipv4_header, fold, tcp_pseudo_header};
use super::{
    flags, GsoKind, TcpHeaders, VnetHdr, IPV4_HEADER_LEN, TCP_CHECKSUM_OFFSET, TCP_FLAGS_OFFSET, TCP_HEADER_LEN,
    VNET_HDR_LEN,
};

/// The most segments in one run (Linux's `MAX_GRO_SKBS`-sized batches).
const MAX_SEGMENTS: usize = 64;
/// The largest merged IP packet.
const MAX_PACKET_LEN: usize = 65535;

/// What [`Coalescer::push`] did with a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Copied into the buffer: it started a run, or was appended to it.
    Merged,
    /// A coalescable TCP segment, but not with the current run: the caller
    /// calls [`Coalescer::finish`], writes the run, then pushes it again.
    Mismatch,
    /// Never coalescable (not TCP, IPv4 options or fragments, IPv6
    /// extension headers, SYN/FIN/RST/URG/ECE/CWR flags, no payload,
    /// malformed, larger than the buffer): the caller calls
    /// [`Coalescer::finish`] (writes the pending run, to keep the order) and
    /// writes this packet alone with [`VnetHdr::NONE`]. The coalescer's
    /// state is unchanged.
    Unsuitable,
}

/// A packet that could be coalesced with some run.
struct Candidate {
    headers: TcpHeaders,
    /// The IP packet's length (bytes past it are padding, ignored).
    len: usize,
    seq: u32,
    psh: bool,
}

impl Candidate {
    fn parse(packet: &[u8]) -> Option<Candidate> {
        let headers = TcpHeaders::parse(packet).ok()?;
        let hl = headers.len();
        let len = headers.stated_len;
        // No IPv4 options; some payload, all of it inside the slice.
        if (!headers.v6 && headers.ip_len != IPV4_HEADER_LEN) || len <= hl || len > packet.len() {
            return None;
        }
        let tcp = &packet[headers.ip_len..];
        // Reserved bits and NS clear; ACK, with PSH at most.
        let flags = tcp[TCP_FLAGS_OFFSET];
        if tcp[12] & 0x0f != 0 || (flags != flags::ACK && flags != flags::ACK | flags::PSH) {
            return None;
        }
        Some(Candidate {
            headers,
            len,
            seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
            psh: flags & flags::PSH != 0,
        })
    }

    fn payload(&self) -> usize {
        self.len - self.headers.len()
    }
}

/// GRO state: merges consecutive TCP segments of one flow into one
/// super-packet. Owns no buffer: the caller passes the same `buf` to every
/// call of one run. Layout of `buf`: `[0..VNET_HDR_LEN)` the vnet header
/// (written by [`finish`](Coalescer::finish)), then the packet.
#[derive(Debug, Default)]
pub struct Coalescer {
    /// Length of the run's packet in `buf` after the vnet header; 0 when empty.
    len: usize,
    /// Segments in the run.
    segments: usize,
    v6: bool,
    /// IP and TCP header lengths of the run.
    ip_len: usize,
    tcp_len: usize,
    /// The first segment's payload length.
    mss: usize,
    /// The sequence number the next segment must have.
    next_seq: u32,
    /// A segment shorter than the MSS, or with PSH, ended the run.
    closed: bool,
}

impl Coalescer {
    /// An empty coalescer.
    pub fn new() -> Coalescer {
        Coalescer::default()
    }

    /// No run is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Segments in the pending run (0 when empty).
    pub fn segments(&self) -> usize {
        self.segments
    }

    /// Offers `packet` (an IP packet from the mesh) to the run in `buf`.
    ///
    /// The merge rule (Linux `tcp_gro_receive` / wireguard-go): same IP
    /// version, source and destination, IPv4 TOS, TTL and DF (IPv6 traffic
    /// class, flow label and hop limit), same ports, same TCP header length
    /// and identical option bytes, same ack number and window, flags ACK
    /// (PSH allowed: it closes the run), sequence number = the run's next,
    /// payload no longer than the run's MSS (the first packet's payload; a
    /// shorter one closes the run); the merged IP packet stays within 65535
    /// bytes and fits `buf`; at most 64 segments. Stricter than Linux in
    /// two fields that a well-behaved sender leaves alone, so that a merged
    /// run segments back into exactly the pushed packets: the whole IPv4
    /// flags byte (the reserved bit too) and the urgent pointer must match.
    /// IPv4 ids are not compared (the segmenter on the far side numbers
    /// them `id + i` again).
    pub fn push(&mut self, buf: &mut [u8], packet: &[u8]) -> Push {
        let Some(c) = Candidate::parse(packet) else {
            return Push::Unsuitable;
        };
        let payload = c.payload();
        if self.is_empty() {
            let Some(dst) = buf.get_mut(VNET_HDR_LEN..VNET_HDR_LEN + c.len) else {
                return Push::Unsuitable;
            };
            dst.copy_from_slice(&packet[..c.len]);
            *self = Coalescer {
                len: c.len,
                segments: 1,
                v6: c.headers.v6,
                ip_len: c.headers.ip_len,
                tcp_len: c.headers.tcp_len,
                mss: payload,
                next_seq: c.seq.wrapping_add(payload as u32),
                closed: c.psh,
            };
            return Push::Merged;
        }
        let end = VNET_HDR_LEN + self.len;
        if !self.accepts(&buf[VNET_HDR_LEN..end], packet, &c)
            || self.len + payload > MAX_PACKET_LEN
            || end + payload > buf.len()
        {
            return Push::Mismatch;
        }
        buf[end..end + payload].copy_from_slice(&packet[c.headers.len()..c.len]);
        self.len += payload;
        self.segments += 1;
        self.next_seq = c.seq.wrapping_add(payload as u32);
        if c.psh {
            buf[VNET_HDR_LEN + self.ip_len + TCP_FLAGS_OFFSET] |= flags::PSH;
        }
        self.closed = c.psh || payload < self.mss;
        Push::Merged
    }

    /// Whether the candidate continues the run whose packet is `head`.
    fn accepts(&self, head: &[u8], p: &[u8], c: &Candidate) -> bool {
        if self.closed
            || self.segments >= MAX_SEGMENTS
            || c.headers.v6 != self.v6
            || c.headers.tcp_len != self.tcp_len
            || c.seq != self.next_seq
            || c.payload() > self.mss
        {
            return false;
        }
        let same_ip = if self.v6 {
            // Version, traffic class, flow label; hop limit; addresses.
            head[..4] == p[..4] && head[7] == p[7] && head[8..40] == p[8..40]
        } else {
            // TOS; flags (DF, and the reserved bit, so that nothing the
            // segments differ in is lost; fragments were refused); TTL;
            // addresses.
            head[1] == p[1] && head[6] == p[6] && head[8] == p[8] && head[12..20] == p[12..20]
        };
        let t = self.ip_len;
        same_ip
            // Ports.
            && head[t..t + 4] == p[t..t + 4]
            // Ack number.
            && head[t + 8..t + 12] == p[t + 8..t + 12]
            // Window.
            && head[t + 14..t + 16] == p[t + 14..t + 16]
            // Urgent pointer (meaningless without URG, but kept).
            && head[t + 18..t + 20] == p[t + 18..t + 20]
            // Options (timestamps must be equal too, as in Linux).
            && head[t + TCP_HEADER_LEN..t + self.tcp_len] == p[t + TCP_HEADER_LEN..t + self.tcp_len]
    }

    /// Ends the run: returns how many bytes of `buf` to write to the TUN
    /// (vnet header + packet), or `None` when empty. One packet: the header
    /// is [`VnetHdr::NONE`] and the packet unchanged. Several: IP lengths
    /// and the IPv4 header checksum fixed, TCP flags those of the first
    /// with PSH from the last, the TCP checksum field the pseudo-header
    /// sum (not complemented), and the vnet header says `needs_csum`, gso
    /// `TcpV4`/`TcpV6`, `hdr_len` = IP + TCP header length, `gso_size` = the
    /// MSS, `csum_start` = the IP header length, `csum_offset` = 16. Resets
    /// the coalescer.
    pub fn finish(&mut self, buf: &mut [u8]) -> Option<usize> {
        if self.is_empty() {
            return None;
        }
        let n = self.len;
        let hdr = if self.segments == 1 {
            VnetHdr::NONE
        } else {
            let packet = &mut buf[VNET_HDR_LEN..VNET_HDR_LEN + n];
            let tcp_len = (n - self.ip_len) as u16; // n <= MAX_PACKET_LEN
            let addrs = if self.v6 {
                packet[4..6].copy_from_slice(&tcp_len.to_be_bytes());
                &packet[8..40]
            } else {
                packet[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                fill_ipv4_header(&mut packet[..IPV4_HEADER_LEN]);
                &packet[12..20]
            };
            let pseudo = fold(tcp_pseudo_header(addrs, tcp_len));
            let at = self.ip_len + TCP_CHECKSUM_OFFSET;
            packet[at..at + 2].copy_from_slice(&pseudo.to_be_bytes());
            VnetHdr {
                needs_csum: true,
                gso: if self.v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 },
                hdr_len: (self.ip_len + self.tcp_len) as u16,
                gso_size: self.mss as u16,
                csum_start: self.ip_len as u16,
                csum_offset: TCP_CHECKSUM_OFFSET as u16,
            }
        };
        hdr.emit(buf);
        *self = Coalescer::default();
        Some(VNET_HDR_LEN + n)
    }
}

#[cfg(test)]
mod tests {
    use std::vec;
    use std::vec::Vec;

    use super::*;
    use crate::offload::testutil::{build, check, payload, Spec};
    use crate::offload::{OffloadError, Segmenter};

    const BUF: usize = VNET_HDR_LEN + 65535;

    /// Builds the packet of `spec`.
    fn packet(spec: &Spec<'_>) -> Vec<u8> {
        let mut p = vec![0u8; 100_000];
        let n = build(spec, &mut p);
        p.truncate(n);
        p
    }

    /// Segments the super-packet of `spec` with `mss`, as the sender does.
    fn segments(spec: &Spec<'_>, mss: u16) -> Vec<Vec<u8>> {
        let p = packet(spec);
        let hdr = VnetHdr {
            needs_csum: true,
            gso: if spec.v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 },
            hdr_len: 0,
            gso_size: mss,
            csum_start: 0,
            csum_offset: 0,
        };
        resegment(&hdr, &p)
    }

    fn resegment(hdr: &VnetHdr, p: &[u8]) -> Vec<Vec<u8>> {
        let mut s = Segmenter::new(hdr, p).unwrap();
        let mut out = vec![0u8; 65535];
        let mut all = Vec::new();
        while let Some(r) = s.next_into(&mut out) {
            all.push(out[..r.unwrap()].to_vec());
        }
        all
    }

    /// The receiving side: pushes every packet as the agent does and
    /// returns the TUN writes (vnet header + packet).
    fn deliver(packets: &[Vec<u8>], buf_len: usize) -> Vec<Vec<u8>> {
        let mut buf = vec![0u8; buf_len];
        let mut c = Coalescer::new();
        let mut writes = Vec::new();
        for p in packets {
            loop {
                match c.push(&mut buf, p) {
                    Push::Merged => break,
                    Push::Mismatch => {
                        let n = c.finish(&mut buf).expect("a mismatch leaves a run");
                        writes.push(buf[..n].to_vec());
                    }
                    Push::Unsuitable => {
                        if let Some(n) = c.finish(&mut buf) {
                            writes.push(buf[..n].to_vec());
                        }
                        let mut alone = vec![0u8; VNET_HDR_LEN];
                        alone.extend_from_slice(p);
                        writes.push(alone);
                        break;
                    }
                }
            }
        }
        if let Some(n) = c.finish(&mut buf) {
            writes.push(buf[..n].to_vec());
        }
        assert!(c.is_empty());
        writes
    }

    /// What the kernel's GSO would put on the wire again for the writes.
    fn unwrap_writes(writes: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        for w in writes {
            let hdr = VnetHdr::parse(w).unwrap();
            all.extend(resegment(&hdr, &w[VNET_HDR_LEN..]));
        }
        all
    }

    #[test]
    fn merges_a_burst_and_round_trips() {
        let mut pl = vec![0u8; 65535];
        for v6 in [false, true] {
            for (len, mss) in [
                (14480usize, 1448u16),
                (14481, 1448),
                (5000, 1000),
                (3, 1),
                (63 * 1000 + 1, 1000),
            ] {
                let d = payload(len, &mut pl);
                let mut spec = if v6 { Spec::v6(d) } else { Spec::v4(d) };
                spec.psh = true;
                spec.seq = u32::MAX - 3000;
                spec.id = u16::MAX;
                let segs = segments(&spec, mss);
                let writes = deliver(&segs, BUF);
                assert_eq!(writes.len(), 1, "{len}/{mss}: one write");
                let w = &writes[0];
                let hdr = VnetHdr::parse(w).unwrap();
                let ip = if v6 { 40 } else { 20 };
                assert_eq!(
                    hdr,
                    VnetHdr {
                        needs_csum: true,
                        gso: if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 },
                        hdr_len: ip + 32,
                        gso_size: mss,
                        csum_start: ip,
                        csum_offset: 16,
                    }
                );
                let p = &w[VNET_HDR_LEN..];
                assert_eq!(p.len(), usize::from(ip) + 32 + len);
                assert_eq!(&p[usize::from(ip) + 32..], d);
                // The kernel completes the partial checksum; then the packet is valid.
                let mut done = p.to_vec();
                crate::offload::complete_checksum(&hdr, &mut done).unwrap();
                let seen = check(&done);
                assert!(seen.psh, "PSH from the last segment");
                assert_eq!(seen.seq, spec.seq);
                assert_eq!(unwrap_writes(&writes), segs, "{len}/{mss}");
            }
        }
    }

    #[test]
    fn one_packet_is_written_unchanged() {
        let p = packet(&Spec::v4(&[1; 100]));
        let mut buf = vec![0xeeu8; BUF];
        let mut c = Coalescer::new();
        assert!(c.is_empty());
        assert_eq!(c.finish(&mut buf), None);
        assert_eq!(c.push(&mut buf, &p), Push::Merged);
        assert!(!c.is_empty());
        let n = c.finish(&mut buf).unwrap();
        assert_eq!(&buf[..VNET_HDR_LEN], &[0; VNET_HDR_LEN]);
        assert_eq!(&buf[VNET_HDR_LEN..n], &p[..]);
        assert!(c.is_empty());
        assert_eq!(c.finish(&mut buf), None);
    }

    #[test]
    fn flags_close_or_refuse() {
        let mut pl = vec![0u8; 10000];
        let d = payload(10000, &mut pl);
        let mut spec = Spec::v4(d);
        spec.cwr = true;
        spec.fin = true;
        spec.psh = true;
        let segs = segments(&spec, 1000);
        let writes = deliver(&segs, BUF);
        // CWR on the first and FIN on the last: both alone, the 8 between merged.
        assert_eq!(writes.len(), 3);
        assert_eq!(VnetHdr::parse(&writes[0]).unwrap(), VnetHdr::NONE);
        assert_eq!(VnetHdr::parse(&writes[1]).unwrap().gso_size, 1000);
        assert_eq!(writes[1].len(), VNET_HDR_LEN + 52 + 8000);
        assert_eq!(VnetHdr::parse(&writes[2]).unwrap(), VnetHdr::NONE);
        assert_eq!(unwrap_writes(&writes), segs);
    }

    #[test]
    fn a_short_segment_or_psh_ends_the_run() {
        let mut pl = vec![0u8; 4000];
        let d = payload(4000, &mut pl);
        let a = Spec::v6(&d[..1000]);
        let short = Spec {
            seq: a.seq + 1000,
            ..Spec::v6(&d[1000..1500])
        };
        let after = Spec {
            seq: a.seq + 1500,
            ..Spec::v6(&d[1500..2500])
        };
        let mut buf = vec![0u8; BUF];
        let mut c = Coalescer::new();
        assert_eq!(c.push(&mut buf, &packet(&a)), Push::Merged);
        assert_eq!(c.push(&mut buf, &packet(&short)), Push::Merged);
        assert_eq!(c.push(&mut buf, &packet(&after)), Push::Mismatch);
        assert!(c.finish(&mut buf).is_some());

        // PSH on the first: the run is closed at once.
        let psh = Spec { psh: true, ..a };
        assert_eq!(c.push(&mut buf, &packet(&psh)), Push::Merged);
        let next = Spec {
            seq: a.seq + 1000,
            ..Spec::v6(&d[1000..2000])
        };
        assert_eq!(c.push(&mut buf, &packet(&next)), Push::Mismatch);
        // A longer segment than the run's MSS.
        c.finish(&mut buf);
        let small = Spec::v6(&d[..500]);
        assert_eq!(c.push(&mut buf, &packet(&small)), Push::Merged);
        let big = Spec {
            seq: a.seq + 500,
            ..Spec::v6(&d[500..1500])
        };
        assert_eq!(c.push(&mut buf, &packet(&big)), Push::Mismatch);
    }

    #[test]
    fn other_flows_and_headers_mismatch() {
        let d = [3u8; 1000];
        let first = Spec::v4(&d);
        let next = Spec {
            seq: first.seq + 1000,
            ..first
        };
        let ok = packet(&next);
        type Edit = fn(&mut Vec<u8>);
        let edits: [(&str, Edit); 12] = [
            ("tos", |p| p[1] = 0x03),
            ("ttl", |p| p[8] = 63),
            ("df", |p| p[6] ^= 0x40),
            ("src", |p| p[15] = 9),
            ("dst", |p| p[19] = 9),
            ("port", |p| p[21] ^= 1),
            ("ack", |p| p[31] ^= 1),
            ("window", |p| p[35] ^= 1),
            ("urgent pointer", |p| p[39] ^= 1),
            ("reserved ip flag", |p| p[6] ^= 0x80),
            ("seq", |p| p[27] ^= 1),
            ("timestamp", |p| p[20 + 31] ^= 1),
        ];
        for (what, edit) in edits {
            let mut buf = vec![0u8; BUF];
            let mut c = Coalescer::new();
            assert_eq!(c.push(&mut buf, &packet(&first)), Push::Merged);
            let mut p = ok.clone();
            edit(&mut p);
            assert_eq!(c.push(&mut buf, &p), Push::Mismatch, "{what}");
            assert_eq!(c.push(&mut buf, &ok), Push::Merged, "{what}: the state is unchanged");
        }
        // Another IP version, another TCP header length.
        let mut buf = vec![0u8; BUF];
        let mut c = Coalescer::new();
        assert_eq!(c.push(&mut buf, &packet(&first)), Push::Merged);
        assert_eq!(c.push(&mut buf, &packet(&Spec::v6(&d))), Push::Mismatch);
        assert_eq!(
            c.push(
                &mut buf,
                &packet(&Spec {
                    timestamp: None,
                    ..next
                })
            ),
            Push::Mismatch
        );
        // The IPv4 id is not compared.
        assert_eq!(c.push(&mut buf, &packet(&Spec { id: 7, ..next })), Push::Merged);

        // IPv6 traffic class, flow label, hop limit.
        let first = Spec::v6(&d);
        let next = packet(&Spec {
            seq: first.seq + 1000,
            ..first
        });
        for (what, at, bit) in [("traffic class", 1, 0x10), ("flow label", 3, 1), ("hop limit", 7, 1)] {
            let mut buf = vec![0u8; BUF];
            let mut c = Coalescer::new();
            assert_eq!(c.push(&mut buf, &packet(&first)), Push::Merged);
            let mut p = next.clone();
            p[at] ^= bit;
            assert_eq!(c.push(&mut buf, &p), Push::Mismatch, "{what}");
        }
    }

    #[test]
    fn unsuitable_packets_leave_the_run_alone() {
        let d = [3u8; 1000];
        let first = Spec::v4(&d);
        let next = packet(&Spec {
            seq: first.seq + 1000,
            ..first
        });
        let mut with_options = vec![0u8; 20 + 4];
        with_options[..20].copy_from_slice(&next[..20]);
        with_options[0] = 0x46;
        with_options[20..24].copy_from_slice(&[1, 1, 1, 0]);
        with_options.extend_from_slice(&next[20..]);
        with_options[3] += 4;
        let mut v6_ext = packet(&Spec::v6(&d));
        v6_ext[6] = 0;
        let mut udp = next.clone();
        udp[9] = 17;
        let mut frag = next.clone();
        frag[6] |= 0x20;
        let mut unsuitable = vec![
            (
                "no payload",
                packet(&Spec {
                    seq: first.seq + 1000,
                    ..Spec::v4(&[])
                }),
            ),
            (
                "fin",
                packet(&Spec {
                    fin: true,
                    seq: first.seq + 1000,
                    ..first
                }),
            ),
            (
                "cwr",
                packet(&Spec {
                    cwr: true,
                    seq: first.seq + 1000,
                    ..first
                }),
            ),
            ("ipv4 options", with_options),
            ("ipv6 extension header", v6_ext),
            ("udp", udp),
            ("fragment", frag),
            ("empty", Vec::new()),
            ("garbage", vec![0x45; 30]),
            ("stated length past the slice", next[..next.len() - 1].to_vec()),
        ];
        for (bit, name) in [(0x02, "syn"), (0x04, "rst"), (0x20, "urg"), (0x40, "ece")] {
            let mut p = next.clone();
            p[20 + 13] |= bit;
            unsuitable.push((name, p));
        }
        let mut p = next.clone();
        p[20 + 12] |= 1; // NS
        unsuitable.push(("ns", p));
        let mut p = next.clone();
        p[20 + 13] = 0x08; // PSH without ACK
        unsuitable.push(("no ack", p));
        for (what, p) in &unsuitable {
            let mut buf = vec![0u8; BUF];
            let mut c = Coalescer::new();
            assert_eq!(c.push(&mut buf, p), Push::Unsuitable, "{what}, alone");
            assert!(c.is_empty());
            assert_eq!(c.push(&mut buf, &packet(&first)), Push::Merged);
            assert_eq!(c.push(&mut buf, p), Push::Unsuitable, "{what}");
            assert_eq!(c.push(&mut buf, &next), Push::Merged, "{what}: the state is unchanged");
            let n = c.finish(&mut buf).unwrap();
            assert_eq!(n, VNET_HDR_LEN + 52 + 2000);
        }
    }

    #[test]
    fn padding_after_the_ip_packet_is_dropped() {
        let d = [3u8; 1000];
        let first = Spec::v6(&d);
        let mut a = packet(&first);
        let mut b = packet(&Spec {
            seq: first.seq + 1000,
            ..first
        });
        a.extend_from_slice(&[0xaa; 15]);
        b.extend_from_slice(&[0xbb; 3]);
        let writes = deliver(&[a, b], BUF);
        assert_eq!(writes.len(), 1);
        assert_eq!(writes[0].len(), VNET_HDR_LEN + 72 + 2000);
        assert_eq!(unwrap_writes(&writes).len(), 2);
    }

    #[test]
    fn runs_stop_at_64_segments_and_64_kib() {
        let mut pl = vec![0u8; 100_000];
        // 100 segments of 100 bytes: 64 + 36.
        let d = payload(10000, &mut pl);
        let segs = segments(&Spec::v4(d), 100);
        let writes = deliver(&segs, BUF);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].len(), VNET_HDR_LEN + 52 + 6400);
        assert_eq!(unwrap_writes(&writes), segs);

        // 1448-byte segments: 45 fit below 65535 bytes (52 + 45 * 1448 = 65212).
        let d = payload(60 * 1448, &mut pl);
        let segs = segments(&Spec::v4(d), 1448);
        let writes = deliver(&segs, BUF);
        assert_eq!(writes.len(), 2);
        assert_eq!(writes[0].len(), VNET_HDR_LEN + 52 + 45 * 1448);
        assert_eq!(unwrap_writes(&writes), segs);

        // A smaller buffer ends the run sooner; a packet larger than it is unsuitable.
        let writes = deliver(&segs, VNET_HDR_LEN + 52 + 10 * 1448);
        assert_eq!(writes.len(), 6);
        assert_eq!(unwrap_writes(&writes), segs);
        let mut buf = vec![0u8; VNET_HDR_LEN + 52 + 1447];
        let mut c = Coalescer::new();
        assert_eq!(c.push(&mut buf, &segs[0]), Push::Unsuitable);
        assert!(c.is_empty());
    }

    #[test]
    fn a_merged_ipv4_packet_has_a_valid_header() {
        let mut pl = vec![0u8; 3000];
        let d = payload(3000, &mut pl);
        let segs = segments(&Spec::v4(d), 1000);
        let writes = deliver(&segs, BUF);
        let p = &writes[0][VNET_HDR_LEN..];
        let ip = smoltcp::wire::Ipv4Packet::new_checked(p).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!(usize::from(ip.total_len()), 52 + 3000);
        assert_eq!(ip.ident(), 0x1234, "the first segment's id");
        // Segmenting with a wrong version in the vnet header is refused.
        let hdr = VnetHdr {
            gso: GsoKind::TcpV6,
            ..VnetHdr::parse(&writes[0]).unwrap()
        };
        assert_eq!(Segmenter::new(&hdr, p).unwrap_err(), OffloadError::Malformed);
    }
}
