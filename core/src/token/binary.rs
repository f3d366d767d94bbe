//! The binary layout of a version-1 token: what goes inside the base64url.
//!
//! ```text
//! offset  size  field
//! 0       1     version (0x01)
//! 1       32    network secret
//! 33      n     fields: type (1 byte), length (1 byte), value (length bytes)
//! 33+n    4     checksum: first 4 bytes of BLAKE2s-256(CHECKSUM_LABEL || bytes 0..33+n)
//! ```
//!
//! Field types (values big-endian):
//!
//! | type | value | meaning |
//! |---|---|---|
//! | 0x01 | 4-byte IPv4 address, 2-byte port | bootstrap endpoint (up to 8 endpoint fields in all) |
//! | 0x02 | 16-byte IPv6 address, 2-byte port | bootstrap endpoint |
//! | 0x03 | 4-byte IPv4 address, 1-byte prefix length (0..=32) | overlay IPv4 range (at most once) |
//!
//! Types below 0x80 are required: a reader that does not know one refuses the
//! token. Types from 0x80 up are optional: a reader skips the ones it does not
//! know, so later releases can add hints that older nodes ignore.
//!
//! The trailing checksum is part of every version's layout: it is checked
//! before the version byte, so a damaged token reports a checksum error and a
//! well-formed token from a newer release reports its version. It catches
//! copy-and-paste damage; it is not a MAC (anyone can compute it).
//!
//! This module works on bytes only; the text envelope is in `text.rs`.

use core::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use subtle::ConstantTimeEq;

use super::{BootstrapError, FieldProblem, NetworkToken, OverlayRange, TokenError, TokenVersion, MAX_BOOTSTRAP};
use crate::crypto::hash;

/// The version byte this build writes.
pub(super) const VERSION_1: u8 = 0x01;
/// Field type: bootstrap endpoint, IPv4.
pub(super) const TAG_BOOTSTRAP_V4: u8 = 0x01;
/// Field type: bootstrap endpoint, IPv6.
pub(super) const TAG_BOOTSTRAP_V6: u8 = 0x02;
/// Field type: overlay IPv4 range.
pub(super) const TAG_OVERLAY_V4: u8 = 0x03;
/// Field types from this one up may be skipped by readers that do not know them.
const FIRST_OPTIONAL_TAG: u8 = 0x80;

/// Domain separation for the checksum hash.
const CHECKSUM_LABEL: &[u8] = b"kairos-mesh token checksum";
const CHECKSUM_LEN: usize = 4;
const HEADER_LEN: usize = 1 + 32;

/// The smallest token: version, secret, checksum.
pub(super) const MIN_LEN: usize = HEADER_LEN + CHECKSUM_LEN;
/// The largest token this build writes: every endpoint slot used by IPv6
/// endpoints, plus the overlay range.
pub(super) const MAX_LEN: usize = HEADER_LEN + MAX_BOOTSTRAP * (2 + 18) + (2 + 5) + CHECKSUM_LEN;
/// The largest token this build reads: room for optional fields of later releases.
pub(super) const MAX_READ_LEN: usize = 512;

pub(super) fn checksum(body: &[u8]) -> [u8; CHECKSUM_LEN] {
    let h = hash(&[CHECKSUM_LABEL, body]);
    [h[0], h[1], h[2], h[3]]
}

/// Writes the binary form of `token` to `out` (at least [`MAX_LEN`] bytes)
/// and returns its length. A legacy token is written as version 1 with the
/// same (derived) secret.
pub(super) fn emit(token: &NetworkToken, out: &mut [u8; MAX_LEN]) -> usize {
    out[0] = VERSION_1;
    out[1..HEADER_LEN].copy_from_slice(&token.secret);
    let mut n = HEADER_LEN;
    let mut field = |tag: u8, value: &[u8]| {
        out[n] = tag;
        out[n + 1] = value.len() as u8;
        out[n + 2..n + 2 + value.len()].copy_from_slice(value);
        n += 2 + value.len();
    };
    for ep in &token.bootstrap {
        match ep {
            SocketAddr::V4(a) => {
                let mut v = [0u8; 6];
                v[..4].copy_from_slice(&a.ip().octets());
                v[4..].copy_from_slice(&a.port().to_be_bytes());
                field(TAG_BOOTSTRAP_V4, &v);
            }
            SocketAddr::V6(a) => {
                let mut v = [0u8; 18];
                v[..16].copy_from_slice(&a.ip().octets());
                v[16..].copy_from_slice(&a.port().to_be_bytes());
                field(TAG_BOOTSTRAP_V6, &v);
            }
        }
    }
    if let Some(r) = token.overlay {
        let o = r.addr().octets();
        field(TAG_OVERLAY_V4, &[o[0], o[1], o[2], o[3], r.prefix_len()]);
    }
    let sum = checksum(&out[..n]);
    out[n..n + CHECKSUM_LEN].copy_from_slice(&sum);
    n + CHECKSUM_LEN
}

/// Parses the binary form of a token.
pub(super) fn parse(bytes: &[u8]) -> Result<NetworkToken, TokenError> {
    if bytes.len() < MIN_LEN {
        return Err(TokenError::TooShort);
    }
    if bytes.len() > MAX_READ_LEN {
        return Err(TokenError::TooLong);
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if !bool::from(checksum(body).ct_eq(sum)) {
        return Err(TokenError::BadChecksum);
    }
    if body[0] != VERSION_1 {
        return Err(TokenError::UnknownVersion(body[0]));
    }
    let mut secret = [0u8; 32];
    secret.copy_from_slice(&body[1..HEADER_LEN]);
    let mut token = NetworkToken::from_parts(secret, TokenVersion::V1);
    zeroize::Zeroize::zeroize(&mut secret);

    let mut rest = &body[HEADER_LEN..];
    while !rest.is_empty() {
        let tag = rest[0];
        let bad = |problem| TokenError::BadField { tag, problem };
        let len = *rest.get(1).ok_or(bad(FieldProblem::Truncated))? as usize;
        let value = rest.get(2..2 + len).ok_or(bad(FieldProblem::Truncated))?;
        rest = &rest[2 + len..];
        match tag {
            TAG_BOOTSTRAP_V4 | TAG_BOOTSTRAP_V6 => {
                let ep = match (tag, value.len()) {
                    (TAG_BOOTSTRAP_V4, 6) => {
                        let ip = Ipv4Addr::new(value[0], value[1], value[2], value[3]);
                        SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be_bytes([value[4], value[5]])))
                    }
                    (TAG_BOOTSTRAP_V6, 18) => {
                        let mut ip = [0u8; 16];
                        ip.copy_from_slice(&value[..16]);
                        let port = u16::from_be_bytes([value[16], value[17]]);
                        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(ip), port, 0, 0))
                    }
                    _ => return Err(bad(FieldProblem::WrongLength)),
                };
                if token.bootstrap.contains(&ep) {
                    return Err(bad(FieldProblem::Duplicate));
                }
                token.add_bootstrap(ep).map_err(|e| match e {
                    BootstrapError::TooMany => bad(FieldProblem::TooMany),
                    BootstrapError::Unroutable => bad(FieldProblem::BadValue),
                })?;
            }
            TAG_OVERLAY_V4 => {
                if value.len() != 5 {
                    return Err(bad(FieldProblem::WrongLength));
                }
                if token.overlay.is_some() {
                    return Err(bad(FieldProblem::Duplicate));
                }
                let ip = Ipv4Addr::new(value[0], value[1], value[2], value[3]);
                token.overlay = Some(OverlayRange::new(ip, value[4]).ok_or(bad(FieldProblem::BadValue))?);
            }
            FIRST_OPTIONAL_TAG..=u8::MAX => {}
            _ => return Err(bad(FieldProblem::UnknownRequired)),
        }
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version-1 token body with the given fields and a valid checksum.
    fn build(version: u8, fields: &[u8]) -> ([u8; MAX_READ_LEN], usize) {
        let mut b = [0u8; MAX_READ_LEN];
        b[0] = version;
        b[1..HEADER_LEN].fill(0x5a);
        b[HEADER_LEN..HEADER_LEN + fields.len()].copy_from_slice(fields);
        let n = HEADER_LEN + fields.len();
        let sum = checksum(&b[..n]);
        b[n..n + 4].copy_from_slice(&sum);
        (b, n + 4)
    }

    fn parse_fields(fields: &[u8]) -> Result<NetworkToken, TokenError> {
        let (b, n) = build(VERSION_1, fields);
        parse(&b[..n])
    }

    #[test]
    fn layout_is_as_documented() {
        let t = NetworkToken::from_parts([0x11; 32], TokenVersion::V1)
            .with_bootstrap("192.0.2.1:4242".parse().unwrap())
            .unwrap()
            .with_overlay(OverlayRange::new(Ipv4Addr::new(10, 1, 0, 0), 24).unwrap());
        let mut out = [0u8; MAX_LEN];
        let n = emit(&t, &mut out);
        assert_eq!(n, 33 + 8 + 7 + 4);
        assert_eq!(out[0], 1);
        assert_eq!(&out[1..33], &[0x11; 32]);
        assert_eq!(&out[33..41], &[0x01, 6, 192, 0, 2, 1, 0x10, 0x92]);
        assert_eq!(&out[41..48], &[0x03, 5, 10, 1, 0, 0, 24]);
        assert_eq!(out[48..52], checksum(&out[..48]));
        assert_eq!(parse(&out[..n]), Ok(t));
    }

    #[test]
    fn largest_token_fits() {
        let mut t = NetworkToken::from_parts([0xff; 32], TokenVersion::V1);
        for i in 0..MAX_BOOTSTRAP {
            let ep = SocketAddr::new(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16 + 1).into(), 65535);
            t.add_bootstrap(ep).unwrap();
        }
        t.set_overlay(OverlayRange::new(Ipv4Addr::new(10, 0, 0, 0), 8));
        let mut out = [0u8; MAX_LEN];
        assert_eq!(emit(&t, &mut out), MAX_LEN);
        assert_eq!(parse(&out), Ok(t));
    }

    #[test]
    fn checksum_is_checked_before_version() {
        let (mut b, n) = build(VERSION_1, &[]);
        assert!(parse(&b[..n]).is_ok());
        b[0] = 2;
        assert_eq!(parse(&b[..n]), Err(TokenError::BadChecksum));
        let (b, n) = build(2, &[]);
        assert_eq!(parse(&b[..n]), Err(TokenError::UnknownVersion(2)));
    }

    #[test]
    fn lengths() {
        let (b, n) = build(VERSION_1, &[]);
        assert_eq!(parse(&b[..n - 1]), Err(TokenError::TooShort));
        assert_eq!(parse(&[0u8; MAX_READ_LEN + 1]), Err(TokenError::TooLong));
    }

    #[test]
    fn bad_fields() {
        let bad = |tag, problem| Err(TokenError::BadField { tag, problem });
        use FieldProblem::*;
        assert_eq!(parse_fields(&[0x01]), bad(0x01, Truncated));
        assert_eq!(parse_fields(&[0x01, 6, 1, 2, 3]), bad(0x01, Truncated));
        assert_eq!(parse_fields(&[0x01, 5, 1, 2, 3, 4, 5]), bad(0x01, WrongLength));
        assert_eq!(parse_fields(&[0x02, 6, 1, 2, 3, 4, 0, 1]), bad(0x02, WrongLength));
        assert_eq!(
            parse_fields(&[0x01, 6, 1, 2, 3, 4, 0, 0]),
            bad(0x01, BadValue),
            "port 0"
        );
        assert_eq!(
            parse_fields(&[0x01, 6, 0, 0, 0, 0, 0, 1]),
            bad(0x01, BadValue),
            "0.0.0.0"
        );
        let ep = [0x01, 6, 1, 2, 3, 4, 0, 1];
        let mut twice = [0u8; 16];
        twice[..8].copy_from_slice(&ep);
        twice[8..].copy_from_slice(&ep);
        assert_eq!(parse_fields(&twice), bad(0x01, Duplicate));
        assert_eq!(parse_fields(&[0x03, 5, 10, 0, 0, 0, 33]), bad(0x03, BadValue));
        assert_eq!(parse_fields(&[0x03, 4, 10, 0, 0, 0]), bad(0x03, WrongLength));
        let overlay = [0x03, 5, 10, 0, 0, 0, 8];
        let mut two = [0u8; 14];
        two[..7].copy_from_slice(&overlay);
        two[7..].copy_from_slice(&overlay);
        assert_eq!(parse_fields(&two), bad(0x03, Duplicate));
        assert_eq!(parse_fields(&[0x00, 0]), bad(0x00, UnknownRequired));
        assert_eq!(parse_fields(&[0x42, 1, 9]), bad(0x42, UnknownRequired));

        let mut nine = [0u8; 9 * 8];
        for (i, f) in nine.chunks_mut(8).enumerate() {
            f.copy_from_slice(&[0x01, 6, 10, 0, 0, i as u8 + 1, 0, 1]);
        }
        assert_eq!(parse_fields(&nine), bad(0x01, TooMany));
    }

    #[test]
    fn unknown_optional_fields_are_skipped() {
        let t = parse_fields(&[0x80, 3, 1, 2, 3, 0xff, 0, 0x03, 5, 10, 1, 0, 0, 24]).unwrap();
        assert_eq!(t.overlay().map(|r| r.prefix_len()), Some(24));
        assert!(t.bootstrap().is_empty());
        assert_eq!(
            parse_fields(&[0x80, 3, 1]),
            Err(TokenError::BadField {
                tag: 0x80,
                problem: FieldProblem::Truncated
            })
        );
    }
}
