//! Anti-entropy: how two replicas find and repair their differences with a
//! bounded number of bounded messages.
//!
//! One exchange, started by either side (`A` sends, `B` answers):
//!
//! 1. `A` sends its [`Digest`] (518 bytes).
//! 2. `B` computes `mask = B.digest().mismatch(&a_digest)`. If it is empty,
//!    the replicas agree and the exchange ends. Otherwise `B` sends summary
//!    pages ([`Ledger::write_summary`]): every record `B` holds (live,
//!    tombstone or expired) in the mismatched ranges, 24 bytes each, up to
//!    48 per page, each page covering an interval of the id space.
//! 3. For each page, `A` walks [`Ledger::reconcile`]: it yields
//!    [`Action::Send`] for each of `A`'s entries that `B` lacks or holds an
//!    older version of, and [`Action::Want`] for each id where `B` holds a
//!    newer version. `A` sends those entries (as deltas) and one request
//!    ([`RequestRepr`], at most one per page).
//! 4. `B` answers the request with the entries ([`Ledger::requested`]).
//!
//! Rules that keep this finite: a tombstone is sent only to a replica that
//! holds an older version of its key (a replica that lacks the key has
//! nothing to delete), and an expired entry is never sent (its holder keeps
//! only the version, so a replica that expires later cannot hand it back).
//!
//! Items carry 8-byte id prefixes and version tags; two ids sharing a prefix
//! (chance 2^-64 per pair) are compared pairwise and may stay unrepaired by
//! anti-entropy, though pushes still deliver them.
//!
//! This module owns the summary and request side of the exchange. It never
//! sends anything and never picks the peer: the Node does.

use super::digest::RangeMask;
use super::entry::{EntryRef, EntryState};
use super::store::Record;
use super::wire::{
    emit_summary_header, range_of, ItemState, RequestPacket, SummaryItem, SummaryPacket, RANGES, SUMMARY_HEADER_LEN,
    SUMMARY_ITEM_LEN, SUMMARY_MAX_ITEMS,
};
use super::{Ledger, LedgerError, Scope, MAX_MESSAGE_LEN};

#[cfg(doc)]
use super::{Digest, RequestRepr};

/// One page written by [`Ledger::write_summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SummaryPage {
    /// Length of the message in the output buffer.
    pub len: usize,
    /// Where the next page starts (pass it as `from`), or `None` if this was
    /// the last.
    pub next: Option<u64>,
}

/// What to do about one difference found by [`Ledger::reconcile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send this entry to the peer (it lacks it or holds an older version).
    Send(EntryRef),
    /// Ask the peer for this id prefix (it holds a newer version).
    Want(u64),
}

fn item_of(r: &Record) -> SummaryItem {
    SummaryItem {
        id: r.id.prefix(),
        clock: r.clock,
        state: match r.state {
            Some(EntryState::Live) => ItemState::Live,
            Some(EntryState::Tombstone) => ItemState::Tombstone,
            _ => ItemState::Expired,
        },
        tag: r.tag(),
    }
}

fn sendable(r: &Record) -> bool {
    r.is(EntryState::Live) || r.is(EntryState::Tombstone)
}

/// The first id prefix of range `i`.
fn range_start(i: usize) -> u64 {
    (i as u64) << (64 - RANGES.trailing_zeros())
}

impl<const ENTRIES: usize, const ARENA: usize> Ledger<ENTRIES, ARENA> {
    /// The position of the first record at or after `pos` whose range is in
    /// `mask` and which is in `scope`.
    fn next_in_mask(&self, mut pos: usize, mask: RangeMask, scope: Scope) -> Option<usize> {
        while pos < self.store.len() {
            let record = self.store.at(pos);
            let range = range_of(record.id.prefix());
            if mask.contains(range) {
                if self.store.in_scope(record, scope) {
                    return Some(pos);
                }
                pos += 1;
                continue;
            }
            pos = self.store.lower_bound(range_start(mask.next_from(range + 1)?));
        }
        None
    }

    /// Writes one summary page of this replica's records in the ranges of
    /// `mask`, starting at id prefix `from` (0 for the first page), into
    /// `out` (at most [`MAX_MESSAGE_LEN`] bytes are used). Send it as a
    /// `LEDGER_DIGEST` payload; continue with `next` until it is `None`.
    pub fn write_summary(&self, mask: RangeMask, from: u64, out: &mut [u8]) -> Result<SummaryPage, LedgerError> {
        self.write_summary_in(Scope::All, mask, from, out)
    }

    /// [`Self::write_summary`] of the records in `scope` only.
    pub fn write_summary_in(
        &self,
        scope: Scope,
        mask: RangeMask,
        from: u64,
        out: &mut [u8],
    ) -> Result<SummaryPage, LedgerError> {
        let room = out.len().min(MAX_MESSAGE_LEN).saturating_sub(SUMMARY_HEADER_LEN) / SUMMARY_ITEM_LEN;
        let cap = room.min(SUMMARY_MAX_ITEMS);
        if cap == 0 {
            return Err(LedgerError::BufferTooSmall);
        }
        let mut pos = self.store.lower_bound(from);
        let mut count = 0;
        let mut last = from;
        let mut next = None;
        while let Some(p) = self.next_in_mask(pos, mask, scope) {
            let record = self.store.at(p);
            if count == cap {
                next = Some(record.id.prefix());
                break;
            }
            let at = SUMMARY_HEADER_LEN + count * SUMMARY_ITEM_LEN;
            item_of(record).emit(&mut out[at..at + SUMMARY_ITEM_LEN]);
            last = record.id.prefix();
            count += 1;
            pos = p + 1;
        }
        let (to, next) = match next {
            None => (u64::MAX, None),
            // Two ids with the same prefix across a page boundary: the rest
            // of that prefix is skipped (see the module docs).
            Some(n) if n == last => (last, last.checked_add(1)),
            Some(n) => (n - 1, Some(n)),
        };
        emit_summary_header(out, mask.0, from, to, count);
        Ok(SummaryPage {
            len: SUMMARY_HEADER_LEN + count * SUMMARY_ITEM_LEN,
            next,
        })
    }

    /// Compares a peer's summary page with this replica: see [`Action`].
    /// Collect the wants into a [`RequestRepr`] (a page yields at most
    /// [`SUMMARY_MAX_ITEMS`] of them, so one request always holds them).
    pub fn reconcile<'a>(&'a self, summary: &'a SummaryPacket<&'a [u8]>) -> Reconcile<'a, ENTRIES, ARENA> {
        self.reconcile_in(Scope::All, summary)
    }

    /// [`Self::reconcile`] against the records in `scope` only (the others
    /// count as absent: never sent, never compared).
    pub fn reconcile_in<'a>(
        &'a self,
        scope: Scope,
        summary: &'a SummaryPacket<&'a [u8]>,
    ) -> Reconcile<'a, ENTRIES, ARENA> {
        Reconcile {
            ledger: self,
            scope,
            summary,
            mask: RangeMask(summary.mask()),
            pos: self.store.lower_bound(summary.from()),
            item: 0,
            pending: None,
        }
    }

    /// The entries a peer's request names (live entries and tombstones
    /// whose id prefix it lists), to send back.
    pub fn requested<'a>(&'a self, request: &'a RequestPacket<&'a [u8]>) -> Requested<'a, ENTRIES, ARENA> {
        self.requested_in(Scope::All, request)
    }

    /// [`Self::requested`] among the records in `scope` only.
    pub fn requested_in<'a>(
        &'a self,
        scope: Scope,
        request: &'a RequestPacket<&'a [u8]>,
    ) -> Requested<'a, ENTRIES, ARENA> {
        Requested {
            ledger: self,
            scope,
            request,
            index: 0,
            pos: None,
        }
    }
}

/// Iterator returned by [`Ledger::reconcile`].
pub struct Reconcile<'a, const ENTRIES: usize, const ARENA: usize> {
    ledger: &'a Ledger<ENTRIES, ARENA>,
    scope: Scope,
    summary: &'a SummaryPacket<&'a [u8]>,
    mask: RangeMask,
    pos: usize,
    item: usize,
    pending: Option<Action>,
}

impl<const ENTRIES: usize, const ARENA: usize> Iterator for Reconcile<'_, ENTRIES, ARENA> {
    type Item = Action;

    fn next(&mut self) -> Option<Action> {
        if let Some(a) = self.pending.take() {
            return Some(a);
        }
        let store = &self.ledger.store;
        loop {
            let local = self
                .ledger
                .next_in_mask(self.pos, self.mask, self.scope)
                .map(|p| (p, store.at(p)))
                .filter(|(_, r)| r.id.prefix() <= self.summary.to());
            let remote = self.summary.item(self.item);
            let send = |r: &Record, pos: usize| {
                Action::Send(EntryRef {
                    slot: store.slot_at(pos),
                    tag: r.tag(),
                })
            };
            match (local, remote) {
                (None, None) => return None,
                (Some((p, r)), i) if i.is_none_or(|i| r.id.prefix() < i.id) => {
                    // The peer lacks it: only a live entry is worth sending.
                    self.pos = p + 1;
                    if r.is(EntryState::Live) {
                        return Some(send(r, p));
                    }
                }
                (l, Some(i)) if l.is_none_or(|(_, r)| i.id < r.id.prefix()) => {
                    self.item += 1;
                    if i.state == ItemState::Live {
                        return Some(Action::Want(i.id));
                    }
                }
                (Some((p, r)), Some(i)) => {
                    self.pos = p + 1;
                    self.item += 1;
                    if i.tag == r.tag() {
                        continue;
                    }
                    let want = i.state.sendable().then_some(Action::Want(i.id));
                    let give = sendable(r).then(|| send(r, p));
                    let (first, second) = match i.clock.cmp(&r.clock) {
                        core::cmp::Ordering::Greater => (want, None),
                        core::cmp::Ordering::Less => (give, None),
                        // Same clock, different versions: the order needs the
                        // full node ids; exchange both, `apply` decides.
                        core::cmp::Ordering::Equal => (want, give),
                    };
                    match (first, second) {
                        (Some(a), b) => {
                            self.pending = b;
                            return Some(a);
                        }
                        (None, Some(b)) => return Some(b),
                        (None, None) => {}
                    }
                }
                // Unreachable: the guards above cover every other case.
                _ => return None,
            }
        }
    }
}

/// Iterator returned by [`Ledger::requested`].
pub struct Requested<'a, const ENTRIES: usize, const ARENA: usize> {
    ledger: &'a Ledger<ENTRIES, ARENA>,
    scope: Scope,
    request: &'a RequestPacket<&'a [u8]>,
    index: usize,
    pos: Option<usize>,
}

impl<const ENTRIES: usize, const ARENA: usize> Iterator for Requested<'_, ENTRIES, ARENA> {
    type Item = EntryRef;

    fn next(&mut self) -> Option<EntryRef> {
        let store = &self.ledger.store;
        while let Some(id) = self.request.id(self.index) {
            let pos = *self.pos.get_or_insert_with(|| store.lower_bound(id));
            if pos < store.len() && store.at(pos).id.prefix() == id {
                self.pos = Some(pos + 1);
                let r = store.at(pos);
                if sendable(r) && store.in_scope(r, self.scope) {
                    return Some(EntryRef {
                        slot: store.slot_at(pos),
                        tag: r.tag(),
                    });
                }
                continue;
            }
            self.index += 1;
            self.pos = None;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::super::replica::tests::{ident, writers, MemoVerifier, Small};
    use super::super::wire::DIGEST_LEN;
    use super::super::wire::{Message, RequestRepr};
    use super::super::{Digest, Reassembly, SignatureVerifier, NO_TTL, SMALL_BUCKETS, SMALL_ENTRY_LEN};
    use super::*;
    use crate::time::Instant;
    use crate::wire::ControlKind;
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;
    use std::vec::Vec;

    /// What one exchange moved. Bytes count the payload and the control
    /// kind byte (not the transport's 32 bytes of header and tag).
    #[derive(Debug, Default, Clone, Copy)]
    struct Traffic {
        messages: usize,
        /// Digest, summaries and requests.
        control_bytes: usize,
        /// Entries and fragments.
        entry_bytes: usize,
        entries: usize,
    }

    impl Traffic {
        fn count(&mut self, len: usize, entry: bool) {
            assert!(len <= MAX_MESSAGE_LEN);
            self.messages += 1;
            if entry {
                self.entry_bytes += len + 1;
            } else {
                self.control_bytes += len + 1;
            }
        }
        fn bytes(&self) -> usize {
            self.control_bytes + self.entry_bytes
        }
    }

    /// Sends one entry through its wire encoding, fragments included.
    fn transfer<const E: usize, const A: usize>(
        from: &Ledger<E, A>,
        to: &mut Ledger<E, A>,
        r: EntryRef,
        now: Instant,
        t: &mut Traffic,
        v: &mut impl SignatureVerifier,
    ) {
        let enc = from.encoder(r).unwrap();
        let mut reassembly = Reassembly::<u8, 1>::new();
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        t.entries += 1;
        for i in 0..enc.messages() {
            let n = enc.emit(i, &mut buf).unwrap();
            t.count(n, true);
            match Message::decode(ControlKind::LEDGER_DELTA, &buf[..n]).unwrap() {
                Message::Entry(p) => {
                    to.apply(now, &mut *v, p.into_inner()).unwrap();
                }
                Message::Fragment(f) => {
                    if let Some(whole) = reassembly.push(now, 0, &f) {
                        to.apply(now, &mut *v, whole).unwrap();
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    /// One anti-entropy exchange started by `a`, using only encoded messages.
    fn exchange<const E: usize, const A: usize>(
        a: &mut Ledger<E, A>,
        b: &mut Ledger<E, A>,
        now: Instant,
        v: &mut impl SignatureVerifier,
    ) -> Traffic {
        exchange_in(Scope::All, a, b, now, v)
    }

    /// [`exchange`] of the entries in `scope`.
    fn exchange_in<const E: usize, const A: usize>(
        scope: Scope,
        a: &mut Ledger<E, A>,
        b: &mut Ledger<E, A>,
        now: Instant,
        v: &mut impl SignatureVerifier,
    ) -> Traffic {
        let mut t = Traffic::default();
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let n = a.digest_in(scope).emit(&mut buf).unwrap();
        t.count(n, false);
        let Message::Digest(p) = Message::decode(ControlKind::LEDGER_DIGEST, &buf[..n]).unwrap() else {
            panic!()
        };
        let mask = b.digest_in(scope).mismatch(&Digest::parse(&p));
        if mask.is_empty() {
            return t;
        }
        let mut from = 0;
        loop {
            let mut page_buf = [0u8; MAX_MESSAGE_LEN];
            let page = b.write_summary_in(scope, mask, from, &mut page_buf).unwrap();
            t.count(page.len, false);
            let Message::Summary(s) = Message::decode(ControlKind::LEDGER_DIGEST, &page_buf[..page.len]).unwrap()
            else {
                panic!()
            };
            let mut sends = Vec::new();
            let mut request = RequestRepr::new();
            for action in a.reconcile_in(scope, &s) {
                match action {
                    Action::Send(r) => sends.push(r),
                    Action::Want(id) => assert!(request.push(id)),
                }
            }
            for r in sends {
                transfer(a, b, r, now, &mut t, v);
            }
            if let Some(n) = request.emit(&mut buf) {
                t.count(n, false);
                let Message::Request(q) = Message::decode(ControlKind::LEDGER_DIGEST, &buf[..n]).unwrap() else {
                    panic!()
                };
                let answers: Vec<EntryRef> = b.requested_in(scope, &q).collect();
                for r in answers {
                    transfer(b, a, r, now, &mut t, v);
                }
            }
            match page.next {
                Some(n) => from = n,
                None => break,
            }
        }
        t
    }

    type Contents = Vec<(Vec<u8>, Vec<u8>, Vec<u8>, u64)>;

    /// What a user reads: every live (bucket, key, value, clock).
    fn contents<const E: usize, const A: usize>(l: &Ledger<E, A>) -> Contents {
        l.iter()
            .map(|e| (e.bucket().to_vec(), e.key().to_vec(), e.value().to_vec(), e.clock()))
            .collect()
    }

    /// A replica that holds only [`Scope::Small`] (the mesh's own records,
    /// up to 2 KiB) and one that holds all agree after an exchange in that
    /// scope, whichever starts it: the long entry and the entry of another
    /// bucket neither travel nor keep their digests apart, and the small
    /// records go both ways.
    #[test]
    fn an_exchange_in_the_small_scope_leaves_other_entries_out() {
        use super::super::buckets::{owner_key, MACHINES};
        let mut v = MemoVerifier::default();
        let now = Instant::from_secs(1);
        let (a, b) = (ident(1), ident(2));
        let (mut full, mut small) = (Small::new(), Small::new());
        let machines = MACHINES.as_bytes();
        full.put(now, &a, machines, &owner_key(&a.node_id()), &[1; 100], NO_TTL)
            .unwrap();
        full.put(now, &a, b"kairos", b"master-kubeconfig", &[3; 3000], NO_TTL)
            .unwrap();
        full.put(now, &a, b"owner/info", &owner_key(&a.node_id()), &[4; 100], NO_TTL)
            .unwrap();
        small
            .put(now, &b, machines, &owner_key(&b.node_id()), &[2; 100], NO_TTL)
            .unwrap();
        assert_eq!(&small.digest_in(Scope::Small), small.digest());
        assert_ne!(&full.digest_in(Scope::Small), full.digest());
        let t = exchange_in(Scope::Small, &mut small, &mut full, now, &mut v);
        assert_eq!(t.entries, 2, "one machine record each way: {t:?}");
        assert!(t.entry_bytes < 1000, "no fragment of the long entry: {t:?}");
        assert_eq!(small.digest(), &full.digest_in(Scope::Small));
        assert!(small.get(machines, &owner_key(&a.node_id())).is_some());
        assert!(full.get(machines, &owner_key(&b.node_id())).is_some());
        assert!(small.get(b"kairos", b"master-kubeconfig").is_none());
        assert!(small.get(b"owner/info", &owner_key(&a.node_id())).is_none());
        // Started by the other side: the digests agree, nothing more.
        let t = exchange_in(Scope::Small, &mut full, &mut small, now, &mut v);
        assert_eq!(t.messages, 1, "{t:?}");
        // In the whole scope the other entries are still a difference.
        assert_ne!(full.digest().mismatch(small.digest()), RangeMask::NONE);
    }

    #[test]
    fn the_small_scope_holds_the_small_records_of_the_mesh_only() {
        assert_eq!(
            SMALL_BUCKETS,
            [
                super::super::buckets::MACHINES,
                super::super::buckets::ADDRESSES,
                crate::election::ROLES,
                crate::election::ALIVE
            ]
        );
        assert!(Scope::Small.holds(b"machines", SMALL_ENTRY_LEN));
        assert!(!Scope::Small.holds(b"machines", SMALL_ENTRY_LEN + 1));
        assert!(!Scope::Small.holds(b"owner/info", 100));
        assert!(!Scope::Small.holds(b"kairos", 100));
        assert!(Scope::All.holds(b"kairos", 20_000));
    }

    #[test]
    fn replicas_with_random_histories_converge() {
        let mut v = MemoVerifier::default();
        for seed in 0..3u64 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let history = writers(seed, 100);
            let mut a = Small::new();
            let mut b = Small::new();
            let now = Instant::from_secs(1);
            // Each replica sees a random subset of the history, in its own
            // random order; some entries arrive late and lose, some never.
            for (l, skip) in [(&mut a, 3), (&mut b, 4)] {
                let mut idx: Vec<usize> = (0..history.len()).collect();
                for i in (1..idx.len()).rev() {
                    idx.swap(i, rng.next_u32() as usize % (i + 1));
                }
                for i in idx {
                    if rng.next_u32() % skip != 0 {
                        l.apply(now, &mut v, &history[i]).unwrap();
                    }
                }
            }
            assert_ne!(a.digest(), b.digest());
            let before = a.digest().mismatch(b.digest()).count();
            let t = exchange(&mut a, &mut b, now, &mut v);
            assert_eq!(a.digest(), b.digest(), "seed {seed}: digests differ after one exchange");
            assert_eq!(contents(&a), contents(&b));
            // A second exchange finds nothing to do: one digest.
            let again = exchange(&mut b, &mut a, now, &mut v);
            assert_eq!((again.messages, again.bytes()), (1, DIGEST_LEN + 1));
            std::println!(
                "seed {seed}: {} live entries, {before} of 64 ranges differed; one exchange: {} messages, \
                 {} control bytes, {} entries in {} bytes",
                a.len(),
                t.messages,
                t.control_bytes,
                t.entries,
                t.entry_bytes
            );
        }
    }

    /// Accepts every signature: for the byte counts of a large ledger only
    /// (signatures are what the other tests check; debug-build Ed25519 would
    /// take minutes here).
    struct Trusting;
    impl SignatureVerifier for Trusting {
        fn verify(&mut self, _: &[u8; 32], _: &[u8], _: &[u8; 64]) -> bool {
            true
        }
    }

    #[test]
    fn a_few_differences_in_a_large_ledger_cost_little() {
        type Large = Ledger<600, 65536>;
        let (w, x) = (ident(21), ident(22));
        let mut a = std::boxed::Box::new(Large::new());
        let mut b = std::boxed::Box::new(Large::new());
        let now = Instant::ZERO;
        let mut t = Traffic::default();
        for i in 0..500u32 {
            let r = a.put(
                now,
                &w,
                b"kairos",
                std::format!("key-{i}").as_bytes(),
                b"0123456789abcdef",
                NO_TTL,
            );
            transfer(&a, &mut b, r.unwrap(), now, &mut t, &mut Trusting);
        }
        assert_eq!(a.digest(), b.digest());
        // Five new keys and five updates on A, five deletes on B.
        for i in 0..5u32 {
            a.put(now, &w, b"kairos", std::format!("new-{i}").as_bytes(), b"v", NO_TTL)
                .unwrap();
            a.put(now, &w, b"kairos", std::format!("key-{i}").as_bytes(), b"v2", NO_TTL)
                .unwrap();
            b.delete(now, &x, b"kairos", std::format!("key-{}", 100 + i).as_bytes())
                .unwrap();
        }
        let before = a.digest().mismatch(b.digest()).count();
        let t = exchange(&mut a, &mut b, now, &mut Trusting);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.len(), 500);
        assert_eq!(t.entries, 15);
        std::println!(
            "500 entries, 15 differences in {before} ranges: {} messages, {} control bytes, {} entries in {} bytes",
            t.messages,
            t.control_bytes,
            t.entries,
            t.entry_bytes
        );
        // The control traffic is the digest plus summaries of the differing
        // ranges only (about 8 records per range here), not of the ledger.
        assert!(t.control_bytes < DIGEST_LEN + 1 + before as usize * 8 * 2 * SUMMARY_ITEM_LEN + 600);
    }

    #[test]
    fn summary_pages_cover_the_id_space() {
        let me = ident(20);
        let mut l = Small::new();
        for i in 0..110u32 {
            let key = std::format!("key-{i}");
            l.put(Instant::ZERO, &me, b"b", key.as_bytes(), b"v", NO_TTL).unwrap();
        }
        for i in 0..10u32 {
            l.delete(Instant::ZERO, &me, b"b", std::format!("key-{i}").as_bytes())
                .unwrap();
        }
        let records = l.store.len();
        assert!(records > SUMMARY_MAX_ITEMS, "needs several pages");
        let mut from = 0;
        let mut seen = 0;
        let mut pages = 0;
        loop {
            let mut buf = [0u8; MAX_MESSAGE_LEN];
            let page = l.write_summary(RangeMask::ALL, from, &mut buf).unwrap();
            let s = SummaryPacket::new_checked(&buf[..page.len]).unwrap();
            assert_eq!(s.from(), from);
            seen += s.len();
            pages += 1;
            match page.next {
                Some(n) => {
                    assert_eq!(s.to(), n - 1);
                    from = n;
                }
                None => break,
            }
        }
        assert_eq!(seen, records);
        assert_eq!(pages, records.div_ceil(SUMMARY_MAX_ITEMS));
        // A mask selects only its ranges.
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        let page = l.write_summary(RangeMask(1 << 5), 0, &mut buf).unwrap();
        let s = SummaryPacket::new_checked(&buf[..page.len]).unwrap();
        let in_range5 = l.store.iter().filter(|e| range_of(e.id().prefix()) == 5).count();
        assert_eq!(s.len(), in_range5);
        assert_eq!(page.next, None);
        assert_eq!(
            l.write_summary(RangeMask::ALL, 0, &mut buf[..30]),
            Err(LedgerError::BufferTooSmall)
        );
    }

    /// Random corruptions of valid messages, fed to every consumer, never
    /// panic (a quick stand-in for the fuzz target). Signatures are trusted
    /// so corrupted entries reach the store too.
    #[test]
    fn corrupted_messages_never_panic() {
        let w = ident(23);
        let mut src = Small::new();
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        let mut buf = [0u8; MAX_MESSAGE_LEN];
        for i in 0..60u32 {
            let value = std::vec![i as u8; if i % 20 == 0 { 3000 } else { 10 }];
            let r = src
                .put(
                    Instant::ZERO,
                    &w,
                    b"kairos",
                    std::format!("k{i}").as_bytes(),
                    &value,
                    i % 3,
                )
                .unwrap();
            let enc = src.encoder(r).unwrap();
            for m in 0..enc.messages() {
                let n = enc.emit(m, &mut buf).unwrap();
                msgs.push(buf[..n].to_vec());
            }
        }
        let n = src.digest().emit(&mut buf).unwrap();
        msgs.push(buf[..n].to_vec());
        let page = src.write_summary(RangeMask::ALL, 0, &mut buf).unwrap();
        msgs.push(buf[..page.len].to_vec());
        let mut req = RequestRepr::new();
        for id in [0, 1 << 60, u64::MAX] {
            req.push(id);
        }
        let n = req.emit(&mut buf).unwrap();
        msgs.push(buf[..n].to_vec());

        let mut rng = ChaCha20Rng::seed_from_u64(99);
        let mut l = Small::new();
        let mut reassembly = Reassembly::<u8, 2>::new();
        let mut decoded = 0;
        for round in 0..4000u64 {
            let mut m = msgs[rng.next_u32() as usize % msgs.len()].clone();
            match rng.next_u32() % 4 {
                0 => m.truncate(rng.next_u32() as usize % (m.len() + 1)),
                1 => m.push(rng.next_u32() as u8),
                _ => {
                    for _ in 0..1 + rng.next_u32() % 3 {
                        let at = rng.next_u32() as usize % m.len();
                        m[at] ^= 1 << (rng.next_u32() % 8);
                    }
                }
            }
            let now = Instant::from_secs(round);
            for kind in [ControlKind::LEDGER_DELTA, ControlKind::LEDGER_DIGEST] {
                let Ok(msg) = Message::decode(kind, &m) else { continue };
                decoded += 1;
                match msg {
                    Message::Entry(p) => {
                        let _ = l.apply(now, &mut Trusting, p.into_inner());
                    }
                    Message::Fragment(f) => {
                        if let Some(whole) = reassembly.push(now, (round % 3) as u8, &f) {
                            let _ = l.apply(now, &mut Trusting, whole);
                        }
                    }
                    Message::Digest(d) => {
                        let _ = l.digest().mismatch(&Digest::parse(&d));
                    }
                    Message::Summary(s) => {
                        let _ = l.reconcile(&s).count();
                    }
                    Message::Request(q) => {
                        let refs: Vec<EntryRef> = l.requested(&q).collect();
                        for r in refs {
                            let _ = l.encoder(r).map(|e| e.emit(0, &mut buf));
                        }
                    }
                }
            }
            while l.poll_change().is_some() {}
        }
        assert!(decoded > 500, "{decoded}");
        // Whatever got in is consistent: the digest matches the live entries.
        let mut d = Digest::EMPTY;
        for e in l.iter() {
            d.add(&e.id(), &e.record.hash);
        }
        assert_eq!(&d, l.digest());
    }
}
