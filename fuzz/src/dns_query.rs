//! Target `dns_query`: `dns::Query::parse` and the response writers on the
//! input, as the resolver of `kairos agent` / `kairos bridge` runs them on
//! every datagram that reaches port 53 of the overlay address.
//!
//! When the input parses, its name is read, and responses with no answer,
//! with an IPv4 and with an IPv6 answer are written: each must fit
//! [`MAX_RESPONSE_LEN`] or be refused as `Truncated`, echo the id and the
//! question, and carry the answer count it was given. When it does not
//! parse, the error response is written if the header is readable.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kairos_core::dns::{emit_error, emit_response, DnsError, Query, Rcode, HEADER_LEN, MAX_NAME_LEN, MAX_RESPONSE_LEN};

use crate::Stats;

/// Runs the target on `data`.
pub fn run(data: &[u8]) -> Stats {
    let mut stats = Stats {
        fed: 1,
        ..Stats::default()
    };
    let mut out = [0u8; MAX_RESPONSE_LEN];
    match Query::parse(data) {
        Ok(q) => {
            stats.accepted += 1;
            let mut name = [0u8; MAX_NAME_LEN];
            if let Some(n) = q.name(&mut name) {
                assert!(n.len() <= MAX_NAME_LEN);
                assert!(!n.bytes().any(|b| b.is_ascii_uppercase()), "names are lower-cased");
            }
            let v4 = IpAddr::V4(Ipv4Addr::new(10, 1, 0, 7));
            let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
            for answers in [&[][..], &[v4][..], &[v4, v6][..]] {
                match emit_response(&q, Rcode::NoError, answers, 30, &mut out) {
                    Ok(n) => {
                        stats.replies += 1;
                        assert!(n <= MAX_RESPONSE_LEN);
                        assert_eq!(&out[0..2], &data[0..2], "the id is echoed");
                        assert_eq!(usize::from(u16::from_be_bytes([out[6], out[7]])), answers.len());
                        assert_eq!(out[HEADER_LEN..HEADER_LEN + 1], data[HEADER_LEN..HEADER_LEN + 1]);
                    }
                    Err(e) => assert_eq!(e, DnsError::Truncated),
                }
            }
        }
        Err(DnsError::NotAQuery) => {}
        Err(_) => {
            let n = emit_error(data, Rcode::FormErr, &mut out).expect("a readable header gets an error response");
            assert_eq!(n, HEADER_LEN);
            stats.replies += 1;
        }
    }
    stats
}
