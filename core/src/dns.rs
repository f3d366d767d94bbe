//! Answering DNS queries for the mesh's names: the wire format of one
//! question in, one response out (RFC 1035 section 4), smoltcp style.
//!
//! This module owns parsing a query ([`Query::parse`]), reading its name
//! ([`Query::name`], lower-case, dotted, without the final dot) and writing
//! the response ([`emit_response`]) into the caller's buffer. It does not
//! decide what a name resolves to (the host's resolver does, from the
//! ledger) and never sends anything. No allocation; every length is checked
//! against the buffer, so a hostile datagram can only be refused.
//!
//! Only what a stub resolver sends is understood: a standard query
//! (opcode 0) with exactly one question whose name uses no compression.
//! Anything else gets [`Rcode::FormErr`] or [`Rcode::NotImp`] when its
//! header can be read, and is dropped when it cannot.

use core::net::IpAddr;

/// The fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// The longest name on the wire (RFC 1035 2.3.4).
pub const MAX_NAME_LEN: usize = 255;
/// The longest label.
const MAX_LABEL_LEN: usize = 63;
/// Record type A (an IPv4 address).
pub const TYPE_A: u16 = 1;
/// Record type AAAA (an IPv6 address).
pub const TYPE_AAAA: u16 = 28;
/// Query type ANY.
pub const TYPE_ANY: u16 = 255;
/// Class IN.
pub const CLASS_IN: u16 = 1;
/// The largest response written: what every resolver accepts over UDP
/// without EDNS.
pub const MAX_RESPONSE_LEN: usize = 512;

/// Response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Rcode {
    /// The name exists (the answer section may still be empty).
    NoError = 0,
    /// The query could not be understood.
    FormErr = 1,
    /// The server failed.
    ServFail = 2,
    /// The name does not exist.
    NxDomain = 3,
    /// This kind of query is not supported.
    NotImp = 4,
    /// The server does not answer for this name.
    Refused = 5,
}

/// Why a datagram is not a query that can be answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsError {
    /// Shorter than a header, or a response rather than a query: drop it.
    NotAQuery,
    /// A query that cannot be parsed: answer [`Rcode::FormErr`].
    Malformed,
    /// A well-formed query of a kind not supported (another opcode, several
    /// questions): answer [`Rcode::NotImp`].
    Unsupported,
    /// The output buffer is too small.
    Truncated,
}

/// One parsed question, borrowing the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<'a> {
    buf: &'a [u8],
    /// End of the question section.
    end: usize,
    /// The question's type.
    pub qtype: u16,
    /// The question's class.
    pub qclass: u16,
}

impl<'a> Query<'a> {
    /// Parses `buf` as a standard query with one question.
    pub fn parse(buf: &'a [u8]) -> Result<Query<'a>, DnsError> {
        if buf.len() < HEADER_LEN || buf[2] & 0x80 != 0 {
            return Err(DnsError::NotAQuery);
        }
        let opcode = (buf[2] >> 3) & 0x0f;
        let qdcount = u16::from_be_bytes([buf[4], buf[5]]);
        if opcode != 0 || qdcount != 1 {
            return Err(DnsError::Unsupported);
        }
        let mut at = HEADER_LEN;
        loop {
            let len = *buf.get(at).ok_or(DnsError::Malformed)? as usize;
            if len == 0 {
                at += 1;
                break;
            }
            if len > MAX_LABEL_LEN {
                return Err(DnsError::Malformed); // compression or a reserved form
            }
            at += 1 + len;
            if at - HEADER_LEN > MAX_NAME_LEN {
                return Err(DnsError::Malformed);
            }
        }
        let fixed = buf.get(at..at + 4).ok_or(DnsError::Malformed)?;
        Ok(Query {
            buf,
            end: at + 4,
            qtype: u16::from_be_bytes([fixed[0], fixed[1]]),
            qclass: u16::from_be_bytes([fixed[2], fixed[3]]),
        })
    }

    /// The query id.
    pub fn id(&self) -> u16 {
        u16::from_be_bytes([self.buf[0], self.buf[1]])
    }

    /// The question's name, lower-case and dotted, without the final dot,
    /// written into `out`; `None` if a label holds a byte that is not
    /// printable ASCII or a dot (no mesh name does).
    pub fn name<'o>(&self, out: &'o mut [u8; MAX_NAME_LEN]) -> Option<&'o str> {
        let mut len = 0;
        let mut at = HEADER_LEN;
        loop {
            let l = self.buf[at] as usize;
            if l == 0 {
                break;
            }
            if len > 0 {
                out[len] = b'.';
                len += 1;
            }
            for &b in &self.buf[at + 1..at + 1 + l] {
                if !b.is_ascii_graphic() || b == b'.' || len >= MAX_NAME_LEN {
                    return None;
                }
                out[len] = b.to_ascii_lowercase();
                len += 1;
            }
            at += 1 + l;
        }
        core::str::from_utf8(&out[..len]).ok()
    }
}

/// Writes the response to `query` into `out`: the header with `rcode`,
/// the question, and one record per address in `answers` with `ttl`
/// seconds (A for IPv4, AAAA for IPv6; the caller picks the ones the
/// question's type asks for). Returns the length written.
pub fn emit_response(
    query: &Query<'_>,
    rcode: Rcode,
    answers: &[IpAddr],
    ttl: u32,
    out: &mut [u8],
) -> Result<usize, DnsError> {
    let question = &query.buf[HEADER_LEN..query.end];
    let mut len = HEADER_LEN + question.len();
    for a in answers {
        len += 12 + if a.is_ipv4() { 4 } else { 16 };
    }
    if out.len() < len || len > MAX_RESPONSE_LEN {
        return Err(DnsError::Truncated);
    }
    out[0..2].copy_from_slice(&query.buf[0..2]);
    // QR, opcode 0, AA, RD as asked; RA 0 (no recursion offered).
    out[2] = 0x80 | 0x04 | (query.buf[2] & 0x01);
    out[3] = rcode as u8;
    out[4..6].copy_from_slice(&1u16.to_be_bytes());
    out[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
    out[8..12].fill(0);
    out[HEADER_LEN..HEADER_LEN + question.len()].copy_from_slice(question);
    let mut at = HEADER_LEN + question.len();
    for a in answers {
        // The name is a pointer to the question's (offset 12).
        let (rtype, octets4, octets16);
        let rdata: &[u8] = match a {
            IpAddr::V4(v4) => {
                rtype = TYPE_A;
                octets4 = v4.octets();
                &octets4
            }
            IpAddr::V6(v6) => {
                rtype = TYPE_AAAA;
                octets16 = v6.octets();
                &octets16
            }
        };
        out[at..at + 2].copy_from_slice(&[0xc0, HEADER_LEN as u8]);
        out[at + 2..at + 4].copy_from_slice(&rtype.to_be_bytes());
        out[at + 4..at + 6].copy_from_slice(&CLASS_IN.to_be_bytes());
        out[at + 6..at + 10].copy_from_slice(&ttl.to_be_bytes());
        out[at + 10..at + 12].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        out[at + 12..at + 12 + rdata.len()].copy_from_slice(rdata);
        at += 12 + rdata.len();
    }
    Ok(at)
}

/// Writes a header-only response with `rcode` to a datagram whose header
/// could be read but whose question could not (`FormErr`, `NotImp`).
pub fn emit_error(query: &[u8], rcode: Rcode, out: &mut [u8]) -> Result<usize, DnsError> {
    if query.len() < HEADER_LEN || query[2] & 0x80 != 0 {
        return Err(DnsError::NotAQuery);
    }
    if out.len() < HEADER_LEN {
        return Err(DnsError::Truncated);
    }
    out[0..2].copy_from_slice(&query[0..2]);
    out[2] = 0x80 | (query[2] & 0x79); // QR, the opcode and RD as asked
    out[3] = rcode as u8;
    out[4..12].fill(0);
    Ok(HEADER_LEN)
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::net::{Ipv4Addr, Ipv6Addr};
    use std::vec::Vec;

    /// A query as `dig`/glibc send it: id, RD, one question.
    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = std::vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.').filter(|l| !l.is_empty()) {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&CLASS_IN.to_be_bytes());
        q
    }

    #[test]
    fn parses_a_query_and_lowercases_its_name() {
        let q = query("Edge-1.Kairos.MESH.", TYPE_A);
        let p = Query::parse(&q).unwrap();
        assert_eq!(p.id(), 0x1234);
        assert_eq!((p.qtype, p.qclass), (TYPE_A, CLASS_IN));
        let mut buf = [0; MAX_NAME_LEN];
        assert_eq!(p.name(&mut buf), Some("edge-1.kairos.mesh"));
    }

    #[test]
    fn answers_with_a_and_aaaa_records() {
        let q = query("edge-1.kairos.mesh", TYPE_ANY);
        let p = Query::parse(&q).unwrap();
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7));
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 1, 2, 3, 4, 5, 6, 7));
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = emit_response(&p, Rcode::NoError, &[v4, v6], 30, &mut out).unwrap();
        let r = &out[..n];
        assert_eq!(&r[0..2], &[0x12, 0x34], "same id");
        assert_eq!(r[2], 0x85, "QR, AA, RD");
        assert_eq!(r[3], 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 2, "two answers");
        let qlen = q.len() - HEADER_LEN;
        assert_eq!(&r[HEADER_LEN..HEADER_LEN + qlen], &q[HEADER_LEN..], "question echoed");
        let a = &r[HEADER_LEN + qlen..];
        assert_eq!(&a[0..2], &[0xc0, 12]);
        assert_eq!(u16::from_be_bytes([a[2], a[3]]), TYPE_A);
        assert_eq!(u32::from_be_bytes([a[6], a[7], a[8], a[9]]), 30);
        assert_eq!(&a[10..16], &[0, 4, 10, 1, 0, 7]);
        let b = &a[16..];
        assert_eq!(u16::from_be_bytes([b[2], b[3]]), TYPE_AAAA);
        assert_eq!(u16::from_be_bytes([b[10], b[11]]), 16);
        assert_eq!(b.len(), 12 + 16);
    }

    #[test]
    fn nxdomain_has_no_answers() {
        let q = query("nobody.kairos.mesh", TYPE_A);
        let p = Query::parse(&q).unwrap();
        let mut out = [0u8; MAX_RESPONSE_LEN];
        let n = emit_response(&p, Rcode::NxDomain, &[], 30, &mut out).unwrap();
        assert_eq!(n, q.len());
        assert_eq!(out[3], 3);
        assert_eq!(&out[6..8], &[0, 0]);
    }

    #[test]
    fn refuses_what_it_does_not_understand() {
        assert_eq!(Query::parse(&[0; 5]), Err(DnsError::NotAQuery));
        let mut response = query("a.mesh", TYPE_A);
        response[2] |= 0x80;
        assert_eq!(Query::parse(&response), Err(DnsError::NotAQuery));
        let mut two = query("a.mesh", TYPE_A);
        two[5] = 2;
        assert_eq!(Query::parse(&two), Err(DnsError::Unsupported));
        let mut update = query("a.mesh", TYPE_A);
        update[2] = 5 << 3;
        assert_eq!(Query::parse(&update), Err(DnsError::Unsupported));
        let mut compressed = query("a.mesh", TYPE_A);
        compressed[HEADER_LEN] = 0xc0;
        assert_eq!(Query::parse(&compressed), Err(DnsError::Malformed));
        let short = &query("a.mesh", TYPE_A)[..HEADER_LEN + 3];
        assert_eq!(Query::parse(short), Err(DnsError::Malformed));
        let mut out = [0u8; 16];
        assert_eq!(emit_error(&two, Rcode::NotImp, &mut out), Ok(HEADER_LEN));
        assert_eq!(out[3], Rcode::NotImp as u8);
        assert_eq!(out[2] & 0x80, 0x80);
        assert_eq!(
            emit_error(&response, Rcode::FormErr, &mut out),
            Err(DnsError::NotAQuery)
        );
    }

    #[test]
    fn odd_names_and_small_buffers() {
        let mut q = query("ab.mesh", TYPE_A);
        q[HEADER_LEN + 1] = 0; // a NUL byte inside a label
        let p = Query::parse(&q).unwrap();
        assert_eq!(p.name(&mut [0; MAX_NAME_LEN]), None);
        let root = query("", TYPE_A);
        assert_eq!(Query::parse(&root).unwrap().name(&mut [0; MAX_NAME_LEN]), Some(""));
        let q = query("edge.mesh", TYPE_A);
        let p = Query::parse(&q).unwrap();
        let v4 = [IpAddr::V4(Ipv4Addr::LOCALHOST)];
        assert_eq!(
            emit_response(&p, Rcode::NoError, &v4, 1, &mut [0; 20]),
            Err(DnsError::Truncated)
        );
        let long: std::string::String = std::iter::repeat_n("a23456789.", 26).collect();
        assert_eq!(Query::parse(&query(&long, TYPE_A)), Err(DnsError::Malformed));
    }
}
