//! `impair`: a userspace impairment relay between agents' underlay
//! sockets, for a kernel without `sch_netem` (nftables can drop, but not
//! delay, reorder or duplicate).
//!
//! ```text
//! impair --pipe A_LOCAL=A,B_LOCAL=B [--pipe ...] [--seed N]
//!        [--loss PCT] [--delay-ms MS] [--jitter-ms MS]
//!        [--reorder PCT] [--reorder-ms MS] [--duplicate PCT]
//!        [--max-queue N] [--max-secs S]
//! ```
//!
//! Each `--pipe` is a port forward: what `A` sends to the relay's socket
//! `A_LOCAL` leaves from `B_LOCAL` to `B`, and what `B` sends to `B_LOCAL`
//! leaves from `A_LOCAL` to `A` (datagrams from anyone else are counted as
//! stray and dropped). Each agent sees the other at the relay's address on
//! its own side, as through a NAT. Every datagram, each way, is dropped
//! with probability `--loss`, else delayed uniformly in `[delay, delay +
//! jitter]` (closer datagrams overtake each other), held back a further
//! `--reorder-ms` with probability `--reorder`, and sent twice (the copy
//! with a delay of its own) with probability `--duplicate`; see
//! `kairos_tests::impair`. Each direction draws from its own generator
//! seeded from `--seed` (random, and printed, when not given).
//!
//! Bounded: at most `--max-queue` datagrams wait at once (more are dropped
//! and counted as overflow), and it exits by itself after `--max-secs`
//! (default 300, at most 3600). It prints `impair: listening seed=N ...`
//! once bound, an `impair stats:` line every 5 s while counters move, and
//! `impair summary:` with every counter when it exits (at the time limit,
//! on SIGTERM or SIGINT). Exit status 2: a usage error; 1: a socket
//! could not be bound.
//!
//! A UDP GSO send reaches a plain socket as separate datagrams (the kernel
//! segments it for a socket without `UDP_GRO`), so the relay impairs an
//! offloading agent's traffic datagram by datagram too.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kairos_tests::impair::{
    Counters, Fate, Impairment, OrderTracker, Pipe, SplitMix64, READY_LINE, STATS_PREFIX, SUMMARY_PREFIX,
};

/// The longest the relay may be told to run.
const MAX_SECS: u64 = 3600;

/// How often blocked threads look at the stop flag.
const TICK: Duration = Duration::from_millis(50);

/// How often counters are printed while they move.
const STATS_EVERY: Duration = Duration::from_secs(5);

/// Set by SIGTERM and SIGINT.
static STOP: AtomicBool = AtomicBool::new(false);

struct Options {
    pipes: Vec<Pipe>,
    seed: u64,
    impairment: Impairment,
    max_queue: usize,
    max_run: Duration,
}

/// One of the relay's sockets: whom it expects datagrams from, and where
/// they go (the index of the socket on the other side of its pipe).
struct Side {
    socket: UdpSocket,
    peer: SocketAddr,
    partner: usize,
}

/// A datagram waiting for its time.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Scheduled {
    due: Instant,
    /// Tie-break: the order of scheduling.
    order: u64,
    /// The socket it leaves from (its direction).
    out: usize,
    /// Its arrival number in that direction.
    seq: u64,
    arrived: Instant,
    data: Vec<u8>,
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Scheduled>>,
    order: u64,
    counters: Counters,
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("impair: {e}");
            return ExitCode::from(2);
        }
    };
    for signal in [rustix::process::Signal::TERM, rustix::process::Signal::INT] {
        // SAFETY: the action only stores to an atomic, which is
        // async-signal-safe; it captures nothing.
        let registered =
            unsafe { signal_hook_registry::register(signal.as_raw(), || STOP.store(true, Ordering::SeqCst)) };
        if let Err(e) = registered {
            eprintln!("impair: cannot handle signal {signal:?}: {e}");
            return ExitCode::from(1);
        }
    }
    match run(&options) {
        Ok(counters) => {
            println!("{SUMMARY_PREFIX} {}", counters.fields());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("impair: {e}");
            ExitCode::from(1)
        }
    }
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut options = Options {
        pipes: Vec::new(),
        seed: 0,
        impairment: Impairment::none(),
        max_queue: 4096,
        max_run: Duration::from_secs(300),
    };
    let mut seed = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let percent = |v: &str| -> Result<f64, String> {
            match v.parse::<f64>() {
                Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
                _ => Err(format!("{flag} {v:?}: a percentage from 0 to 100")),
            }
        };
        let millis = |v: &str| -> Result<Duration, String> {
            match v.parse::<u64>() {
                Ok(ms) if ms <= 60_000 => Ok(Duration::from_millis(ms)),
                _ => Err(format!("{flag} {v:?}: milliseconds up to 60000")),
            }
        };
        let imp = &mut options.impairment;
        match flag.as_str() {
            "--pipe" => options.pipes.push(Pipe::parse(value()?)?),
            "--seed" => seed = Some(value()?.parse().map_err(|_| format!("{flag}: a number"))?),
            "--loss" => imp.loss_percent = percent(value()?)?,
            "--delay-ms" => imp.delay = millis(value()?)?,
            "--jitter-ms" => imp.jitter = millis(value()?)?,
            "--reorder" => imp.reorder_percent = percent(value()?)?,
            "--reorder-ms" => imp.reorder_hold = millis(value()?)?,
            "--duplicate" => imp.duplicate_percent = percent(value()?)?,
            "--max-queue" => {
                options.max_queue = match value()?.parse() {
                    Ok(n) if (1..=1_000_000).contains(&n) => n,
                    _ => return Err(format!("{flag}: 1 to 1000000 datagrams")),
                }
            }
            "--max-secs" => {
                options.max_run = match value()?.parse() {
                    Ok(s) if (1..=MAX_SECS).contains(&s) => Duration::from_secs(s),
                    _ => return Err(format!("{flag}: 1 to {MAX_SECS} seconds")),
                }
            }
            other => return Err(format!("unknown argument {other:?} (see the source's docs)")),
        }
    }
    if options.pipes.is_empty() {
        return Err("no --pipe A_LOCAL=A,B_LOCAL=B given".into());
    }
    options.seed = seed.unwrap_or_else(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    Ok(options)
}

fn run(options: &Options) -> Result<Counters, String> {
    let started = Instant::now();
    let mut sides = Vec::new();
    for pipe in &options.pipes {
        let first = sides.len();
        for (local, peer, partner) in [(pipe.a_local, pipe.a, first + 1), (pipe.b_local, pipe.b, first)] {
            let socket = UdpSocket::bind(local).map_err(|e| format!("bind {local}: {e}"))?;
            socket
                .set_read_timeout(Some(TICK))
                .map_err(|e| format!("timeout on {local}: {e}"))?;
            sides.push(Side { socket, peer, partner });
        }
    }
    let sides = Arc::new(sides);
    println!(
        "{READY_LINE} seed={} pipes={} {:?} max_queue={} max_secs={}",
        options.seed,
        options.pipes.len(),
        options.impairment,
        options.max_queue,
        options.max_run.as_secs()
    );
    let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
    let deadline = started + options.max_run;
    let mut readers = Vec::new();
    for index in 0..sides.len() {
        let (sides, queue) = (Arc::clone(&sides), Arc::clone(&queue));
        let (impairment, seed, max_queue) = (options.impairment, options.seed, options.max_queue);
        readers.push(thread::spawn(move || {
            receive(&sides, index, &queue, impairment, seed, max_queue, deadline)
        }));
    }
    forward(&sides, &queue, deadline);
    STOP.store(true, Ordering::SeqCst);
    for reader in readers {
        let _ = reader.join();
    }
    let counters = queue.0.lock().map_err(|_| "a thread panicked")?.counters;
    Ok(counters)
}

fn stopping(deadline: Instant) -> bool {
    STOP.load(Ordering::SeqCst) || Instant::now() >= deadline
}

/// Reads datagrams arriving on `sides[index]` and schedules their fate in
/// the direction towards its partner, until the relay stops.
fn receive(
    sides: &[Side],
    index: usize,
    queue: &(Mutex<Queue>, Condvar),
    impairment: Impairment,
    seed: u64,
    max_queue: usize,
    deadline: Instant,
) {
    let side = &sides[index];
    let out = side.partner;
    let mut rng = SplitMix64::for_stream(seed, index as u64);
    let mut seq = 0u64;
    let mut buf = vec![0u8; 65_536];
    while !stopping(deadline) {
        let (len, from) = match side.socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            // ICMP errors of earlier sends (a peer not up yet) surface here.
            Err(_) => continue,
        };
        let arrived = Instant::now();
        let Ok(mut q) = queue.0.lock() else { return };
        if from != side.peer {
            q.counters.stray += 1;
            continue;
        }
        q.counters.received += 1;
        seq += 1;
        let Fate::Forward { delay, held, duplicate } = impairment.decide(&mut rng) else {
            q.counters.lost += 1;
            continue;
        };
        q.counters.held += u64::from(held);
        for (i, delay) in [Some(delay), duplicate].into_iter().flatten().enumerate() {
            if q.heap.len() >= max_queue {
                q.counters.overflow += 1;
                continue;
            }
            q.counters.duplicated += u64::from(i == 1);
            q.order += 1;
            let order = q.order;
            q.heap.push(Reverse(Scheduled {
                due: arrived + delay,
                order,
                out,
                seq,
                arrived,
                data: buf[..len].to_vec(),
            }));
        }
        queue.1.notify_one();
    }
}

/// Sends every scheduled datagram when it is due, until the relay stops.
fn forward(sides: &[Side], queue: &(Mutex<Queue>, Condvar), deadline: Instant) {
    let mut order = vec![OrderTracker::default(); sides.len()];
    let mut due = Vec::new();
    let mut last_stats = (Instant::now(), Counters::default());
    while !stopping(deadline) {
        let Ok(mut q) = queue.0.lock() else { return };
        let now = Instant::now();
        while q.heap.peek().is_some_and(|Reverse(s)| s.due <= now) {
            if let Some(Reverse(s)) = q.heap.pop() {
                due.push(s);
            }
        }
        if due.is_empty() {
            let wait = q
                .heap
                .peek()
                .map_or(TICK, |Reverse(s)| s.due.saturating_duration_since(now).min(TICK));
            drop(queue.1.wait_timeout(q, wait));
        } else {
            drop(q);
            let mut sent = Counters::default();
            for s in due.drain(..) {
                let side = &sides[s.out];
                match side.socket.send_to(&s.data, side.peer) {
                    Ok(_) => sent.sent += 1,
                    Err(_) => sent.send_errors += 1,
                }
                sent.out_of_order += u64::from(order[s.out].on_send(s.seq));
                let waited = Instant::now().saturating_duration_since(s.arrived).as_millis();
                sent.max_delay_ms = sent.max_delay_ms.max(waited as u64);
            }
            let Ok(mut q) = queue.0.lock() else { return };
            let c = &mut q.counters;
            c.sent += sent.sent;
            c.send_errors += sent.send_errors;
            c.out_of_order += sent.out_of_order;
            c.max_delay_ms = c.max_delay_ms.max(sent.max_delay_ms);
        }
        if last_stats.0.elapsed() >= STATS_EVERY {
            let Ok(q) = queue.0.lock() else { return };
            if q.counters != last_stats.1 {
                println!("{STATS_PREFIX} {} queued={}", q.counters.fields(), q.heap.len());
            }
            last_stats = (Instant::now(), q.counters);
        }
    }
}
