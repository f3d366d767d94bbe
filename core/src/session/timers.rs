//! WireGuard's protocol constants (whitepaper section 6) and one of ours
//! ([`NUDGE_INTERVAL`]), used by
//! [`super::Tunnel`]. All durations are measured on the caller's `now`.

use crate::time::Duration;

/// An initiator starts a new handshake when sending on a session this old.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session this old is never used again.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Handshake retries stop after this long without success.
pub const REKEY_ATTEMPT_TIME: Duration = Duration::from_secs(90);
/// A handshake is retried after this long without a response (plus jitter).
pub const REKEY_TIMEOUT: Duration = Duration::from_secs(5);
/// Maximum random jitter added to each retry.
pub const REKEY_JITTER_MS: u32 = 333;
/// A keepalive is sent if data arrived and nothing went back for this long.
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// An initiator starts a new handshake when sending after this many messages.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// Initiations from one peer closer together than this are dropped
/// (wireguard-go allows 50 per second).
pub const MIN_INITIATION_INTERVAL: Duration = Duration::from_millis(20);
/// All keys are erased this long after the last handshake.
pub const ZERO_KEYS_AFTER: Duration = Duration::from_secs(3 * 180);
/// An initiator rekeys when receiving on a session this old, so the session
/// is replaced before it expires: `REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT -
/// REKEY_TIMEOUT`.
pub const REKEY_ON_RECEIVE_TIME: Duration = Duration::from_secs(180 - 10 - 5);
/// Data sent without any reply for this long means the session is dead: a
/// new handshake starts (`KEEPALIVE_TIMEOUT + REKEY_TIMEOUT`).
pub const NEW_HANDSHAKE_AFTER_SILENCE: Duration = Duration::from_secs(15);
/// How often transport on an unknown session may make a tunnel confirm
/// its own with a keepalive (see `tunnel`'s module docs).
pub const NUDGE_INTERVAL: Duration = Duration::from_secs(1);
