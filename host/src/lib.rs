//! The `kairos` crate: mesh agent, bridge and operator CLI of the Kairos p2p
//! full mesh. The binary (`src/main.rs`) only calls [`cli`]; the library
//! exists so that the fuzz targets of `fuzz/host/` can reach the config
//! reader and the HTTP API (through `fuzzing`, with the `fuzzing` feature).
//! It is no stable API.

// Module docs link to private items: they are written for readers of the
// whole crate (`cargo doc --document-private-items`, as for the binary).
#![allow(rustdoc::private_intra_doc_links)]

pub mod agent;
pub mod cli;
pub mod client;
pub mod clock;
pub mod config;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod k3s;
pub mod state;
