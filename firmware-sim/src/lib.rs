//! The deterministic network simulator for `kairos-core` nodes.
//!
//! It grows with the mesh engine (virtual time, links, NAT boxes); today it
//! hosts the in-memory two-peer harness that the core's tests share.
