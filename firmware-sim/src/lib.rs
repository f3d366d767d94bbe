//! The deterministic network simulator for `kairos-core` nodes.
//!
//! It grows with the mesh engine. Today it has [`net`]: a deterministic,
//! sans-IO datagram network (LANs, the four classic NAT kinds, faulty links,
//! partitions, virtual time, one seeded RNG) that many nodes can run on.

#![warn(missing_docs)]

pub mod net;
