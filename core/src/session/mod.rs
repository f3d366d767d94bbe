//! Transport sessions and the per-peer tunnel state machine.
//!
//! This module owns everything that happens after the handshake math: the
//! session keys and counters ([`Session`]), replay protection
//! ([`ReplayWindow`]), WireGuard's timers ([`timers`]), and [`Tunnel`], which
//! ties one peer's handshakes, sessions and timers together behind
//! `handle_*` / `poll_*` calls. Everything is in place in the caller's
//! buffers; results borrow them. Every refused input has a [`DropReason`].

mod keypair;
mod local;
mod replay;
pub mod timers;
mod tunnel;

pub use keypair::{Session, REJECT_AFTER_MESSAGES};
pub use local::Local;
pub use replay::{Replay, ReplayWindow, WINDOW as REPLAY_WINDOW};
pub use tunnel::{Received, Tunnel, TunnelConfig, TunnelEvent, TunnelStats, INDEX_SLOT_BITS, INDEX_SLOT_MASK};

use core::fmt;

use crate::discovery::AnnounceError;
use crate::noise::HandshakeError;
use crate::wire;

/// Why an input was dropped. Every drop is typed so it can be counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The bytes are not a well-formed message.
    Malformed(wire::Error),
    /// MAC1 did not verify: not from a member of this network, or not for us.
    BadMac1,
    /// The handshake failed cryptographically or named the wrong peer.
    Handshake(HandshakeError),
    /// An initiation whose timestamp is not newer than the last one accepted
    /// from that peer: a replay.
    ReplayedInitiation,
    /// Initiations from one peer faster than the protocol allows.
    InitiationFlood,
    /// A message for a session index this peer does not have.
    UnknownIndex,
    /// The session is older than `REJECT_AFTER_TIME`.
    Expired,
    /// A transport counter seen before.
    Replayed,
    /// A transport counter behind the replay window.
    TooOld,
    /// A transport message did not authenticate (tampered or forged).
    Decrypt,
    /// The session's counter reached its limit; a new handshake is needed.
    CounterExhausted,
    /// The decrypted payload is neither IP nor a control message.
    UnknownPayload(u8),
    /// No session to send with yet; a handshake has been scheduled.
    NoSession,
    /// The caller's buffer cannot hold the message.
    BufferTooSmall,
    /// No member owns the destination address of an outbound packet.
    NoRoute,
    /// An announcement that did not open (another network, or forged).
    Announce(AnnounceError),
    /// An announcement not newer than the last one from that member.
    ReplayedAnnouncement,
    /// The member table is full.
    TableFull,
    /// A member sent an IP packet whose source is not its own overlay address.
    SourceMismatch,
    /// A message names a static key with another signing key than the one
    /// known for it.
    IdentityMismatch,
}

impl DropReason {
    /// How many kinds [`DropReason::index`] tells apart.
    pub const KINDS: usize = 20;

    /// Every kind's label, in [`DropReason::index`] order.
    pub const LABELS: [&'static str; DropReason::KINDS] = [
        "malformed",
        "bad_mac1",
        "handshake",
        "replayed_initiation",
        "initiation_flood",
        "unknown_index",
        "expired",
        "replayed",
        "too_old",
        "decrypt",
        "counter_exhausted",
        "unknown_payload",
        "no_session",
        "buffer_too_small",
        "no_route",
        "announce",
        "replayed_announcement",
        "table_full",
        "source_mismatch",
        "identity_mismatch",
    ];

    /// A small stable number for the kind (details such as which field was
    /// malformed are left out), for counting drops in an array.
    pub fn index(&self) -> usize {
        match self {
            DropReason::Malformed(_) => 0,
            DropReason::BadMac1 => 1,
            DropReason::Handshake(_) => 2,
            DropReason::ReplayedInitiation => 3,
            DropReason::InitiationFlood => 4,
            DropReason::UnknownIndex => 5,
            DropReason::Expired => 6,
            DropReason::Replayed => 7,
            DropReason::TooOld => 8,
            DropReason::Decrypt => 9,
            DropReason::CounterExhausted => 10,
            DropReason::UnknownPayload(_) => 11,
            DropReason::NoSession => 12,
            DropReason::BufferTooSmall => 13,
            DropReason::NoRoute => 14,
            DropReason::Announce(_) => 15,
            DropReason::ReplayedAnnouncement => 16,
            DropReason::TableFull => 17,
            DropReason::SourceMismatch => 18,
            DropReason::IdentityMismatch => 19,
        }
    }

    /// The kind's label for metrics (`replayed`, `decrypt`, ...).
    pub fn label(&self) -> &'static str {
        DropReason::LABELS[self.index()]
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DropReason::Malformed(e) => write!(f, "malformed message: {e}"),
            DropReason::BadMac1 => f.write_str("MAC1 mismatch (not a member, or not for us)"),
            DropReason::Handshake(e) => write!(f, "handshake refused: {e}"),
            DropReason::ReplayedInitiation => f.write_str("replayed handshake initiation"),
            DropReason::InitiationFlood => f.write_str("handshake initiations too frequent"),
            DropReason::UnknownIndex => f.write_str("unknown session index"),
            DropReason::Expired => f.write_str("session expired"),
            DropReason::Replayed => f.write_str("replayed packet"),
            DropReason::TooOld => f.write_str("packet older than the replay window"),
            DropReason::Decrypt => f.write_str("packet failed authentication"),
            DropReason::CounterExhausted => f.write_str("session counter exhausted"),
            DropReason::UnknownPayload(b) => write!(f, "unknown payload kind {b:#04x}"),
            DropReason::NoSession => f.write_str("no session yet (handshake scheduled)"),
            DropReason::BufferTooSmall => f.write_str("buffer too small"),
            DropReason::NoRoute => f.write_str("no member has that overlay address"),
            DropReason::Announce(e) => write!(f, "{e}"),
            DropReason::ReplayedAnnouncement => f.write_str("replayed announcement"),
            DropReason::TableFull => f.write_str("member table full"),
            DropReason::SourceMismatch => f.write_str("packet source is not the sender's overlay address"),
            DropReason::IdentityMismatch => f.write_str("static key announced with a different signing key"),
        }
    }
}

impl core::error::Error for DropReason {}

impl From<HandshakeError> for DropReason {
    fn from(e: HandshakeError) -> Self {
        DropReason::Handshake(e)
    }
}

impl From<wire::Error> for DropReason {
    fn from(e: wire::Error) -> Self {
        DropReason::Malformed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_index_and_label() {
        let all = [
            DropReason::Malformed(wire::Error::Truncated),
            DropReason::BadMac1,
            DropReason::Handshake(HandshakeError::Decrypt),
            DropReason::ReplayedInitiation,
            DropReason::InitiationFlood,
            DropReason::UnknownIndex,
            DropReason::Expired,
            DropReason::Replayed,
            DropReason::TooOld,
            DropReason::Decrypt,
            DropReason::CounterExhausted,
            DropReason::UnknownPayload(7),
            DropReason::NoSession,
            DropReason::BufferTooSmall,
            DropReason::NoRoute,
            DropReason::Announce(AnnounceError::Decrypt),
            DropReason::ReplayedAnnouncement,
            DropReason::TableFull,
            DropReason::SourceMismatch,
            DropReason::IdentityMismatch,
        ];
        assert_eq!(all.len(), DropReason::KINDS);
        for (i, r) in all.iter().enumerate() {
            assert_eq!(r.index(), i, "{r:?}");
        }
        let mut labels = DropReason::LABELS.to_vec();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), DropReason::KINDS, "labels are distinct");
        assert_eq!(DropReason::Replayed.label(), "replayed");
    }
}
