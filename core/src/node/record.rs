//! The value of a member's `machines/<node id>` ledger entry: how others
//! can reach it.
//!
//! ```text
//! version (1) = 1 | count (1) | count x endpoint: family (1: 4 or 6) | address (4 or 16) | port (2, BE)
//! ```
//! The endpoints are the ones the member configured to advertise plus the
//! ones other members observed it at (its NAT mappings), newest first. The
//! entry's origin identity (in the ledger entry itself) gives the member's
//! keys; this value adds only what the keys do not say.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use heapless::Vec;

/// Endpoints a record carries at most.
pub const MAX_ENDPOINTS: usize = 4;
/// The longest encoding.
pub const MAX_RECORD_LEN: usize = 2 + MAX_ENDPOINTS * 19;

/// A member's reachability record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MachineRecord {
    /// Where the member may be reached, best first.
    pub endpoints: Vec<SocketAddr, MAX_ENDPOINTS>,
}

impl MachineRecord {
    /// Writes the record into `out` and returns its length.
    pub fn emit(&self, out: &mut [u8; MAX_RECORD_LEN]) -> usize {
        out[0] = 1;
        out[1] = self.endpoints.len() as u8;
        let mut at = 2;
        for e in &self.endpoints {
            match e.ip() {
                IpAddr::V4(v4) => {
                    out[at] = 4;
                    out[at + 1..at + 5].copy_from_slice(&v4.octets());
                    at += 5;
                }
                IpAddr::V6(v6) => {
                    out[at] = 6;
                    out[at + 1..at + 17].copy_from_slice(&v6.octets());
                    at += 17;
                }
            }
            out[at..at + 2].copy_from_slice(&e.port().to_be_bytes());
            at += 2;
        }
        at
    }

    /// Reads a record; `None` if it is malformed or of an unknown version.
    pub fn parse(b: &[u8]) -> Option<Self> {
        if b.first() != Some(&1) {
            return None;
        }
        let count = *b.get(1)? as usize;
        if count > MAX_ENDPOINTS {
            return None;
        }
        let mut endpoints = Vec::new();
        let mut at = 2;
        for _ in 0..count {
            let ip: IpAddr = match *b.get(at)? {
                4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(b.get(at + 1..at + 5)?).ok()?)),
                6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(b.get(at + 1..at + 17)?).ok()?)),
                _ => return None,
            };
            at += if ip.is_ipv4() { 5 } else { 17 };
            let port = u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?);
            at += 2;
            endpoints.push(SocketAddr::new(ip, port)).ok()?;
        }
        (at == b.len()).then_some(MachineRecord { endpoints })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects_garbage() {
        let mut r = MachineRecord::default();
        r.endpoints.push("203.0.113.7:51820".parse().unwrap()).unwrap();
        r.endpoints.push("[2001:db8::1]:1".parse().unwrap()).unwrap();
        let mut buf = [0u8; MAX_RECORD_LEN];
        let n = r.emit(&mut buf);
        assert_eq!(MachineRecord::parse(&buf[..n]), Some(r));
        for cut in 0..n {
            assert_eq!(MachineRecord::parse(&buf[..cut]), None, "cut at {cut}");
        }
        assert_eq!(MachineRecord::parse(&[2, 0]), None);
        assert_eq!(MachineRecord::parse(&[1, 0]), Some(MachineRecord::default()));
    }
}
