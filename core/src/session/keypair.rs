//! One transport session: the pair of keys a handshake produced, the send
//! counter, and the receive replay window.
//!
//! This module owns in-place sealing and opening of transport messages. It
//! never decides when a session is too old (that is the tunnel's timers) but
//! refuses counters past the WireGuard limits.

use super::replay::{Replay, ReplayWindow};
use super::DropReason;
use crate::crypto::{AeadKey, CryptoProvider, TAG_LEN};
use crate::noise::TransportKeys;
use crate::time::Instant;
use crate::wire::{TransportPacket, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

/// A counter at or past this is never sent or accepted (WireGuard's
/// `REJECT_AFTER_MESSAGES`, 2^64 - 2^13 - 1).
pub const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13);

/// A session's keys and counters.
pub struct Session<P: CryptoProvider> {
    pub(crate) local_index: u32,
    pub(crate) remote_index: u32,
    pub(crate) initiator: bool,
    pub(crate) established: Instant,
    send_key: P::Key,
    recv_key: P::Key,
    pub(crate) send_counter: u64,
    replay: ReplayWindow,
}

impl<P: CryptoProvider> Session<P> {
    /// A session from a completed handshake.
    pub fn new(keys: &TransportKeys, now: Instant) -> Self {
        Session {
            local_index: keys.local_index,
            remote_index: keys.remote_index,
            initiator: keys.initiator,
            established: now,
            send_key: P::aead_key(&keys.send),
            recv_key: P::aead_key(&keys.recv),
            send_counter: 0,
            replay: ReplayWindow::default(),
        }
    }

    /// Seals `buf[TRANSPORT_HEADER_LEN..][..payload_len]` in place into a
    /// transport message and returns its length. `buf` must have room for
    /// the tag after the payload.
    pub fn seal(&mut self, buf: &mut [u8], payload_len: usize) -> Result<usize, DropReason> {
        let total = payload_len
            .checked_add(TRANSPORT_OVERHEAD)
            .ok_or(DropReason::BufferTooSmall)?;
        if buf.len() < total {
            return Err(DropReason::BufferTooSmall);
        }
        let counter = self.send_counter;
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(DropReason::CounterExhausted);
        }
        self.send_counter += 1;
        let mut p = TransportPacket::new_unchecked(&mut buf[..total]);
        p.set_header(self.remote_index, counter);
        let sealed = p.sealed_mut();
        let (body, tag_out) = sealed.split_at_mut(payload_len);
        let tag = self.send_key.seal_in_place(counter, &[], body);
        tag_out.copy_from_slice(&tag);
        Ok(total)
    }

    /// Opens a transport message in place (its index already matched) and
    /// returns the plaintext, which starts at `TRANSPORT_HEADER_LEN`.
    pub fn open<'a>(&mut self, msg: &'a mut [u8]) -> Result<&'a mut [u8], DropReason> {
        let p = TransportPacket::new_checked(&*msg).map_err(DropReason::Malformed)?;
        let counter = p.counter();
        if counter >= REJECT_AFTER_MESSAGES {
            return Err(DropReason::CounterExhausted);
        }
        self.replay.check(counter).map_err(replay_reason)?;
        let n = msg.len() - TAG_LEN;
        let (head, tag) = msg.split_at_mut(n);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(tag);
        let body = &mut head[TRANSPORT_HEADER_LEN..];
        self.recv_key
            .open_in_place(counter, &[], body, &t)
            .map_err(|_| DropReason::Decrypt)?;
        self.replay.commit(counter).map_err(replay_reason)?;
        Ok(body)
    }
}

fn replay_reason(r: Replay) -> DropReason {
    match r {
        Replay::Duplicate => DropReason::Replayed,
        Replay::TooOld => DropReason::TooOld,
    }
}
