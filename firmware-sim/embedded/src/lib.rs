//! An embedded mesh member: `kairos-core` with embassy-net as its IP stack,
//! and no `std` anywhere in it.
//!
//! A microcontroller-style firmware is one async task (see [`firmware`]):
//!
//! ```text
//!   embassy-net "underlay" stack ── UdpSocket :51820 ──┐
//!      (driver: the board's Ethernet/IP device)        │ handle_datagram / poll_transmit
//!                                                  kairos-core Node
//!   embassy-net "overlay" stack ── TcpSocket :7 ───────┘ Input::Deliver / handle_ip_packet
//!      (driver: [`pipe::TunnelDevice`], fed by the core)
//! ```
//!
//! - [`pipe`]: the overlay device, a pair of fixed packet queues between the
//!   core and the overlay stack, as an `embassy_net_driver::Driver`.
//! - [`firmware`]: the node task (resources, the mesh loop, the TCP
//!   service) and the [`Status`](firmware::Status) it reports.
//! - [`budget`]: what all this costs in RAM, by `size_of` of the concrete
//!   types, for the capacities in this file.
//!
//! The crate owns the node's logic only. It never reads a clock or touches a
//! device of its own: time comes from `embassy-time`'s driver and frames
//! from the underlay driver the caller passes in (a board's, or the
//! simulator's in `firmware-sim`). Memory is fixed at build time: every
//! table and buffer is an array sized by the constants below, and nothing
//! allocates.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod budget;
pub mod firmware;
pub mod pipe;

use kairos_core::crypto::RustCryptoProvider;
use kairos_core::election::MemberView;
use kairos_core::ledger::{Ed25519Verifier, Ledger};
use kairos_core::node::{MemberSlot, Node, TunnelSlot};
use rand_chacha::ChaCha20Rng;

/// Members the node can know besides itself.
pub const PEERS: usize = 16;
/// Tunnels (sessions open at once): the node's proactive sessions and
/// those made for traffic share them. A member whose tunnel went idle
/// gives it back, and a session quiet for `EVICT_QUIET` makes room for
/// another (see `Node::install_tunnel`).
pub const TUNNELS: usize = 4;
/// Mesh neighbours (`NodeConfig::neighbors` is held to this): half the
/// tunnels, so the other half is there for traffic. Sessions other members
/// open as neighbours beyond these are told to count as made for traffic.
pub const NEIGHBORS: usize = TUNNELS / 2;
/// Control messages queued for members (a host queues 256).
pub const INTENTS: usize = 24;
/// Packets held while their sessions come up (a host holds 8).
pub const STAGED: usize = 2;
/// The longest ledger entry taken in fragments (a host takes the longest
/// there is, 16.7 KiB). Every entry this node reads (machine records,
/// address claims, role records) travels whole, in under 1200 bytes; a
/// longer one (a kubeconfig) would not fit [`LEDGER_ARENA`] anyway. Being
/// shorter than the longest entry, it makes the node a small replica: it
/// keeps only the mesh's own short records and tells its peers, which then
/// neither push it other entries nor count them in anti-entropy with it
/// (`kairos_core::ledger::Scope`).
pub const ENTRY_LEN: usize = kairos_core::ledger::SMALL_ENTRY_LEN;
/// Election views: one per member and one for the node itself.
pub const VIEWS: usize = PEERS + 1;
/// Ledger records: four per member (machine, address claim, role record,
/// advertisement), the node included, plus a few spare.
pub const LEDGER_ENTRIES: usize = 4 * (PEERS + 1) + 4;
/// Bytes of ledger storage (about 300 per member, measured; see
/// `docs/architecture.md`, "Memory").
pub const LEDGER_ARENA: usize = 6 * 1024;
/// The UDP port of the mesh.
pub const PORT: u16 = 51820;
/// The TCP port of the node's overlay service.
pub const SERVICE_PORT: u16 = 7;

/// The crypto provider (RustCrypto: pure Rust, no allocator).
pub type Provider = RustCryptoProvider;

/// The ledger, held inline in the node (the core takes it through
/// `AsMut`, which a `Box` gives a host and this wrapper gives a firmware).
pub struct InlineLedger(pub Ledger<LEDGER_ENTRIES, LEDGER_ARENA>);

impl Default for InlineLedger {
    fn default() -> Self {
        InlineLedger(Ledger::new())
    }
}

impl AsRef<Ledger<LEDGER_ENTRIES, LEDGER_ARENA>> for InlineLedger {
    fn as_ref(&self) -> &Ledger<LEDGER_ENTRIES, LEDGER_ARENA> {
        &self.0
    }
}

impl AsMut<Ledger<LEDGER_ENTRIES, LEDGER_ARENA>> for InlineLedger {
    fn as_mut(&mut self) -> &mut Ledger<LEDGER_ENTRIES, LEDGER_ARENA> {
        &mut self.0
    }
}

/// The core's node with every table inline: [`PEERS`] member slots,
/// [`TUNNELS`] tunnels, [`VIEWS`] election views, the ledger, and the
/// small queues above. Its size is the core's state.
pub type CoreNode = Node<
    Provider,
    ChaCha20Rng,
    Ed25519Verifier,
    [MemberSlot<Provider>; PEERS],
    [TunnelSlot<Provider>; TUNNELS],
    InlineLedger,
    [MemberView; VIEWS],
    LEDGER_ENTRIES,
    LEDGER_ARENA,
    INTENTS,
    STAGED,
    ENTRY_LEN,
>;
