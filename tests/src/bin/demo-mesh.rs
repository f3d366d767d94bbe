//! `demo-mesh`: a local mesh of three `kairos agent`s, each in its own
//! network namespace on one virtual LAN, sharing only a fresh token. Waits
//! until every node has an overlay address and reaches every other one,
//! prints their status, optionally keeps them running, then removes
//! everything (namespaces, interfaces, processes).
//!
//! ```text
//! demo-mesh [--nodes N] [--hold SECONDS]      (root; KAIROS_BIN picks the binary)
//! ```
//!
//! The nodes share `$KAIROS_TOKEN` when it is set, else a fresh token.
//!
//! It runs `kairos_tests::scenario::demo`, the code the end-to-end tests
//! run, so the README's first command is tested.

use std::process::ExitCode;
use std::time::Duration;

use kairos_tests::agent::Kairos;
use kairos_tests::lab::Lab;
use kairos_tests::{preflight, scenario};

/// How long to wait for the mesh.
const DEADLINE: Duration = Duration::from_secs(30);

/// The most seconds `--hold` keeps the mesh up.
const MAX_HOLD: u64 = 3600;

fn main() -> ExitCode {
    let mut nodes = 3;
    let mut hold = 0;
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--nodes", Some(n)) if (2..=26).contains(&n) => nodes = n as usize,
            ("--hold", Some(s)) => hold = s.min(MAX_HOLD),
            _ => {
                eprintln!("usage: demo-mesh [--nodes 2..26] [--hold SECONDS]");
                return ExitCode::from(2);
            }
        }
    }
    let missing = preflight::missing();
    if !missing.is_empty() {
        eprintln!("demo-mesh: cannot run here: missing {}", missing.join("; "));
        return ExitCode::FAILURE;
    }
    if let Err(e) = kairos_tests::binaries::e2e_net() {
        eprintln!("demo-mesh: {e}");
        return ExitCode::FAILURE;
    }
    let kairos = match Kairos::locate() {
        Ok(k) if k.has_agent() => k,
        Ok(k) => {
            eprintln!("demo-mesh: {} has no `agent` command", k.path().display());
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("demo-mesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lab = match Lab::new("demo-mesh") {
        Ok(lab) => lab,
        Err(e) => {
            eprintln!("demo-mesh: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "==> starting {nodes} agents in network namespaces on one virtual LAN (logs: {})",
        lab.dir().display()
    );
    let token = std::env::var("KAIROS_TOKEN").ok().filter(|t| !t.is_empty());
    match scenario::demo(&mut lab, &kairos, nodes, token.as_deref(), DEADLINE) {
        Ok((mesh, report)) => {
            println!(
                "==> every node has an overlay address after {:.2} s; every pair pings over the overlay after {:.2} s",
                report.addressed.as_secs_f64(),
                report.reachable.as_secs_f64()
            );
            print!("{}", report.status);
            if hold > 0 {
                let a = &mesh.agents[0];
                println!(
                    "==> holding for {hold} s; try: ip netns exec {} ping {}",
                    a.ns.name(),
                    lab.summary(&mesh.agents[1])
                        .ok()
                        .and_then(|s| s.ipv4)
                        .unwrap_or_default()
                );
                std::thread::sleep(Duration::from_secs(hold));
            }
            println!("==> stopping the agents and removing the namespaces");
            lab.finish();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo-mesh: {e}");
            ExitCode::FAILURE
        }
    }
}
