//! Waiting on conditions with a deadline.
//!
//! Tests never sleep "to let things settle": they poll a probe until it
//! reports the awaited state or the deadline passes, and a timeout says what
//! was awaited and what the probe saw last. Deadlines are generous (the
//! default is 30 s): timing goals belong to benchmarks, and the measured
//! time is returned so tests can print it.

use std::fmt::Display;
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// The default deadline of a wait.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);

/// How often a probe is polled.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What a probe saw on one poll.
#[derive(Debug)]
pub enum Poll<T> {
    /// The condition holds; the wait returns this value.
    Ready(T),
    /// Not yet; the text says what was seen (kept for the timeout message).
    Pending(String),
    /// It can no longer become true (say, the process probed has exited):
    /// the wait fails at once with this reason.
    Fatal(String),
}

/// A value a wait produced and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Waited<T> {
    /// The probe's value.
    pub value: T,
    /// Time from the start of the wait until the probe was ready.
    pub elapsed: Duration,
}

/// Polls `probe` every [`POLL_INTERVAL`] until it is ready or `deadline` has
/// passed. A probe error counts as "not yet" (the thing probed may simply
/// not be up) and is reported if the wait times out.
pub fn wait_for<T, E: Display>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> std::result::Result<Poll<T>, E>,
) -> Result<Waited<T>> {
    let started = Instant::now();
    loop {
        let last = match probe() {
            Ok(Poll::Ready(value)) => {
                return Ok(Waited {
                    value,
                    elapsed: started.elapsed(),
                })
            }
            Ok(Poll::Pending(seen)) => seen,
            Ok(Poll::Fatal(reason)) => return Err(HarnessError::Check(format!("{what}: {reason}"))),
            Err(error) => format!("error: {error}"),
        };
        if started.elapsed() >= deadline {
            return Err(HarnessError::Timeout {
                what: what.to_owned(),
                after: deadline,
                last,
            });
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// [`wait_for`] a boolean probe.
pub fn wait_until<E: Display>(
    what: &str,
    deadline: Duration,
    mut probe: impl FnMut() -> std::result::Result<bool, E>,
) -> Result<Duration> {
    wait_for(what, deadline, || {
        probe().map(|ok| {
            if ok {
                Poll::Ready(())
            } else {
                Poll::Pending("condition false".into())
            }
        })
    })
    .map(|waited| waited.elapsed)
}

/// Checks that `probe` holds on every poll for the whole `window` (a
/// negative condition, such as "learns no member", can only be observed
/// over time). Returns the first violation as an error.
pub fn holds_for<E: Display>(
    what: &str,
    window: Duration,
    mut probe: impl FnMut() -> std::result::Result<Poll<()>, E>,
) -> Result<()> {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(Poll::Ready(())) => {}
            Ok(Poll::Pending(seen)) | Ok(Poll::Fatal(seen)) => {
                return Err(HarnessError::Check(format!(
                    "{what} stopped holding after {:?}: {seen}",
                    started.elapsed()
                )))
            }
            Err(error) => return Err(HarnessError::Check(format!("{what}: probe failed: {error}"))),
        }
        if started.elapsed() >= window {
            return Ok(());
        }
        thread::sleep(POLL_INTERVAL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_ready_value() {
        let mut n = 0;
        let waited = wait_for("n to reach 3", DEFAULT_DEADLINE, || {
            n += 1;
            Ok::<_, String>(if n >= 3 {
                Poll::Ready(n)
            } else {
                Poll::Pending(format!("n={n}"))
            })
        })
        .unwrap();
        assert_eq!(waited.value, 3);
    }

    #[test]
    fn times_out_with_the_last_observation() {
        let err = wait_for::<(), _>("never", Duration::from_millis(250), || Err("nope")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("never") && text.contains("nope"), "{text}");
    }

    #[test]
    fn holds_for_reports_a_violation() {
        let mut n = 0;
        let err = holds_for("n below 2", Duration::from_secs(5), || {
            n += 1;
            Ok::<_, String>(if n < 2 {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("n={n}"))
            })
        })
        .unwrap_err();
        assert!(err.to_string().contains("n=2"), "{err}");
        holds_for("always", Duration::from_millis(150), || {
            Ok::<_, String>(Poll::Ready(()))
        })
        .unwrap();
    }
}
