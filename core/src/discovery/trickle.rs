//! When to send the next LAN beacon: a Trickle timer (RFC 6206) with
//! suppression, so a LAN of many members carries a few beacons per
//! interval, not one from every member.
//!
//! A beacon is there for nodes that do not know the mesh yet. Once every
//! node on a LAN knows every other, the beacons of a few members per
//! interval are enough for a newcomer to find one; the rest only cost every
//! member one open per beacon (1000 members beaconing every 30 s make 33
//! beacons a second for each member to open, 3000 a second while they all
//! start together). So:
//!
//! - The first beacon goes out at once, the timer's start: a starting node
//!   is met without waiting.
//! - Intervals then start at [`Trickle::MIN`] and double up to the
//!   configured maximum. In each, the beacon is due at a random time in its
//!   second half, and goes out only if fewer than [`Trickle::REDUNDANCY`]
//!   beacons of members already known were heard in the interval so far
//!   (the random time spreads the members so the first few silence the
//!   rest).
//! - A beacon from a node not known before (a newcomer, or another part of
//!   the mesh) is an inconsistency: the timer goes back to the shortest
//!   interval, so the newcomer hears known members within about a second.
//! - A node with no session up never holds its beacon back: it may be the
//!   one nobody can reach.
//!
//! The random time comes from the node's id and the interval's start, not
//! from the node's random number generator: it only has to differ between
//! nodes, and a schedule that draws nothing keeps the rest of a simulated
//! run's randomness what it was.
//!
//! This module owns only the schedule; the node tells it what it heard and
//! asks whether a beacon is due.

use crate::time::{Duration, Instant};

/// The beacon schedule of one node.
#[derive(Debug, Clone)]
pub struct Trickle {
    seed: u64,
    max: Duration,
    /// The current interval: `[start, start + gap)`.
    start: Instant,
    gap: Duration,
    /// When this interval's beacon is due (`None`: already decided).
    due: Option<Instant>,
    /// Beacons of known members heard since `start`.
    heard: u8,
    /// Whether the first beacon went out.
    started: bool,
}

impl Trickle {
    /// The shortest interval.
    pub const MIN: Duration = Duration::from_secs(1);
    /// Beacons of known members heard in an interval that make this node's
    /// own beacon redundant.
    pub const REDUNDANCY: u8 = 3;

    /// A timer whose intervals grow up to `max` (at least [`Self::MIN`]);
    /// `seed` (the node's id, say) places its beacons in their intervals.
    pub fn new(max: Duration, seed: u64) -> Trickle {
        Trickle {
            seed,
            max: max.max(Self::MIN),
            start: Instant::ZERO,
            gap: Self::MIN,
            due: None,
            heard: 0,
            started: false,
        }
    }

    /// When [`Self::poll`] next has something to do.
    pub fn poll_timeout(&self) -> Instant {
        if !self.started {
            return Instant::ZERO;
        }
        self.due.unwrap_or(self.start + self.gap)
    }

    /// Whether a beacon goes out now. `alone` is true when the node has no
    /// session up (its beacon is then never held back).
    pub fn poll(&mut self, now: Instant, alone: bool) -> bool {
        if !self.started {
            self.started = true;
            self.begin(now, Self::MIN);
            return true;
        }
        let mut send = false;
        if self.due.is_some_and(|due| now >= due) {
            self.due = None;
            send = alone || self.heard < Self::REDUNDANCY;
        }
        let end = self.start + self.gap;
        if now >= end {
            let gap = (self.gap * 2).min(self.max);
            // A poll long after the interval ended (a suspended host)
            // starts the next one now rather than in the past.
            let start = if now.saturating_since(end) >= gap { now } else { end };
            self.begin(start, gap);
        }
        send
    }

    /// A beacon was heard from a member already known (`known`) or from a
    /// node seen for the first time.
    pub fn heard(&mut self, now: Instant, known: bool) {
        if known {
            self.heard = self.heard.saturating_add(1);
        } else if self.started && self.gap > Self::MIN {
            self.begin(now, Self::MIN);
        }
    }

    fn begin(&mut self, start: Instant, gap: Duration) {
        self.start = start;
        self.gap = gap;
        self.heard = 0;
        let half = (gap.as_micros() / 2) as u64;
        let offset = half + splitmix64(self.seed ^ start.as_micros()) % half.max(1);
        self.due = Some(start + Duration::from_micros(offset));
    }
}

/// A well-mixed 64-bit hash of `x` (SplitMix64's finalizer).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Instant {
        Instant::from_millis(ms)
    }

    /// Runs `t` from `from` to `to` (ms), hearing nothing, and returns the
    /// times (ms) a beacon went out.
    fn sent(t: &mut Trickle, from: u64, to: u64, alone: bool) -> std::vec::Vec<u64> {
        let mut out = std::vec::Vec::new();
        let mut now = from;
        while now <= to {
            if t.poll(at(now), alone) {
                out.push(now);
            }
            let next = t.poll_timeout();
            assert!(next >= at(now) || next == Instant::ZERO, "timeout in the past");
            now = (next.as_micros() / 1000).max(now + 1);
        }
        out
    }

    #[test]
    fn first_beacon_at_once_then_one_per_doubling_interval() {
        let mut t = Trickle::new(Duration::from_secs(30), 42);
        let s = sent(&mut t, 0, 120_000, false);
        assert_eq!(s[0], 0);
        // Interval k is [2^k - 1, 2^(k+1) - 1) s (capped at 30 s); its beacon
        // comes in its second half.
        let mut start = 0u64;
        let mut gap = 1000u64;
        for &b in &s[1..] {
            assert!(
                b >= start + gap / 2 && b < start + gap,
                "{b} outside [{start}+{gap}/2, +{gap})"
            );
            start += gap;
            gap = (gap * 2).min(30_000);
        }
        // 0, then intervals of 1, 2, 4, 8, 16 s (to 31 s) and 30 s ones.
        assert_eq!(s.len(), 1 + 5 + 3, "{s:?}");
    }

    #[test]
    fn redundant_beacons_are_held_back_unless_alone() {
        for alone in [false, true] {
            let mut t = Trickle::new(Duration::from_secs(30), 42);
            assert!(t.poll(at(0), alone));
            for _ in 0..Trickle::REDUNDANCY {
                t.heard(at(100), true);
            }
            let s = sent(&mut t, 1, 999, alone);
            assert_eq!(s.len(), usize::from(alone), "alone {alone}: {s:?}");
        }
    }

    #[test]
    fn fewer_than_redundancy_heard_still_sends() {
        let mut t = Trickle::new(Duration::from_secs(30), 42);
        assert!(t.poll(at(0), false));
        for _ in 1..Trickle::REDUNDANCY {
            t.heard(at(100), true);
        }
        assert_eq!(sent(&mut t, 1, 999, false).len(), 1);
        // A new interval counts afresh.
        assert!(!t.poll(at(1000), false));
        for _ in 0..Trickle::REDUNDANCY {
            t.heard(at(1100), true);
        }
        assert!(sent(&mut t, 1001, 2999, false).is_empty());
    }

    #[test]
    fn a_newcomer_resets_the_interval() {
        let mut t = Trickle::new(Duration::from_secs(30), 42);
        let s = sent(&mut t, 0, 60_000, false);
        assert!(s.len() > 3);
        // At 60 s the interval is 30 s long; a newcomer brings it back to 1 s.
        t.heard(at(60_000), false);
        let s = sent(&mut t, 60_000, 61_000, false);
        assert_eq!(s.len(), 1, "{s:?}");
        assert!(s[0] >= 60_500, "{s:?}");
        // A known member's beacon does not.
        let mut t = Trickle::new(Duration::from_secs(30), 42);
        sent(&mut t, 0, 60_000, false);
        t.heard(at(60_000), true);
        assert!(sent(&mut t, 60_000, 61_000, false).is_empty());
    }

    #[test]
    fn a_late_poll_starts_the_interval_it_falls_in() {
        let mut t = Trickle::new(Duration::from_secs(4), 42);
        assert!(t.poll(at(0), false));
        // Nothing polled for a minute (a suspended host): the next interval
        // starts now, not a minute ago, and one beacon follows.
        assert!(t.poll(at(60_000), false), "the overdue beacon");
        assert!(t.poll_timeout() > at(60_000));
        // Intervals [60, 62), [62, 66), [66, 70) s, one beacon each.
        let s = sent(&mut t, 60_001, 70_000, false);
        assert_eq!(s.len(), 3, "{s:?}");
        assert!(s[0] >= 61_000 && s[0] < 62_000, "{s:?}");
    }

    #[test]
    fn nodes_spread_their_beacons_over_the_second_half() {
        let due: std::vec::Vec<Instant> = (0..100u64)
            .map(|seed| {
                let mut t = Trickle::new(Duration::from_secs(30), seed);
                assert!(t.poll(at(0), false));
                t.poll_timeout()
            })
            .collect();
        assert!(due.iter().all(|&d| d >= at(500) && d < at(1000)));
        let early = due.iter().filter(|&&d| d < at(750)).count();
        assert!((30..=70).contains(&early), "{early} of 100 in the first quarter-second");
    }
}
