//! `idle-bench`: what an idle `kairos agent` costs in a mesh of many nodes
//! (issue 7's goal: under 1% of a core, at most 100 bytes/s per peer on the
//! wire, RSS under 20 MiB with 50 peers).
//!
//! ```text
//! idle-bench [--nodes N] [--window SECONDS] [--settle SECONDS] [--interval SECONDS]
//!            [--deadline SECONDS] [--sessions measured|none]   (root; KAIROS_BIN picks the binary)
//! ```
//!
//! Starts `N` agents (default 51: one measured agent, `a`, and 50 peers),
//! each in its own network namespace on one virtual LAN (a Linux bridge),
//! sharing a fresh token, with the lab harness of the end-to-end tests.
//! Waits, polling the API, until `a` knows all `N-1` members, every agent
//! has an overlay address, and `a` has a session up with every member (it
//! pings each member's overlay address once: sessions beyond the 8
//! neighbours are made on demand, and a node lets them go about 3 minutes
//! after the traffic stops, so settle time plus window must stay under
//! that); `--sessions none` pings nothing. Then it lets the
//! mesh idle for `--settle` seconds (default 60: the join's anti-entropy
//! and beacon back-offs reach their idle pace), and measures every agent
//! over `--window` seconds (default 60; `IDLE_BENCH_WINDOW` and
//! `IDLE_BENCH_SETTLE` set the defaults), reading `/proc` only at the
//! `--interval` sample points (default 10 s) and never calling the API in
//! the window:
//!
//! - CPU: user + system time of the process (`/proc/PID/stat`), % of a core;
//! - wire: bytes of the namespace's `eth0` (`/proc/PID/net/dev`; every frame
//!   the agent's veth carried, beacons, ARP and neighbour discovery
//!   included), per second and per peer (`N-1`);
//! - memory: `VmRSS` (and `RssAnon`, `RssFile`) at each sample, the max.
//!
//! It prints the measured agent's row, its per-interval rates, and the
//! median and max over all agents. Everything it creates (namespaces,
//! veths, the bridge, TUN devices, processes) is removed at the end, also
//! after an error (the lab's guard); it signals only the PIDs it started.
//! Killed by a signal (Ctrl-C, `timeout`), it leaves its namespaces: the
//! agents, in its process group, get the signal too, and the next lab run
//! sweeps the namespaces of a run whose process is gone.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use kairos_tests::agent::{Agent, Kairos};
use kairos_tests::api::Summary;
use kairos_tests::lab::Lab;
use kairos_tests::scenario::LanMesh;
use kairos_tests::usage::{median, ticks_per_second, Rates, Usage};
use kairos_tests::wait::{wait_for, Poll};
use kairos_tests::{preflight, HarnessError, Result};

/// The interface each agent's namespace has on the LAN.
const LAN_INTERFACE: &str = "eth0";
/// Longest window or settle time accepted.
const MAX_SECONDS: u64 = 3600;

/// The idle goals of issue 7.
const GOAL_CPU_PERCENT: f64 = 1.0;
const GOAL_BYTES_PER_PEER: f64 = 100.0;
const GOAL_RSS_MIB: f64 = 20.0;

/// Which agents ping every member before the measurement, so that their
/// sessions with all of them are up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sessions {
    /// The measured agent only.
    Measured,
    /// None: sessions are the ones discovery made (about 8 per node).
    None,
}

#[derive(Debug, Clone)]
struct Settings {
    nodes: usize,
    window: Duration,
    settle: Duration,
    interval: Duration,
    deadline: Duration,
    sessions: Sessions,
}

fn env_secs(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn parse_args() -> std::result::Result<Settings, String> {
    let mut s = Settings {
        nodes: 51,
        window: Duration::from_secs(env_secs("IDLE_BENCH_WINDOW", 60).min(MAX_SECONDS)),
        settle: Duration::from_secs(env_secs("IDLE_BENCH_SETTLE", 60).min(MAX_SECONDS)),
        interval: Duration::from_secs(10),
        deadline: Duration::from_secs(180),
        sessions: Sessions::Measured,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--sessions" {
            s.sessions = match it.next().map(String::as_str) {
                Some("measured") => Sessions::Measured,
                Some("none") => Sessions::None,
                _ => return Err("--sessions takes measured or none".into()),
            };
            continue;
        }
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--nodes", Some(n)) if (2..=kairos_tests::scenario::MAX_LAN_NODES as u64).contains(&n) => {
                s.nodes = n as usize
            }
            ("--window", Some(v)) if v > 0 => s.window = Duration::from_secs(v.min(MAX_SECONDS)),
            ("--settle", Some(v)) => s.settle = Duration::from_secs(v.min(MAX_SECONDS)),
            ("--interval", Some(v)) if v > 0 => s.interval = Duration::from_secs(v.min(MAX_SECONDS)),
            ("--deadline", Some(v)) if v > 0 => s.deadline = Duration::from_secs(v.min(MAX_SECONDS)),
            _ => {
                return Err(format!(
                    "usage: idle-bench [--nodes 2..{}] [--window SECONDS] [--settle SECONDS] \
                     [--interval SECONDS] [--deadline SECONDS] [--sessions measured|none]",
                    kairos_tests::scenario::MAX_LAN_NODES
                ))
            }
        }
    }
    s.interval = s.interval.min(s.window);
    Ok(s)
}

fn main() -> ExitCode {
    let settings = match parse_args() {
        Ok(s) => s,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    let missing = preflight::missing();
    if !missing.is_empty() {
        eprintln!("idle-bench: cannot run here: missing {}", missing.join("; "));
        return ExitCode::FAILURE;
    }
    let kairos = match Kairos::locate() {
        Ok(k) if k.has_agent() => k,
        Ok(k) => {
            eprintln!("idle-bench: {} has no `agent` command", k.path().display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("idle-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = kairos_tests::binaries::e2e_net() {
        eprintln!("idle-bench: {e}");
        return ExitCode::FAILURE;
    }
    let mut lab = match Lab::new("idle-bench") {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("idle-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&mut lab, &kairos, &settings) {
        Ok(()) => {
            eprintln!("==> stopping the agents and removing the namespaces");
            lab.finish();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("idle-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(lab: &mut Lab, kairos: &Kairos, s: &Settings) -> Result<()> {
    let peers = s.nodes - 1;
    eprintln!(
        "==> {} agents ({}) on one virtual LAN; logs in {}",
        s.nodes,
        kairos.path().display(),
        lab.dir().display()
    );
    let mesh = LanMesh::start(lab, kairos, s.nodes, None)?;
    let measured = mesh.agents[0].clone();

    wait_for(
        &format!("{} to know {peers} members", measured.name),
        s.deadline,
        || {
            let summary = lab.summary(&measured)?;
            Ok::<_, HarnessError>(match summary.members {
                Some(m) if m as usize >= peers => Poll::Ready(()),
                other => Poll::Pending(format!("members {other:?}")),
            })
        },
    )?;
    eprintln!(
        "==> {} knows all {peers} members after {:.1} s",
        measured.name,
        mesh.started.elapsed().as_secs_f64()
    );
    let summaries = mesh.wait_addresses(lab, s.deadline)?;
    eprintln!(
        "==> every agent has an overlay address after {:.1} s",
        mesh.started.elapsed().as_secs_f64()
    );
    let pinging = match s.sessions {
        Sessions::None => 0,
        Sessions::Measured => 1,
    };
    for (i, from) in mesh.agents.iter().enumerate().take(pinging) {
        for (j, (agent, summary)) in mesh.agents.iter().zip(&summaries).enumerate() {
            if i == j {
                continue;
            }
            let addr = summary.ipv4.clone().unwrap_or_default();
            lab.wait_ping(from, &addr, Duration::from_secs(30))
                .map_err(|e| HarnessError::Check(format!("{} pinging {} ({addr}): {e}", from.name, agent.name)))?;
        }
        wait_peers_up(lab, from, peers, s.deadline)?;
    }
    if pinging > 0 {
        eprintln!(
            "==> {} agent(s) have a session up with all {peers} peers after {:.1} s",
            pinging,
            mesh.started.elapsed().as_secs_f64()
        );
    }
    let before = lab.summary(&measured)?;

    let pids: Vec<u32> = mesh.agents.iter().map(|a| lab.pid(a.process)).collect();
    if !s.settle.is_zero() {
        eprintln!("==> letting the mesh idle for {} s", s.settle.as_secs());
        hold(lab, &mesh.agents, s.settle, s.interval)?;
    }

    eprintln!(
        "==> measuring {} agents over {} s (samples every {} s)",
        s.nodes,
        s.window.as_secs(),
        s.interval.as_secs()
    );
    let hz = ticks_per_second();
    let mut samples: Vec<Vec<Usage>> = vec![read_all(lab, &mesh.agents, &pids)?];
    let start = Instant::now();
    let mut k = 1u32;
    while start.elapsed() < s.window {
        let next = (s.interval * k).min(s.window);
        std::thread::sleep(next.saturating_sub(start.elapsed()));
        samples.push(read_all(lab, &mesh.agents, &pids)?);
        k += 1;
    }
    let after = lab.summary(&measured)?;
    // After the window: sessions up at every agent (API calls wake them).
    let mut ups = Vec::new();
    for agent in &mesh.agents {
        ups.push(lab.summary(agent)?.peers_up.unwrap_or(0) as f64);
    }
    report(s, &mesh.agents, &samples, hz, &before, &after);
    println!(
        "sessions up per agent after the window: min {}, median {}, max {}",
        ups.iter().copied().fold(f64::INFINITY, f64::min),
        median(&ups),
        ups.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}

/// Waits until `agent` reports a session up with `peers` members.
fn wait_peers_up(lab: &mut Lab, agent: &Agent, peers: usize, deadline: Duration) -> Result<()> {
    wait_for(&format!("{} to have {peers} peers up", agent.name), deadline, || {
        let summary = lab.summary(agent)?;
        Ok::<_, HarnessError>(match summary.peers_up {
            Some(up) if up as usize >= peers => Poll::Ready(()),
            other => Poll::Pending(format!("peers_up {other:?}")),
        })
    })
    .map(|_| ())
}

/// Keeps the mesh running for `time`, checking every `interval` that every
/// agent still runs (no API calls: they would wake the agents).
fn hold(lab: &mut Lab, agents: &[Agent], time: Duration, interval: Duration) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < time {
        std::thread::sleep(interval.min(time.saturating_sub(start.elapsed())));
        check_running(lab, agents)?;
    }
    Ok(())
}

fn check_running(lab: &mut Lab, agents: &[Agent]) -> Result<()> {
    for a in agents {
        if let Some(status) = lab.exit_status(a.process) {
            return Err(HarnessError::Check(format!(
                "{} exited ({status}); log {}",
                a.name,
                lab.log_path(a.process).display()
            )));
        }
    }
    Ok(())
}

fn read_all(lab: &mut Lab, agents: &[Agent], pids: &[u32]) -> Result<Vec<Usage>> {
    check_running(lab, agents)?;
    pids.iter().map(|&pid| Usage::read(pid, LAN_INTERFACE)).collect()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "MISSED"
    }
}

fn report(s: &Settings, agents: &[Agent], samples: &[Vec<Usage>], hz: u64, before: &Summary, after: &Summary) {
    let peers = (s.nodes - 1) as f64;
    let first = &samples[0];
    let last = &samples[samples.len() - 1];
    let whole: Vec<Rates> = last.iter().zip(first).map(|(b, a)| b.since(a, hz)).collect();
    let rss_max: Vec<u64> = (0..agents.len())
        .map(|i| samples.iter().map(|row| row[i].rss_kib).max().unwrap_or(0))
        .collect();

    println!(
        "idle-bench: {} agents on one LAN, window {:.1} s after {} s idle, sessions made by pings: {:?} (measured agent: {})",
        s.nodes,
        whole[0].elapsed.as_secs_f64(),
        s.settle.as_secs(),
        s.sessions,
        agents[0].name
    );
    println!(
        "{}: members {:?}, peers up {:?} before the settle time; members {:?}, peers up {:?} after the window",
        agents[0].name, before.members, before.peers_up, after.members, after.peers_up
    );
    println!();
    println!("| agent | CPU % of a core | tx B/s per peer | rx B/s per peer | tx frames/s | rx frames/s | RSS MiB (max) | RssAnon MiB | RssFile MiB | threads |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let row = |label: &str, r: &Rates, u: &Usage, max: u64| {
        println!(
            "| {label} | {:.3} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {} |",
            r.cpu_percent,
            r.tx_bytes_s / peers,
            r.rx_bytes_s / peers,
            r.tx_packets_s,
            r.rx_packets_s,
            mib(max),
            mib(u.rss_anon_kib),
            mib(u.rss_file_kib),
            u.threads
        )
    };
    row(
        &format!("{} (measured)", agents[0].name),
        &whole[0],
        &last[0],
        rss_max[0],
    );
    let col = |f: &dyn Fn(&Rates) -> f64| whole.iter().map(f).collect::<Vec<f64>>();
    let cpu = col(&|r| r.cpu_percent);
    let tx = col(&|r| r.tx_bytes_s / peers);
    let rx = col(&|r| r.rx_bytes_s / peers);
    let txp = col(&|r| r.tx_packets_s);
    let rxp = col(&|r| r.rx_packets_s);
    let rss: Vec<f64> = rss_max.iter().map(|&k| mib(k)).collect();
    let anon: Vec<f64> = last.iter().map(|u| mib(u.rss_anon_kib)).collect();
    let file: Vec<f64> = last.iter().map(|u| mib(u.rss_file_kib)).collect();
    let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
    println!(
        "| all {}: median | {:.3} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | |",
        s.nodes,
        median(&cpu),
        median(&tx),
        median(&rx),
        median(&txp),
        median(&rxp),
        median(&rss),
        median(&anon),
        median(&file)
    );
    println!(
        "| all {}: max | {:.3} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | |",
        s.nodes,
        max(&cpu),
        max(&tx),
        max(&rx),
        max(&txp),
        max(&rxp),
        max(&rss),
        max(&anon),
        max(&file)
    );
    let total_cpu: f64 = cpu.iter().sum();
    println!();
    println!(
        "all agents together: {:.2}% of a core; wire bytes counted on each agent's veth (frames incl. Ethernet headers)",
        total_cpu
    );
    println!();
    println!("{} per interval:", agents[0].name);
    println!("| from s | to s | CPU % | tx B/s per peer | rx B/s per peer | RSS MiB |");
    println!("|---:|---:|---:|---:|---:|---:|");
    let t0 = samples[0][0].at;
    for pair in samples.windows(2) {
        let r = pair[1][0].since(&pair[0][0], hz);
        println!(
            "| {:.0} | {:.0} | {:.3} | {:.1} | {:.1} | {:.2} |",
            pair[0][0].at.duration_since(t0).as_secs_f64(),
            pair[1][0].at.duration_since(t0).as_secs_f64(),
            r.cpu_percent,
            r.tx_bytes_s / peers,
            r.rx_bytes_s / peers,
            mib(pair[1][0].rss_kib)
        );
    }
    let m = &whole[0];
    let wire = (m.tx_bytes_s / peers).max(m.rx_bytes_s / peers);
    println!();
    println!(
        "goals for {} (issue 7): CPU {:.3}% < {GOAL_CPU_PERCENT}%: {}; wire max(tx, rx) {:.1} B/s per peer <= {GOAL_BYTES_PER_PEER}: {}; RSS {:.2} MiB < {GOAL_RSS_MIB} MiB: {}",
        agents[0].name,
        m.cpu_percent,
        verdict(m.cpu_percent < GOAL_CPU_PERCENT),
        wire,
        verdict(wire <= GOAL_BYTES_PER_PEER),
        mib(rss_max[0]),
        verdict(mib(rss_max[0]) < GOAL_RSS_MIB)
    );
    println!(
        "goals, worst agent: CPU {:.3}%: {}; wire {:.1} B/s per peer: {}; RSS {:.2} MiB: {}",
        max(&cpu),
        verdict(max(&cpu) < GOAL_CPU_PERCENT),
        max(&tx).max(max(&rx)),
        verdict(max(&tx).max(max(&rx)) <= GOAL_BYTES_PER_PEER),
        max(&rss),
        verdict(max(&rss) < GOAL_RSS_MIB)
    );
}
