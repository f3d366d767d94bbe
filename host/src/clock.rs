//! The host's clock for the core: a monotonic [`Instant`] measured from
//! process start, and the wall time at that origin for handshake timestamps.
//!
//! The core never reads a clock; this is the one place the host does.

use std::time::{Instant as StdInstant, SystemTime, UNIX_EPOCH};

use kairos_core::time::{Duration, Instant};

/// Maps `std` time onto the core's [`Instant`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: StdInstant,
    wall_at_origin: Duration,
}

impl Clock {
    /// A clock whose `Instant::ZERO` is now.
    pub fn start() -> Self {
        Clock {
            origin: StdInstant::now(),
            // A clock before 1970 is a broken clock; the handshake still
            // works between restarts of this process.
            wall_at_origin: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(),
        }
    }

    /// The current time on the core's clock.
    pub fn now(&self) -> Instant {
        Instant::from_micros(self.origin.elapsed().as_micros() as u64)
    }

    /// `at` on the `std` clock: the same instant for the same `at`, so a
    /// deadline computed twice is equal (no rounding between two reads).
    pub fn to_std(&self, at: Instant) -> StdInstant {
        self.origin + std::time::Duration::from_micros(at.as_micros())
    }

    /// Wall time (since the UNIX epoch) at the core's `Instant::ZERO`.
    pub fn wall_at_zero(&self) -> Duration {
        self.wall_at_origin
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_with_a_sane_wall_clock() {
        let c = Clock::start();
        let a = c.now();
        let b = c.now();
        assert!(b >= a);
        assert!(c.wall_at_zero() > Duration::from_secs(1_600_000_000));
    }
}
