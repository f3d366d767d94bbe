//! TAI64N timestamps for the handshake initiation.
//!
//! A responder accepts an initiation only if its timestamp is newer than the
//! last one it accepted from that peer, which defeats replayed initiations.
//! The core reads no clock: the wall time comes from the caller as the wall
//! time at `Instant::ZERO`, and the timestamp of `now` is that plus `now`.
//! Following wireguard-go, the nanoseconds are rounded down to a multiple of
//! 2^24 (about 16.8 ms) so a timestamp does not leak precise clock readings.

use crate::time::{Duration, Instant};

/// TAI64 label of the UNIX epoch (2^62 + 10 leap seconds, as WireGuard uses).
const TAI64_EPOCH: u64 = 0x4000_0000_0000_000a;
/// Nanosecond bits dropped for whitening.
const WHITENER_MASK: u32 = (1 << 24) - 1;

/// A 12-byte TAI64N timestamp: big-endian seconds then nanoseconds, so
/// byte-wise comparison orders them in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Tai64N(pub [u8; 12]);

impl Tai64N {
    /// The earliest timestamp; every real one is newer.
    pub const ZERO: Tai64N = Tai64N([0; 12]);

    /// The timestamp of a wall-clock reading (time since the UNIX epoch).
    pub fn from_unix(since_epoch: Duration) -> Self {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&(TAI64_EPOCH + since_epoch.as_secs()).to_be_bytes());
        out[8..].copy_from_slice(&(since_epoch.subsec_nanos() & !WHITENER_MASK).to_be_bytes());
        Tai64N(out)
    }

    /// The next timestamp after `self` (one nanosecond later), for
    /// messages that must be strictly newer than the last one sent within
    /// one whitened interval.
    pub fn successor(&self) -> Self {
        let secs = u64::from_be_bytes(crate::wire::array(&self.0, 0));
        let nanos = u32::from_be_bytes(crate::wire::array(&self.0, 8));
        let (secs, nanos) = if nanos + 1 >= 1_000_000_000 {
            (secs + 1, 0)
        } else {
            (secs, nanos + 1)
        };
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&secs.to_be_bytes());
        out[8..].copy_from_slice(&nanos.to_be_bytes());
        Tai64N(out)
    }

    /// The timestamp at monotonic `now`, given the wall time at `Instant::ZERO`.
    pub fn at(wall_at_zero: Duration, now: Instant) -> Self {
        Self::from_unix(wall_at_zero + now.since_origin())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_and_whitens() {
        let base = Duration::from_secs(1_700_000_000);
        let a = Tai64N::at(base, Instant::from_millis(0));
        let b = Tai64N::at(base, Instant::from_millis(20));
        let c = Tai64N::at(base, Instant::from_secs(2));
        assert!(a < b && b < c);
        assert_eq!(Tai64N::at(base, Instant::from_millis(1)), a, "whitened to ~16.8 ms");
        assert_eq!(&a.0[..8], &(0x4000_0000_0000_000au64 + 1_700_000_000).to_be_bytes());
    }

    #[test]
    fn a_successor_is_the_next_nanosecond() {
        let a = Tai64N::at(Duration::from_secs(1_700_000_000), Instant::from_millis(20));
        let b = a.successor();
        assert!(b > a && b < Tai64N::at(Duration::from_secs(1_700_000_000), Instant::from_millis(40)));
        let last = Tai64N::from_unix(Duration::new(5, 0)).successor();
        let mut end = last.0;
        end[8..].copy_from_slice(&999_999_999u32.to_be_bytes());
        assert_eq!(Tai64N(end).successor(), Tai64N::from_unix(Duration::new(6, 0)));
    }
}
