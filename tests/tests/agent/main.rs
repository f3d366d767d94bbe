//! End-to-end tests of `kairos agent` (issue 4): real agents in network
//! namespaces, real TUN devices, a Linux bridge as the LAN and nftables
//! masquerade routers as NATs.
//!
//! - `lan`: three nodes on one LAN share only the token: unique addresses,
//!   every pair pings over the overlay, 50 MiB arrive intact.
//! - `restart`: SIGKILL and restart keeps the address; SIGTERM leaves cleanly.
//! - `nat`: two nodes behind their own NAT routers meet through a public
//!   bootstrap node, direct or relayed as the API says.
//! - `foreign_token`: a node with another token joins nothing.
//! - `bad_config`: a config with an error is refused before anything is touched.
//! - `state_faults`: damaged, truncated and half-written state files and a
//!   full state disk: the node starts, says what it repaired and keeps its
//!   identity; a damaged `identity.key` stops the start.
//! - `datapath`: offloads on one node and off on the other: TCP both ways
//!   over IPv4 and IPv6 intact, and the batching counters move.
//! - `lossy`: one node's link drops 20% of UDP each way: the mesh still
//!   forms and TCP through it completes intact both ways.
//! - `impaired`: three nodes reach each other only through a relay that
//!   drops 20%, jitters by 200 ms, reorders and duplicates: the mesh forms
//!   and TCP completes intact both ways.
//! - `small_mtu`: the underlay MTU drops below the overlay's packets: outer
//!   datagrams are fragmented and TCP completes intact both ways.
//!
//! Each test needs root, `KAIROS_E2E=1` and a `kairos` binary with the
//! `agent` command; otherwise it prints a loud SKIPPED line (see
//! `docs/testing.md`). Times are printed as `[bench]` lines, never asserted.

mod bad_config;
mod datapath;
mod foreign_token;
mod impaired;
mod lan;
mod lossy;
mod nat;
mod restart;
mod small_mtu;
mod state_faults;

use std::time::Duration;

/// The deadline of every wait for the mesh (generous: timing goals are benchmarks).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The resident set size of a process, from `/proc/PID/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
