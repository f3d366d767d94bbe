//! `handshake_responder`: a responder fed arbitrary datagrams.
//!
//! The node under test is the responder (identity `[2; 64]`) with its tunnel
//! to the initiator (`[1; 64]`) on the network of secret `[1; 32]`. The
//! first input byte is the mode:
//! - bit 0 clear, **raw**: the rest is a list of steps `time byte, chunk`:
//!   time advances by [`time_step`], the chunk is fed to the responder as a
//!   datagram from the initiator's address, then its timers run and what it
//!   transmits is checked. The corpus holds real handshakes in this form
//!   (initiation, then the initiator's confirming keepalive and data): with
//!   its fixed RNG seed the responder answers them exactly as when the corpus
//!   was made, so the fuzzer starts past MAC1 and every AEAD.
//! - bit 0 set, **scripted**: the target also runs the real initiator, and
//!   the rest is a list of operations on the two nodes and the datagrams
//!   between them: the initiator connects or sends data, a queued datagram
//!   is delivered (after input-chosen edits: XOR at positions, truncation,
//!   extension, header overwrite), dropped, duplicated or reordered, time
//!   advances, or an arbitrary datagram is injected.
//! - bits 1-2 pick the responder's (and initiator's) cookie load threshold
//!   (default, always under load, 1, 4 per second); bit 3 a persistent
//!   keepalive. See [`Setup::from_mode`].
//!
//! Beyond never panicking, every step checks the invariants of
//! [`crate::check`]; in scripted mode also authenticity both ways (every
//! transport message a node accepts was sealed by its peer, once).

use std::collections::VecDeque;
use std::net::SocketAddr;

use kairos_core::time::Instant;

use crate::check::{feed, seal, tick, Ledger, Outcome};
use crate::fixture::{Node, Role, Setup, START};
use crate::input::{mutate, time_step, Input};
use crate::Stats;

/// Scripted-mode operations (the op byte modulo 8).
pub mod op {
    /// `chunk`: inject a datagram into the responder (from the initiator's address).
    pub const INJECT: u8 = 0;
    /// The initiator asks for a handshake.
    pub const CONNECT: u8 = 1;
    /// `mutation` (see [`crate::input::mutate`]): deliver the next datagram queued for the responder.
    pub const TO_RESPONDER: u8 = 2;
    /// `mutation` (see [`crate::input::mutate`]): deliver the next datagram queued for the initiator.
    pub const TO_INITIATOR: u8 = 3;
    /// `chunk`: the initiator seals the chunk as a payload.
    pub const INITIATOR_SENDS: u8 = 4;
    /// `chunk`: the responder seals the chunk as a payload.
    pub const RESPONDER_SENDS: u8 = 5;
    /// `time byte`: time advances.
    pub const ADVANCE: u8 = 6;
    /// `byte`: queue surgery (see [`super::QUEUE_OPS`]).
    pub const QUEUE: u8 = 7;
}

/// What [`op::QUEUE`]'s byte (modulo 8) does: drop, duplicate or rotate the
/// queue to the responder (0-2) or to the initiator (3-5), inject a chunk
/// into the initiator (6), or deliver the responder's next datagram from
/// another address (7, then a `mutation`; an IPv6 address: cookies are bound
/// to the sender's address). After every operation both nodes' timers run
/// and what they transmit is queued.
pub const QUEUE_OPS: u8 = 8;

/// Datagrams kept in flight each way; older ones fall off the wire.
const QUEUE_CAP: usize = 32;

/// Runs one input. See the module docs.
pub fn run(data: &[u8]) -> Stats {
    let mut input = Input::new(data);
    let Some(mode) = input.u8() else {
        return Stats::default();
    };
    let setup = Setup::from_mode(mode);
    if mode & 1 == 0 {
        raw(input, setup)
    } else {
        scripted(input, setup)
    }
}

fn raw(mut input: Input<'_>, setup: Setup) -> Stats {
    let mut r = Raw::new(setup);
    while let Some(step) = input.u8() {
        let Some(datagram) = input.chunk() else { break };
        r.step(step, datagram);
    }
    r.stats
}

/// Raw mode's responder, step by step (the corpus generator drives it too,
/// to learn the responses its RNG makes).
pub struct Raw {
    /// The node under test.
    pub r: Node,
    /// Its clock.
    pub now: Instant,
    /// What it did so far.
    pub stats: Stats,
}

impl Raw {
    /// The responder at [`START`].
    pub fn new(setup: Setup) -> Raw {
        Raw {
            r: Node::new(Role::Responder, setup),
            now: START,
            stats: Stats::default(),
        }
    }

    /// Advances time by [`time_step`]`(step)`, feeds `datagram` from the
    /// initiator's address, runs the timers; returns what the datagram did
    /// and what the responder transmitted.
    pub fn step(&mut self, step: u8, datagram: &[u8]) -> (Outcome, Vec<Vec<u8>>) {
        self.now += time_step(step);
        let outcome = feed(&mut self.r, self.now, Role::Initiator.addr(), datagram, &mut self.stats);
        let mut out = Vec::new();
        tick(&mut self.r, self.now, &mut out, &mut self.stats);
        (outcome, out)
    }
}

/// The two nodes, the datagrams in flight between them, and the ledgers of
/// the transport messages each sealed for the other.
struct Pair {
    now: Instant,
    r: Node,
    i: Node,
    to_r: VecDeque<Vec<u8>>,
    to_i: VecDeque<Vec<u8>>,
    i_to_r: Ledger,
    r_to_i: Ledger,
    stats: Stats,
}

fn push(q: &mut VecDeque<Vec<u8>>, msg: Vec<u8>) {
    if q.len() == QUEUE_CAP {
        q.pop_front();
    }
    q.push_back(msg);
}

impl Pair {
    fn new(setup: Setup) -> Pair {
        Pair {
            now: START,
            r: Node::new(Role::Responder, setup),
            i: Node::new(Role::Initiator, setup),
            to_r: VecDeque::new(),
            to_i: VecDeque::new(),
            i_to_r: Ledger::default(),
            r_to_i: Ledger::default(),
            stats: Stats::default(),
        }
    }

    /// The node playing `role`, its queue of datagrams to its peer, and the
    /// ledger of what it sealed for its peer.
    fn parts(&mut self, role: Role) -> (&mut Node, &mut VecDeque<Vec<u8>>, &mut Ledger, &mut Stats) {
        match role {
            Role::Responder => (&mut self.r, &mut self.to_i, &mut self.r_to_i, &mut self.stats),
            Role::Initiator => (&mut self.i, &mut self.to_r, &mut self.i_to_r, &mut self.stats),
        }
    }

    /// Runs `role`'s timers and queues what it transmits.
    fn tick(&mut self, role: Role) {
        let now = self.now;
        let (node, q, ledger, stats) = self.parts(role);
        let mut out = Vec::new();
        tick(node, now, &mut out, stats);
        for m in out {
            ledger.sent(&m);
            push(q, m);
        }
    }

    /// `role` seals `payload` for its peer.
    fn send(&mut self, role: Role, payload: &[u8]) {
        let now = self.now;
        let (node, q, ledger, _) = self.parts(role);
        if let Ok(m) = seal(node, now, payload) {
            ledger.sealed(&m, payload);
            push(q, m);
        }
    }

    /// Delivers `d` to `to` as if from `from`; a reply goes back on the wire.
    fn deliver(&mut self, to: Role, d: &[u8], from: SocketAddr) {
        let now = self.now;
        let Pair {
            r,
            i,
            to_r,
            to_i,
            i_to_r,
            r_to_i,
            stats,
            ..
        } = self;
        // The receiving node, the ledgers of what its peer sent it and of
        // what it sends back, and the queue back to its peer.
        let (node, inbound, outbound, back) = match to {
            Role::Responder => (r, i_to_r, r_to_i, to_i),
            Role::Initiator => (i, r_to_i, i_to_r, to_r),
        };
        let outcome = feed(node, now, from, d, stats);
        inbound.check(d, &outcome);
        if let Outcome::Reply(reply) = outcome {
            outbound.sent(&reply);
            push(back, reply);
        }
    }

    /// Delivers the next datagram queued for `to`, after `input`'s edits.
    fn deliver_next(&mut self, to: Role, input: &mut Input<'_>, from: SocketAddr) {
        let q = match to {
            Role::Responder => &mut self.to_r,
            Role::Initiator => &mut self.to_i,
        };
        // The mutation is read even with nothing to deliver, so an op always
        // consumes the same bytes.
        let mut d = q.pop_front().unwrap_or_default();
        let queued = !d.is_empty();
        mutate(input, &mut d);
        if queued {
            self.deliver(to, &d, from);
        }
    }

    fn queue(&mut self, to: Role) -> &mut VecDeque<Vec<u8>> {
        match to {
            Role::Responder => &mut self.to_r,
            Role::Initiator => &mut self.to_i,
        }
    }
}

fn scripted(mut input: Input<'_>, setup: Setup) -> Stats {
    let mut p = Pair::new(setup);
    let from_i = Role::Initiator.addr();
    let from_r = Role::Responder.addr();
    while let Some(code) = input.u8() {
        match code % 8 {
            op::INJECT => {
                let Some(d) = input.chunk() else { break };
                p.deliver(Role::Responder, d, from_i);
            }
            op::CONNECT => p.i.tunnel.connect(),
            op::TO_RESPONDER => p.deliver_next(Role::Responder, &mut input, from_i),
            op::TO_INITIATOR => p.deliver_next(Role::Initiator, &mut input, from_r),
            op::INITIATOR_SENDS => {
                let Some(payload) = input.chunk() else { break };
                p.send(Role::Initiator, payload);
            }
            op::RESPONDER_SENDS => {
                let Some(payload) = input.chunk() else { break };
                p.send(Role::Responder, payload);
            }
            op::ADVANCE => {
                let Some(b) = input.u8() else { break };
                p.now += time_step(b);
            }
            _ => {
                let Some(b) = input.u8() else { break };
                let to = if b % QUEUE_OPS < 3 {
                    Role::Responder
                } else {
                    Role::Initiator
                };
                match b % QUEUE_OPS {
                    0 | 3 => drop(p.queue(to).pop_front()),
                    1 | 4 => {
                        let q = p.queue(to);
                        if let Some(d) = q.front().cloned() {
                            push(q, d);
                        }
                    }
                    2 | 5 => {
                        let q = p.queue(to);
                        if !q.is_empty() {
                            q.rotate_left(1);
                        }
                    }
                    6 => {
                        let Some(d) = input.chunk() else { break };
                        p.deliver(Role::Initiator, d, from_r);
                    }
                    _ => {
                        let elsewhere = "[2001:db8::1]:1001".parse().expect("an address");
                        p.deliver_next(Role::Responder, &mut input, elsewhere);
                    }
                }
            }
        }
        // Both nodes' timers run after every operation, as a host's loop does.
        p.tick(Role::Initiator);
        p.tick(Role::Responder);
    }
    p.stats
}
