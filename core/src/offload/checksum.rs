//! The Internet checksum (RFC 1071) at the speed the data path needs: a
//! 64-bit accumulator over 8-byte words with end-around carry, folded to
//! 16 bits once at the end.
//!
//! Words are read in native byte order: a ones-complement sum is the same
//! whichever order the bytes of each 16-bit lane are taken in, as long as
//! the folded result is read back in that order ([`fold`] does). Sums of
//! separate slices can be added when every slice but the last has an even
//! length (the lanes stay aligned).

use super::{OffloadError, VnetHdr, PROTO_TCP};

/// Adds `w` to the accumulator with end-around carry.
#[inline(always)]
fn add_word(acc: u64, w: u64) -> u64 {
    let (s, carry) = acc.overflowing_add(w);
    // When the add carried, s <= u64::MAX - 1: adding the carry cannot overflow.
    s + u64::from(carry)
}

/// A word from up to 8 bytes, zero-padded at the end (the odd last byte of
/// a slice is the high byte of its 16-bit lane in network order).
#[inline(always)]
fn tail_word(rest: &[u8]) -> u64 {
    let mut t = [0u8; 8];
    t[..rest.len()].copy_from_slice(rest);
    u64::from_ne_bytes(t)
}

/// Adds the bytes of `data` to the accumulator.
#[inline]
pub(super) fn add(mut acc: u64, data: &[u8]) -> u64 {
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        acc = add_word(acc, u64::from_ne_bytes(c.try_into().expect("8-byte chunk")));
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        acc
    } else {
        add_word(acc, tail_word(rest))
    }
}

/// Copies `src` into `dst` (same length) and adds its bytes to the
/// accumulator, in one pass over the data.
#[inline]
pub(super) fn copy_add(mut acc: u64, dst: &mut [u8], src: &[u8]) -> u64 {
    debug_assert_eq!(dst.len(), src.len());
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (dc, sc) in (&mut d).zip(&mut s) {
        let w: [u8; 8] = sc.try_into().expect("8-byte chunk");
        dc.copy_from_slice(&w);
        acc = add_word(acc, u64::from_ne_bytes(w));
    }
    let rest = s.remainder();
    if rest.is_empty() {
        acc
    } else {
        d.into_remainder().copy_from_slice(rest);
        add_word(acc, tail_word(rest))
    }
}

/// Adds a 16-bit value in network order (a length or a protocol number of
/// the pseudo-header).
#[inline]
pub(super) fn add_u16(acc: u64, v: u16) -> u64 {
    add_word(acc, u64::from(u16::from_ne_bytes(v.to_be_bytes())))
}

/// Folds the accumulator to the 16-bit ones-complement sum, as a number
/// (write it with `to_be_bytes`). Not complemented.
#[inline]
pub(super) fn fold(acc: u64) -> u16 {
    let mut s = (acc >> 32) + (acc & 0xffff_ffff);
    s = (s >> 32) + (s & 0xffff_ffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    s = (s >> 16) + (s & 0xffff);
    u16::from_be_bytes((s as u16).to_ne_bytes())
}

/// The unfolded TCP pseudo-header sum: source and destination addresses
/// (`addrs`, 8 bytes for IPv4, 32 for IPv6), protocol and TCP length. The
/// IPv6 form (32-bit length, 3 zero bytes, next header) sums the same for
/// lengths below 64 KiB.
#[inline]
pub(super) fn tcp_pseudo_header(addrs: &[u8], tcp_len: u16) -> u64 {
    add_u16(add_u16(add(0, addrs), u16::from(PROTO_TCP)), tcp_len)
}

/// Writes the IPv4 header checksum of `header` (its full IHL length).
pub(super) fn fill_ipv4_header(header: &mut [u8]) {
    header[10..12].fill(0);
    let c = !fold(add(0, header));
    header[10..12].copy_from_slice(&c.to_be_bytes());
}

/// Where the partial checksum of `hdr` sits in a packet of `len` bytes:
/// `(csum_start, field offset)`, or `Malformed` when the field is not
/// inside the packet.
pub(super) fn partial_field(hdr: &VnetHdr, len: usize) -> Result<(usize, usize), OffloadError> {
    let start = usize::from(hdr.csum_start);
    let field = start + usize::from(hdr.csum_offset);
    if field + 2 > len {
        return Err(OffloadError::Malformed);
    }
    Ok((start, field))
}

/// Stores the complemented sum `acc` into the field at `at`. A result of 0
/// is sent as 0xffff (the same in ones complement), as Linux's
/// `skb_checksum_help` does, since 0 means "no checksum" to UDP.
#[inline]
pub(super) fn store_complement(packet: &mut [u8], at: usize, acc: u64) {
    let c = match !fold(acc) {
        0 => 0xffff,
        c => c,
    };
    packet[at..at + 2].copy_from_slice(&c.to_be_bytes());
}

/// For a packet read from the TUN with `gso` [`None`](super::GsoKind::None):
/// when `hdr.needs_csum`, computes the transport checksum in place: the sum
/// over `packet[csum_start..]`, in which the field at
/// `csum_start + csum_offset` already holds the pseudo-header sum (as the
/// kernel leaves it), complemented into that field. A no-op when
/// `!hdr.needs_csum`. `Malformed` when the field is outside the packet.
pub fn complete_checksum(hdr: &VnetHdr, packet: &mut [u8]) -> Result<(), OffloadError> {
    if !hdr.needs_csum {
        return Ok(());
    }
    let (start, field) = partial_field(hdr, packet.len())?;
    let acc = add(0, &packet[start..]);
    store_complement(packet, field, acc);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::testutil::{build, check, payload, Spec};

    /// RFC 1071, 16 bits at a time: the reference.
    fn reference(data: &[u8]) -> u16 {
        let mut sum = 0u32;
        for pair in data.chunks(2) {
            let hi = u32::from(pair[0]) << 8;
            let lo = pair.get(1).map_or(0, |&b| u32::from(b));
            sum += hi | lo;
            sum = (sum >> 16) + (sum & 0xffff);
        }
        sum as u16
    }

    #[test]
    fn matches_the_reference_on_every_length_and_alignment() {
        let mut buf = [0u8; 300];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(151).wrapping_add(0xf3);
        }
        for start in 0..9 {
            for end in start..buf.len() {
                let d = &buf[start..end];
                // The fold of an all-zero input is 0; of anything else never 0.
                assert_eq!(fold(add(0, d)), reference(d), "{start}..{end}");
            }
        }
    }

    #[test]
    fn carries_wrap_around() {
        let ones = [0xffu8; 4096];
        assert_eq!(fold(add(0, &ones)), 0xffff);
        assert_eq!(fold(add(u64::MAX, &ones)), 0xffff);
        assert_eq!(fold(add_u16(0, 0x1234)), 0x1234);
        assert_eq!(fold(add_u16(add_u16(0, 0xfff0), 0x0020)), 0x0011);
        assert_eq!(fold(0), 0);
    }

    #[test]
    fn even_splits_add_up() {
        let mut pl = [0u8; 1001];
        let d = payload(1001, &mut pl);
        for split in (0..1001).step_by(2) {
            assert_eq!(fold(add(add(0, &d[..split]), &d[split..])), reference(d));
        }
    }

    #[test]
    fn copy_add_copies_and_sums() {
        let mut pl = [0u8; 77];
        let src = payload(77, &mut pl);
        for n in 0..77 {
            let mut dst = [0u8; 77];
            let acc = copy_add(5, &mut dst[..n], &src[..n]);
            assert_eq!(&dst[..n], &src[..n]);
            assert_eq!(acc, add(5, &src[..n]));
        }
    }

    #[test]
    fn ipv4_header_checksum_is_valid() {
        let mut p = [0u8; 100];
        let n = build(&Spec::v4(&[9; 10]), &mut p);
        p[10] ^= 0x55;
        fill_ipv4_header(&mut p[..20]);
        check(&p[..n]);
    }

    /// A packet as the kernel hands it with `NEEDS_CSUM`: the TCP checksum
    /// field holds the folded pseudo-header sum.
    fn partial(spec: &Spec<'_>, p: &mut [u8]) -> (usize, VnetHdr) {
        let n = build(spec, p);
        let ip = if spec.v6 { 40 } else { 20 };
        let addrs = if spec.v6 { &p[8..40] } else { &p[12..20] };
        let pseudo = fold(tcp_pseudo_header(addrs, (n - ip) as u16));
        p[ip + 16..ip + 18].copy_from_slice(&pseudo.to_be_bytes());
        let hdr = VnetHdr {
            needs_csum: true,
            csum_start: ip as u16,
            csum_offset: 16,
            ..VnetHdr::NONE
        };
        (n, hdr)
    }

    #[test]
    fn completes_a_partial_tcp_checksum() {
        let mut pl = [0u8; 1500];
        for len in [0, 1, 2, 7, 999, 1400] {
            for v6 in [false, true] {
                let d = payload(len, &mut pl);
                let spec = if v6 { Spec::v6(d) } else { Spec::v4(d) };
                let mut p = [0u8; 1600];
                let (n, hdr) = partial(&spec, &mut p);
                complete_checksum(&hdr, &mut p[..n]).unwrap();
                check(&p[..n]);
            }
        }
    }

    #[test]
    fn no_op_without_needs_csum() {
        let mut p = [7u8; 40];
        complete_checksum(&VnetHdr::NONE, &mut p).unwrap();
        assert_eq!(p, [7u8; 40]);
        complete_checksum(&VnetHdr::NONE, &mut []).unwrap();
    }

    #[test]
    fn a_field_outside_the_packet_is_malformed() {
        let hdr = VnetHdr {
            needs_csum: true,
            csum_start: 20,
            csum_offset: 16,
            ..VnetHdr::NONE
        };
        let mut p = [0u8; 37];
        assert_eq!(complete_checksum(&hdr, &mut p), Err(OffloadError::Malformed));
        let mut p = [0u8; 36];
        assert_eq!(complete_checksum(&hdr, &mut p), Err(OffloadError::Malformed));
        let max = VnetHdr {
            csum_start: u16::MAX,
            csum_offset: u16::MAX,
            ..hdr
        };
        assert_eq!(complete_checksum(&max, &mut [0u8; 64]), Err(OffloadError::Malformed));
        let mut p = [0u8; 38];
        assert_eq!(complete_checksum(&hdr, &mut p), Ok(()));
        // All zero: the sum is 0, its complement 0xffff.
        assert_eq!(&p[36..38], &[0xff, 0xff]);
    }
}
