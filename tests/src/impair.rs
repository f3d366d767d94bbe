//! The impairment relay (`impair`, `tests/src/bin/impair.rs`): what it does
//! to each datagram ([`Impairment`], [`Fate`]), the seeded RNG that decides
//! it ([`SplitMix64`]), what it counts ([`Counters`], with the summary line
//! it prints and [`Counters::parse`] to read it back), and
//! [`Lab::start_impair`] to run it inside a namespace.
//!
//! The kernel of the test machines has no `sch_netem`, and nftables can
//! drop but not delay, reorder or duplicate. So the tests put a userspace
//! relay between agents: it binds UDP sockets in a router namespace, each
//! pair of sockets a [`Pipe`] that forwards what one agent sends to the
//! other, like a NAT's port forward, and impairs every datagram on the way.
//!
//! This module owns the decisions only; it never touches a socket. The
//! decisions are a pure function of the seed and the order of datagrams in
//! one direction: each direction has its own RNG ([`SplitMix64::for_stream`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use crate::binaries;
use crate::error::{HarnessError, Result};
use crate::lab::{Lab, Namespace, ProcessId};
use crate::wait::{wait_for, Poll};

/// The prefix of the relay's summary line (printed once, when it exits).
pub const SUMMARY_PREFIX: &str = "impair summary:";

/// The prefix of the relay's periodic counter lines.
pub const STATS_PREFIX: &str = "impair stats:";

/// The line the relay prints once every socket is bound.
pub const READY_LINE: &str = "impair: listening";

/// SplitMix64 (Steele, Lea, Flood 2014): small, fast, and good enough to
/// decide the fate of datagrams; the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The generator of stream `stream` under `seed` (one per direction,
    /// so each direction's decisions do not depend on the other's timing).
    pub fn for_stream(seed: u64, stream: u64) -> SplitMix64 {
        let mut mix = SplitMix64(seed ^ stream.wrapping_mul(0xA076_1D64_78BD_642F));
        SplitMix64(mix.next_u64())
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        if max == u64::MAX {
            return self.next_u64();
        }
        // Multiply-shift; the bias is below 2^-32 for the ranges used here.
        ((u128::from(self.next_u64()) * u128::from(max + 1)) >> 64) as u64
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: f64) -> bool {
        // 53 random bits as a float in [0, 1).
        let x = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        x * 100.0 < percent
    }
}

/// What the relay does to every datagram, each way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Share of datagrams dropped, in percent.
    pub loss_percent: f64,
    /// The least delay of a datagram.
    pub delay: Duration,
    /// The delay of each copy is uniform in `[delay, delay + jitter]`;
    /// datagrams closer together than the jitter overtake each other.
    pub jitter: Duration,
    /// Share of datagrams held back by an extra [`Impairment::reorder_hold`],
    /// in percent, so that later ones overtake them (on top of what the
    /// jitter reorders).
    pub reorder_percent: f64,
    /// How long a held-back datagram waits on top of its delay.
    pub reorder_hold: Duration,
    /// Share of forwarded datagrams sent twice, in percent; the copy gets
    /// a delay of its own.
    pub duplicate_percent: f64,
}

impl Impairment {
    /// No impairment: every datagram forwarded at once.
    pub fn none() -> Impairment {
        Impairment {
            loss_percent: 0.0,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder_percent: 0.0,
            reorder_hold: Duration::ZERO,
            duplicate_percent: 0.0,
        }
    }

    /// The relay's command-line flags for this impairment.
    pub fn to_args(&self) -> Vec<String> {
        vec![
            "--loss".into(),
            self.loss_percent.to_string(),
            "--delay-ms".into(),
            self.delay.as_millis().to_string(),
            "--jitter-ms".into(),
            self.jitter.as_millis().to_string(),
            "--reorder".into(),
            self.reorder_percent.to_string(),
            "--reorder-ms".into(),
            self.reorder_hold.as_millis().to_string(),
            "--duplicate".into(),
            self.duplicate_percent.to_string(),
        ]
    }

    /// Decides the fate of the next datagram of the stream `rng` draws for.
    /// Always draws in the same order (loss, delay, hold, duplicate, its
    /// delay), so a seed replays the same decisions.
    pub fn decide(&self, rng: &mut SplitMix64) -> Fate {
        if rng.chance(self.loss_percent) {
            return Fate::Lost;
        }
        let mut delay = self.draw_delay(rng);
        let held = rng.chance(self.reorder_percent);
        if held {
            delay += self.reorder_hold;
        }
        let duplicate = rng.chance(self.duplicate_percent).then(|| self.draw_delay(rng));
        Fate::Forward { delay, held, duplicate }
    }

    fn draw_delay(&self, rng: &mut SplitMix64) -> Duration {
        let jitter_us = u64::try_from(self.jitter.as_micros()).unwrap_or(u64::MAX);
        self.delay + Duration::from_micros(rng.up_to(jitter_us))
    }
}

/// What happens to one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Dropped.
    Lost,
    /// Sent after `delay`, and once more after `duplicate` if set.
    Forward {
        /// When the datagram leaves, from its arrival.
        delay: Duration,
        /// Whether it was held back to be reordered.
        held: bool,
        /// When its duplicate leaves, from the arrival.
        duplicate: Option<Duration>,
    },
}

/// Tells, per direction, whether a datagram leaves after one that arrived
/// later did (so the receiver sees them out of order).
#[derive(Debug, Clone, Default)]
pub struct OrderTracker {
    newest_sent: Option<u64>,
}

impl OrderTracker {
    /// Records that the datagram with arrival number `seq` was sent;
    /// whether it overtook nothing but was overtaken (`seq` below the
    /// newest already sent). A duplicate right after its original is in
    /// order.
    pub fn on_send(&mut self, seq: u64) -> bool {
        match self.newest_sent {
            Some(newest) if seq < newest => true,
            _ => {
                self.newest_sent = Some(seq);
                false
            }
        }
    }
}

/// What the relay counted, over all pipes and both directions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Datagrams received from the expected peers.
    pub received: u64,
    /// Datagrams sent on (duplicates included).
    pub sent: u64,
    /// Datagrams dropped as loss.
    pub lost: u64,
    /// Datagrams sent twice.
    pub duplicated: u64,
    /// Datagrams held back to be reordered.
    pub held: u64,
    /// Datagrams sent after one that arrived later (jitter and holding).
    pub out_of_order: u64,
    /// Datagrams dropped because the queue was full.
    pub overflow: u64,
    /// Datagrams from anyone but a pipe's peer (dropped).
    pub stray: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// The longest a datagram waited in the relay, in milliseconds.
    pub max_delay_ms: u64,
}

impl Counters {
    const FIELDS: [&'static str; 10] = [
        "received",
        "sent",
        "lost",
        "duplicated",
        "held",
        "out_of_order",
        "overflow",
        "stray",
        "send_errors",
        "max_delay_ms",
    ];

    fn values(&self) -> [u64; 10] {
        [
            self.received,
            self.sent,
            self.lost,
            self.duplicated,
            self.held,
            self.out_of_order,
            self.overflow,
            self.stray,
            self.send_errors,
            self.max_delay_ms,
        ]
    }

    /// `key=value` pairs, space-separated.
    pub fn fields(&self) -> String {
        Counters::FIELDS
            .iter()
            .zip(self.values())
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Reads the last line starting with `prefix` ([`SUMMARY_PREFIX`] or
    /// [`STATS_PREFIX`]) in the relay's log.
    pub fn parse(log: &str, prefix: &str) -> Result<Counters> {
        let line = log
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix(prefix))
            .ok_or_else(|| HarnessError::unexpected("impair", format!("no {prefix:?} line in its log")))?;
        let mut values = [None; 10];
        for kv in line.split_whitespace() {
            let Some((key, value)) = kv.split_once('=') else {
                continue;
            };
            if let Some(i) = Counters::FIELDS.iter().position(|f| *f == key) {
                values[i] = value.parse::<u64>().ok();
            }
        }
        let get = |i: usize| {
            values[i]
                .ok_or_else(|| HarnessError::unexpected("impair", format!("no {} in {line:?}", Counters::FIELDS[i])))
        };
        Ok(Counters {
            received: get(0)?,
            sent: get(1)?,
            lost: get(2)?,
            duplicated: get(3)?,
            held: get(4)?,
            out_of_order: get(5)?,
            overflow: get(6)?,
            stray: get(7)?,
            send_errors: get(8)?,
            max_delay_ms: get(9)?,
        })
    }
}

/// One port forward of the relay: what `a` sends to `a_local` leaves from
/// `b_local` to `b`, and what `b` sends to `b_local` leaves from `a_local`
/// to `a`. Each agent sees the other at the relay's address on its side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pipe {
    /// The relay's socket on `a`'s side.
    pub a_local: SocketAddr,
    /// `a`'s endpoint.
    pub a: SocketAddr,
    /// The relay's socket on `b`'s side.
    pub b_local: SocketAddr,
    /// `b`'s endpoint.
    pub b: SocketAddr,
}

impl Pipe {
    /// The `--pipe` argument: `A_LOCAL=A,B_LOCAL=B`.
    pub fn to_arg(&self) -> String {
        format!("{}={},{}={}", self.a_local, self.a, self.b_local, self.b)
    }

    /// Parses [`Pipe::to_arg`]'s form.
    pub fn parse(text: &str) -> std::result::Result<Pipe, String> {
        let bad = || format!("bad pipe {text:?}: want A_LOCAL=A,B_LOCAL=B (IP:PORT each)");
        let (a_side, b_side) = text.split_once(',').ok_or_else(bad)?;
        let side = |s: &str| -> std::result::Result<(SocketAddr, SocketAddr), String> {
            let (local, peer) = s.split_once('=').ok_or_else(bad)?;
            Ok((local.parse().map_err(|_| bad())?, peer.parse().map_err(|_| bad())?))
        };
        let (a_local, a) = side(a_side)?;
        let (b_local, b) = side(b_side)?;
        Ok(Pipe { a_local, a, b_local, b })
    }
}

/// A running relay.
#[derive(Debug, Clone, Copy)]
pub struct ImpairRelay {
    /// Its process.
    pub process: ProcessId,
    /// The seed it decides with.
    pub seed: u64,
}

impl Lab {
    /// Starts the `impair` relay inside `ns` (its sockets' addresses must
    /// be configured there) with `pipes`, `impairment`, `seed` and a
    /// lifetime of at most `max_run`, and waits until it has bound every
    /// socket. Its log is `<lab dir>/impair.log`.
    pub fn start_impair(
        &mut self,
        ns: &Namespace,
        pipes: &[Pipe],
        impairment: &Impairment,
        seed: u64,
        max_run: Duration,
    ) -> Result<ImpairRelay> {
        let program = binaries::impair()?;
        let mut args = impairment.to_args();
        args.extend([
            "--seed".into(),
            seed.to_string(),
            "--max-secs".into(),
            max_run.as_secs().max(1).to_string(),
        ]);
        for pipe in pipes {
            args.extend(["--pipe".into(), pipe.to_arg()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let process = self.spawn(ns, "impair", Path::new(&program), &args, &[])?;
        wait_for("the impair relay to bind its sockets", Duration::from_secs(10), || {
            if let Some(status) = self.exit_status(process) {
                return Ok::<_, HarnessError>(Poll::Fatal(format!(
                    "it exited ({status}): {}",
                    crate::command::tail(&self.log(process), 10)
                )));
            }
            Ok(if self.log(process).lines().any(|l| l.starts_with(READY_LINE)) {
                Poll::Ready(())
            } else {
                Poll::Pending("not listening yet".into())
            })
        })?;
        Ok(ImpairRelay { process, seed })
    }

    /// Stops the relay (SIGTERM) and returns the counters of its summary line.
    pub fn stop_impair(&mut self, relay: &ImpairRelay) -> Result<Counters> {
        let (status, in_time) = self.stop(relay.process, Duration::from_secs(5))?;
        if !in_time {
            return Err(HarnessError::Check(format!(
                "the impair relay ignored SIGTERM (killed: {status})"
            )));
        }
        Counters::parse(&self.log(relay.process), SUMMARY_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn netem_like() -> Impairment {
        Impairment {
            loss_percent: 20.0,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(200),
            reorder_percent: 10.0,
            reorder_hold: Duration::from_millis(100),
            duplicate_percent: 5.0,
        }
    }

    #[test]
    fn the_same_seed_decides_the_same() {
        let imp = netem_like();
        let run = |seed| {
            let mut rng = SplitMix64::for_stream(seed, 1);
            (0..1000).map(|_| imp.decide(&mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
        let mut other = SplitMix64::for_stream(7, 2);
        let mut first = SplitMix64::for_stream(7, 1);
        assert_ne!(other.next_u64(), first.next_u64(), "streams differ");
    }

    #[test]
    fn shares_and_delays_match_the_settings() {
        let imp = netem_like();
        let mut rng = SplitMix64::new(42);
        let n = 100_000;
        let (mut lost, mut held, mut dup) = (0, 0, 0);
        let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
        for _ in 0..n {
            match imp.decide(&mut rng) {
                Fate::Lost => lost += 1,
                Fate::Forward {
                    delay,
                    held: h,
                    duplicate,
                } => {
                    held += u32::from(h);
                    let base = if h { delay - imp.reorder_hold } else { delay };
                    min = min.min(base);
                    max = max.max(base);
                    if let Some(d) = duplicate {
                        dup += 1;
                        assert!(d >= imp.delay && d <= imp.delay + imp.jitter, "{d:?}");
                    }
                }
            }
        }
        let share = |count: u32, of: u32| f64::from(count) * 100.0 / f64::from(of);
        let forwarded = n - lost;
        assert!((share(lost, n) - 20.0).abs() < 1.0, "loss {}", share(lost, n));
        assert!(
            (share(held, forwarded) - 10.0).abs() < 1.0,
            "held {}",
            share(held, forwarded)
        );
        assert!(
            (share(dup, forwarded) - 5.0).abs() < 1.0,
            "dup {}",
            share(dup, forwarded)
        );
        assert!(
            min >= imp.delay && min < imp.delay + Duration::from_millis(1),
            "{min:?}"
        );
        assert!(max <= imp.delay + imp.jitter && max > imp.delay + Duration::from_millis(199));
    }

    #[test]
    fn no_impairment_forwards_everything_at_once() {
        let mut rng = SplitMix64::new(1);
        for _ in 0..1000 {
            assert_eq!(
                Impairment::none().decide(&mut rng),
                Fate::Forward {
                    delay: Duration::ZERO,
                    held: false,
                    duplicate: None
                }
            );
        }
    }

    #[test]
    fn order_tracker_flags_overtaken_datagrams() {
        let mut t = OrderTracker::default();
        assert!(!t.on_send(0));
        assert!(!t.on_send(2));
        assert!(t.on_send(1), "1 left after 2");
        assert!(!t.on_send(2), "a duplicate right after its original");
        assert!(!t.on_send(3));
    }

    #[test]
    fn counters_round_trip_through_the_summary_line() {
        let c = Counters {
            received: 10,
            sent: 9,
            lost: 2,
            duplicated: 1,
            held: 1,
            out_of_order: 3,
            overflow: 0,
            stray: 4,
            send_errors: 0,
            max_delay_ms: 301,
        };
        let log = format!(
            "{READY_LINE} seed=1\n{STATS_PREFIX} {}\n{SUMMARY_PREFIX} {}\n",
            Counters::default().fields(),
            c.fields()
        );
        assert_eq!(Counters::parse(&log, SUMMARY_PREFIX).unwrap(), c);
        assert_eq!(Counters::parse(&log, STATS_PREFIX).unwrap(), Counters::default());
        assert!(Counters::parse("nothing", SUMMARY_PREFIX).is_err());
    }

    #[test]
    fn pipes_round_trip_through_their_argument() {
        let pipe = Pipe {
            a_local: "10.99.1.1:6001".parse().unwrap(),
            a: "10.99.1.10:51820".parse().unwrap(),
            b_local: "10.99.2.1:6001".parse().unwrap(),
            b: "10.99.2.10:51820".parse().unwrap(),
        };
        assert_eq!(
            pipe.to_arg(),
            "10.99.1.1:6001=10.99.1.10:51820,10.99.2.1:6001=10.99.2.10:51820"
        );
        assert_eq!(Pipe::parse(&pipe.to_arg()).unwrap(), pipe);
        assert!(Pipe::parse("10.99.1.1:6001").is_err());
    }
}
