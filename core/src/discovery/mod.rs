//! Discovery: how members find each other before any session exists.
//!
//! This module owns the announcement format ([`announce`]): sealed LAN
//! beacons and unicast hellos to bootstrap endpoints, which carry a member's
//! public keys so the IK handshake can start; and the beacon schedule
//! ([`trickle`]), which keeps a LAN of many members down to a few beacons
//! per interval. Gossip of members and their
//! endpoints travels later inside sessions, through the ledger.

pub mod announce;
pub mod trickle;

pub use announce::{AnnounceError, AnnounceKind, AnnounceRepr, ANNOUNCE_LEN};
pub use trickle::Trickle;
