//! Invariants shared by the network targets, and the calls that check them.
//!
//! Each helper drives a [`Node`] through one public call of the tunnel and
//! asserts what must hold of its result whatever the input:
//! - a datagram is refused as `Malformed(e)` exactly when its framing is
//!   bad, with the error the wire parser of its type gives;
//! - whatever a datagram returns matches its message type (only transport
//!   messages deliver, only handshake messages answer, replies are
//!   well-formed messages of the right type);
//! - delivered IP packets start with version nibble 4 or 6, control kinds are
//!   in range, lengths add up;
//! - authenticity: every transport message a node accepts is byte-identical
//!   to one its peer sealed and that was not accepted before ([`Ledger`]);
//! - everything a node transmits is a well-formed initiation or keepalive;
//! - timers settle: after `handle_timeout(now)` and draining
//!   `poll_transmit`, `poll_timeout()` is later than `now` (a host waiting
//!   on it never spins).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use kairos_core::session::{DropReason, Received};
use kairos_core::time::Instant;
use kairos_core::wire::{
    self, ControlKind, CookieReplyPacket, InitiationPacket, MessageType, ResponsePacket, TransportPacket,
    COOKIE_REPLY_LEN, INITIATION_LEN, RESPONSE_LEN, TRANSPORT_HEADER_LEN, TRANSPORT_OVERHEAD,
};

use crate::fixture::Node;
use crate::Stats;

/// The framing error a tunnel reports for `d`, if any: what
/// `MessageType::of` and then the `new_checked` of its type say; a type that
/// is not a tunnel message (a discovery announcement) is `UnknownType`.
pub fn framing_error(d: &[u8]) -> Option<wire::Error> {
    let r = match MessageType::of(d) {
        Err(e) => return Some(e),
        Ok(MessageType::Initiation) => InitiationPacket::new_checked(d).map(drop),
        Ok(MessageType::Response) => ResponsePacket::new_checked(d).map(drop),
        Ok(MessageType::CookieReply) => CookieReplyPacket::new_checked(d).map(drop),
        Ok(MessageType::Transport) => TransportPacket::new_checked(d).map(drop),
        Ok(_) => Err(wire::Error::UnknownType(d[0])),
    };
    r.err()
}

/// What a datagram did, once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An authenticated transport message: its plaintext, as classified.
    Delivered(Plain),
    /// A reply to send back to the peer.
    Reply(Vec<u8>),
    /// A handshake message or cookie was consumed.
    Handshake,
    /// Refused (and not after authentication).
    Dropped(DropReason),
}

/// The plaintext of an authenticated transport message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plain {
    /// `Received::Ip`.
    Ip(Vec<u8>),
    /// `Received::Control`: the kind and its payload.
    Control(u8, Vec<u8>),
    /// `Received::Keepalive`.
    Keepalive,
    /// Authenticated, but `DropReason::UnknownPayload` (the replay window
    /// has taken the counter).
    Unknown(u8),
}

impl Plain {
    /// Whether this is what sealing `payload` delivers.
    pub fn matches(&self, payload: &[u8]) -> bool {
        match self {
            Plain::Ip(p) => p == payload,
            Plain::Control(k, p) => payload.first() == Some(k) && &payload[1..] == p,
            Plain::Keepalive => payload.is_empty(),
            Plain::Unknown(b) => payload.first() == Some(b),
        }
    }
}

/// Whether `KAIROS_FUZZ_TRACE` is set: then every datagram and transmission
/// is printed to stderr (for reading what a crash input or a seed does).
pub fn tracing() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("KAIROS_FUZZ_TRACE").is_some())
}

/// Feeds `datagram` from `from` to `node` at `now`, checks the result
/// against the datagram, and returns what it did.
pub fn feed(node: &mut Node, now: Instant, from: SocketAddr, datagram: &[u8], stats: &mut Stats) -> Outcome {
    stats.fed += 1;
    let mut buf = datagram.to_vec();
    let result = node
        .tunnel
        .handle_datagram(now, &mut node.local, &mut node.rng, from, &mut buf);
    let framing = framing_error(datagram);
    let ty = MessageType::of(datagram).ok();
    let transport = ty == Some(MessageType::Transport);
    if let Some(e) = framing {
        assert_eq!(
            result,
            Err(DropReason::Malformed(e)),
            "bad framing must be refused as such"
        );
    }
    if let Err(DropReason::Malformed(e)) = result {
        assert_eq!(framing, Some(e), "Malformed({e:?}) for a well-framed datagram");
    }
    let outcome = match result {
        Ok(Received::Ip(p)) => {
            assert!(transport, "IP from a non-transport message");
            assert!(
                matches!(p.first(), Some(b) if b >> 4 == 4 || b >> 4 == 6),
                "IP payload {p:02x?}"
            );
            assert_eq!(p.len() + TRANSPORT_OVERHEAD, datagram.len());
            Outcome::Delivered(Plain::Ip(p.to_vec()))
        }
        Ok(Received::Control(kind, p)) => {
            assert!(transport, "control from a non-transport message");
            assert!(ControlKind::is_valid(kind.0), "control kind {:#04x}", kind.0);
            assert_eq!(p.len() + 1 + TRANSPORT_OVERHEAD, datagram.len());
            Outcome::Delivered(Plain::Control(kind.0, p.to_vec()))
        }
        Ok(Received::Keepalive) => {
            assert!(transport, "keepalive from a non-transport message");
            assert_eq!(datagram.len(), TRANSPORT_OVERHEAD);
            Outcome::Delivered(Plain::Keepalive)
        }
        Err(DropReason::UnknownPayload(b)) => {
            assert!(transport, "payload kind from a non-transport message");
            assert!(
                b >> 4 != 4 && b >> 4 != 6 && !ControlKind::is_valid(b),
                "{b:#04x} is a known kind"
            );
            Outcome::Delivered(Plain::Unknown(b))
        }
        Ok(Received::Reply(r)) => {
            check_reply(datagram, r);
            stats.replies += 1;
            Outcome::Reply(r.to_vec())
        }
        Ok(Received::Handshake) => {
            assert!(
                matches!(ty, Some(MessageType::Response | MessageType::CookieReply)),
                "Handshake from {ty:?}"
            );
            Outcome::Handshake
        }
        Err(e) => Outcome::Dropped(e),
    };
    if tracing() {
        eprintln!(
            "[{:>10} us] {:?} <- {} bytes {:02x?}: {outcome:?}",
            now.as_micros(),
            node.role,
            datagram.len(),
            &datagram[..datagram.len().min(16)]
        );
    }
    if !matches!(outcome, Outcome::Dropped(_)) {
        stats.accepted += 1;
    }
    if matches!(outcome, Outcome::Delivered(_)) {
        stats.delivered += 1;
    }
    outcome
}

/// A reply must be a well-formed response (to an initiation) or cookie reply
/// (to an initiation or response) naming the sender's index.
fn check_reply(datagram: &[u8], reply: &[u8]) {
    let ty = MessageType::of(datagram).ok();
    let sender_index = &datagram[4..8];
    match reply.len() {
        RESPONSE_LEN => {
            assert_eq!(
                ty,
                Some(MessageType::Initiation),
                "a response answers only an initiation"
            );
            let p = ResponsePacket::new_checked(reply).expect("a well-formed response");
            assert_eq!(&p.receiver_index().to_le_bytes()[..], sender_index);
        }
        COOKIE_REPLY_LEN => {
            assert!(
                matches!(ty, Some(MessageType::Initiation | MessageType::Response)),
                "cookie reply to {ty:?}"
            );
            let p = CookieReplyPacket::new_checked(reply).expect("a well-formed cookie reply");
            assert_eq!(&p.receiver_index().to_le_bytes()[..], sender_index);
        }
        n => panic!("reply of {n} bytes to a {ty:?}"),
    }
}

/// Checks a transmitted datagram: an initiation, or a keepalive.
pub fn check_transmit(msg: &[u8]) {
    match MessageType::of(msg) {
        Ok(MessageType::Initiation) => {
            assert_eq!(msg.len(), INITIATION_LEN);
            InitiationPacket::new_checked(msg).expect("a well-formed initiation");
        }
        Ok(MessageType::Transport) => {
            assert_eq!(msg.len(), TRANSPORT_OVERHEAD, "poll_transmit sends keepalives only");
            TransportPacket::new_checked(msg).expect("a well-formed keepalive");
        }
        other => panic!("poll_transmit wrote {other:?}: {msg:02x?}"),
    }
}

/// Runs the timers due at `now` and collects what the node transmits, until
/// they settle; counts the handshakes it completed.
pub fn tick(node: &mut Node, now: Instant, out: &mut Vec<Vec<u8>>, stats: &mut Stats) {
    let mut buf = [0u8; 1024];
    for _ in 0..4 {
        node.tunnel.handle_timeout(now);
        let mut sent = 0;
        while let Some(n) = node.tunnel.poll_transmit(now, &mut node.local, &mut node.rng, &mut buf) {
            assert!(n <= buf.len());
            check_transmit(&buf[..n]);
            if tracing() {
                eprintln!(
                    "[{:>10} us] {:?} -> {} bytes {:02x?}",
                    now.as_micros(),
                    node.role,
                    n,
                    &buf[..16]
                );
            }
            out.push(buf[..n].to_vec());
            sent += 1;
            assert!(sent <= 4, "poll_transmit keeps transmitting at {now:?}");
        }
        events(node, stats);
        if node.tunnel.poll_timeout().is_none_or(|t| t > now) {
            return;
        }
    }
    panic!(
        "timers do not settle: poll_timeout() = {:?} at {now:?}",
        node.tunnel.poll_timeout()
    );
}

/// Drains the node's events, counting handshakes.
pub fn events(node: &mut Node, stats: &mut Stats) {
    while let Some(e) = node.tunnel.poll_event() {
        if matches!(e, kairos_core::session::TunnelEvent::Established { .. }) {
            stats.established += 1;
        }
    }
}

/// Seals `payload` on `node` at `now`; checks and returns the message.
pub fn seal(node: &mut Node, now: Instant, payload: &[u8]) -> Result<Vec<u8>, DropReason> {
    let mut buf = vec![0u8; payload.len() + TRANSPORT_OVERHEAD];
    buf[TRANSPORT_HEADER_LEN..][..payload.len()].copy_from_slice(payload);
    let msg = node.tunnel.encapsulate(now, &mut buf, payload.len())?;
    assert_eq!(msg.len(), payload.len() + TRANSPORT_OVERHEAD);
    TransportPacket::new_checked(&*msg).expect("a well-formed transport message");
    Ok(msg.to_vec())
}

/// What one node sent the other, for the authenticity invariant: the
/// transport messages it sealed (with their payloads), which of them the
/// receiver accepted, and the handshake messages it sent.
///
/// The fixed identities are no secret to the fuzzer: the corpus holds real
/// handshakes made offline with them, which it can replay or splice. A
/// session that the receiver built from a handshake message its real peer
/// never sent is "foreign": messages sealed on it are not in the ledger, so
/// from then on the ledger stops checking (and says so in
/// [`is_foreign`](Self::is_foreign)).
#[derive(Default, Clone)]
pub struct Ledger {
    sealed: HashMap<Vec<u8>, Vec<u8>>,
    accepted: HashSet<Vec<u8>>,
    handshakes: HashSet<Vec<u8>>,
    foreign: bool,
}

/// The part of a handshake message its keys depend on: all but MAC1 and MAC2.
fn transcript(msg: &[u8]) -> &[u8] {
    &msg[..msg.len().saturating_sub(2 * wire::MAC_LEN)]
}

impl Ledger {
    /// Records a message the sender sealed, with its payload.
    pub fn sealed(&mut self, msg: &[u8], payload: &[u8]) {
        self.sealed.insert(msg.to_vec(), payload.to_vec());
    }

    /// Records any datagram the sender put on the wire: transport messages
    /// must be keepalives (payload empty), handshake messages are
    /// remembered.
    pub fn sent(&mut self, msg: &[u8]) {
        match MessageType::of(msg) {
            Ok(MessageType::Transport) => {
                assert_eq!(msg.len(), TRANSPORT_OVERHEAD);
                self.sealed(msg, &[]);
            }
            Ok(MessageType::Initiation | MessageType::Response) => {
                self.handshakes.insert(transcript(msg).to_vec());
            }
            _ => {}
        }
    }

    /// Whether `msg` was sealed and not yet accepted.
    pub fn is_fresh(&self, msg: &[u8]) -> bool {
        self.sealed.contains_key(msg) && !self.accepted.contains(msg)
    }

    /// Whether the receiver completed a handshake its peer did not make.
    pub fn is_foreign(&self) -> bool {
        self.foreign
    }

    /// Checks what the receiver made of datagram `d` (claimed to come from
    /// the sender): an authenticated transport message must be one the
    /// sender sealed, accepted for the first time, and decrypt to its
    /// payload; an accepted handshake message the sender never sent makes the
    /// ledger foreign.
    pub fn check(&mut self, d: &[u8], outcome: &Outcome) {
        let ty = MessageType::of(d).ok();
        let completed = match outcome {
            Outcome::Reply(r) => ty == Some(MessageType::Initiation) && r.len() == RESPONSE_LEN,
            Outcome::Handshake => ty == Some(MessageType::Response),
            _ => false,
        };
        if completed && !self.handshakes.contains(transcript(d)) {
            self.foreign = true;
        }
        let Outcome::Delivered(plain) = outcome else { return };
        if self.foreign {
            return;
        }
        let Some(payload) = self.sealed.get(d) else {
            panic!("accepted a transport message the peer never sealed: {d:02x?} -> {plain:?}");
        };
        assert!(plain.matches(payload), "decrypted {plain:?}, sealed {payload:02x?}");
        assert!(
            self.accepted.insert(d.to_vec()),
            "accepted the same transport message twice: {d:02x?}"
        );
    }
}
