//! The end-to-end test harness of the `kairos` binary: real agents in Linux
//! network namespaces joined by veth links, Linux bridges as LAN switches,
//! nftables masquerade routers as NATs, real TUN devices.
//!
//! - [`preflight`]: whether the machine can run the tests (root, `ip netns`,
//!   `/dev/net/tun`, `nft`, `ping`) and the loud skip or CI failure when not.
//! - [`Lab`] ([`lab`]): one test's namespaces and processes, and the guard
//!   that always removes them (also after a panic), plus a sweep of what a
//!   crashed run left behind.
//! - [`topology`]: switches, hosts, NAT routers.
//! - [`probe`]: ping, HTTP GET and the `e2e-net` tools inside namespaces.
//! - [`wait`]: polling a condition with a deadline (no fixed sleeps).
//! - [`agent`]: agent configs, starting `kairos agent` in a namespace, and
//!   its HTTP API ([`api`]).
//! - [`k3s`]: node configs with the k3s bootstrap on the stand-in, and what it recorded.
//! - [`impair`]: the impairment relay's model (loss, delay, jitter,
//!   reordering, duplication from a seeded RNG) and starting `impair` in a lab.
//! - [`scenario`]: whole set-ups shared by the tests and the `demo-mesh` binary.
//! - [`user`]: an unprivileged account for the tests of what runs without root.
//! - [`usage`]: CPU time, resident memory and wire bytes of a running
//!   process, read from `/proc` (the idle benchmark, `idle-bench`).
//!
//! Nothing here sends traffic anywhere but loopback and addresses inside the
//! namespaces a lab creates. See `docs/testing.md`.

pub mod agent;
pub mod api;
pub mod binaries;
pub mod command;
pub mod error;
pub mod impair;
pub mod k3s;
pub mod lab;
pub mod preflight;
pub mod probe;
pub mod scenario;
pub mod topology;
pub mod usage;
pub mod user;
pub mod wait;

pub use error::{HarnessError, Result};
pub use lab::{Lab, Namespace, ProcessId};
pub use topology::{NatKind, Segment};
