//! The embassy-time driver of the simulation: embedded nodes read the
//! world's virtual time.
//!
//! `embassy-time` asks one driver per program for the time and to wake a
//! task at some instant. Here the time is the virtual `now` the world sets
//! before it polls an embedded node ([`set_now`]), and a wake-up request is
//! only remembered ([`take_alarm`]): the world polls the node again at the
//! earliest one, as a hardware timer would interrupt it. Both are
//! thread-local, so tests running in parallel threads keep separate worlds
//! and the simulation stays deterministic. Nothing here reads the wall
//! clock.

use std::cell::Cell;
use std::task::Waker;

use embassy_time_driver::{Driver, TICK_HZ};
use kairos_core::time::Instant;

thread_local! {
    static NOW: Cell<Instant> = const { Cell::new(Instant::ZERO) };
    static ALARM: Cell<u64> = const { Cell::new(u64::MAX) };
}

struct VirtualClock;

impl Driver for VirtualClock {
    fn now(&self) -> u64 {
        to_ticks(NOW.with(Cell::get))
    }

    fn schedule_wake(&self, at: u64, _waker: &Waker) {
        // The world polls the whole task at the alarm: no need to keep
        // which waker asked.
        ALARM.with(|a| a.set(a.get().min(at)));
    }
}

embassy_time_driver::time_driver_impl!(static CLOCK: VirtualClock = VirtualClock);

fn to_ticks(t: Instant) -> u64 {
    (u128::from(t.as_micros()) * u128::from(TICK_HZ) / 1_000_000) as u64
}

fn from_ticks(ticks: u64) -> Instant {
    // Rounded up: polled at or after the instant asked for, never before.
    Instant::from_micros(
        (u128::from(ticks) * 1_000_000)
            .div_ceil(u128::from(TICK_HZ))
            .min(u128::from(u64::MAX)) as u64,
    )
}

/// Sets the time embedded nodes on this thread read.
pub fn set_now(now: Instant) {
    NOW.with(|c| c.set(now));
}

/// Forgets the wake-up requests so far (before a poll).
pub fn clear_alarm() {
    ALARM.with(|a| a.set(u64::MAX));
}

/// The earliest wake-up requested since [`clear_alarm`], if any.
pub fn take_alarm() -> Option<Instant> {
    let at = ALARM.with(|a| a.replace(u64::MAX));
    (at != u64::MAX).then(|| from_ticks(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embassy_time_reads_the_virtual_clock() {
        set_now(Instant::from_millis(1500));
        assert_eq!(embassy_time::Instant::now().as_millis(), 1500);
        clear_alarm();
        assert_eq!(take_alarm(), None);
        CLOCK.schedule_wake(to_ticks(Instant::from_secs(3)), Waker::noop());
        CLOCK.schedule_wake(to_ticks(Instant::from_secs(2)), Waker::noop());
        assert_eq!(take_alarm(), Some(Instant::from_secs(2)));
        assert_eq!(take_alarm(), None, "taken");
    }
}
