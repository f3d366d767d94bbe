//! Discovery: how members find each other before any session exists.
//!
//! This module owns the announcement format ([`announce`]): sealed LAN
//! beacons and unicast hellos to bootstrap endpoints, which carry a member's
//! public keys so the IK handshake can start. Gossip of members and their
//! endpoints travels later inside sessions, through the ledger.

pub mod announce;

pub use announce::{AnnounceError, AnnounceKind, AnnounceRepr, ANNOUNCE_LEN};
