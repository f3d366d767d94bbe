//! `transport_decrypt`: a receiver with an established session fed real,
//! mutated, forged and arbitrary transport messages.
//!
//! Every input starts from the same state (made once per process and
//! copied): the sender (identity `[1; 64]`)
//! and the receiver (`[2; 64]`) complete a handshake at [`START`], and the
//! sender's confirming keepalive is delivered. The input is then a list of
//! operations (the op byte modulo 8, see [`op`]): the sender seals a
//! payload, a sealed message is delivered as is or after input-chosen
//! edits, an arbitrary datagram or a forged message on the live session
//! index is injected, time advances (both nodes' timers run; the receiver's
//! keepalives go back to the sender), a handshake initiation the sender's
//! timers produced is delivered (a rekey), or the sender is called with an
//! input-chosen buffer and payload length.
//!
//! Checks, beyond never panicking and the invariants of [`crate::check`]:
//! - authenticity: the receiver delivers (IP, control, keepalive, or an
//!   unknown payload kind after authentication) only a datagram that is
//!   byte-identical to a message the sender sealed and that was not
//!   delivered before, and its plaintext is the sealed payload;
//! - liveness: while the first session is the only one (no initiation
//!   answered since) and younger than `REJECT_AFTER_TIME`, a sealed,
//!   undelivered message whose counter is still inside the replay window is
//!   delivered.

use std::collections::VecDeque;
use std::sync::OnceLock;

use kairos_core::session::timers::REJECT_AFTER_TIME;
use kairos_core::session::{DropReason, REPLAY_WINDOW};
use kairos_core::wire::{MessageType, TransportPacket, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD};

use crate::check::{feed, seal, tick, Ledger, Outcome};
use crate::fixture::{Node, Role, Setup, START};
use crate::input::{mutate, time_step, Input};
use crate::Stats;

/// The operations (the op byte modulo 8).
pub mod op {
    /// `chunk`: the sender seals the chunk as a payload.
    pub const SEND: u8 = 0;
    /// `index byte`: deliver a sealed message (index modulo the number sealed).
    pub const DELIVER: u8 = 1;
    /// `index byte, mutation`: deliver a sealed message after edits.
    pub const DELIVER_MUTATED: u8 = 2;
    /// `chunk`: deliver the chunk as a datagram.
    pub const INJECT: u8 = 3;
    /// `index byte, u64 counter, chunk`: deliver a transport header with the
    /// receiver index of a sealed message and the counter, then the chunk
    /// as ciphertext and tag.
    pub const FORGE: u8 = 4;
    /// `time byte`: time advances.
    pub const ADVANCE: u8 = 5;
    /// `mutation`: deliver the sender's next queued handshake initiation;
    /// the receiver's reply goes back to the sender.
    pub const HANDSHAKE: u8 = 6;
    /// `u64 payload length, chunk`: the sender's caller passes the chunk as
    /// the buffer and the length as is: `encapsulate` must seal the payload
    /// (then it is a sealed message like any other) or refuse with
    /// `BufferTooSmall` when header, payload and tag do not fit.
    pub const SEND_RAW: u8 = 7;
}

/// At most this many sealed messages are remembered; later sends are skipped.
const MAX_SEALED: usize = 1024;

struct State {
    now: kairos_core::time::Instant,
    sender: Node,
    receiver: Node,
    /// Every transport message the sender sealed, in order.
    sealed: Vec<Vec<u8>>,
    /// Initiations the sender transmitted, not yet delivered.
    initiations: VecDeque<Vec<u8>>,
    /// Sender to receiver, and back.
    forward: Ledger,
    backward: Ledger,
    /// The receiver index of the first session.
    first_session: [u8; 4],
    /// Whether the receiver answered an initiation after the first session.
    rekeyed: bool,
    /// The highest counter delivered on the first session.
    highest: Option<u64>,
    stats: Stats,
}

/// Runs one input. See the module docs.
pub fn run(data: &[u8]) -> Stats {
    let mut s = State::connected();
    let mut input = Input::new(data);
    while let Some(code) = input.u8() {
        match code % 8 {
            op::SEND => {
                let Some(payload) = input.chunk() else { break };
                if s.sealed.len() < MAX_SEALED {
                    if let Ok(m) = seal(&mut s.sender, s.now, payload) {
                        s.forward.sealed(&m, payload);
                        s.sealed.push(m);
                    }
                }
            }
            op::DELIVER => {
                let Some(i) = input.u8() else { break };
                if let Some(m) = pick(&s.sealed, i) {
                    s.deliver(&m);
                }
            }
            op::DELIVER_MUTATED => {
                let Some(i) = input.u8() else { break };
                if let Some(mut m) = pick(&s.sealed, i) {
                    mutate(&mut input, &mut m);
                    s.deliver(&m);
                }
            }
            op::INJECT => {
                let Some(d) = input.chunk() else { break };
                s.deliver(d);
            }
            op::FORGE => {
                let (Some(i), Some(counter), Some(body)) = (input.u8(), input.u64(), input.chunk()) else {
                    break;
                };
                let index = pick(&s.sealed, i).map_or(s.first_session, |m| [m[4], m[5], m[6], m[7]]);
                let mut d = vec![4, 0, 0, 0];
                d.extend_from_slice(&index);
                d.extend_from_slice(&counter.to_le_bytes());
                d.extend_from_slice(body);
                s.deliver(&d);
            }
            op::ADVANCE => {
                let Some(b) = input.u8() else { break };
                s.now += time_step(b);
            }
            op::SEND_RAW => {
                let (Some(len), Some(chunk)) = (input.u64(), input.chunk()) else {
                    break;
                };
                s.send_raw(len, chunk);
            }
            _ => {
                // The mutation is read even with nothing to deliver.
                let mut init = s.initiations.pop_front().unwrap_or_default();
                let queued = !init.is_empty();
                mutate(&mut input, &mut init);
                if queued {
                    s.deliver(&init);
                }
            }
        }
        s.tick();
    }
    s.stats
}

fn pick(sealed: &[Vec<u8>], i: u8) -> Option<Vec<u8>> {
    (!sealed.is_empty()).then(|| sealed[usize::from(i) % sealed.len()].clone())
}

impl State {
    /// The two nodes after the handshake and the confirming keepalive: a
    /// copy of the state made once per process (the handshake costs about
    /// ten X25519 operations, most of the time of a short input).
    fn connected() -> State {
        static CONNECTED: OnceLock<State> = OnceLock::new();
        CONNECTED.get_or_init(State::handshake).snapshot()
    }

    /// An independent copy.
    fn snapshot(&self) -> State {
        State {
            now: self.now,
            sender: self.sender.snapshot(),
            receiver: self.receiver.snapshot(),
            sealed: self.sealed.clone(),
            initiations: self.initiations.clone(),
            forward: self.forward.clone(),
            backward: self.backward.clone(),
            first_session: self.first_session,
            rekeyed: self.rekeyed,
            highest: self.highest,
            stats: self.stats,
        }
    }

    /// Makes the two nodes and runs the handshake.
    fn handshake() -> State {
        let mut s = State {
            now: START,
            sender: Node::new(Role::Initiator, Setup::default()),
            receiver: Node::new(Role::Responder, Setup::default()),
            sealed: Vec::new(),
            initiations: VecDeque::new(),
            forward: Ledger::default(),
            backward: Ledger::default(),
            first_session: [0; 4],
            rekeyed: false,
            highest: None,
            stats: Stats::default(),
        };
        s.sender.tunnel.connect();
        let mut out = Vec::new();
        tick(&mut s.sender, s.now, &mut out, &mut s.stats);
        let [init] = &out[..] else {
            panic!("one initiation expected, got {out:02x?}")
        };
        s.forward.sent(init);
        let Outcome::Reply(response) = feed(&mut s.receiver, s.now, Role::Initiator.addr(), init, &mut s.stats) else {
            panic!("the receiver did not answer the initiation");
        };
        s.backward.sent(&response);
        let o = feed(&mut s.sender, s.now, Role::Responder.addr(), &response, &mut s.stats);
        assert_eq!(o, Outcome::Handshake);
        out.clear();
        tick(&mut s.sender, s.now, &mut out, &mut s.stats);
        let [keepalive] = &out[..] else {
            panic!("one keepalive expected, got {out:02x?}")
        };
        assert_eq!(MessageType::of(keepalive), Ok(MessageType::Transport));
        s.first_session.copy_from_slice(&keepalive[4..8]);
        s.forward.sent(keepalive);
        s.sealed.push(keepalive.clone());
        s.deliver(&keepalive.clone());
        assert!(s.sender.tunnel.is_established(s.now) && s.receiver.tunnel.is_established(s.now));
        s
    }

    /// Calls `encapsulate` with `buf` and `len` as a careless caller might.
    fn send_raw(&mut self, len: u64, buf: &[u8]) {
        let Ok(len) = usize::try_from(len) else { return };
        let mut buf = buf.to_vec();
        let payload = buf
            .get(TRANSPORT_HEADER_LEN..)
            .and_then(|b| b.get(..len))
            .map(<[u8]>::to_vec);
        let fits = len.checked_add(TRANSPORT_OVERHEAD).is_some_and(|n| n <= buf.len());
        match self.sender.tunnel.encapsulate(self.now, &mut buf, len) {
            Ok(m) => {
                assert!(fits, "sealed {len} bytes into a buffer of {}", buf.len());
                assert_eq!(m.len(), len + TRANSPORT_OVERHEAD);
                let m = m.to_vec();
                let payload = payload.expect("the payload fits");
                if self.sealed.len() < MAX_SEALED {
                    self.forward.sealed(&m, &payload);
                    self.sealed.push(m);
                }
            }
            Err(DropReason::BufferTooSmall) => assert!(!fits, "BufferTooSmall for {len} bytes in {}", buf.len()),
            Err(_) => {}
        }
    }

    /// Delivers `d` to the receiver and checks the outcome.
    fn deliver(&mut self, d: &[u8]) {
        let live = self.must_deliver(d);
        let outcome = feed(&mut self.receiver, self.now, Role::Initiator.addr(), d, &mut self.stats);
        self.forward.check(d, &outcome);
        match outcome {
            Outcome::Delivered(_) => {
                if d[4..8] == self.first_session {
                    let counter = TransportPacket::new_checked(d).expect("delivered").counter();
                    self.highest = Some(self.highest.map_or(counter, |h| h.max(counter)));
                }
            }
            Outcome::Reply(reply) => {
                // The receiver answered an initiation: its sessions change.
                self.rekeyed = true;
                self.backward.sent(&reply);
                let o = feed(
                    &mut self.sender,
                    self.now,
                    Role::Responder.addr(),
                    &reply,
                    &mut self.stats,
                );
                self.backward.check(&reply, &o);
            }
            Outcome::Handshake => {}
            Outcome::Dropped(e) => assert!(!live, "a sealed, undelivered message was dropped: {e:?}"),
        }
    }

    /// Whether `d` must be delivered: a sealed, undelivered message on the
    /// only session, before it expires, inside the replay window.
    fn must_deliver(&self, d: &[u8]) -> bool {
        if self.rekeyed || self.forward.is_foreign() || !self.forward.is_fresh(d) || d[4..8] != self.first_session {
            return false;
        }
        if self.now.saturating_since(START) >= REJECT_AFTER_TIME {
            return false;
        }
        let counter = TransportPacket::new_checked(d).expect("a sealed message").counter();
        self.highest.is_none_or(|h| counter > h || h - counter <= REPLAY_WINDOW)
    }

    /// Runs both nodes' timers: the sender's initiations wait for
    /// [`op::HANDSHAKE`], its keepalives join the sealed messages; the
    /// receiver's keepalives go to the sender.
    fn tick(&mut self) {
        let mut out = Vec::new();
        tick(&mut self.sender, self.now, &mut out, &mut self.stats);
        for m in out.drain(..) {
            self.forward.sent(&m);
            match MessageType::of(&m) {
                Ok(MessageType::Transport) if self.sealed.len() < MAX_SEALED => self.sealed.push(m),
                Ok(MessageType::Initiation) => self.initiations.push_back(m),
                _ => {}
            }
        }
        tick(&mut self.receiver, self.now, &mut out, &mut self.stats);
        for m in out {
            self.backward.sent(&m);
            let o = feed(&mut self.sender, self.now, Role::Responder.addr(), &m, &mut self.stats);
            self.backward.check(&m, &o);
            if let Outcome::Reply(reply) = o {
                // The sender answered the receiver's initiation: deliver it.
                self.forward.sent(&reply);
                self.rekeyed = true;
                let o = feed(
                    &mut self.receiver,
                    self.now,
                    Role::Initiator.addr(),
                    &reply,
                    &mut self.stats,
                );
                self.forward.check(&reply, &o);
            }
        }
    }
}
