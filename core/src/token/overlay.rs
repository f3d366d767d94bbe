//! [`OverlayRange`]: the IPv4 range a token may suggest for overlay addresses
//! (`10.1.0.0/24` is EdgeVPN's default), with its `a.b.c.d/len` text form.
//!
//! This module only holds and parses the range. Allocating addresses from it
//! belongs to the address-allocation layer, which also decides what a node's
//! own config does when it names a different range.

use core::fmt;
use core::net::Ipv4Addr;
use core::str::FromStr;

/// An IPv4 range: an address and a prefix length of 0 to 32.
///
/// The address is kept as written (`10.1.0.1/24` stays `10.1.0.1/24`, as in
/// EdgeVPN configs); [`network`](Self::network) gives the masked base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OverlayRange {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl OverlayRange {
    /// A range, or `None` if `prefix_len` exceeds 32.
    pub const fn new(addr: Ipv4Addr, prefix_len: u8) -> Option<Self> {
        if prefix_len > 32 {
            None
        } else {
            Some(OverlayRange { addr, prefix_len })
        }
    }

    /// The address as written.
    pub const fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length, 0 to 32.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask, e.g. `255.255.255.0` for `/24`.
    pub const fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.mask())
    }

    /// The first address of the range (host bits cleared).
    pub const fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from_bits(self.addr.to_bits() & self.mask())
    }

    /// Whether `ip` lies in the range.
    pub const fn contains(&self, ip: Ipv4Addr) -> bool {
        ip.to_bits() & self.mask() == self.addr.to_bits() & self.mask()
    }

    const fn mask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - n as u32),
        }
    }
}

impl fmt::Display for OverlayRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// A text is not an `a.b.c.d/len` IPv4 range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OverlayRangeError {
    /// There is no `/len` part.
    MissingPrefix,
    /// The part before `/` is not an IPv4 address.
    BadAddress,
    /// The part after `/` is not a number from 0 to 32.
    BadPrefix,
}

impl fmt::Display for OverlayRangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OverlayRangeError::MissingPrefix => "expected an IPv4 range like 10.1.0.0/24 (missing /prefix)",
            OverlayRangeError::BadAddress => "expected an IPv4 range like 10.1.0.0/24 (bad address)",
            OverlayRangeError::BadPrefix => "expected an IPv4 range like 10.1.0.0/24 (prefix must be 0 to 32)",
        })
    }
}

impl core::error::Error for OverlayRangeError {}

impl FromStr for OverlayRange {
    type Err = OverlayRangeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, len) = s.trim().split_once('/').ok_or(OverlayRangeError::MissingPrefix)?;
        let addr = Ipv4Addr::from_str(addr).map_err(|_| OverlayRangeError::BadAddress)?;
        // u8::from_str accepts a leading '+'; a prefix is digits only.
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(OverlayRangeError::BadPrefix);
        }
        let len = u8::from_str(len).map_err(|_| OverlayRangeError::BadPrefix)?;
        OverlayRange::new(addr, len).ok_or(OverlayRangeError::BadPrefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_and_prints() {
        let r: OverlayRange = "10.1.0.0/24".parse().unwrap();
        assert_eq!(r.addr(), Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(r.prefix_len(), 24);
        assert_eq!(r.to_string(), "10.1.0.0/24");
        assert_eq!(r.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        assert_eq!(" 10.1.0.0/24\n".parse::<OverlayRange>(), Ok(r));
    }

    #[test]
    fn keeps_the_address_as_written() {
        let r: OverlayRange = "10.1.0.1/24".parse().unwrap();
        assert_eq!(r.to_string(), "10.1.0.1/24");
        assert_eq!(r.network(), Ipv4Addr::new(10, 1, 0, 0));
        assert!(r.contains(Ipv4Addr::new(10, 1, 0, 254)));
        assert!(!r.contains(Ipv4Addr::new(10, 1, 1, 1)));
    }

    #[test]
    fn edge_prefixes() {
        let all: OverlayRange = "1.2.3.4/0".parse().unwrap();
        assert_eq!(all.network(), Ipv4Addr::UNSPECIFIED);
        assert!(all.contains(Ipv4Addr::BROADCAST));
        let one: OverlayRange = "1.2.3.4/32".parse().unwrap();
        assert_eq!(one.netmask(), Ipv4Addr::BROADCAST);
        assert!(one.contains(Ipv4Addr::new(1, 2, 3, 4)));
        assert!(!one.contains(Ipv4Addr::new(1, 2, 3, 5)));
    }

    #[test]
    fn rejects_bad_text() {
        use OverlayRangeError::*;
        assert_eq!("10.1.0.0".parse::<OverlayRange>(), Err(MissingPrefix));
        assert_eq!("10.1.0/24".parse::<OverlayRange>(), Err(BadAddress));
        assert_eq!("fd00::/8".parse::<OverlayRange>(), Err(BadAddress));
        assert_eq!("10.1.0.0/33".parse::<OverlayRange>(), Err(BadPrefix));
        assert_eq!("10.1.0.0/+8".parse::<OverlayRange>(), Err(BadPrefix));
        assert_eq!("10.1.0.0/".parse::<OverlayRange>(), Err(BadPrefix));
        assert_eq!("10.1.0.0/024".parse::<OverlayRange>(), Err(BadPrefix));
        assert_eq!(OverlayRange::new(Ipv4Addr::LOCALHOST, 33), None);
    }
}
