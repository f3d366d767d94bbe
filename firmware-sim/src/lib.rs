//! The deterministic network simulator for `kairos-core` nodes.
//!
//! - [`embedded`]: no_std embedded members (`kairos-embedded` on
//!   embassy-net) on simulated hosts: their network device, clock and executor.
//! - [`net`]: a deterministic, sans-IO datagram network (LANs, the four
//!   classic NAT kinds, faulty links, partitions, virtual time, one seeded
//!   RNG) that many nodes can run on.
//! - [`world`]: `kairos-core` nodes on that network, driven on virtual time.
//! - [`verifier`]: the ledger's entry checks (signatures, hashes), memoized
//!   across the simulated nodes.
//! - [`scenario`]: topologies, convergence checks and the report that the
//!   `sim` binary prints.

#![warn(missing_docs)]

pub mod embedded;
pub mod net;
pub mod scenario;
pub mod verifier;
pub mod world;
