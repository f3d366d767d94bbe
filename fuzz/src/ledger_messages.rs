//! `ledger_messages`: ledger control payloads (`LEDGER_DELTA`,
//! `LEDGER_DIGEST`) decoded with `ledger::Message::decode` and fed to two
//! replicas, `A` and `B` (`Ledger<64, 16384>`, small so the table fills, the
//! arena compacts and expired records are evicted), with a verifier that
//! accepts every signature: a member can sign anything, so past the
//! signature the store must hold up on its own, and the fuzzer reaches it.
//!
//! The input is a list of operations (the op byte modulo 8, see [`op`]);
//! bit 3 of the op byte picks the replica (`A` or `B`), bits 4-5 the
//! sender of fragments, and bit 6 makes a `DELTA` chunk a `LEDGER_BATCH`
//! payload (`ledger::batch`) (a [`Reassembly`] with two slots for four senders).
//! Entries are decoded and applied, fragments reassembled and applied,
//! digests compared, summaries reconciled and requests answered; local
//! writes, time (ttl expiry, tombstone purge), re-sending held entries and
//! whole anti-entropy exchanges between the replicas are operations too.
//!
//! Checks after every operation, on both replicas:
//! - `len()` (live entries) <= 64 and equals the live records `iter()`
//!   yields; `records()` <= 64; live and garbage arena bytes within the
//!   arena;
//! - every record `iter_all()` yields is re-encoded by `encoder()` when live
//!   or a tombstone (refused as `NotSendable` when expired), into one entry
//!   or into fragments that decode, reassemble in any order and decode as
//!   the entry with the record's fields;
//! - re-applying a held version answers `Equal`;
//! - a digest round-trips through its message; summary pages decode, move
//!   forward and reconcile with their own replica to nothing; reconciling
//!   a page wants at most what one request holds; every `Send` and every
//!   requested entry can be encoded;
//! - at the end and after every exchange: the digest equals that of a fresh
//!   replica built by applying the same live entries and tombstones (in
//!   clock order; skipped when the clock-jump bound refuses that order).

use std::sync::OnceLock;

use kairos_core::identity::Identity;
use kairos_core::ledger::batch::{Batch, BatchWriter};
use kairos_core::ledger::buckets::owner_key;
use kairos_core::ledger::wire::{EntryPacket, EntryRepr};
use kairos_core::ledger::{
    Action, Applied, Digest, EntryEncoder, EntryState, Ledger, LedgerError, Message, RangeMask, Reassembly,
    RequestRepr, Scope, SignatureVerifier, FRAGMENT_CHUNK, FRAGMENT_HEADER_LEN, MAX_MESSAGE_LEN, MAX_VALUE_LEN,
};
use kairos_core::time::Instant;
use kairos_core::wire::ControlKind;

use crate::fixture::START;
use crate::input::{time_step, Input};
use crate::Stats;

/// Entry slots of each replica.
pub const ENTRIES: usize = 64;
/// Arena bytes of each replica.
pub const ARENA: usize = 16384;
/// The replica type.
pub type FuzzLedger = Ledger<ENTRIES, ARENA>;

/// The operations (the op byte modulo 8).
pub mod op {
    /// `chunk`: a `LEDGER_DELTA` payload (entry or fragment), or with bit
    /// 6 of the op byte a `LEDGER_BATCH` payload.
    pub const DELTA: u8 = 0;
    /// `chunk`: a `LEDGER_DIGEST` payload (digest, summary or request).
    pub const DIGEST: u8 = 1;
    /// An entry built from fields (see [`super::shaped_entry`]), delivered
    /// whole or in fragments.
    pub const ENTRY: u8 = 2;
    /// `time byte`: time advances ([`crate::input::time_step`]); both
    /// replicas expire what is due.
    pub const ADVANCE: u8 = 3;
    /// `index byte`: the replica's record at that index (modulo the number
    /// held) is encoded and applied again to it (`Equal`) and to the other.
    pub const RESEND: u8 = 4;
    /// `flags byte, key chunk, value length u16, fill byte`: a local
    /// write (put, or delete when bit 0 is set) by one of four identities.
    pub const LOCAL: u8 = 5;
    /// One anti-entropy exchange: the replica sends its digest to the
    /// other, which answers with summaries; entries and requests flow back.
    pub const EXCHANGE: u8 = 6;
    /// `u64 mask, u64 from`: the replica's summary pages for that mask,
    /// decoded and reconciled with the replica itself.
    pub const SUMMARY: u8 = 7;
}

/// Accepts every signature.
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl SignatureVerifier for AcceptAll {
    fn verify(&mut self, _public: &[u8; 32], message: &[u8], _signature: &[u8; 64]) -> bool {
        assert_eq!(message.len(), 32, "the ledger verifies 32-byte signed hashes");
        true
    }
}

/// The four writers of shaped entries and local writes (identities
/// `[10; 64]` to `[13; 64]`, made once per process).
pub fn writers() -> &'static [Identity; 4] {
    static IDS: OnceLock<[Identity; 4]> = OnceLock::new();
    IDS.get_or_init(|| core::array::from_fn(|i| Identity::from_bytes(&[10 + i as u8; 64])))
}

/// Buckets a shaped entry or local write picks from (index 5: from input).
pub const BUCKETS: [&[u8]; 8] = [
    b"kairos",
    b"machines",
    b"addresses",
    b"owner/roles",
    b"owner/alive",
    b"",
    b"services",
    b"files",
];

struct State {
    now: Instant,
    ledgers: [Box<FuzzLedger>; 2],
    reassembly: Box<Reassembly<u8, 2>>,
    stats: Stats,
}

/// Runs the target on one input.
pub fn run(data: &[u8]) -> Stats {
    let mut s = State {
        now: START,
        ledgers: [Box::default(), Box::default()],
        reassembly: Box::default(),
        stats: Stats::default(),
    };
    let mut input = Input::new(data);
    let mut steps = 0;
    while let Some(opb) = input.u8() {
        steps += 1;
        if steps > 256 {
            break;
        }
        let x = usize::from(opb >> 3 & 1);
        let sender = opb >> 4 & 3;
        match opb % 8 {
            op::DELTA if opb & 0x40 != 0 => {
                let chunk = input.chunk().unwrap_or_default();
                s.batch(x, chunk);
            }
            op::DELTA => {
                let chunk = input.chunk().unwrap_or_default();
                s.delta(x, sender, chunk);
            }
            op::DIGEST => {
                let chunk = input.chunk().unwrap_or_default();
                s.digest_payload(x, chunk);
            }
            op::ENTRY => {
                let (encoded, reverse) = shaped_entry(&mut input, &s.ledgers[x]);
                s.send_entry(x, sender, &encoded, reverse);
            }
            op::ADVANCE => {
                s.now += time_step(input.u8().unwrap_or(0));
                for l in &mut s.ledgers {
                    l.expire(s.now);
                }
            }
            op::RESEND => {
                let i = usize::from(input.u8().unwrap_or(0));
                s.resend(x, i);
            }
            op::LOCAL => s.local(x, &mut input),
            op::EXCHANGE => {
                s.exchange(x);
                for l in &s.ledgers {
                    check_digest(l, s.now);
                }
            }
            _ => {
                let mask = RangeMask(input.u64().unwrap_or(u64::MAX));
                let from = input.u64().unwrap_or(0);
                self_summary(&s.ledgers[x], mask, from, &mut s.stats);
            }
        }
        for l in &mut s.ledgers {
            while l.poll_change().is_some() {}
            check_ledger(l);
        }
    }
    for l in &s.ledgers {
        check_digest(l, s.now);
    }
    s.stats
}

impl State {
    /// A `LEDGER_DELTA` payload from `sender` to replica `x`.
    fn delta(&mut self, x: usize, sender: u8, payload: &[u8]) {
        self.stats.fed += 1;
        match Message::decode(ControlKind::LEDGER_DELTA, payload) {
            Ok(Message::Entry(p)) => {
                self.stats.accepted += 1;
                let bytes = p.into_inner();
                self.apply(x, bytes).ok();
            }
            Ok(Message::Fragment(f)) => {
                self.stats.accepted += 1;
                let done = self.reassembly.push(self.now, sender, &f).map(<[u8]>::to_vec);
                if let Some(entry) = done {
                    self.apply(x, &entry).ok();
                }
            }
            Ok(other) => panic!("a LEDGER_DIGEST message decoded under LEDGER_DELTA: {other:?}"),
            Err(_) => {}
        }
    }

    /// A `LEDGER_BATCH` payload: its entries are applied in order until an
    /// item does not decode.
    fn batch(&mut self, x: usize, payload: &[u8]) {
        self.stats.fed += 1;
        let Ok(batch) = Batch::parse(payload) else { return };
        self.stats.accepted += 1;
        for item in batch.entries() {
            let Ok(bytes) = item else { break };
            let Ok(Message::Entry(_)) = Message::decode(ControlKind::LEDGER_DELTA, bytes) else {
                break;
            };
            self.apply(x, bytes).ok();
        }
    }

    /// Applies a whole entry encoding to replica `x` and checks the result.
    fn apply(&mut self, x: usize, encoded: &[u8]) -> Result<Applied, LedgerError> {
        let l = &mut self.ledgers[x];
        let result = l.apply(self.now, &mut AcceptAll, encoded);
        match result {
            Ok(Applied::New(r) | Applied::Newer(r)) => {
                self.stats.delivered += 1;
                let p = EntryPacket::new_checked(encoded).expect("an applied entry is well-formed");
                let repr = EntryRepr::parse(&p);
                let e = l.entry(r).expect("a stored version is held");
                assert_eq!((e.bucket(), e.key(), e.clock()), (repr.bucket, repr.key, repr.clock));
                let state = if repr.tombstone {
                    EntryState::Tombstone
                } else {
                    EntryState::Live
                };
                assert_eq!(e.state(), state, "stored as sent");
                assert_eq!(e.value(), repr.value);
            }
            Ok(_) => {}
            Err(LedgerError::Malformed(_)) => {
                assert!(
                    EntryPacket::new_checked(encoded).is_err(),
                    "Malformed for a well-formed entry"
                );
            }
            Err(LedgerError::BadSignature) => panic!("BadSignature with a verifier that accepts all"),
            Err(_) => {}
        }
        result
    }

    /// Sends one entry encoding to replica `x`: whole when it fits a
    /// message, else in fragments (in reverse order if asked).
    fn send_entry(&mut self, x: usize, sender: u8, encoded: &[u8], reverse: bool) {
        if encoded.len() <= MAX_MESSAGE_LEN {
            self.delta(x, sender, encoded);
            return;
        }
        let mut frags = fragments(encoded, [0x5a; 8]);
        if reverse {
            frags.reverse();
        }
        for f in frags {
            self.delta(x, sender, &f);
        }
    }

    /// Replica `x`'s record `i` (modulo the number held), sent again to
    /// itself (must be `Equal`) and to the other replica.
    fn resend(&mut self, x: usize, i: usize) {
        let l = &self.ledgers[x];
        let n = l.records();
        if n == 0 {
            return;
        }
        let e = l.iter_all().nth(i % n).expect("records() of them");
        let Ok(enc) = l.encoder(e.entry_ref()) else {
            assert_eq!(e.state(), EntryState::Expired, "only expired entries are not sendable");
            return;
        };
        let encoded = encoding(&enc);
        if enc.messages() == 1 {
            // In a batch it travels byte for byte.
            let mut buf = [0u8; MAX_MESSAGE_LEN];
            let mut w = BatchWriter::new(&mut buf, i % 2 == 1).expect("room for a header");
            assert!(w.push(&enc), "a whole entry fits in an empty batch");
            let n = w.len();
            let batch = Batch::parse(&buf[..n]).expect("a written batch parses");
            let items: Vec<_> = batch.entries().collect();
            assert_eq!(items, [Ok(&encoded[..])]);
        }
        assert_eq!(
            self.apply(x, &encoded),
            Ok(Applied::Equal),
            "a held version applied again changes nothing"
        );
        self.apply(1 - x, &encoded).ok();
    }

    /// A local write on replica `x`.
    fn local(&mut self, x: usize, input: &mut Input<'_>) {
        let flags = input.u8().unwrap_or(0);
        let key = input.chunk().unwrap_or_default();
        let len = usize::from(input.u16().unwrap_or(0)) % (MAX_VALUE_LEN + 2);
        let fill = input.u8().unwrap_or(0);
        let who = &writers()[usize::from(flags >> 1 & 3)];
        let bucket = BUCKETS[usize::from(flags >> 3 & 7)];
        let own = owner_key(&who.node_id());
        let key = if flags & 0x40 != 0 { &own[..] } else { key };
        let value = vec![fill; len];
        let ttl = u32::from(flags >> 7) * 30;
        let l = &mut self.ledgers[x];
        let r = if flags & 1 != 0 {
            l.delete(self.now, who, bucket, key)
        } else {
            l.put(self.now, who, bucket, key, &value, ttl)
        };
        if let Ok(r) = r {
            self.stats.delivered += 1;
            let e = l.entry(r).expect("a local write is held");
            assert_eq!((e.bucket(), e.key()), (bucket, key));
        }
    }

    /// A `LEDGER_DIGEST` payload to replica `x`: a digest is compared, a
    /// summary reconciled, a request answered.
    fn digest_payload(&mut self, x: usize, payload: &[u8]) {
        self.stats.fed += 1;
        let l = &self.ledgers[x];
        match Message::decode(ControlKind::LEDGER_DIGEST, payload) {
            Ok(Message::Digest(p)) => {
                self.stats.accepted += 1;
                let d = Digest::parse(&p);
                let mut out = [0u8; MAX_MESSAGE_LEN];
                let n = d.emit(&mut out).expect("room for a digest");
                assert_eq!(&out[..n], payload, "a digest round-trips");
                let mask = l.digest().mismatch(&d);
                assert_eq!(mask.is_empty(), *l.digest() == d, "no mismatch exactly when equal");
                assert_eq!(d.mismatch(l.digest()), mask, "mismatch is symmetric");
            }
            Ok(Message::Summary(p)) => {
                self.stats.accepted += 1;
                reconcile(l, &p, &mut self.stats);
            }
            Ok(Message::Request(p)) => {
                self.stats.accepted += 1;
                let ids = RequestRepr::parse(&p);
                let mut out = [0u8; MAX_MESSAGE_LEN];
                let n = ids.emit(&mut out).expect("a checked request names an id");
                assert_eq!(&out[..n], payload, "a request round-trips");
                for r in bounded(l.requested(&p), l.records() + p.len()) {
                    let e = l.entry(r).expect("a requested version is held");
                    assert!(
                        (0..p.len()).any(|i| p.id(i) == Some(e.id().prefix())),
                        "requested an id not asked for"
                    );
                    encoding(&l.encoder(r).expect("requested entries are sendable"));
                }
            }
            Ok(other) => panic!("a LEDGER_DELTA message decoded under LEDGER_DIGEST: {other:?}"),
            Err(_) => {}
        }
    }

    /// One anti-entropy exchange started by replica `a` with the other.
    fn exchange(&mut self, a: usize) {
        let b = 1 - a;
        let mut out = [0u8; MAX_MESSAGE_LEN];
        let n = self.ledgers[a].digest().emit(&mut out).expect("room");
        let Ok(Message::Digest(p)) = Message::decode(ControlKind::LEDGER_DIGEST, &out[..n]) else {
            panic!("an emitted digest must decode");
        };
        let d = Digest::parse(&p);
        assert_eq!(&d, self.ledgers[a].digest(), "a digest round-trips");
        let mask = self.ledgers[b].digest().mismatch(&d);
        if mask.is_empty() {
            return;
        }
        // B's summary pages; A's answer to each: entries and one request.
        let mut from = 0;
        for _ in 0..=ENTRIES {
            let mut page = [0u8; MAX_MESSAGE_LEN];
            let written = self.ledgers[b]
                .write_summary(mask, from, &mut page)
                .expect("a message-sized buffer");
            self.stats.replies += 1;
            let Ok(Message::Summary(p)) = Message::decode(ControlKind::LEDGER_DIGEST, &page[..written.len]) else {
                panic!("an emitted summary must decode");
            };
            let (sends, request) = reconcile(&self.ledgers[a], &p, &mut self.stats);
            for e in sends {
                self.send_entry(b, a as u8, &e, false);
            }
            if let Some(req) = request {
                let Ok(Message::Request(rp)) = Message::decode(ControlKind::LEDGER_DIGEST, &req) else {
                    panic!("an emitted request must decode");
                };
                let lb = &self.ledgers[b];
                let answers: Vec<Vec<u8>> = bounded(lb.requested(&rp), lb.records() + rp.len())
                    .map(|r| encoding(&lb.encoder(r).expect("requested entries are sendable")))
                    .collect();
                for e in answers {
                    self.send_entry(a, b as u8, &e, false);
                }
            }
            match written.next {
                None => return,
                Some(next) => {
                    assert!(next > from, "summary pages must move forward");
                    from = next;
                }
            }
        }
        panic!("more summary pages than records");
    }
}

/// An iterator cut at `bound` items plus a margin; panics past it (an
/// iterator over a finite replica and message that does not end).
fn bounded<I: Iterator>(it: I, bound: usize) -> impl Iterator<Item = I::Item> {
    let limit = 2 * bound + 8;
    it.enumerate().map(move |(i, x)| {
        assert!(i < limit, "iterator did not end after {limit} items");
        x
    })
}

/// Walks `summary` against `l`: the encodings of the entries to send, and
/// the request for the wanted ids (emitted), if any.
fn reconcile(
    l: &FuzzLedger,
    summary: &kairos_core::ledger::wire::SummaryPacket<&[u8]>,
    stats: &mut Stats,
) -> (Vec<Vec<u8>>, Option<Vec<u8>>) {
    let mut request = RequestRepr::new();
    let mut sends = Vec::new();
    for a in bounded(l.reconcile(summary), l.records() + summary.len()) {
        match a {
            Action::Send(r) => {
                let e = l.entry(r).expect("a version to send is held");
                assert!(e.id().prefix() >= summary.from() && e.id().prefix() <= summary.to());
                sends.push(encoding(&l.encoder(r).expect("entries to send are sendable")));
            }
            Action::Want(id) => {
                assert!(
                    (0..summary.len()).any(|i| summary.item(i).is_some_and(|it| it.id == id)),
                    "wants an id the page does not list"
                );
                assert!(request.push(id), "one request holds the wants of one page");
            }
        }
    }
    stats.replies += 1;
    let mut out = [0u8; MAX_MESSAGE_LEN];
    let req = request.emit(&mut out).map(|n| out[..n].to_vec());
    (sends, req)
}

/// The replica's own summary pages for `mask` from `from`: each decodes,
/// moves forward, and reconciles with the replica to nothing.
fn self_summary(l: &FuzzLedger, mask: RangeMask, mut from: u64, stats: &mut Stats) {
    for _ in 0..=ENTRIES {
        let mut page = [0u8; MAX_MESSAGE_LEN];
        let written = l.write_summary(mask, from, &mut page).expect("a message-sized buffer");
        let Ok(Message::Summary(p)) = Message::decode(ControlKind::LEDGER_DIGEST, &page[..written.len]) else {
            panic!("an emitted summary must decode: {:02x?}", &page[..written.len]);
        };
        assert_eq!((p.mask(), p.from()), (mask.0, from));
        let (sends, request) = reconcile(l, &p, stats);
        assert!(
            sends.is_empty() && request.is_none(),
            "a replica differs from its own summary"
        );
        match written.next {
            None => return,
            Some(next) => {
                assert!(next > from, "summary pages must move forward");
                from = next;
            }
        }
    }
    panic!("more summary pages than records");
}

/// An entry built from input fields, so well-formed entries of every kind
/// are easy to reach: `flags` (bit 0 tombstone, bits 1-2 writer, bits 3-5
/// bucket from [`BUCKETS`], bit 6 the writer's owner key as key, bit 7
/// fragments in reverse order), `clock offset u16` (from the replica's
/// clock minus 256), `ttl byte` (seconds), `bucket chunk` (for bucket 5),
/// `key chunk`, `value length u16`, `fill byte`. Returns the encoding and
/// whether fragments go in reverse.
pub fn shaped_entry(input: &mut Input<'_>, l: &FuzzLedger) -> (Vec<u8>, bool) {
    let flags = input.u8().unwrap_or(0);
    let offset = u64::from(input.u16().unwrap_or(0));
    let ttl = u32::from(input.u8().unwrap_or(0));
    let bucket_in = input.chunk().unwrap_or_default();
    let key_in = input.chunk().unwrap_or_default();
    let len = usize::from(input.u16().unwrap_or(0)) % (MAX_VALUE_LEN + 1);
    let fill = input.u8().unwrap_or(0);
    let tombstone = flags & 1 != 0;
    let origin = writers()[usize::from(flags >> 1 & 3)].public();
    let bucket = match BUCKETS[usize::from(flags >> 3 & 7)] {
        b"" => clamp(bucket_in, 64),
        b => b,
    };
    let own = owner_key(&origin.node_id());
    let key = if flags & 0x40 != 0 {
        &own[..]
    } else {
        clamp(key_in, 128)
    };
    let value = if tombstone { Vec::new() } else { vec![fill; len] };
    let repr = EntryRepr {
        tombstone,
        clock: (l.clock() + offset)
            .saturating_sub(256)
            .min(kairos_core::ledger::MAX_CLOCK),
        ttl: if tombstone { 0 } else { ttl },
        origin,
        bucket,
        key,
        value: &value,
        signature: [0; 64],
    };
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).expect("sized");
    (out, flags & 0x80 != 0)
}

/// 1 to `max` bytes of `b` (`b"k"` when empty).
fn clamp(b: &[u8], max: usize) -> &[u8] {
    if b.is_empty() {
        b"k"
    } else {
        &b[..b.len().min(max)]
    }
}

/// The fragments of an entry encoding longer than one message, laid out as
/// `ledger::wire` documents them (with any tag: reassembly groups by it,
/// `apply` computes its own hash).
pub fn fragments(encoded: &[u8], tag: [u8; 8]) -> Vec<Vec<u8>> {
    let count = encoded.len().div_ceil(FRAGMENT_CHUNK);
    encoded
        .chunks(FRAGMENT_CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let mut f = vec![0x02, i as u8, count as u8, 0];
            f.extend_from_slice(&tag);
            f.extend_from_slice(&(encoded.len() as u16).to_le_bytes());
            f.extend_from_slice(chunk);
            f
        })
        .collect()
}

/// The whole encoding an encoder carries, through its messages: one entry,
/// or fragments that each decode and that reassemble (in reverse order)
/// into an entry that decodes.
fn encoding(enc: &EntryEncoder<'_>) -> Vec<u8> {
    let total = enc.encoded_len();
    let count = enc.messages();
    let mut out = [0u8; MAX_MESSAGE_LEN];
    if count == 1 {
        let n = enc.emit(0, &mut out).expect("a message-sized buffer");
        assert_eq!(n, total);
        let Ok(Message::Entry(_)) = Message::decode(ControlKind::LEDGER_DELTA, &out[..n]) else {
            panic!("an encoded entry must decode: {:02x?}", &out[..n.min(160)]);
        };
        return out[..n].to_vec();
    }
    let mut whole = vec![0u8; total];
    let mut r = Reassembly::<u8, 1>::new();
    let mut done = None;
    for i in (0..count).rev() {
        let n = enc.emit(i, &mut out).expect("a message-sized buffer");
        let Ok(Message::Fragment(f)) = Message::decode(ControlKind::LEDGER_DELTA, &out[..n]) else {
            panic!("an encoded fragment must decode");
        };
        assert_eq!(
            (usize::from(f.index()), usize::from(f.count()), f.total_len()),
            (i, count, total)
        );
        whole[i * FRAGMENT_CHUNK..][..n - FRAGMENT_HEADER_LEN].copy_from_slice(f.chunk());
        if let Some(e) = r.push(START, 0, &f) {
            assert!(done.is_none(), "reassembled twice");
            done = Some(e.to_vec());
        }
    }
    assert_eq!(done.as_ref(), Some(&whole), "reassembly gives the encoding");
    EntryPacket::new_checked(&whole[..]).expect("a reassembled entry must decode");
    whole
}

/// The cheap invariants of one replica (see the module docs).
pub fn check_ledger(l: &FuzzLedger) {
    assert!(l.len() <= ENTRIES && l.records() <= ENTRIES, "{l:?}");
    let (used, garbage) = l.arena_usage();
    assert!(used + garbage <= ARENA, "{l:?}");
    assert_eq!(l.iter().count(), l.len(), "live entries and the digest's count");
    assert_eq!(l.iter_all().count(), l.records());
    let mut prev = None;
    for e in l.iter_all() {
        assert!(prev.is_none_or(|p| p < e.id()), "records in id order");
        prev = Some(e.id());
        assert!(e.value().is_empty() || e.state() == EntryState::Live);
        match l.encoder(e.entry_ref()) {
            Ok(enc) => {
                assert_ne!(e.state(), EntryState::Expired, "an expired entry encoded");
                let whole = encoding(&enc);
                let p = EntryPacket::new_checked(&whole[..]).expect("checked in encoding");
                let r = EntryRepr::parse(&p);
                assert_eq!(
                    (r.bucket, r.key, r.value, r.clock, r.ttl, r.origin, r.signature),
                    (
                        e.bucket(),
                        e.key(),
                        e.value(),
                        e.clock(),
                        e.ttl(),
                        *e.origin(),
                        *e.signature()
                    ),
                    "re-encoded entry differs from the record"
                );
                assert_eq!(r.tombstone, e.state() == EntryState::Tombstone);
                assert_eq!(e.origin_id(), r.origin.node_id());
            }
            Err(err) => {
                assert_eq!(
                    (e.state(), err),
                    (EntryState::Expired, LedgerError::NotSendable),
                    "a live entry or tombstone must encode"
                );
            }
        }
    }
}

/// The digest of `l` equals that of a fresh replica given the same live
/// entries and tombstones in clock order (skipped if the clock-jump bound
/// refuses that order: the records that raised the clock step by step may
/// be gone).
pub fn check_digest(l: &FuzzLedger, now: Instant) {
    let mut held: Vec<(u64, Vec<u8>)> = l
        .iter_all()
        .filter_map(|e| l.encoder(e.entry_ref()).ok().map(|enc| (e.clock(), encoding(&enc))))
        .collect();
    held.sort_by_key(|(c, _)| *c);
    let mut fresh = Box::<FuzzLedger>::default();
    for (_, e) in &held {
        match fresh.apply(now, &mut AcceptAll, e) {
            Ok(Applied::New(_)) => {}
            Err(LedgerError::ClockJump) => return,
            other => panic!("a held entry applied to a fresh replica: {other:?}"),
        }
    }
    assert_eq!(fresh.len(), l.len());
    assert_eq!(fresh.digest(), l.digest(), "the digest is the live entries'");
    // The small scope's digest: that of a replica given only the entries
    // of the small scope (the mesh's own buckets, at most SMALL_ENTRY_LEN
    // bytes encoded).
    let in_small = |e: &[u8]| {
        let p = EntryPacket::new_checked(e).expect("a held entry parses");
        Scope::Small.holds(EntryRepr::parse(&p).bucket, e.len())
    };
    let mut small = Box::<FuzzLedger>::default();
    for (_, e) in held.iter().filter(|(_, e)| in_small(e)) {
        match small.apply(now, &mut AcceptAll, e) {
            Ok(Applied::New(_)) => {}
            Err(LedgerError::ClockJump) => return,
            other => panic!("a held small entry applied to a fresh replica: {other:?}"),
        }
    }
    assert_eq!(
        small.digest(),
        &l.digest_in(Scope::Small),
        "the small digest is the small live entries'"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Writer;

    #[test]
    fn empty_and_garbage() {
        assert_eq!(run(&[]), Stats::default());
        run(&[0, 3, 1, 2, 3, 1, 0, 0x11, 7, 0xff]);
    }

    #[test]
    fn shaped_entries_store_and_sync() {
        // A small entry on A, a fragmented one on B, a local write, an
        // exchange both ways, an hour passes.
        let mut w = Writer::new();
        w.u8(op::ENTRY)
            .u8(0)
            .u16(300)
            .u8(60)
            .chunk(b"")
            .chunk(b"key")
            .u16(10)
            .u8(7);
        w.u8(op::ENTRY | 8 | 0x10)
            .u8(0x80 | 6 << 3)
            .u16(300)
            .u8(0)
            .chunk(b"")
            .chunk(b"big")
            .u16(5000)
            .u8(9);
        w.u8(op::LOCAL).u8(0x40 | 1 << 3).chunk(b"").u16(20).u8(1);
        w.u8(op::EXCHANGE).u8(op::EXCHANGE | 8);
        w.u8(op::RESEND).u8(0).u8(op::SUMMARY).u64(u64::MAX).u64(0);
        w.u8(op::ADVANCE).u8(crate::input::step_byte(3, 60));
        let stats = run(&w.finish());
        assert!(stats.delivered >= 5, "{stats:?}");
    }
}
