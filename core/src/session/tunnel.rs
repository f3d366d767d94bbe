//! [`Tunnel`]: one peer's handshakes, sessions and timers.
//!
//! The tunnel is a sans-IO state machine in the quinn style:
//! - `handle_datagram(now, local, rng, from, buf)`: a datagram from the peer
//!   (any message type). Decrypts in place and returns what it carried, or
//!   the reply to send back (written into the same buffer), or a typed
//!   [`DropReason`].
//! - `encapsulate(now, buf, len)`: seals an outbound payload in place.
//! - `handle_timeout(now)`, `poll_timeout()`: WireGuard's timers.
//! - `poll_transmit(now, local, rng, out)`: handshake initiations and
//!   keepalives the timers call for.
//! - `poll_event()`: handshakes completed or failed, sessions expired.
//!
//! Sessions follow WireGuard: `current` sends; `previous` still receives
//! after a rekey; a responder's new session waits in `next` until the
//! initiator's first transport message confirms it.
//!
//! One addition: transport messages from the peer on a session this end no
//! longer holds, while its `current` is one it initiated, are answered (at
//! most every [`NUDGE_INTERVAL`]) with a keepalive on `current`. The peer
//! holds that session in `next` when its confirmation was lost: it goes on
//! sending on an old one, which this end dropped when it answered one of the
//! peer's initiations (a responder clears `previous`), and under heavy loss
//! the pair can stay out of step for longer than the peer's retries take.
//! The keepalive confirms the session there. It goes to the peer's known
//! endpoint, never to the datagram's source, and at most once a second.

use core::net::SocketAddr;

use heapless::Deque;
use rand_core::{CryptoRng, RngCore};

use super::timers::*;
use super::{DropReason, Local, Session};
use crate::crypto::CryptoProvider;
use crate::noise::{
    consume_initiation, create_initiation, CookieJar, HalfInitiation, HandshakeError, InitiatorState, Opened, Refusal,
    RemoteKeys, ResponderState, Tai64N,
};
use crate::time::{Duration, Instant};
use crate::wire::{
    ControlKind, CookieReplyPacket, InitiationPacket, MessageType, Payload, ResponsePacket, TransportPacket,
    INITIATION_LEN, RESPONSE_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD,
};

/// Bits of a session index that name the tunnel's slot in its node.
pub const INDEX_SLOT_BITS: u32 = 16;
/// Mask of the slot bits of a session index.
pub const INDEX_SLOT_MASK: u32 = (1 << INDEX_SLOT_BITS) - 1;

/// Per-tunnel settings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TunnelConfig {
    /// Send a keepalive whenever nothing was sent for this long (keeps NAT
    /// mappings open). `None`: only WireGuard's passive keepalives.
    pub persistent_keepalive: Option<Duration>,
    /// The low [`INDEX_SLOT_BITS`] of every session index this tunnel
    /// hands out, so a node finds the tunnel of an incoming message from its
    /// receiver index without a lookup table. The high bits are random.
    pub index_slot: u32,
}

/// What a datagram from the peer carried.
#[derive(Debug, PartialEq, Eq)]
pub enum Received<'a> {
    /// An IP packet for the local stack (decrypted in place).
    Ip(&'a mut [u8]),
    /// A control message: its kind and payload (decrypted in place).
    Control(ControlKind, &'a mut [u8]),
    /// A keepalive: nothing to deliver.
    Keepalive,
    /// Send these bytes back to the sender: a handshake response or a cookie
    /// reply, written into the input buffer.
    Reply(&'a [u8]),
    /// A handshake message or cookie was consumed; call `poll_transmit`.
    Handshake,
}

/// Something the caller may want to know or log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TunnelEvent {
    /// A handshake completed and a new session is in use.
    Established {
        /// Whether we initiated it.
        initiator: bool,
    },
    /// Handshake attempts gave up after `REKEY_ATTEMPT_TIME`.
    HandshakeFailed,
    /// The last usable session expired; the peer is unreachable until the
    /// next handshake.
    Expired,
}

/// Traffic counters of a tunnel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TunnelStats {
    /// Transport messages sent.
    pub tx_packets: u64,
    /// Payload bytes sent.
    pub tx_bytes: u64,
    /// Transport messages received and authenticated.
    pub rx_packets: u64,
    /// Payload bytes received.
    pub rx_bytes: u64,
    /// Handshakes completed.
    pub handshakes: u64,
    /// When the last handshake completed.
    pub last_handshake: Option<Instant>,
}

struct Pending {
    state: InitiatorState,
    /// When this series of attempts began (for `REKEY_ATTEMPT_TIME`).
    first_sent: Instant,
    /// When to resend if no response came.
    retry_at: Instant,
    /// Whether a cookie reply already advanced `retry_at` in this series.
    cookie_retried: bool,
}

/// One peer's tunnel. See the module docs.
pub struct Tunnel<P: CryptoProvider> {
    remote: RemoteKeys,
    config: TunnelConfig,
    cookies: CookieJar,
    pending: Option<Pending>,
    want_handshake: bool,
    want_keepalive: bool,
    last_initiation_sent: Option<Instant>,
    current: Option<Session<P>>,
    previous: Option<Session<P>>,
    next: Option<Session<P>>,
    last_timestamp: Tai64N,
    last_initiation_received: Option<Instant>,
    last_sent: Option<Instant>,
    keepalive_due: Option<Instant>,
    data_unanswered_since: Option<Instant>,
    /// When transport on an unknown session last made us send a keepalive
    /// (see the module docs); `Instant::ZERO` if never (so none in the
    /// caller's first second).
    nudged: Instant,
    events: Deque<TunnelEvent, 4>,
    stats: TunnelStats,
    peer_signing_key: Option<[u8; 32]>,
}

impl<P: CryptoProvider> Tunnel<P> {
    /// A tunnel to the peer with static key `remote_public`.
    pub fn new(local: &Local, remote_public: &[u8; 32], config: TunnelConfig) -> Result<Self, HandshakeError> {
        Ok(Self::with_remote_keys(
            RemoteKeys::new(&local.keys, remote_public)?,
            config,
        ))
    }

    /// A tunnel to the peer whose keys are already precomputed.
    pub fn with_remote_keys(remote: RemoteKeys, config: TunnelConfig) -> Self {
        Tunnel {
            remote,
            config,
            cookies: CookieJar::default(),
            pending: None,
            want_handshake: false,
            want_keepalive: false,
            last_initiation_sent: None,
            current: None,
            previous: None,
            next: None,
            last_timestamp: Tai64N::ZERO,
            last_initiation_received: None,
            last_sent: None,
            keepalive_due: None,
            data_unanswered_since: None,
            nudged: Instant::ZERO,
            events: Deque::new(),
            stats: TunnelStats::default(),
            peer_signing_key: None,
        }
    }

    /// The peer's static public key.
    pub fn remote_public(&self) -> &[u8; 32] {
        self.remote.public()
    }

    /// The peer's Ed25519 signing key, as its last authenticated handshake
    /// message said.
    pub fn peer_signing_key(&self) -> Option<&[u8; 32]> {
        self.peer_signing_key.as_ref()
    }

    /// Its settings.
    pub fn config(&self) -> &TunnelConfig {
        &self.config
    }

    /// The timestamp of the newest initiation accepted.
    pub fn last_initiation(&self) -> Tai64N {
        self.last_timestamp
    }

    /// Refuses initiations not newer than `timestamp`, as if one with it
    /// had been accepted (an earlier tunnel to the same peer did).
    pub fn refuse_initiations_until(&mut self, timestamp: Tai64N) {
        self.last_timestamp = self.last_timestamp.max(timestamp);
    }

    /// Traffic counters.
    pub fn stats(&self) -> TunnelStats {
        self.stats
    }

    /// The round trip of the handshake that made the current session,
    /// read from times the tunnel keeps anyway (no extra state, so a
    /// member slot does not grow). As the initiator: from sending the
    /// initiation to authenticating the response. As the responder: from
    /// sending the response to the initiator's first transport message
    /// (the key confirmation, sent at once). `None` without a session, or
    /// while a newer initiation of ours is in flight.
    pub fn handshake_rtt(&self) -> Option<Duration> {
        let s = self.current.as_ref()?;
        if s.initiator {
            let sent = self.last_initiation_sent?;
            (sent <= s.established).then(|| s.established.saturating_since(sent))
        } else {
            let confirmed = self.stats.last_handshake?;
            (confirmed >= s.established).then(|| confirmed.saturating_since(s.established))
        }
    }

    /// When a transport message (data or keepalive) last went out.
    pub fn last_sent(&self) -> Option<Instant> {
        self.last_sent
    }

    /// Whether an initiation of ours is waiting for its response.
    pub fn is_handshaking(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether a session can carry data now.
    pub fn is_established(&self, now: Instant) -> bool {
        self.sendable(now).is_some()
    }

    /// Asks for a handshake as soon as the rate limit allows.
    pub fn connect(&mut self) {
        self.want_handshake = true;
    }

    /// Asks for a handshake now, past the rate limit: the path to the peer
    /// changed (a relay was chosen), so the initiation in flight went where
    /// it cannot arrive and waiting out the 5 s retry would only add delay.
    pub fn connect_now(&mut self) {
        self.want_handshake = true;
        self.last_initiation_sent = None;
        if let Some(p) = self.pending.as_mut() {
            p.retry_at = Instant::ZERO;
        }
    }

    /// Seals the payload at `buf[TRANSPORT_HEADER_LEN..][..payload_len]` in
    /// place and returns the transport message, `payload_len +
    /// TRANSPORT_OVERHEAD` bytes at the start of `buf`. Without a usable
    /// session, schedules a handshake and returns [`DropReason::NoSession`].
    pub fn encapsulate<'a>(
        &mut self,
        now: Instant,
        buf: &'a mut [u8],
        payload_len: usize,
    ) -> Result<&'a mut [u8], DropReason> {
        let Some(session) = self.sendable_mut(now) else {
            // A responder waits for confirmation of its `next` session rather
            // than racing the initiator with a handshake of its own.
            if self.next.is_none() {
                self.want_handshake = true;
            }
            return Err(DropReason::NoSession);
        };
        let n = session.seal(buf, payload_len)?;
        let rekey = session.initiator
            && (now.saturating_since(session.established) >= REKEY_AFTER_TIME
                || session.send_counter >= REKEY_AFTER_MESSAGES);
        if rekey && self.pending.is_none() {
            self.want_handshake = true;
        }
        self.note_sent(now, payload_len);
        Ok(&mut buf[..n])
    }

    fn note_sent(&mut self, now: Instant, payload_len: usize) {
        self.last_sent = Some(now);
        self.keepalive_due = None;
        self.want_keepalive = false;
        self.stats.tx_packets += 1;
        self.stats.tx_bytes += payload_len as u64;
        if payload_len > 0 && self.data_unanswered_since.is_none() {
            self.data_unanswered_since = Some(now);
        }
    }

    fn sendable(&self, now: Instant) -> Option<&Session<P>> {
        self.current
            .as_ref()
            .filter(|s| now.saturating_since(s.established) < REJECT_AFTER_TIME)
    }

    fn sendable_mut(&mut self, now: Instant) -> Option<&mut Session<P>> {
        self.current
            .as_mut()
            .filter(|s| now.saturating_since(s.established) < REJECT_AFTER_TIME)
    }

    /// Feeds a datagram that arrived from `from` for this peer.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        local: &mut Local,
        rng: &mut (impl RngCore + CryptoRng),
        from: SocketAddr,
        buf: &'a mut [u8],
    ) -> Result<Received<'a>, DropReason> {
        match MessageType::of(buf)? {
            MessageType::Beacon | MessageType::Hello | MessageType::HelloReply => {
                Err(DropReason::Malformed(crate::wire::Error::UnknownType(buf[0])))
            }
            MessageType::Transport => self.handle_transport(now, buf),
            MessageType::Initiation => self.handle_initiation(now, local, rng, from, buf),
            MessageType::Response => self.handle_response(now, local, rng, from, buf),
            MessageType::CookieReply => {
                let p = CookieReplyPacket::new_checked(&*buf)?;
                let expected = self.pending.as_ref().map(|p| p.state.local_index());
                let answered_next = self.next.as_ref().map(|s| s.local_index);
                if Some(p.receiver_index()) != expected && Some(p.receiver_index()) != answered_next {
                    return Err(DropReason::UnknownIndex);
                }
                self.cookies.consume_reply(now, &self.remote, &p)?;
                // Retry at once with the cookie, but once per series of
                // attempts, so forged replies cannot make us spin.
                if let Some(pending) = self.pending.as_mut().filter(|p| !p.cookie_retried) {
                    pending.cookie_retried = true;
                    pending.retry_at = now;
                    self.want_handshake = true;
                }
                Ok(Received::Handshake)
            }
        }
    }

    /// Admits a handshake message, or turns `buf` into a cookie reply and
    /// returns its length.
    fn admit(
        now: Instant,
        local: &mut Local,
        rng: &mut (impl RngCore + CryptoRng),
        from: SocketAddr,
        buf: &mut [u8],
    ) -> Result<Option<usize>, DropReason> {
        match local.admission.admit(now, &local.keys, from, buf) {
            Ok(()) => Ok(None),
            Err(Refusal::BadMac1) => Err(DropReason::BadMac1),
            Err(Refusal::CookieRequired) => {
                let mut msg = [0u8; INITIATION_LEN];
                let n = buf.len();
                msg[..n].copy_from_slice(buf);
                Ok(Some(local.admission.write_cookie_reply(
                    now,
                    &local.keys,
                    from,
                    &msg[..n],
                    rng,
                    buf,
                )))
            }
        }
    }

    fn handle_initiation<'a>(
        &mut self,
        now: Instant,
        local: &mut Local,
        rng: &mut (impl RngCore + CryptoRng),
        from: SocketAddr,
        buf: &'a mut [u8],
    ) -> Result<Received<'a>, DropReason> {
        InitiationPacket::new_checked(&*buf)?;
        if let Some(len) = Self::admit(now, local, rng, from, buf)? {
            return Ok(Received::Reply(&buf[..len]));
        }
        let half = consume_initiation(&local.keys, &InitiationPacket::new_unchecked(&*buf))?;
        let reply = self.handle_half_initiation(now, local, rng, half, buf)?;
        Ok(Received::Reply(reply))
    }

    /// Answers an initiation whose static key a node already opened (with
    /// [`consume_initiation`], after admission) and matched to this tunnel.
    /// Writes the response into `out` (at least `RESPONSE_LEN` bytes) and
    /// returns it.
    pub fn handle_half_initiation<'a>(
        &mut self,
        now: Instant,
        local: &mut Local,
        rng: &mut (impl RngCore + CryptoRng),
        half: HalfInitiation,
        out: &'a mut [u8],
    ) -> Result<&'a mut [u8], DropReason> {
        let (state, opened) = half.finish(&self.remote)?;
        self.accept_initiation(now, local, rng, state, opened, out)
    }

    /// Answers an initiation already authenticated with
    /// [`HalfInitiation::finish`] against this tunnel's peer: checks the
    /// timestamp and rate, writes the response into `out` (at least
    /// `RESPONSE_LEN` bytes) and returns it.
    pub fn accept_initiation<'a>(
        &mut self,
        now: Instant,
        local: &mut Local,
        rng: &mut (impl RngCore + CryptoRng),
        state: ResponderState,
        opened: Opened,
        out: &'a mut [u8],
    ) -> Result<&'a mut [u8], DropReason> {
        if out.len() < RESPONSE_LEN {
            return Err(DropReason::BufferTooSmall);
        }
        let timestamp = opened.timestamp;
        if timestamp <= self.last_timestamp {
            return Err(DropReason::ReplayedInitiation);
        }
        if self
            .last_initiation_received
            .is_some_and(|t| now.saturating_since(t) < MIN_INITIATION_INTERVAL)
        {
            return Err(DropReason::InitiationFlood);
        }
        self.last_timestamp = timestamp;
        self.last_initiation_received = Some(now);
        self.peer_signing_key = Some(opened.signing_key);
        let index = self.new_index(rng);
        let keys = state.respond(&local.keys, &self.remote, index, rng, out)?;
        let reply = &mut out[..RESPONSE_LEN];
        self.cookies.stamp(now, reply);
        // The new session waits for confirmation; a stale `previous` goes.
        self.next = Some(Session::new(&keys, now));
        self.previous = None;
        Ok(reply)
    }

    /// A fresh session index: random high bits, the configured slot below.
    fn new_index(&self, rng: &mut (impl RngCore + CryptoRng)) -> u32 {
        (rng.next_u32() << INDEX_SLOT_BITS) | (self.config.index_slot & INDEX_SLOT_MASK)
    }

    fn handle_response<'a>(
        &mut self,
        now: Instant,
        local: &mut Local,
        rng: &mut (impl RngCore + CryptoRng),
        from: SocketAddr,
        buf: &'a mut [u8],
    ) -> Result<Received<'a>, DropReason> {
        let p = ResponsePacket::new_checked(&*buf)?;
        let Some(pending) = self.pending.as_ref() else {
            return Err(DropReason::UnknownIndex);
        };
        if p.receiver_index() != pending.state.local_index() {
            return Err(DropReason::UnknownIndex);
        }
        if let Some(len) = Self::admit(now, local, rng, from, buf)? {
            return Ok(Received::Reply(&buf[..len]));
        }
        let p = ResponsePacket::new_unchecked(&*buf);
        let (keys, signing_key) = pending.state.consume_response(&local.keys, &p)?;
        self.peer_signing_key = Some(signing_key);
        self.pending = None;
        // As the kernel's WireGuard: an unconfirmed `next` (we answered the
        // peer's simultaneous initiation) becomes `previous`, so whichever
        // session the peer sends on is still open here.
        self.previous = match self.next.take() {
            Some(next) => Some(next),
            None => self.current.take(),
        };
        self.current = Some(Session::new(&keys, now));
        self.want_handshake = false;
        // Confirm the session to the responder at once (it cannot send on
        // it until our first transport message arrives).
        self.want_keepalive = true;
        self.established(now, true);
        Ok(Received::Handshake)
    }

    /// Transport from the peer on a session this end does not hold: if
    /// `current` is one we initiated, confirm it with a keepalive (see the
    /// module docs).
    fn nudge(&mut self, now: Instant) {
        let ours = self
            .current
            .as_ref()
            .is_some_and(|s| s.initiator && now.saturating_since(s.established) < REJECT_AFTER_TIME);
        if ours && now.saturating_since(self.nudged) >= NUDGE_INTERVAL {
            self.nudged = now;
            self.want_keepalive = true;
        }
    }

    /// Whether the tunnel has a keepalive to send (after a nudge).
    pub fn wants_keepalive(&self) -> bool {
        self.want_keepalive
    }

    fn established(&mut self, now: Instant, initiator: bool) {
        self.stats.handshakes += 1;
        self.stats.last_handshake = Some(now);
        self.push_event(TunnelEvent::Established { initiator });
    }

    fn push_event(&mut self, e: TunnelEvent) {
        if self.events.is_full() {
            self.events.pop_front();
        }
        let _ = self.events.push_back(e);
    }

    fn handle_transport<'a>(&mut self, now: Instant, buf: &'a mut [u8]) -> Result<Received<'a>, DropReason> {
        let index = TransportPacket::new_checked(&*buf)?.receiver_index();
        let slot = if self.current.as_ref().is_some_and(|s| s.local_index == index) {
            &mut self.current
        } else if self.next.as_ref().is_some_and(|s| s.local_index == index) {
            &mut self.next
        } else if self.previous.as_ref().is_some_and(|s| s.local_index == index) {
            &mut self.previous
        } else {
            self.nudge(now);
            return Err(DropReason::UnknownIndex);
        };
        let session = slot.as_mut().expect("slot matched an index");
        if now.saturating_since(session.established) >= REJECT_AFTER_TIME {
            return Err(DropReason::Expired);
        }
        let established = session.established;
        let initiator = session.initiator;
        let plain_len = session.open(buf)?.len();

        if self.next.as_ref().is_some_and(|s| s.local_index == index) {
            // Key confirmation: the initiator used the session we answered.
            self.previous = self.current.take();
            self.current = self.next.take();
            self.established(now, false);
        }
        self.stats.rx_packets += 1;
        self.stats.rx_bytes += plain_len as u64;
        self.data_unanswered_since = None;
        if initiator && now.saturating_since(established) >= REKEY_ON_RECEIVE_TIME && self.pending.is_none() {
            self.want_handshake = true;
        }
        if plain_len > 0 && self.keepalive_due.is_none() {
            self.keepalive_due = Some(now + KEEPALIVE_TIMEOUT);
        }

        let plain = &mut buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + plain_len];
        match Payload::classify(plain) {
            Ok(Payload::Keepalive) => Ok(Received::Keepalive),
            Ok(Payload::Ipv4(_) | Payload::Ipv6(_)) => Ok(Received::Ip(plain)),
            Ok(Payload::Control(kind, _)) => Ok(Received::Control(kind, &mut plain[1..])),
            Err(e) => Err(DropReason::UnknownPayload(e.0)),
        }
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let had_session = self.current.is_some() || self.previous.is_some() || self.next.is_some();
        for slot in [&mut self.current, &mut self.previous, &mut self.next] {
            if slot
                .as_ref()
                .is_some_and(|s| now.saturating_since(s.established) >= REJECT_AFTER_TIME)
            {
                *slot = None;
            }
        }
        if had_session && self.current.is_none() && self.previous.is_none() && self.next.is_none() {
            self.push_event(TunnelEvent::Expired);
        }
        if let Some(p) = &self.pending {
            if now.saturating_since(p.first_sent) >= REKEY_ATTEMPT_TIME {
                self.pending = None;
                self.want_handshake = false;
                self.push_event(TunnelEvent::HandshakeFailed);
            } else if now >= p.retry_at {
                self.want_handshake = true;
            }
        }
        if self.keepalive_due.is_some_and(|t| now >= t) {
            self.keepalive_due = None;
            self.want_keepalive = true;
        }
        if let Some(interval) = self.config.persistent_keepalive {
            if self.last_sent.is_none_or(|t| now.saturating_since(t) >= interval) && self.current.is_some() {
                self.want_keepalive = true;
            }
        }
        if self
            .data_unanswered_since
            .is_some_and(|t| now.saturating_since(t) >= NEW_HANDSHAKE_AFTER_SILENCE)
        {
            self.data_unanswered_since = None;
            if self.pending.is_none() {
                self.want_handshake = true;
            }
        }
    }

    /// When `handle_timeout` next has something to do, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        for s in [&self.current, &self.previous, &self.next].into_iter().flatten() {
            at(s.established + REJECT_AFTER_TIME);
        }
        if let Some(p) = &self.pending {
            at(p.retry_at.min(p.first_sent + REKEY_ATTEMPT_TIME));
        }
        if self.want_handshake {
            at(self.next_initiation_allowed());
        }
        if let Some(t) = self.keepalive_due {
            at(t);
        }
        if let (Some(interval), Some(_)) = (self.config.persistent_keepalive, &self.current) {
            at(self.last_sent.map_or(Instant::ZERO, |t| t + interval));
        }
        if let Some(t) = self.data_unanswered_since {
            at(t + NEW_HANDSHAKE_AFTER_SILENCE);
        }
        next
    }

    fn next_initiation_allowed(&self) -> Instant {
        self.last_initiation_sent.map_or(Instant::ZERO, |t| t + REKEY_TIMEOUT)
    }

    /// Writes the next message the timers call for (a handshake initiation
    /// or a keepalive) into `out`, which must hold at least
    /// [`INITIATION_LEN`] bytes, and returns its length.
    pub fn poll_transmit(
        &mut self,
        now: Instant,
        local: &mut Local,
        rng: &mut (impl RngCore + CryptoRng),
        out: &mut [u8],
    ) -> Option<usize> {
        if out.len() < INITIATION_LEN.max(TRANSPORT_OVERHEAD) {
            return None;
        }
        let retry_due = self.pending.as_ref().is_some_and(|p| now >= p.retry_at);
        if self.want_handshake && (retry_due || now >= self.next_initiation_allowed()) {
            self.want_handshake = false;
            let timestamp = local.timestamp(now);
            let index = self.new_index(rng);
            let state = create_initiation(&local.keys, &self.remote, timestamp, index, rng, out).ok()?;
            self.cookies.stamp(now, &mut out[..INITIATION_LEN]);
            let jitter = Duration::from_millis((rng.next_u32() % (REKEY_JITTER_MS + 1)) as u64);
            let (first_sent, cookie_retried) = self
                .pending
                .as_ref()
                .map_or((now, false), |p| (p.first_sent, p.cookie_retried));
            self.pending = Some(Pending {
                state,
                first_sent,
                retry_at: now + REKEY_TIMEOUT + jitter,
                cookie_retried,
            });
            self.last_initiation_sent = Some(now);
            return Some(INITIATION_LEN);
        }
        if self.want_keepalive {
            self.want_keepalive = false;
            if let Ok(msg) = self.encapsulate(now, out, 0) {
                return Some(msg.len());
            }
        }
        None
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<TunnelEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::RustCryptoProvider;

    /// `connect` waits out the 5 s between initiations; `connect_now` (a
    /// new path) sends at once.
    #[test]
    fn connect_now_skips_the_rate_limit() {
        use crate::identity::Identity;
        use crate::token::NetworkKeys;
        use rand_chacha::rand_core::SeedableRng;
        let net = NetworkKeys::derive(&[3; 32]);
        let (a, b) = (Identity::from_bytes(&[1; 64]), Identity::from_bytes(&[2; 64]));
        let mut local = Local::new(&a, &net, Duration::from_secs(1_800_000_000));
        let remote = b.public().static_key;
        let config = TunnelConfig {
            index_slot: 0,
            persistent_keepalive: None,
        };
        let mut t: Tunnel<RustCryptoProvider> = Tunnel::new(&local, &remote, config).unwrap();
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let mut out = [0u8; 256];
        let t0 = Instant::from_secs(100);
        t.connect();
        assert_eq!(
            t.poll_transmit(t0, &mut local, &mut rng, &mut out),
            Some(INITIATION_LEN)
        );
        let t1 = t0 + Duration::from_secs(1);
        t.connect();
        assert_eq!(
            t.poll_transmit(t1, &mut local, &mut rng, &mut out),
            None,
            "rate limited"
        );
        t.connect_now();
        assert_eq!(
            t.poll_transmit(t1, &mut local, &mut rng, &mut out),
            Some(INITIATION_LEN)
        );
        assert_eq!(t.poll_transmit(t1, &mut local, &mut rng, &mut out), None, "once");
    }

    /// Two peers' local keys and tunnels to each other, not yet connected.
    struct Pair {
        la: Local,
        lb: Local,
        ta: Tunnel<RustCryptoProvider>,
        tb: Tunnel<RustCryptoProvider>,
        rng: rand_chacha::ChaCha20Rng,
        from_a: SocketAddr,
        from_b: SocketAddr,
    }

    impl Pair {
        fn new() -> Self {
            use crate::identity::Identity;
            use crate::token::NetworkKeys;
            use rand_chacha::rand_core::SeedableRng;
            let net = NetworkKeys::derive(&[3; 32]);
            let (a, b) = (Identity::from_bytes(&[1; 64]), Identity::from_bytes(&[2; 64]));
            let wall = Duration::from_secs(1_800_000_000);
            let (la, lb) = (Local::new(&a, &net, wall), Local::new(&b, &net, wall));
            let config = TunnelConfig::default();
            Pair {
                ta: Tunnel::new(&la, &b.public().static_key, config).unwrap(),
                tb: Tunnel::new(&lb, &a.public().static_key, config).unwrap(),
                la,
                lb,
                rng: rand_chacha::ChaCha20Rng::seed_from_u64(9),
                from_a: "192.0.2.1:51820".parse().unwrap(),
                from_b: "192.0.2.2:51820".parse().unwrap(),
            }
        }

        #[allow(clippy::type_complexity)]
        fn parts(
            self,
        ) -> (
            Local,
            Local,
            Tunnel<RustCryptoProvider>,
            Tunnel<RustCryptoProvider>,
            rand_chacha::ChaCha20Rng,
            SocketAddr,
            SocketAddr,
        ) {
            (self.la, self.lb, self.ta, self.tb, self.rng, self.from_a, self.from_b)
        }
    }

    /// One end of a test pair: its tunnel, its keys, where its datagrams
    /// come from.
    type End<'a> = (&'a mut Tunnel<RustCryptoProvider>, &'a mut Local, SocketAddr);

    /// `i` initiates at once and takes `r`'s response (each datagram at the
    /// next `step` of 30 ms); `i`'s confirmation is left to send.
    fn initiate(
        (ti, li, from_i): End<'_>,
        (tr, lr, from_r): End<'_>,
        rng: &mut rand_chacha::ChaCha20Rng,
        step: &mut impl FnMut(u64) -> Instant,
    ) {
        let mut buf = [0u8; 256];
        ti.connect_now();
        let n = ti.poll_transmit(step(30), li, rng, &mut buf).unwrap();
        let mut reply = match tr.handle_datagram(step(30), lr, rng, from_i, &mut buf[..n]) {
            Ok(Received::Reply(r)) => r.to_vec(),
            other => panic!("expected a response, got {other:?}"),
        };
        assert_eq!(
            ti.handle_datagram(step(30), li, rng, from_r, &mut reply),
            Ok(Received::Handshake)
        );
    }

    /// Both sides measure the handshake's round trip: the initiator up to
    /// the response, the responder up to the key confirmation.
    #[test]
    fn both_sides_measure_the_handshake_round_trip() {
        let (mut la, mut lb, mut ta, mut tb, mut rng, from_a, from_b) = Pair::new().parts();
        let mut buf = [0u8; 256];
        let t0 = Instant::from_secs(100);
        ta.connect();
        let n = ta.poll_transmit(t0, &mut la, &mut rng, &mut buf).unwrap();
        assert_eq!(ta.handshake_rtt(), None);
        let reply = match tb.handle_datagram(t0 + Duration::from_millis(5), &mut lb, &mut rng, from_a, &mut buf[..n]) {
            Ok(Received::Reply(r)) => r.to_vec(),
            other => panic!("expected a response, got {other:?}"),
        };
        let mut reply = reply;
        let got = ta.handle_datagram(t0 + Duration::from_millis(25), &mut la, &mut rng, from_b, &mut reply);
        assert_eq!(got, Ok(Received::Handshake));
        assert_eq!(ta.handshake_rtt(), Some(Duration::from_millis(25)));
        assert_eq!(tb.handshake_rtt(), None, "not confirmed yet");
        // The initiator confirms the session at once with a keepalive.
        let t1 = t0 + Duration::from_millis(25);
        let n = ta.poll_transmit(t1, &mut la, &mut rng, &mut buf).expect("keepalive");
        let got = tb.handle_datagram(t0 + Duration::from_millis(45), &mut lb, &mut rng, from_a, &mut buf[..n]);
        assert_eq!(got, Ok(Received::Keepalive));
        assert_eq!(tb.handshake_rtt(), Some(Duration::from_millis(40)));
        // A rekey in flight hides the initiator's measure until it completes.
        ta.connect_now();
        let t2 = t0 + Duration::from_secs(1);
        assert!(ta.poll_transmit(t2, &mut la, &mut rng, &mut buf).is_some());
        assert_eq!(ta.handshake_rtt(), None);
    }

    /// A pair out of step: A sends on a session B dropped while B's newer
    /// one waits unconfirmed in A's `next` (B's confirmation and the
    /// response to A's own initiation were lost). B answers A's transport
    /// with a keepalive on its session, which confirms it at A, and A's
    /// traffic gets through again; at most once a second.
    #[test]
    fn transport_on_a_dropped_session_is_answered_with_a_confirmation() {
        let (mut la, mut lb, mut ta, mut tb, mut rng, from_a, from_b) = Pair::new().parts();
        let mut buf = [0u8; 256];
        let mut at = Instant::from_secs(100);
        let mut step = |ms: u64| {
            at += Duration::from_millis(ms);
            at
        };
        // A session made by A, confirmed at B.
        initiate(
            (&mut ta, &mut la, from_a),
            (&mut tb, &mut lb, from_b),
            &mut rng,
            &mut step,
        );
        let n = ta
            .poll_transmit(step(30), &mut la, &mut rng, &mut buf)
            .expect("confirmation");
        assert_eq!(
            tb.handle_datagram(step(30), &mut lb, &mut rng, from_a, &mut buf[..n]),
            Ok(Received::Keepalive)
        );
        // B rekeys; A answers; B's confirmation is lost.
        initiate(
            (&mut tb, &mut lb, from_b),
            (&mut ta, &mut la, from_a),
            &mut rng,
            &mut step,
        );
        assert!(
            tb.poll_transmit(step(30), &mut lb, &mut rng, &mut buf).is_some(),
            "lost"
        );
        // A initiates; B answers (and drops the first session); the
        // response is lost.
        ta.connect_now();
        let n = ta.poll_transmit(step(30), &mut la, &mut rng, &mut buf).unwrap();
        assert!(matches!(
            tb.handle_datagram(step(30), &mut lb, &mut rng, from_a, &mut buf[..n]),
            Ok(Received::Reply(_))
        ));
        // A still sends on the first session: B no longer holds it.
        let mut data = [0u8; 256];
        let send = |ta: &mut Tunnel<RustCryptoProvider>, now, data: &mut [u8; 256]| {
            data[TRANSPORT_HEADER_LEN] = ControlKind::GOODBYE.0;
            ta.encapsulate(now, data, 1).unwrap().len()
        };
        let n = send(&mut ta, step(30), &mut data);
        assert_eq!(
            tb.handle_datagram(step(30), &mut lb, &mut rng, from_a, &mut data[..n]),
            Err(DropReason::UnknownIndex)
        );
        // B confirms its session; A takes it up and gets through.
        assert!(tb.wants_keepalive());
        let k = tb
            .poll_transmit(step(30), &mut lb, &mut rng, &mut buf)
            .expect("a keepalive");
        assert_eq!(
            ta.handle_datagram(step(30), &mut la, &mut rng, from_b, &mut buf[..k]),
            Ok(Received::Keepalive)
        );
        let n = send(&mut ta, step(30), &mut data);
        assert!(matches!(
            tb.handle_datagram(step(30), &mut lb, &mut rng, from_a, &mut data[..n]),
            Ok(Received::Control(ControlKind::GOODBYE, _))
        ));
        // Stale transport again within a second: no second keepalive.
        let mut stale = [0u8; 256];
        stale[..n].copy_from_slice(&data[..n]);
        stale[4..8].copy_from_slice(&0xdead_beefu32.to_le_bytes());
        assert_eq!(
            tb.handle_datagram(step(30), &mut lb, &mut rng, from_a, &mut stale[..n]),
            Err(DropReason::UnknownIndex)
        );
        assert!(!tb.wants_keepalive(), "at most one a second");
    }

    /// The per-peer state is small and bounded: no heap, three sessions.
    #[test]
    fn tunnel_size() {
        let size = core::mem::size_of::<Tunnel<RustCryptoProvider>>();
        std::println!("Tunnel<RustCryptoProvider>: {size} bytes");
        assert!(size <= 2560, "a tunnel grew to {size} bytes");
        #[cfg(feature = "ring")]
        {
            let size = core::mem::size_of::<Tunnel<crate::crypto::RingProvider>>();
            std::println!("Tunnel<RingProvider>: {size} bytes");
            // ring's key type is sized for its largest AEAD (AES-GCM with
            // precomputed tables), so each of the six keys takes ~520 bytes.
            assert!(size <= 6144, "a ring tunnel grew to {size} bytes");
        }
    }
}
