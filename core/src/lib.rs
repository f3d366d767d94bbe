//! `kairos-core`: the sans-IO engine of the Kairos p2p full mesh.
//!
//! The core never reads a clock, a random number generator or a socket: time
//! comes in as [`time::Instant`] arguments, randomness through `rand_core`
//! generators passed by the caller, and bytes through `handle_*` calls whose
//! results borrow the caller's buffers. It is `#![no_std]` and allocates
//! nothing, so the same code runs in the `kairos` host binary, in the
//! deterministic simulator and on embedded nodes.
//!
//! Layers, bottom up:
//! - [`crypto`]: BLAKE2s, HKDF, ChaCha20-Poly1305, and the provider seam.
//! - [`token`]: the network token and the keys derived from its secret.
//! - [`identity`]: a node's static X25519 and Ed25519 keys and its printable id.
//! - [`wire`]: the on-the-wire messages, smoltcp style.
//! - [`noise`]: the Noise IKpsk2 handshake, MAC1/MAC2 and cookies.
//! - [`dns`]: answering DNS queries for members' names (the wire format).
//! - [`session`]: transport keys, replay protection, timers, and the per-peer
//!   [`session::Tunnel`] state machine.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod crypto;
pub mod discovery;
pub mod dns;
pub mod election;
pub mod identity;
pub mod ledger;
pub mod node;
pub mod noise;
pub mod offload;
pub mod session;
pub mod time;
pub mod token;
pub mod wire;
