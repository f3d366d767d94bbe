//! A small executor for an embedded node's firmware tasks.
//!
//! The firmware is a few futures that never end (embassy-net's runners, the
//! mesh task, the service), each a task with its own waker, as
//! embassy-executor runs them: a socket access wakes the stack's runner,
//! not the task that made it. [`Tasks::poll`] sets the virtual time, marks
//! the tasks whose alarm is due, and polls every woken task until none is
//! woken; it returns the earliest alarm left. No threads, no wall clock:
//! the same inputs at the same virtual times give the same run.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use kairos_core::time::Instant;

use super::clock;

/// Rounds of polling in a row after which tasks that keep waking each
/// other without waiting are a bug.
const MAX_ROUNDS: u32 = 10_000;

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Relaxed);
    }
}

struct Task {
    future: Pin<Box<dyn Future<Output = ()>>>,
    woken: Arc<Flag>,
    waker: Waker,
    /// The timer the task waits for, as of its last poll.
    alarm: Option<Instant>,
}

/// See the module docs.
pub struct Tasks(Vec<Task>);

impl Tasks {
    /// Tasks running `futures` (which never end), all woken.
    pub fn new(futures: Vec<Pin<Box<dyn Future<Output = ()>>>>) -> Self {
        Tasks(
            futures
                .into_iter()
                .map(|future| {
                    let woken = Arc::new(Flag(AtomicBool::new(true)));
                    Task {
                        future,
                        waker: Waker::from(woken.clone()),
                        woken,
                        alarm: None,
                    }
                })
                .collect(),
        )
    }

    /// Runs the tasks at `now` until all wait; returns when they want to
    /// run again if nothing arrives before (`None`: only on input).
    pub fn poll(&mut self, now: Instant) -> Option<Instant> {
        clock::set_now(now);
        for t in &mut self.0 {
            if t.alarm.is_some_and(|a| a <= now) {
                t.woken.0.store(true, Ordering::Relaxed);
            }
        }
        for _ in 0..MAX_ROUNDS {
            let mut polled = false;
            for t in &mut self.0 {
                if !t.woken.0.swap(false, Ordering::Relaxed) {
                    continue;
                }
                polled = true;
                clock::clear_alarm();
                let mut cx = Context::from_waker(&t.waker);
                if let Poll::Ready(()) = t.future.as_mut().poll(&mut cx) {
                    panic!("an embedded task ended: firmware tasks run forever");
                }
                t.alarm = clock::take_alarm();
            }
            if !polled {
                return self.0.iter().filter_map(|t| t.alarm).min();
            }
        }
        panic!("embedded tasks keep waking each other at {now:?} without waiting");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[test]
    fn runs_until_all_wait_and_reports_the_earliest_alarm() {
        let steps = Rc::new(Cell::new(0));
        let (s1, s2) = (steps.clone(), steps.clone());
        let mut tasks = Tasks::new(vec![
            Box::pin(async move {
                loop {
                    s1.set(s1.get() + 1);
                    embassy_time::Timer::after_millis(250).await;
                }
            }),
            Box::pin(async move {
                loop {
                    s2.set(s2.get() + 100);
                    embassy_time::Timer::after_millis(400).await;
                }
            }),
        ]);
        assert_eq!(tasks.poll(Instant::ZERO), Some(Instant::from_millis(250)));
        assert_eq!(steps.get(), 101);
        assert_eq!(
            tasks.poll(Instant::from_millis(100)),
            Some(Instant::from_millis(250)),
            "not yet"
        );
        assert_eq!(steps.get(), 101);
        assert_eq!(tasks.poll(Instant::from_millis(250)), Some(Instant::from_millis(400)));
        assert_eq!(steps.get(), 102, "only the first task was due");
        assert_eq!(tasks.poll(Instant::from_millis(400)), Some(Instant::from_millis(500)));
        assert_eq!(steps.get(), 202);
    }
}
