//! `sim`: runs a simulated mesh and prints one JSON line.
//!
//! ```text
//! sim --nodes N --seed S [--loss P] [--jitter-ms MS] [--reorder P --reorder-ms MS] [--duplicate P]
//!     [--nat-mix none,full,restricted,port,symmetric,linux] [--networks K]
//!     [--partition-at SECS --heal-at SECS] [--deadline SECS]
//! sim --embedded-budget
//! ```
//!
//! `--embedded-budget` prints the RAM an embedded member (`kairos-embedded`)
//! needs, by part, and exits.

use std::process::ExitCode;

use firmware_sim::net::LanConfig;
use firmware_sim::scenario::{Nat, Scenario};
use firmware_sim::world::World;
use kairos_core::node::NodeConfig;
use kairos_core::time::Duration;
use kairos_core::token::NetworkKeys;

fn usage() -> ExitCode {
    eprintln!(
        "usage: sim --nodes N --seed S [--loss P] [--jitter-ms MS] [--reorder P --reorder-ms MS] [--duplicate P]\n\
         \x20          [--nat-mix none,full,restricted,port,symmetric,linux] [--networks K]\n\
         \x20          [--partition-at SECS --heal-at SECS] [--deadline SECS]\n\
         \x20      sim --embedded-budget\n\
         Runs N simulated mesh nodes (node 0 public, the bootstrap; the others on its LAN for `none`,\n\
         else each behind its own NAT of the listed kinds, round-robin), spread over K network ids,\n\
         optionally split into two halves (even and odd nodes) for a while, and prints one JSON line.\n\
         Faults apply on every link: loss, a uniform extra delay up to --jitter-ms, a probability of\n\
         holding a datagram back --reorder-ms more, a probability of duplicating it."
    );
    ExitCode::from(2)
}

/// A probability in `0.0..1.0`.
fn probability(s: &str) -> Option<f64> {
    s.parse().ok().filter(|p| (0.0..1.0).contains(p))
}

/// Prints the embedded member's memory budget, measured on one started in
/// a small world (so the tasks' futures are counted too).
fn embedded_budget() -> ExitCode {
    let mut w = World::new(1);
    let lan = w.net.add_lan(LanConfig::public());
    let e = w.add_embedded(lan, &NetworkKeys::derive(&[1; 32]), NodeConfig::default());
    println!("{}", w.embedded[e].budget);
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--embedded-budget") {
        return embedded_budget();
    }
    let mut s = Scenario::default();
    let mut args = std::env::args().skip(1);
    let (mut partition_at, mut heal_at) = (None, None);
    while let Some(flag) = args.next() {
        let Some(value) = args.next() else { return usage() };
        let ok = match flag.as_str() {
            "--nodes" => value.parse().map(|v| s.nodes = v).is_ok(),
            "--seed" => value.parse().map(|v| s.seed = v).is_ok(),
            "--loss" => probability(&value).map(|p| s.faults.loss = p).is_some(),
            "--jitter-ms" => value
                .parse()
                .map(|v| s.faults.jitter = Duration::from_millis(v))
                .is_ok(),
            "--reorder" => probability(&value).map(|p| s.faults.reorder = p).is_some(),
            "--reorder-ms" => value
                .parse()
                .map(|v| s.faults.reorder_delay = Duration::from_millis(v))
                .is_ok(),
            "--duplicate" => probability(&value).map(|p| s.faults.duplicate = p).is_some(),
            "--deadline" => value.parse().map(|v| s.deadline = Duration::from_secs(v)).is_ok(),
            "--networks" => value.parse().map(|v| s.networks = v).is_ok() && s.networks >= 1,
            "--partition-at" => value
                .parse()
                .map(|v| partition_at = Some(Duration::from_secs(v)))
                .is_ok(),
            "--heal-at" => value.parse().map(|v| heal_at = Some(Duration::from_secs(v))).is_ok(),
            "--nat-mix" => {
                let mix: Option<Vec<Nat>> = value.split(',').map(Nat::parse).collect();
                mix.map(|m| s.nat_mix = m).is_some()
            }
            _ => false,
        };
        if !ok {
            eprintln!("sim: bad argument {flag} {value}");
            return usage();
        }
    }
    s.partition = match (partition_at, heal_at) {
        (Some(at), Some(heal)) if at < heal => Some((at, heal)),
        (None, None) => None,
        _ => {
            eprintln!("sim: --partition-at and --heal-at go together, the heal after the split");
            return usage();
        }
    };
    if s.nodes < 2 || s.nat_mix.is_empty() {
        return usage();
    }
    let report = s.run();
    println!("{}", report.to_json());
    if report.converged {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
