//! Target `offload`: `kairos_core::offload` as the agent runs it on a TUN
//! with `IFF_VNET_HDR` and TSO: super-packets read from the TUN cut by the
//! `Segmenter`, and packets from the mesh merged by the `Coalescer` for one
//! GSO write.
//!
//! Input: a mode byte, then
//! - [`mode::SEGMENT`]: a 10-byte vnet header, a chunk ([`Input::chunk`])
//!   holding the packet, then an optional edit script (a segment index byte
//!   and [`mutate`] controls). Every segment must parse with smoltcp, with
//!   valid IPv4 header and TCP checksums (for gso `None`: the copy equals the
//!   packet but for a completed checksum field). The segments are then pushed
//!   into a `Coalescer` and the writes segmented again: the result must be
//!   the first segmentation, byte for byte (the round trip). Then the edit
//!   script changes one segment and the sequence is pushed again under the
//!   general checks.
//! - [`mode::PUSH`]: chunks, each an arbitrary packet pushed as the agent
//!   does.
//!
//! General checks on every push sequence: a `Mismatch` packet is taken by
//! the coalescer once the run is finished; an `Unsuitable` one is refused by
//! an empty coalescer too; a one-packet write is the packet unchanged (cut at
//! its IP length) with an all-zero vnet header; a merged write segments back
//! into the pushed packets (but for IPv4 ids and checksums, which are
//! recomputed and must be valid).

use kairos_core::offload::{Coalescer, GsoKind, OffloadError, Push, Segmenter, VnetHdr, VNET_HDR_LEN};
use smoltcp::wire::{IpAddress, Ipv4Packet, Ipv6Packet, TcpPacket};

use crate::input::{mutate, Input};
use crate::Stats;

/// What the first byte (modulo 2) selects.
pub mod mode {
    /// A vnet header and a packet read from the TUN.
    pub const SEGMENT: u8 = 0;
    /// Packets from the mesh, pushed into a coalescer.
    pub const PUSH: u8 = 1;
}

/// The agent's coalescing buffer: a vnet header and the largest IP packet.
const BUF_LEN: usize = VNET_HDR_LEN + 65535;

/// Runs one input. See the module docs.
pub fn run(data: &[u8]) -> Stats {
    let mut input = Input::new(data);
    let mut stats = Stats::default();
    match input.u8().map(|m| m % 2) {
        Some(mode::SEGMENT) => segment_mode(&mut input, &mut stats),
        Some(_) => {
            let mut packets = Vec::new();
            while let Some(p) = input.chunk() {
                packets.push(p.to_vec());
            }
            deliver(&packets, &mut stats);
        }
        None => {}
    }
    stats
}

fn segment_mode(input: &mut Input<'_>, stats: &mut Stats) {
    let vnet = input.bytes(VNET_HDR_LEN);
    let packet = input.chunk().unwrap_or(&[]);
    stats.fed += 1;
    let hdr = match VnetHdr::parse(vnet) {
        Ok(h) => h,
        Err(e) => {
            assert!(
                matches!(e, OffloadError::Truncated | OffloadError::Unsupported(_)),
                "{e:?}"
            );
            return;
        }
    };
    let mut emitted = [0u8; VNET_HDR_LEN];
    hdr.emit(&mut emitted);
    assert_eq!(VnetHdr::parse(&emitted), Ok(hdr), "vnet header round trip");
    let Ok(segments) = segment(&hdr, packet) else { return };
    stats.accepted += 1;
    stats.delivered += segments.len() as u32;
    if hdr.gso == GsoKind::None {
        check_completed(&hdr, packet, &segments[0]);
    } else {
        for s in &segments {
            check_segment(s);
        }
    }
    // The round trip: what the receiving side writes to its TUN, cut again
    // by its kernel, is what the sender cut.
    let writes = deliver(&segments, stats);
    if hdr.gso != GsoKind::None {
        let mut again = Vec::new();
        for w in &writes {
            let h = VnetHdr::parse(w).expect("a written vnet header parses");
            again.extend(segment(&h, &w[VNET_HDR_LEN..]).expect("a write segments"));
        }
        assert!(
            again == segments,
            "round trip: segment -> coalesce -> finish -> segment"
        );
    }
    // The same stream with one segment edited.
    if let Some(i) = input.u8() {
        let mut edited = segments;
        let at = usize::from(i) % edited.len();
        mutate(input, &mut edited[at]);
        deliver(&edited, stats);
    }
}

/// All segments of `packet`, or the error of `Segmenter::new`.
fn segment(hdr: &VnetHdr, packet: &[u8]) -> Result<Vec<Vec<u8>>, OffloadError> {
    let mut s = Segmenter::new(hdr, packet)?;
    let count = s.count();
    let len = s.segment_len();
    assert!(count >= 1);
    let mut out = vec![0u8; len];
    if len > 0 {
        assert_eq!(
            s.next_into(&mut out[..len - 1]),
            Some(Err(OffloadError::BufferTooSmall))
        );
    }
    let mut all = Vec::with_capacity(count);
    while let Some(r) = s.next_into(&mut out) {
        let n = r.expect("a segment of at most segment_len() fits");
        assert!(n == len || all.len() + 1 == count, "only the last segment is shorter");
        all.push(out[..n].to_vec());
    }
    assert_eq!(all.len(), count);
    assert_eq!(s.next_into(&mut out), None);
    Ok(all)
}

/// RFC 1071, 16 bits at a time: an oracle independent of the core's.
fn ones_sum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for pair in data.chunks(2) {
        sum += u32::from(pair[0]) << 8 | pair.get(1).map_or(0, |&b| u32::from(b));
        sum = (sum >> 16) + (sum & 0xffff);
    }
    sum as u16
}

/// A gso-`None` copy: the packet, with the partial checksum completed.
fn check_completed(hdr: &VnetHdr, packet: &[u8], out: &[u8]) {
    assert_eq!(out.len(), packet.len());
    if !hdr.needs_csum {
        assert!(out == packet, "a plain copy");
        return;
    }
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    assert!(out[..field] == packet[..field] && out[field + 2..] == packet[field + 2..]);
    // The sum over the checksummed range plus the pseudo-header sum the
    // field held before is all ones (when the field sits in an even lane;
    // in an odd one the oracle's lanes do not line up).
    if (field - start) % 2 == 0 {
        let mut sum = u32::from(ones_sum(&out[start..]));
        sum += u32::from(u16::from_be_bytes([packet[field], packet[field + 1]]));
        let sum = (sum >> 16) + (sum & 0xffff);
        assert_eq!(sum, 0xffff, "completed checksum");
    }
}

/// A segment parses as IPv4 or IPv6 + TCP with valid lengths and checksums.
fn check_segment(s: &[u8]) {
    let (src, dst, tcp) = if s[0] >> 4 == 6 {
        let ip = Ipv6Packet::new_checked(s).expect("an IPv6 segment");
        assert_eq!(usize::from(ip.payload_len()) + 40, s.len());
        (IpAddress::Ipv6(ip.src_addr()), IpAddress::Ipv6(ip.dst_addr()), &s[40..])
    } else {
        let ip = Ipv4Packet::new_checked(s).expect("an IPv4 segment");
        assert!(ip.verify_checksum(), "IPv4 header checksum");
        assert_eq!(usize::from(ip.total_len()), s.len());
        (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
            &s[usize::from(ip.header_len())..],
        )
    };
    let tcp = TcpPacket::new_checked(tcp).expect("a TCP segment");
    assert!(tcp.verify_checksum(&src, &dst), "TCP checksum");
}

/// The length the IP header states, if it is IPv4 or IPv6.
fn stated_len(p: &[u8]) -> usize {
    match p[0] >> 4 {
        4 => usize::from(u16::from_be_bytes([p[2], p[3]])),
        _ => 40 + usize::from(u16::from_be_bytes([p[4], p[5]])),
    }
}

/// Pushes `packets` as the agent does, checks every write against the
/// packets it holds, and returns the writes (vnet header + packet).
fn deliver(packets: &[Vec<u8>], stats: &mut Stats) -> Vec<Vec<u8>> {
    let mut buf = vec![0u8; BUF_LEN];
    let mut c = Coalescer::new();
    let mut run: Vec<&[u8]> = Vec::new();
    let mut writes = Vec::new();
    let flush = |c: &mut Coalescer, buf: &mut [u8], run: &mut Vec<&[u8]>, writes: &mut Vec<Vec<u8>>| {
        match c.finish(buf) {
            Some(n) => {
                check_write(&buf[..n], run);
                writes.push(buf[..n].to_vec());
            }
            None => assert!(run.is_empty()),
        }
        assert!(c.is_empty());
        run.clear();
    };
    for p in packets {
        stats.fed += 1;
        match c.push(&mut buf, p) {
            Push::Merged => run.push(p),
            Push::Mismatch => {
                assert!(!run.is_empty(), "a mismatch needs a run");
                flush(&mut c, &mut buf, &mut run, &mut writes);
                assert_eq!(c.push(&mut buf, p), Push::Merged, "a mismatch starts the next run");
                run.push(p);
            }
            Push::Unsuitable => {
                assert_eq!(
                    Coalescer::new().push(&mut vec![0u8; BUF_LEN], p),
                    Push::Unsuitable,
                    "unsuitable whatever the run"
                );
                flush(&mut c, &mut buf, &mut run, &mut writes);
                let mut alone = vec![0u8; VNET_HDR_LEN];
                alone.extend_from_slice(p);
                writes.push(alone);
            }
        }
    }
    flush(&mut c, &mut buf, &mut run, &mut writes);
    stats.replies += writes.len() as u32;
    writes
}

/// A write holds exactly the packets of its run.
fn check_write(w: &[u8], run: &[&[u8]]) {
    let hdr = VnetHdr::parse(w).expect("a written vnet header parses");
    let p = &w[VNET_HDR_LEN..];
    if let [one] = run {
        assert_eq!(hdr, VnetHdr::NONE);
        assert_eq!(p.len(), stated_len(one));
        assert!(one.starts_with(p), "a one-packet write is the packet");
        return;
    }
    assert!(run.len() > 1 && run.len() <= 64);
    assert!(p.len() <= 65535);
    let v6 = p[0] >> 4 == 6;
    assert_eq!(hdr.gso, if v6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 });
    assert!(hdr.needs_csum);
    assert_eq!(usize::from(hdr.csum_start), if v6 { 40 } else { 20 });
    assert_eq!(hdr.csum_offset, 16);
    let hl = usize::from(hdr.hdr_len);
    let segments = segment(&hdr, p).expect("a merged write segments");
    assert_eq!(segments.len(), run.len());
    assert_eq!(usize::from(hdr.gso_size), stated_len(run[0]) - hl);
    for (s, orig) in segments.iter().zip(run) {
        check_segment(s);
        let orig = &orig[..stated_len(orig)];
        assert_eq!(s.len(), orig.len());
        // All but the IPv4 id and checksum and the TCP checksum are the pushed packet's.
        let masked = |b: &[u8]| {
            let mut b = b.to_vec();
            if !v6 {
                b[4..6].fill(0);
                b[10..12].fill(0);
            }
            let c = usize::from(hdr.csum_start) + 16;
            b[c..c + 2].fill(0);
            b
        };
        assert!(masked(s) == masked(orig), "a merged segment comes back as pushed");
    }
}
