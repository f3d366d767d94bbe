//! The node's control plane: replicating the ledger, and what the node reads
//! from it.
//!
//! - **Pushes.** A local write goes at once to every member with a session
//!   up; an entry new to this replica goes on to [`FANOUT`] of them at
//!   random (not back to where it came from, nor to its writer), so a change
//!   spreads like gossip while anti-entropy mops up what a push missed.
//!   Forwards skip sessions made for traffic rather than as mesh neighbours
//!   (the end that made one says so with `ON_DEMAND`), unless no other
//!   session is up: a node that talks to many members (a k3s server) then
//!   gets about as many copies as any other, not one from nearly every
//!   forwarder. New remote entries wait [`FORWARD_WINDOW`] and the
//!   window's entries go to the same members, so that whole entries queued
//!   for one member share a `LEDGER_BATCH` (when it said, with `FEATURES`,
//!   that it reads them; see [`crate::ledger::batch`]).
//! - **Anti-entropy.** Every so often (every [`SYNC_MIN`] while things
//!   change, backing off to [`SYNC_MAX`] while the digests agree; each gap
//!   drawn at random between half and one and a half times that, so nodes
//!   that start together do not exchange in lockstep) the node
//!   sends its digest to a random member; the exchange itself is the
//!   ledger's (`ledger::sync`). A session coming up also starts one, so a
//!   joining node learns the whole ledger from its first neighbour. Entries
//!   sent by anti-entropy travel as `LEDGER_REPAIR` and are never forwarded
//!   (a node catching up would otherwise push the whole ledger on to peers
//!   that hold it); an exchange that found something missing is followed
//!   by another within 2 s, so a lost repair is asked for again. A member
//!   that says so (`FEATURES` bit `ANSWERS_DIGESTS`) answers every digest,
//!   with an empty summary page when the replicas agree, so an exchange
//!   with it that gets no answer within [`ANSWER_WAIT`] was lost and
//!   another follows at once instead of after a backed-off gap. The
//!   requests of one exchange wait for its last summary page (at most
//!   [`WANTS_WAIT`]) and go out merged, up to 64 ids to a message.
//! - **Membership.** A `machines/<id>` entry makes its origin a member (its
//!   keys are the entry's origin; the value, a [`MachineRecord`], says
//!   where it can be reached).
//! - **Observed endpoints.** When a session comes up, each side tells the
//!   other the address it saw it at (`OBSERVED`); a node publishes the
//!   addresses others see it at (its NAT mappings) in its machines record.
//! - **Addresses.** The node claims an IPv4 address and follows the
//!   conflict rule of [`super::ipam`].
//!
//! What to send is queued as small [`Intent`]s and encoded only when the
//! caller polls, so a burst of changes costs no buffers.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use heapless::Vec;
use rand_core::{CryptoRng, RngCore};

use super::ipam::{self, Claim};
use super::member::Punch;
use super::record::{MachineRecord, MAX_ENDPOINTS, MAX_RECORD_LEN};
use super::{Destination, Discovery, Event, Member, MemberSlot, Node, Transmit, TunnelPool};
use crate::crypto::CryptoProvider;
use crate::election::{ALIVE, ROLES};
use crate::identity::NodeId;
use crate::ledger::batch::{Batch, BatchWriter};
use crate::ledger::buckets::{ADDRESSES, MACHINES};
use crate::ledger::wire::REQUEST_MAX_IDS;
use crate::ledger::{
    Applied, Digest, EntryRef, EntryState, Ledger, Message, RangeMask, RequestRepr, Scope, SignatureVerifier,
    MAX_ENTRY_LEN, SMALL_ENTRY_LEN,
};
use crate::session::DropReason;
use crate::time::{Duration, Instant};
use crate::wire::{ControlKind, Features, TRANSPORT_HEADER_LEN};

/// Members a new remote entry is forwarded to.
pub const FANOUT: usize = 3;
/// How long a new remote entry waits so that it is forwarded together with
/// the others that arrive meanwhile (several to a datagram, see
/// [`crate::ledger::batch`]). One gossip hop takes this much longer.
pub const FORWARD_WINDOW: Duration = Duration::from_millis(20);
/// New remote entries waiting at most; one more forwards them at once.
pub const FORWARDS: usize = 32;

/// How soon an on-demand session's `ON_DEMAND` is said again when the other
/// end still forwards gossip along it.
pub const ON_DEMAND_RETELL: Duration = Duration::from_secs(30);
/// Anti-entropy interval while the ledger changes.
pub const SYNC_MIN: Duration = Duration::from_secs(1);
/// Anti-entropy interval once replicas agree.
pub const SYNC_MAX: Duration = Duration::from_secs(30);
/// How long an exchange's starter waits for the answer to its digest.
pub const ANSWER_WAIT: Duration = Duration::from_secs(1);
/// How long a node waits to hear the ledger before claiming an address.
pub const CLAIM_DELAY: Duration = Duration::from_secs(1);
/// How long a node waits, after its first session came up, before its first
/// claim: the ledger's claims arrive in a few round trips, and a claim made
/// before them may collide with one the mesh already has.
pub const CLAIM_AFTER_UP: Duration = Duration::from_millis(500);
/// How long a node with bootstrap endpoints waits for one of them (or any
/// member) before claiming alone: a claim made alone collides with the
/// mesh's with a chance of one in the range's size, and the loser moves.
pub const BOOTSTRAP_CLAIM_WAIT: Duration = Duration::from_secs(5);
/// How long a starting node waits for a member to tell it the address it
/// sees it at (`OBSERVED`) before writing its first machines record without
/// one: a record written at once would be rewritten as soon as it is told,
/// and every version goes to every member.
pub const FIRST_RECORD_WAIT: Duration = Duration::from_secs(1);
/// How long changed address claims wait to be settled together (one scan
/// of the claims settles the window's addresses): in a joining mesh a node
/// learns a claim per member within a second or two, and settling each
/// alone scanned every claim each time.
pub const SETTLE_WINDOW: Duration = Duration::from_millis(10);
/// Addresses settled by one scan at most; a window with more settles each
/// full list at once.
const UNSETTLED: usize = 32;
/// Ids asked for in one request intent.
const REQUEST_IDS: usize = 16;
/// How long the wants of a summary page wait for the exchange's next
/// pages, so that one request asks for the wants of several (a page lists
/// up to 48 records; while a mesh joins, about ten of them are missing).
/// The exchange's last page sends them at once; this bounds the wait when
/// a page is lost.
pub const WANTS_WAIT: Duration = Duration::from_millis(50);
/// Queued intents at most, unless the node is given another number (its
/// `Q`); past that the oldest are dropped (anti-entropy repairs what they
/// would have carried).
pub const INTENTS: usize = 256;

/// Something to send to a member, encoded when polled.
#[derive(Debug, Clone)]
pub(crate) enum Intent {
    /// One message (whole entry or fragment `index`) of an entry; a
    /// `repair` answers anti-entropy (the receiver does not forward it).
    Entry {
        to: u16,
        entry: EntryRef,
        index: u8,
        repair: bool,
    },
    /// Our digest.
    Digest { to: u16 },
    /// A summary page of the ranges in `mask`, from id prefix `from`.
    Summary { to: u16, mask: u64, from: u64 },
    /// A request for entries.
    Request { to: u16, ids: Vec<u64, REQUEST_IDS> },
    /// The address we saw the member at.
    Observed { to: u16, addr: SocketAddr },
    /// A direct path probe (or its reply) to one endpoint of a member.
    Probe {
        to: u16,
        addr: SocketAddr,
        nonce: u64,
        reply: bool,
    },
    /// This node is leaving the mesh.
    Goodbye { to: u16 },
    /// `PUNCH_REQUEST` to a relayed member: probe our endpoints now
    /// (`step` 0, or 2 with the nonce of a timed punch), or get ready for
    /// a timed punch (`step` 1: answer with `PUNCH_NOTIFY`). See
    /// `node::relay`.
    Punch { to: u16, step: u8, nonce: u64 },
    /// `PUNCH_NOTIFY`: ready for the timed punch with this nonce.
    PunchReady { to: u16, nonce: u64 },
    /// Our session with the member is on demand (`ControlKind::ON_DEMAND`).
    OnDemand { to: u16 },
    /// What we read (`ControlKind::FEATURES`); `ask` when we have not
    /// heard the member's on this session (it answers with its own).
    Features { to: u16, ask: bool },
    /// `RELAY_REFUSED`: we cannot relay to member `dst`.
    RelayRefused { to: u16, dst: NodeId },
}

/// The control plane's state inside a [`Node`].
pub(crate) struct SyncState<const Q: usize, const F: usize> {
    pub(crate) intents: heapless::Deque<Intent, Q>,
    pub(crate) reassembly: crate::ledger::Reassembly<u16, 2, F>,
    pub(crate) next_sync: Instant,
    pub(crate) sync_gap: Duration,
    /// Addresses other members saw us at, newest first.
    pub(crate) observed: Vec<SocketAddr, MAX_ENDPOINTS>,
    /// Other ports at an address already in `observed`, each with the
    /// member that reported it, until a second member confirms one.
    pub(crate) observed_pending: Vec<(SocketAddr, u16), MAX_ENDPOINTS>,
    pub(crate) record_dirty: bool,
    pub(crate) next_record: Instant,
    /// Until the first machines record is written: the latest time to
    /// write it without an observed address (set at the first timeout).
    pub(crate) first_record_by: Option<Instant>,
    pub(crate) record_written: bool,
    pub(crate) claim_at: Option<Instant>,
    /// When the node first asked for its timers (its start, for the claim).
    pub(crate) started: Option<Instant>,
    /// Whether the first claim was made (or found in the ledger).
    pub(crate) claim_tried: bool,
    pub(crate) intents_dropped: u64,
    /// New remote entries to forward, each with the member it came from.
    pub(crate) forwards: Vec<(EntryRef, Option<u16>), FORWARDS>,
    /// When `forwards` go out.
    pub(crate) forward_at: Option<Instant>,
    /// While set, the requests queued for the member in `wants_from` wait
    /// for the exchange's next summary pages, so that they go out together
    /// (see [`WANTS_WAIT`]); they go at this time at the latest.
    pub(crate) wants_by: Option<Instant>,
    pub(crate) wants_from: u16,
    /// Addresses whose claims changed, settled together at `settle_at`
    /// (or as soon as the list is full).
    pub(crate) unsettled: Vec<Ipv4Addr, UNSETTLED, u8>,
    pub(crate) settle_at: Option<Instant>,
    /// The exchange this node started last, while it waits for the
    /// member's answer: its slot and until when.
    pub(crate) awaiting: Option<(u16, Instant)>,
}

impl<const Q: usize, const F: usize> SyncState<Q, F> {
    /// The member in `slot` saw us at `addr`. A new address is published at
    /// once (the first one, or after a move); another port at an address
    /// already published only once a second member reports it too. A NAT
    /// that maps per destination (symmetric) shows every member its own
    /// port: published one by one, each would be a new version of our
    /// machines record, and under loss replicas would seldom agree. A
    /// mapping that really changed is seen by every member, so it is
    /// confirmed by the second one.
    pub(crate) fn note_observed(&mut self, slot: u16, addr: SocketAddr) {
        if self.observed.contains(&addr) {
            return;
        }
        let Some(same_ip) = self.observed.iter().position(|o| o.ip() == addr.ip()) else {
            if self.observed.is_full() {
                self.observed.pop();
            }
            let _ = self.observed.insert(0, addr);
            self.record_dirty = true;
            return;
        };
        match self.observed_pending.iter().position(|(a, _)| *a == addr) {
            Some(p) if self.observed_pending[p].1 != slot => {
                self.observed_pending.retain(|(a, _)| a.ip() != addr.ip());
                self.observed.remove(same_ip);
                let _ = self.observed.insert(0, addr);
                self.record_dirty = true;
            }
            Some(_) => {}
            None => {
                if self.observed_pending.is_full() {
                    self.observed_pending.remove(0);
                }
                let _ = self.observed_pending.push((addr, slot));
            }
        }
    }
}

impl<const Q: usize, const F: usize> Default for SyncState<Q, F> {
    fn default() -> Self {
        SyncState {
            intents: heapless::Deque::new(),
            reassembly: Default::default(),
            next_sync: Instant::ZERO,
            sync_gap: SYNC_MIN,
            observed: Vec::new(),
            observed_pending: Vec::new(),
            record_dirty: true,
            next_record: Instant::ZERO,
            first_record_by: None,
            record_written: false,
            claim_at: None,
            started: None,
            claim_tried: false,
            intents_dropped: 0,
            forwards: Vec::new(),
            forward_at: None,
            wants_by: None,
            wants_from: 0,
            unsettled: Vec::new(),
            settle_at: None,
            awaiting: None,
        }
    }
}

impl<P, R, V, S, T, L, W, const E: usize, const A: usize, const Q: usize, const H: usize, const F: usize>
    Node<P, R, V, S, T, L, W, E, A, Q, H, F>
where
    P: CryptoProvider,
    R: RngCore + CryptoRng,
    V: SignatureVerifier,
    S: AsMut<[MemberSlot<P>]> + AsRef<[MemberSlot<P>]>,
    T: TunnelPool<P>,
    L: AsMut<Ledger<E, A>> + AsRef<Ledger<E, A>>,
    W: AsMut<[crate::election::MemberView]>,
{
    pub(crate) fn queue(&mut self, intent: Intent) {
        if self.sync.intents.is_full() {
            self.sync.intents.pop_front();
            self.sync.intents_dropped += 1;
        }
        let _ = self.sync.intents.push_back(intent);
        self.transmit_pending = true;
    }

    /// A control message from the member in `slot`.
    pub(crate) fn handle_control(
        &mut self,
        now: Instant,
        slot: u16,
        direct: Option<SocketAddr>,
        kind: ControlKind,
        payload: &[u8],
    ) -> Result<(), DropReason> {
        match kind {
            ControlKind::PATH_PROBE | ControlKind::PATH_PROBE_REPLY => {
                let nonce = u64::from_le_bytes(
                    payload
                        .get(..8)
                        .and_then(|b| b.try_into().ok())
                        .ok_or(DropReason::Malformed(crate::wire::Error::Truncated))?,
                );
                // Only a probe that came straight from the member counts.
                let Some(addr) = direct else { return Ok(()) };
                if kind == ControlKind::PATH_PROBE {
                    self.queue(Intent::Probe {
                        to: slot,
                        addr,
                        nonce,
                        reply: true,
                    });
                    // Its probe got through, so its NAT is open for us now:
                    // probe back at once on that path.
                    let m = self.members.as_ref()[slot as usize].as_ref().expect("member slot");
                    if m.via.is_some() && m.probe_nonce != 0 {
                        let nonce = m.probe_nonce;
                        self.queue(Intent::Probe {
                            to: slot,
                            addr,
                            nonce,
                            reply: false,
                        });
                    }
                } else {
                    let m = self.members.as_mut()[slot as usize].as_mut().expect("member slot");
                    if m.via.is_some() && nonce == m.probe_nonce {
                        // Both directions work: go direct.
                        m.go_direct(addr);
                        let id = m.id;
                        self.push_event(Event::PathChanged(id));
                    }
                }
                Ok(())
            }
            ControlKind::LEDGER_DELTA | ControlKind::LEDGER_DIGEST | ControlKind::LEDGER_REPAIR => {
                self.handle_ledger(now, slot, kind, payload)
            }
            ControlKind::LEDGER_BATCH => self.handle_batch(now, slot, payload),
            ControlKind::FEATURES => {
                let features = Features::parse(payload).map_err(DropReason::Malformed)?;
                let m = self.members.as_mut()[slot as usize].as_mut().expect("member slot");
                m.batches = features.contains(Features::LEDGER_BATCH);
                m.answers = features.contains(Features::ANSWERS_DIGESTS);
                let was_small = m.small_entries;
                m.small_entries = features.contains(Features::SMALL_ENTRIES);
                m.features_heard = true;
                if was_small && !m.small_entries {
                    self.stir_maintenance();
                }
                if features.contains(Features::ASK) {
                    // Ours was lost on the way.
                    self.queue(Intent::Features { to: slot, ask: false });
                }
                Ok(())
            }
            ControlKind::PUNCH_REQUEST => {
                let m = self.members.as_ref()[slot as usize].as_ref().expect("member slot");
                if !(m.up && m.via.is_some()) {
                    return Ok(());
                }
                match parse_punch(payload) {
                    // Get ready: say so at once, probe when told.
                    Some((1, nonce)) => self.queue(Intent::PunchReady { to: slot, nonce }),
                    // Now (a timed punch, or an older node's request).
                    _ => {
                        // Probing now is an attempt of ours too: count
                        // it and put our next one its gap later, so the two
                        // sides' quick attempts end together and the
                        // timed punch gets its `PUNCH_QUIET` after the last
                        // of them. A timed punch under way keeps its
                        // instant.
                        let m = self.members.as_mut()[slot as usize].as_mut().expect("member slot");
                        let idle = m.punch == Punch::Idle;
                        let planned = m.next_probe;
                        if idle {
                            m.punch_tries = m.punch_tries.saturating_add(1);
                            m.hinted = false;
                        }
                        let tries = m.punch_tries;
                        self.probe_direct(now, slot);
                        let m = self.members.as_mut()[slot as usize].as_mut().expect("member slot");
                        m.next_probe = if idle {
                            Some(now + super::relay::punch_gap(tries - 1))
                        } else {
                            planned
                        };
                    }
                }
                Ok(())
            }
            ControlKind::PUNCH_NOTIFY => {
                if let Some((1, nonce)) = parse_punch(payload) {
                    self.punch_ready(now, slot, nonce);
                }
                Ok(())
            }
            ControlKind::GOODBYE => {
                self.member_left(slot);
                Ok(())
            }
            ControlKind::ON_DEMAND => {
                let m = self.members.as_mut()[slot as usize].as_mut().expect("member slot");
                m.on_demand = true;
                Ok(())
            }
            ControlKind::RELAY_REFUSED => {
                let dst = payload
                    .get(..16)
                    .map(|b| NodeId(crate::wire::array(b, 0)))
                    .ok_or(DropReason::Malformed(crate::wire::Error::Truncated))?;
                self.relay_refused(now, slot, &dst);
                Ok(())
            }
            ControlKind::OBSERVED => {
                let addr = parse_addr(payload).ok_or(DropReason::Malformed(crate::wire::Error::Truncated))?;
                self.sync.note_observed(slot, addr);
                Ok(())
            }
            // Kinds of later protocol versions are ignored, not errors.
            _ => Ok(()),
        }
    }

    fn handle_ledger(&mut self, now: Instant, slot: u16, kind: ControlKind, payload: &[u8]) -> Result<(), DropReason> {
        let forward = kind != ControlKind::LEDGER_REPAIR;
        let kind = if forward { kind } else { ControlKind::LEDGER_DELTA };
        let message =
            Message::decode(kind, payload).map_err(|_| DropReason::Malformed(crate::wire::Error::Truncated))?;
        match message {
            Message::Entry(e) => {
                if forward {
                    self.forwarded_on_demand(now, slot, &e.origin());
                }
                if !Self::keeps(payload) {
                    return Ok(());
                }
                let applied = self.ledger.as_mut().apply(now, &mut self.verifier, payload);
                self.after_apply(now, slot, applied, forward);
            }
            Message::Fragment(f) => {
                let Node {
                    sync, ledger, verifier, ..
                } = self;
                if let Some(whole) = sync.reassembly.push(now, slot, &f).filter(|w| Self::keeps(w)) {
                    let applied = ledger.as_mut().apply(now, verifier, whole);
                    self.after_apply(now, slot, applied, forward);
                }
            }
            Message::Digest(d) => {
                let theirs = Digest::parse(&d);
                let ours = self.ledger.as_ref().digest_in(self.scope(slot));
                let mask = ours.mismatch(&theirs);
                // Replicas that agree: an empty page says so to a member
                // that waits for it (older ones need no answer).
                if !mask.is_empty() || self.answers(slot) {
                    self.queue(Intent::Summary {
                        to: slot,
                        mask: mask.0,
                        from: 0,
                    });
                }
            }
            Message::Summary(summary) => {
                if self.sync.awaiting.is_some_and(|(s, _)| s == slot) {
                    self.sync.awaiting = None;
                }
                if summary.mask() == 0 {
                    // The answer of a member whose replica agrees: nothing
                    // to compare, and another exchange's wants wait on.
                    return Ok(());
                }
                if self.sync.wants_from != slot {
                    self.ask_wants();
                }
                let mut sends: Vec<EntryRef, 64> = Vec::new();
                let mut request = Vec::<u64, REQUEST_IDS>::new();
                let mut requests: Vec<Vec<u64, REQUEST_IDS>, 4> = Vec::new();
                for action in self.ledger.as_ref().reconcile_in(self.scope(slot), &summary) {
                    match action {
                        crate::ledger::Action::Send(r) => {
                            let _ = sends.push(r);
                        }
                        crate::ledger::Action::Want(id) => {
                            if request.push(id).is_err() {
                                let _ = requests.push(core::mem::take(&mut request));
                                let _ = request.push(id);
                            }
                        }
                    }
                }
                if !request.is_empty() {
                    let _ = requests.push(request);
                }
                for r in sends {
                    self.push_entry(r, slot, true);
                }
                if !requests.is_empty() {
                    // Divergence found: compare again soon, in case the
                    // request or its answers are lost (repairs are not
                    // forwarded, so nothing else would bring them).
                    self.sync.sync_gap = SYNC_MIN;
                    let gap = spread(SYNC_MIN * 2, self.rng.next_u32());
                    self.sync.next_sync = self.sync.next_sync.min(now + gap);
                    self.sync.wants_from = slot;
                    self.sync.wants_by.get_or_insert(now + WANTS_WAIT);
                }
                for ids in requests {
                    self.queue(Intent::Request { to: slot, ids });
                }
                // The exchange's last page: nothing more to wait for.
                if summary.to() == u64::MAX {
                    self.ask_wants();
                }
            }
            Message::Request(req) => {
                let scope = self.scope(slot);
                let refs: Vec<EntryRef, 160> = self.ledger.as_ref().requested_in(scope, &req).take(160).collect();
                for r in refs {
                    self.push_entry(r, slot, true);
                }
            }
        }
        Ok(())
    }

    /// Applies the entries of a `LEDGER_BATCH` in order, each as if it had
    /// come alone; a malformed item drops the rest.
    fn handle_batch(&mut self, now: Instant, slot: u16, payload: &[u8]) -> Result<(), DropReason> {
        let malformed = DropReason::Malformed(crate::wire::Error::Truncated);
        let batch = Batch::parse(payload).map_err(|_| malformed)?;
        let forward = !batch.repair();
        for item in batch.entries() {
            let bytes = item.map_err(|_| malformed)?;
            let Ok(Message::Entry(e)) = Message::decode(ControlKind::LEDGER_DELTA, bytes) else {
                return Err(malformed);
            };
            if forward {
                self.forwarded_on_demand(now, slot, &e.origin());
            }
            if !Self::keeps(bytes) {
                continue;
            }
            let applied = self.ledger.as_mut().apply(now, &mut self.verifier, bytes);
            self.after_apply(now, slot, applied, forward);
        }
        Ok(())
    }

    fn after_apply(
        &mut self,
        now: Instant,
        slot: u16,
        applied: Result<Applied, crate::ledger::LedgerError>,
        forward: bool,
    ) {
        match applied {
            Ok(Applied::New(_)) | Ok(Applied::Newer(_)) => self.process_changes_from(now, Some(slot), forward),
            Ok(Applied::Older) | Ok(Applied::Equal) => {}
            Err(_) => self.stats.ledger_refused += 1,
        }
    }

    /// Queues every message of entry `r` for the member in `to` (`repair`:
    /// as an answer to anti-entropy).
    fn push_entry(&mut self, r: EntryRef, to: u16, repair: bool) {
        let scope = self.scope(to);
        let messages = match self.ledger.as_ref().encoder(r) {
            // Not for a small member: it would not keep it.
            Ok(enc) if !enc.in_scope(scope) => return,
            Ok(enc) => enc.messages(),
            Err(_) => return,
        };
        for index in 0..messages.min(u8::MAX as usize) {
            self.queue(Intent::Entry {
                to,
                entry: r,
                index: index as u8,
                repair,
            });
        }
    }

    /// Whether this node holds only small ledger entries: its reassembly
    /// buffer (`F`) is shorter than the longest entry. It must then hold
    /// every small one.
    pub(crate) const SMALL_ONLY: bool = {
        assert!(
            F >= MAX_ENTRY_LEN || F >= SMALL_ENTRY_LEN,
            "a node's F must be at least ledger::SMALL_ENTRY_LEN"
        );
        F < MAX_ENTRY_LEN
    };

    /// Whether this node keeps the entry encoded in `encoded`: a small one
    /// only those of [`Scope::Small`] (a peer that does not know it yet may
    /// send others); the ledger judges the rest.
    fn keeps(encoded: &[u8]) -> bool {
        !Self::SMALL_ONLY
            || crate::ledger::wire::EntryPacket::new_checked(encoded)
                .map_or(true, |p| Scope::Small.holds(p.bucket(), encoded.len()))
    }

    /// What this node says it reads and holds (`FEATURES`).
    fn features() -> Features {
        if Self::SMALL_ONLY {
            Features::OURS.with(Features::SMALL_ENTRIES)
        } else {
            Features::OURS
        }
    }

    /// Whether the member in `slot` answers every digest
    /// (`ANSWERS_DIGESTS` on this session).
    fn answers(&self, slot: u16) -> bool {
        self.members
            .as_ref()
            .get(slot as usize)
            .and_then(|m| m.as_ref())
            .is_some_and(|m| m.answers)
    }

    /// Which ledger entries an exchange with the member in `slot` covers:
    /// the small ones when either side holds only those.
    pub(crate) fn scope(&self, slot: u16) -> Scope {
        let theirs = self
            .members
            .as_ref()
            .get(slot as usize)
            .and_then(|m| m.as_ref())
            .is_some_and(|m| m.small_entries);
        if Self::SMALL_ONLY || theirs {
            Scope::Small
        } else {
            Scope::All
        }
    }

    /// Members with a session up (the first 64), in slot order; listed
    /// again only after a session came up or went down.
    pub(super) fn up_slots(&mut self) -> Vec<u16, 64> {
        if self.ups_dirty {
            self.ups_dirty = false;
            self.ups.clear();
            let mut cursor = self.active_head;
            while let Some(slot) = cursor {
                let m = self.members.as_ref()[slot as usize].as_ref().expect("active slot");
                if m.up && self.ups.push(slot).is_err() {
                    break;
                }
                cursor = m.next_active;
            }
            self.ups.sort_unstable();
        }
        self.ups.clone()
    }

    /// Reacts to ledger changes: membership, addresses, and forwarding.
    pub(crate) fn process_changes(&mut self, now: Instant, source: Option<u16>) {
        self.process_changes_from(now, source, true);
    }

    /// [`Self::process_changes`]; remote entries that came as anti-entropy
    /// repairs (`forward` false) are not pushed on.
    fn process_changes_from(&mut self, now: Instant, source: Option<u16>, forward: bool) {
        let mut any = false;
        let mut changed = false;
        let mut claims: Vec<Claim, 32> = Vec::new();
        while let Some(change) = self.ledger.as_mut().poll_change() {
            changed = true;
            let Some(entry) = self.ledger.as_ref().entry(change.entry) else {
                any = true;
                continue;
            };
            let bucket = entry.bucket();
            // Advertisements are refreshed all the time: one missed is
            // repaired by the next periodic sync, not by a burst of them.
            any |= bucket != ALIVE.as_bytes();
            let origin_id = entry.origin_id();
            if bucket == MACHINES.as_bytes() && change.state == EntryState::Live {
                let origin = *entry.origin();
                let record = MachineRecord::parse(entry.value()).unwrap_or_default();
                self.learn_member(now, origin, &record);
            } else if !change.local && (bucket == ROLES.as_bytes() || bucket == ALIVE.as_bytes()) {
                if let Some(r) = self.roles.as_mut() {
                    r.mark_dirty();
                }
            } else if bucket == ADDRESSES.as_bytes() {
                let claim = ipam::decode(entry.value()).map(|addr| Claim {
                    addr,
                    owner: entry.origin_id(),
                    clock: entry.clock(),
                });
                if let Some(c) = claim {
                    if claims.is_full() {
                        let full = core::mem::take(&mut claims);
                        self.resolve_addresses(now, &full);
                    }
                    let _ = claims.push(c);
                }
            }
            self.stats.ledger_writes += u64::from(change.local);
            // Forward: a local write at once to every member with a
            // session (never back to its writer); a new remote entry to a
            // few neighbours, with the others of its window.
            if !change.local {
                if forward {
                    if self.sync.forwards.is_full() {
                        self.flush_forwards();
                    }
                    let _ = self.sync.forwards.push((change.entry, source));
                    self.sync.forward_at.get_or_insert(now + FORWARD_WINDOW);
                }
                continue;
            }
            let mut targets = self.up_slots();
            let slots = self.members.as_ref();
            targets.retain(|s| Some(*s) != source && slots[*s as usize].as_ref().is_some_and(|m| m.id != origin_id));
            for to in targets {
                self.push_entry(change.entry, to, false);
            }
        }
        if any {
            self.sync.sync_gap = SYNC_MIN;
            let gap = spread(SYNC_MIN, self.rng.next_u32());
            self.sync.next_sync = self.sync.next_sync.min(now + gap);
        }
        if changed {
            self.push_event(Event::LedgerChanged);
        }
        if !claims.is_empty() {
            self.resolve_addresses(now, &claims);
        }
    }

    /// Forwards the new remote entries of the window: each to [`FANOUT`]
    /// members with a session, never back to where it came from nor to its
    /// writer, and not along sessions made for traffic unless there is
    /// nothing else (a node talking to many members would otherwise get a
    /// copy from nearly every forwarder). The whole window goes to the
    /// same few members, picked at random, so their entries share
    /// datagrams.
    pub(crate) fn flush_forwards(&mut self) {
        self.sync.forward_at = None;
        let pending = core::mem::take(&mut self.sync.forwards);
        let mut targets = self.up_slots();
        let slots = self.members.as_ref();
        if targets
            .iter()
            .any(|s| slots[*s as usize].as_ref().is_some_and(|m| !m.on_demand))
        {
            targets.retain(|s| slots[*s as usize].as_ref().is_some_and(|m| !m.on_demand));
        }
        // Two spares: an entry's source and writer may be among them.
        let mut chosen: Vec<(u16, NodeId), { FANOUT + 2 }> = Vec::new();
        while !targets.is_empty() && !chosen.is_full() {
            let i = (self.rng.next_u32() as usize) % targets.len();
            let slot = targets.swap_remove(i);
            if let Some(m) = self.members.as_ref()[slot as usize].as_ref() {
                let _ = chosen.push((slot, m.id));
            }
        }
        let mut entries: Vec<(EntryRef, Option<u16>, NodeId), FORWARDS> = Vec::new();
        for (r, source) in pending {
            // A version overtaken meanwhile is gone; its successor is queued.
            if let Some(e) = self.ledger.as_ref().entry(r) {
                let _ = entries.push((r, source, e.origin_id()));
            }
        }
        for (k, &(to, to_id)) in chosen.iter().enumerate() {
            for &(r, source, origin) in &entries {
                let takes = |(slot, id): &(u16, NodeId)| Some(*slot) != source && *id != origin;
                if takes(&(to, to_id)) && chosen[..k].iter().filter(|c| takes(c)).count() < FANOUT {
                    self.push_entry(r, to, false);
                }
            }
        }
    }

    fn learn_member(&mut self, now: Instant, origin: crate::identity::PublicIdentity, record: &MachineRecord) {
        if origin == self.public {
            return;
        }
        let id = origin.node_id();
        let slot = match self.find(&id) {
            Some(slot) => slot,
            None => match self.place(now, Member::new(origin, Discovery::Ledger)) {
                Ok(slot) => slot,
                Err(_) => return,
            },
        };
        let m = self.members.as_mut()[slot as usize].as_mut().expect("member slot");
        m.candidates = record.endpoints.clone();
        if !m.up {
            if let Some(first) = m.candidates.first() {
                if m.endpoint.is_none() {
                    m.endpoint = Some(*first);
                    self.stir_maintenance();
                }
            }
        }
    }

    /// Settles who holds the addresses named by changed claims: each
    /// claimed address goes to the claim that wins it (see [`ipam`]); a
    /// member that moved frees its old address, whose next claimant may then
    /// win it. O(claims) per changed claim.
    fn resolve_addresses(&mut self, now: Instant, changed: &[Claim]) {
        for c in changed {
            // The owner's previous address, if it moved.
            let previous = if c.owner == self.id {
                self.ipv4
            } else {
                let slot = self.find(&c.owner);
                let m = slot.and_then(|s| self.members.as_mut()[s as usize].as_mut());
                let previous = m.as_ref().and_then(|m| m.ipv4);
                if let Some(m) = m.filter(|m| m.ipv4 != Some(c.addr)) {
                    m.ipv4 = None; // until it wins the new one
                }
                previous
            };
            if c.owner == self.id {
                // Our own claim: it holds (or moves) at once.
                self.settle(now, c.addr);
            } else {
                self.defer_settle(now, c.addr);
            }
            if let Some(old) = previous.filter(|old| *old != c.addr) {
                self.defer_settle(now, old);
            }
        }
    }

    /// Settles `addr` with the others of the window ([`SETTLE_WINDOW`]).
    fn defer_settle(&mut self, now: Instant, addr: Ipv4Addr) {
        if self.sync.unsettled.contains(&addr) {
            return;
        }
        // Settling may claim anew and so defer more: until there is room.
        while self.sync.unsettled.is_full() {
            self.settle_window(now);
        }
        let _ = self.sync.unsettled.push(addr);
        self.sync.settle_at.get_or_insert(now + SETTLE_WINDOW);
    }

    /// Settles the addresses of the window.
    fn settle_window(&mut self, now: Instant) {
        self.sync.settle_at = None;
        let addrs = core::mem::take(&mut self.sync.unsettled);
        self.settle_all(now, &addrs);
    }

    /// For each of `addrs` (sorted, distinct, at most [`UNSETTLED`]): the
    /// claim that wins it, from one scan of the claims (see [`ipam`] for
    /// the rule); and whether any of them has more than one claim.
    fn winners(&self, addrs: &[Ipv4Addr]) -> (Vec<Option<Claim>, UNSETTLED>, bool) {
        let mut out: Vec<Option<Claim>, UNSETTLED> = addrs.iter().map(|_| None).collect();
        let mut contested = false;
        for (i, c) in self.claims_among(addrs) {
            contested |= out[i].is_some();
            if out[i].is_none_or(|w| c.beats(&w)) {
                out[i] = Some(c);
            }
        }
        (out, contested)
    }

    /// The claims on any of `addrs` (sorted), each with its address's index.
    fn claims_among<'a>(&'a self, addrs: &'a [Ipv4Addr]) -> impl Iterator<Item = (usize, Claim)> + 'a {
        self.ledger
            .as_ref()
            .scan_bucket(ADDRESSES.as_bytes())
            .filter_map(move |e| {
                let addr = ipam::decode(e.value())?;
                let i = addrs.binary_search(&addr).ok()?;
                Some((
                    i,
                    Claim {
                        addr,
                        owner: e.origin_id(),
                        clock: e.clock(),
                    },
                ))
            })
    }

    /// A member just placed in `slot` takes the address its claim holds, if
    /// the claim arrived first (anti-entropy sends entries in id order, and
    /// a beacon can introduce a member at any time).
    pub(crate) fn adopt_claim(&mut self, now: Instant, slot: u16) {
        let Some(id) = self.members.as_ref()[slot as usize].as_ref().map(|m| m.id) else {
            return;
        };
        let key = id_text(&id);
        let claimed = self
            .ledger
            .as_ref()
            .get(ADDRESSES.as_bytes(), key.as_bytes())
            .and_then(|e| ipam::decode(e.value()));
        if let Some(addr) = claimed {
            self.defer_settle(now, addr);
        }
    }

    /// Gives `addr` to the claim that wins it, and takes it from the other
    /// claimants (only a claimant can hold an address).
    fn settle(&mut self, now: Instant, addr: Ipv4Addr) {
        self.settle_all(now, &[addr]);
    }

    /// [`Self::settle`] for each of `addrs` (distinct, at most
    /// [`UNSETTLED`]), from one scan of the claims for the winners and,
    /// only if some address has several claims (a conflict, rare), a walk
    /// of the member table for holders that lost.
    fn settle_all(&mut self, now: Instant, addrs: &[Ipv4Addr]) {
        let mut sorted: Vec<Ipv4Addr, UNSETTLED> = addrs.iter().copied().collect();
        sorted.sort_unstable();
        let (winners, contested) = self.winners(&sorted);
        if contested {
            // A member holding one of these addresses that another claim
            // wins gives it up (however many claims lost: only holders
            // matter, and each address has at most one).
            for m in self.members.as_mut().iter_mut().flatten() {
                let Some(i) = m.ipv4.and_then(|a| sorted.binary_search(&a).ok()) else {
                    continue;
                };
                if winners[i].is_some_and(|w| w.owner != m.id) {
                    m.ipv4 = None;
                }
            }
        }
        let own = self.own_claim();
        let mut moved = false;
        for (&addr, winner) in sorted.iter().zip(winners) {
            let Some(w) = winner else { continue };
            if w.owner == self.id {
                self.set_ipv4(addr);
            } else {
                if let Some(slot) = self.find(&w.owner) {
                    self.members.as_mut()[slot as usize].as_mut().expect("found").ipv4 = Some(addr);
                }
                // Our own claim on it lost: move (once all are settled).
                if own == Some(addr) {
                    if self.ipv4 == Some(addr) {
                        self.ipv4 = None;
                    }
                    moved = true;
                }
            }
        }
        if moved {
            self.claim_address(now);
        }
    }

    fn set_ipv4(&mut self, addr: Ipv4Addr) {
        if self.ipv4 != Some(addr) {
            self.ipv4 = Some(addr);
            self.push_event(Event::AddressAssigned(addr));
        }
    }

    /// Claims a free address of the overlay range (the preferred one if free).
    fn claim_address(&mut self, now: Instant) {
        let range = self.config.overlay;
        let id = self.id;
        let taken = |a: Ipv4Addr| {
            self.ledger
                .as_ref()
                .scan_bucket(ADDRESSES.as_bytes())
                .any(|e| e.origin_id() != id && ipam::decode(e.value()) == Some(a))
        };
        let Some(addr) = ipam::choose(&range, &id, taken) else {
            return;
        };
        let key = self.id_text();
        let Node { ledger, identity, .. } = self;
        if ledger
            .as_mut()
            .put(now, identity, ADDRESSES.as_bytes(), key.as_bytes(), &addr.octets(), 0)
            .is_ok()
        {
            self.process_changes(now, None);
        }
    }

    pub(crate) fn id_text(&self) -> heapless::String<26> {
        id_text(&self.id)
    }

    /// Control-plane timers: the machines record, the address claim,
    /// anti-entropy.
    pub(crate) fn sync_timeout(&mut self, now: Instant) {
        let first_record_by = *self.sync.first_record_by.get_or_insert(now + FIRST_RECORD_WAIT);
        let waiting_for_observed = !self.sync.record_written && self.sync.observed.is_empty() && now < first_record_by;
        if self.sync.record_dirty && now >= self.sync.next_record && !waiting_for_observed {
            self.sync.record_dirty = false;
            self.sync.record_written = true;
            self.sync.next_record = now + Duration::from_secs(1);
            let mut record = MachineRecord::default();
            for e in self.config.advertise.iter().chain(self.sync.observed.iter()) {
                if !record.endpoints.contains(e) {
                    let _ = record.endpoints.push(*e);
                }
            }
            let mut buf = [0u8; MAX_RECORD_LEN];
            let n = record.emit(&mut buf);
            let key = self.id_text();
            let Node { ledger, identity, .. } = self;
            // An address observed that was already advertised (or one that
            // fell out of the list) can leave the record as it is: no new
            // version then.
            let same = ledger
                .as_ref()
                .get(MACHINES.as_bytes(), key.as_bytes())
                .is_some_and(|e| e.value() == &buf[..n]);
            if !same
                && ledger
                    .as_mut()
                    .put(now, identity, MACHINES.as_bytes(), key.as_bytes(), &buf[..n], 0)
                    .is_ok()
            {
                self.process_changes(now, None);
            }
        }
        self.claim_timeout(now);
        if self.sync.awaiting.is_some_and(|(_, t)| now >= t) {
            // No answer: the digest or the first page was lost. As after
            // an exchange that found a difference, try again soon (with a
            // member drawn anew) and back off from the shortest gap.
            self.sync.awaiting = None;
            self.stats.ledger_exchanges_unanswered += 1;
            self.sync.sync_gap = SYNC_MIN;
            let gap = spread(ANSWER_WAIT, self.rng.next_u32());
            self.sync.next_sync = self.sync.next_sync.min(now + gap);
        }
        if now >= self.sync.next_sync {
            let up = self.up_slots();
            if !up.is_empty() {
                let to = up[(self.rng.next_u32() as usize) % up.len()];
                let heard = self.members.as_ref()[to as usize]
                    .as_ref()
                    .is_some_and(|m| m.features_heard);
                if !heard {
                    // Its FEATURES were lost: ask for them, before the
                    // digest it may answer.
                    self.queue(Intent::Features { to, ask: true });
                }
                self.queue(Intent::Digest { to });
            }
            self.sync.next_sync = now + spread(self.sync.sync_gap, self.rng.next_u32());
            self.sync.sync_gap = (self.sync.sync_gap * 2).min(SYNC_MAX);
        }
        self.ledger.as_mut().expire(now);
        if self.ledger.as_ref().poll_timeout().is_some() {
            self.process_changes(now, None);
        }
        if self.sync.forward_at.is_some_and(|t| now >= t) {
            self.flush_forwards();
        }
        if self.sync.settle_at.is_some_and(|t| now >= t) {
            self.settle_window(now);
        }
        if self.sync.wants_by.is_some_and(|t| now >= t) {
            self.ask_wants();
        }
    }

    /// The address claim's timer: the first claim after hearing the ledger
    /// for [`CLAIM_DELAY`] (longer while bootstrap endpoints are silent, see
    /// [`BOOTSTRAP_CLAIM_WAIT`]), then a retry every [`SYNC_MAX`] while the
    /// node has no address.
    fn claim_timeout(&mut self, now: Instant) {
        let Some(t) = self.sync.claim_at else {
            self.sync.started = Some(now);
            self.sync.claim_at = Some(now + CLAIM_DELAY);
            return;
        };
        if now < t || self.ipv4.is_some() {
            return;
        }
        let claimed = self.own_claim();
        if claimed.is_none() && !self.sync.claim_tried && !self.bootstrap.is_empty() && self.up_slots().is_empty() {
            // Bootstrap endpoints that have not answered yet: wait for them
            // (a while) rather than claim alone.
            let wait = self.sync.started.unwrap_or(now) + BOOTSTRAP_CLAIM_WAIT;
            if now < wait {
                self.sync.claim_at = Some(wait);
                return;
            }
        }
        self.sync.claim_tried = true;
        self.sync.claim_at = Some(now + SYNC_MAX);
        match claimed {
            Some(addr) => self.settle(now, addr),
            None => self.claim_address(now),
        }
    }

    /// Whether this replica holds `id`'s machines record (the member is
    /// known to the mesh, not only heard on the LAN).
    pub(crate) fn has_machine_record(&self, id: &NodeId) -> bool {
        self.ledger
            .as_ref()
            .get(MACHINES.as_bytes(), id_text(id).as_bytes())
            .is_some()
    }

    /// The address this node's claim in the ledger holds.
    fn own_claim(&self) -> Option<Ipv4Addr> {
        let own = self.id_text();
        self.ledger
            .as_ref()
            .get(ADDRESSES.as_bytes(), own.as_bytes())
            .and_then(|e| ipam::decode(e.value()))
    }

    /// A session came up: before the first claim, give the ledger's claims
    /// [`CLAIM_AFTER_UP`] to arrive.
    pub(crate) fn claim_after_up(&mut self, now: Instant) {
        if self.sync.claim_tried || self.ipv4.is_some() {
            return;
        }
        // (Also ends a wait for silent bootstrap endpoints.)
        if let Some(started) = self.sync.started {
            self.sync.claim_at = Some((started + CLAIM_DELAY).max(now + CLAIM_AFTER_UP));
        }
    }

    /// The earliest control-plane timer.
    pub(crate) fn sync_poll_timeout(&self) -> Option<Instant> {
        let mut t = self.sync.next_sync;
        if self.sync.record_dirty {
            let mut at = self.sync.next_record;
            if !self.sync.record_written && self.sync.observed.is_empty() {
                at = at.max(self.sync.first_record_by.unwrap_or(Instant::ZERO));
            }
            t = t.min(at);
        }
        match self.sync.claim_at {
            None => t = Instant::ZERO,
            Some(c) if self.ipv4.is_none() => t = t.min(c),
            _ => {}
        }
        if let Some(l) = self.ledger.as_ref().poll_timeout() {
            t = t.min(l);
        }
        if let Some(f) = self.sync.forward_at {
            t = t.min(f);
        }
        if let Some(f) = self.sync.settle_at {
            t = t.min(f);
        }
        if let Some(f) = self.sync.wants_by {
            t = t.min(f);
        }
        if let Some((_, f)) = self.sync.awaiting {
            t = t.min(f);
        }
        Some(t)
    }

    /// Encodes and seals the next queued intent into `out`.
    pub(crate) fn next_intent(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        // Held requests go round the queue once; the rest go in order.
        let mut held = 0;
        while let Some(intent) = self.sync.intents.pop_front() {
            if self.held(&intent) {
                let _ = self.sync.intents.push_back(intent);
                held += 1;
                if held >= self.sync.intents.len() {
                    return None;
                }
                continue;
            }
            let to = match &intent {
                Intent::Entry { to, .. }
                | Intent::Digest { to }
                | Intent::Summary { to, .. }
                | Intent::Request { to, .. }
                | Intent::Observed { to, .. }
                | Intent::Probe { to, .. }
                | Intent::Goodbye { to }
                | Intent::Punch { to, .. }
                | Intent::PunchReady { to, .. }
                | Intent::OnDemand { to }
                | Intent::RelayRefused { to, .. }
                | Intent::Features { to, .. } => *to,
            };
            // Probes go straight to the probed endpoint; the rest through the
            // member's relay if it has one.
            let (direct_to, via) = match &intent {
                Intent::Probe { addr, .. } => (Some(*addr), None),
                _ => (
                    None,
                    self.members
                        .as_ref()
                        .get(to as usize)
                        .and_then(|m| m.as_ref())
                        .and_then(|m| m.via),
                ),
            };
            let base = if via.is_some() { super::relay::RELAY_HEADROOM } else { 0 };
            let body = &mut out[base + TRANSPORT_HEADER_LEN + 1..];
            // Whole ledger entries in the message.
            let mut entries = 0;
            let mut requests = 0;
            let mut exchanges = 0;
            let encoded: Option<(ControlKind, usize)> = match intent {
                Intent::Entry {
                    entry, index, repair, ..
                } => match if index == 0 {
                    self.emit_batch(entry, to, repair, body)
                } else {
                    None
                } {
                    Some((n, count)) => {
                        entries = count;
                        Some((ControlKind::LEDGER_BATCH, n))
                    }
                    None => {
                        let n = self.ledger.as_ref().encoder(entry).ok().and_then(|enc| {
                            entries = usize::from(enc.messages() == 1);
                            enc.emit(index as usize, body).ok()
                        });
                        let kind = if repair {
                            ControlKind::LEDGER_REPAIR
                        } else {
                            ControlKind::LEDGER_DELTA
                        };
                        n.map(|n| (kind, n))
                    }
                },
                Intent::Digest { to } => {
                    exchanges = 1;
                    self.sync.awaiting = self.answers(to).then_some((to, now + ANSWER_WAIT));
                    self.ledger
                        .as_ref()
                        .digest_in(self.scope(to))
                        .emit(body)
                        .map(|n| (ControlKind::LEDGER_DIGEST, n))
                }
                Intent::Summary { to, mask, from } => {
                    let scope = self.scope(to);
                    match self
                        .ledger
                        .as_ref()
                        .write_summary_in(scope, RangeMask(mask), from, body)
                    {
                        Ok(page) => {
                            if let Some(next) = page.next {
                                // The next page goes out next, so pages stay in order.
                                let _ = self.sync.intents.push_front(Intent::Summary { to, mask, from: next });
                            }
                            Some((ControlKind::LEDGER_DIGEST, page.len))
                        }
                        Err(_) => None,
                    }
                }
                Intent::Request { ids, .. } => {
                    let mut req = RequestRepr::new();
                    for id in ids {
                        req.push(id);
                    }
                    self.merge_requests(to, &mut req);
                    requests = 1;
                    req.emit(body).map(|n| (ControlKind::LEDGER_DIGEST, n))
                }
                Intent::Observed { addr, .. } => Some((ControlKind::OBSERVED, emit_addr(&addr, body))),
                Intent::Goodbye { .. } => Some((ControlKind::GOODBYE, 0)),
                Intent::Punch { step: 0, .. } => Some((ControlKind::PUNCH_REQUEST, 0)),
                Intent::Punch { step, nonce, .. } => {
                    body[0] = step;
                    body[1..9].copy_from_slice(&nonce.to_le_bytes());
                    Some((ControlKind::PUNCH_REQUEST, 9))
                }
                Intent::PunchReady { nonce, .. } => {
                    body[0] = 1;
                    body[1..9].copy_from_slice(&nonce.to_le_bytes());
                    Some((ControlKind::PUNCH_NOTIFY, 9))
                }
                Intent::OnDemand { .. } => Some((ControlKind::ON_DEMAND, 0)),
                Intent::RelayRefused { dst, .. } => {
                    body[..16].copy_from_slice(&dst.0);
                    Some((ControlKind::RELAY_REFUSED, 16))
                }
                Intent::Features { ask, .. } => {
                    let ours = if ask {
                        Self::features().with(Features::ASK)
                    } else {
                        Self::features()
                    };
                    Some((ControlKind::FEATURES, ours.emit(body)))
                }
                Intent::Probe { nonce, reply, .. } => {
                    body[..8].copy_from_slice(&nonce.to_le_bytes());
                    Some((
                        if reply {
                            ControlKind::PATH_PROBE_REPLY
                        } else {
                            ControlKind::PATH_PROBE
                        },
                        8,
                    ))
                }
            };
            let Some((kind, n)) = encoded else { continue };
            out[base + TRANSPORT_HEADER_LEN] = kind.0;
            let Some(m) = self.members.as_mut().get_mut(to as usize).and_then(|m| m.as_mut()) else {
                continue;
            };
            let id = m.id;
            let (Some(t), Some(endpoint)) = (super::pooled(&mut self.tunnels, m.tunnel), direct_to.or(m.endpoint))
            else {
                continue;
            };
            let Ok(sealed) = t.encapsulate(now, &mut out[base..], n + 1).map(|d| d.len()) else {
                continue;
            };
            self.stats.ledger_entries_sent += entries as u64;
            self.stats.ledger_batches_sent += u64::from(kind == ControlKind::LEDGER_BATCH);
            self.stats.ledger_requests_sent += requests;
            self.stats.ledger_exchanges_started += exchanges;
            self.after_tunnel_activity(now, to);
            match via {
                None => {
                    return Some(Transmit {
                        destination: Destination::Unicast(endpoint),
                        len: sealed,
                    })
                }
                Some(via) => {
                    if let Some(t) = self.wrap(now, via, ControlKind::RELAY, &id, out, sealed) {
                        return Some(t);
                    }
                }
            }
        }
        None
    }

    /// Writes entry `first` for the member in `to`, if it reads batches,
    /// together with other whole entries queued for it with the same
    /// `repair`, as one `LEDGER_BATCH` into `body`; returns its length and
    /// the entries in it. `None` (and nothing taken from the queue) when
    /// the entry would go alone: the member does not read batches, the
    /// entry travels in fragments, or nothing else is queued for it.
    ///
    /// The entries taken may be anywhere in the queue (a write goes to
    /// every member in turn, so one member's entries alternate with the
    /// others'); the rest keep their order.
    fn emit_batch(&mut self, first: EntryRef, to: u16, repair: bool, body: &mut [u8]) -> Option<(usize, usize)> {
        let reads = self
            .members
            .as_ref()
            .get(to as usize)
            .and_then(|m| m.as_ref())
            .is_some_and(|m| m.batches);
        if !reads {
            return None;
        }
        let ledger = self.ledger.as_ref();
        let enc = ledger.encoder(first).ok().filter(|e| e.messages() == 1)?;
        let same =
            |i: &Intent| matches!(i, Intent::Entry { to: t, index: 0, repair: r, .. } if *t == to && *r == repair);
        if !self.sync.intents.iter().any(same) {
            return None;
        }
        let mut batch = BatchWriter::new(body, repair)?;
        batch.push(&enc);
        let mut full = false;
        for _ in 0..self.sync.intents.len() {
            let Some(intent) = self.sync.intents.pop_front() else {
                break;
            };
            if !full && same(&intent) {
                let Intent::Entry { entry, .. } = intent else {
                    unreachable!()
                };
                match ledger.encoder(entry) {
                    // Overtaken meanwhile: nothing to send.
                    Err(_) => continue,
                    Ok(enc) if enc.messages() == 1 && batch.push(&enc) => continue,
                    Ok(enc) => full = enc.messages() == 1,
                }
            }
            let _ = self.sync.intents.push_back(intent);
        }
        Some((batch.len(), batch.count()))
    }

    /// Sends the requests held for the next summary pages (see
    /// [`WANTS_WAIT`]); they go out merged ([`Self::merge_requests`]).
    pub(crate) fn ask_wants(&mut self) {
        if self.sync.wants_by.take().is_some() {
            self.transmit_pending = true;
        }
    }

    /// Whether `intent` is a request held for the next summary pages.
    fn held(&self, intent: &Intent) -> bool {
        self.sync.wants_by.is_some() && matches!(intent, Intent::Request { to, .. } if *to == self.sync.wants_from)
    }

    /// Adds to `req` the ids of other requests queued for the member in
    /// `to`, as many whole requests as fit in one message
    /// ([`REQUEST_MAX_IDS`] ids): a summary page with
    /// many missing entries queues several requests, and each would be a
    /// datagram of its own. The rest of the queue keeps its order.
    fn merge_requests(&mut self, to: u16, req: &mut RequestRepr) {
        let fits = |req: &RequestRepr, ids: &Vec<u64, REQUEST_IDS>| req.len() + ids.len() <= REQUEST_MAX_IDS;
        let mergeable =
            |req: &RequestRepr, i: &Intent| matches!(i, Intent::Request { to: t, ids } if *t == to && fits(req, ids));
        if !self.sync.intents.iter().any(|i| mergeable(req, i)) {
            return;
        }
        for _ in 0..self.sync.intents.len() {
            let Some(intent) = self.sync.intents.pop_front() else {
                break;
            };
            if mergeable(req, &intent) {
                if let Intent::Request { ids, .. } = intent {
                    for id in ids {
                        req.push(id);
                    }
                    continue;
                }
            }
            let _ = self.sync.intents.push_back(intent);
        }
    }

    /// Tells every member with a session up that this node is leaving (the
    /// host stops it once `poll_transmit` has drained): they report it
    /// down at once instead of when its session times out.
    pub fn leave(&mut self) {
        for slot in self.up_slots() {
            self.queue(Intent::Goodbye { to: slot });
        }
    }

    /// Starts an anti-entropy exchange with a member whose session just came up.
    pub(crate) fn greet(&mut self, slot: u16) {
        self.queue(Intent::Digest { to: slot });
    }

    /// Tells the member in `slot`, if we made our session with it for
    /// traffic, not to forward gossip along it.
    pub(crate) fn tell_on_demand(&mut self, now: Instant, slot: u16) {
        let Some(m) = self.members.as_mut()[slot as usize].as_mut() else {
            return;
        };
        if m.on_demand && m.up {
            m.on_demand_told = Some(now);
            self.queue(Intent::OnDemand { to: slot });
        }
    }

    /// Another member's entry came along our on-demand session with the
    /// member in `slot`: our `ON_DEMAND` was lost (or it restarted), so say
    /// it again, at most every [`ON_DEMAND_RETELL`].
    fn forwarded_on_demand(&mut self, now: Instant, slot: u16, origin: &crate::identity::PublicIdentity) {
        let Some(m) = self.members.as_ref()[slot as usize].as_ref() else {
            return;
        };
        let due = m
            .on_demand_told
            .is_none_or(|t| now.saturating_since(t) >= ON_DEMAND_RETELL);
        if m.on_demand && m.identity != *origin && due {
            self.tell_on_demand(now, slot);
        }
    }

    /// Tells the member in `slot` the address we see it at.
    pub(crate) fn tell_observed(&mut self, slot: u16, addr: SocketAddr) {
        self.queue(Intent::Observed { to: slot, addr });
    }
}

/// A punch payload: step and nonce (empty: an older node's plain request).
fn parse_punch(payload: &[u8]) -> Option<(u8, u64)> {
    let b = payload.get(..9)?;
    Some((b[0], u64::from_le_bytes(crate::wire::array(b, 1))))
}

fn emit_addr(addr: &SocketAddr, out: &mut [u8]) -> usize {
    match addr.ip() {
        IpAddr::V4(v4) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&v4.octets());
            out[5..7].copy_from_slice(&addr.port().to_be_bytes());
            7
        }
        IpAddr::V6(v6) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&v6.octets());
            out[17..19].copy_from_slice(&addr.port().to_be_bytes());
            19
        }
    }
}

fn parse_addr(b: &[u8]) -> Option<SocketAddr> {
    match (b.first()?, b.len()) {
        (4, 7) => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(&b[1..5]).ok()?)),
            u16::from_be_bytes([b[5], b[6]]),
        )),
        (6, 19) => Some(SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(&b[1..17]).ok()?)),
            u16::from_be_bytes([b[17], b[18]]),
        )),
        _ => None,
    }
}

/// A node id as the key of its owner-only entries.
fn id_text(id: &NodeId) -> heapless::String<26> {
    let mut s = [0u8; 26];
    id.encode(&mut s);
    let mut out = heapless::String::new();
    let _ = out.push_str(core::str::from_utf8(&s).unwrap_or(""));
    out
}

/// `gap` spread evenly over `[gap / 2, gap * 3 / 2)` by `r`: periodic
/// exchanges of nodes that started together drift apart instead of
/// running in lockstep (Floyd and Jacobson, "The Synchronization of
/// Periodic Routing Messages", 1994).
fn spread(gap: Duration, r: u32) -> Duration {
    let us = gap.as_micros() as u64;
    Duration::from_micros(us / 2 + ((us as u128 * r as u128) >> 32) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port)
    }

    #[test]
    fn exchange_gaps_spread_over_half_to_one_and_a_half_times_their_length() {
        let gap = Duration::from_secs(1);
        assert_eq!(spread(gap, 0), Duration::from_millis(500));
        assert_eq!(spread(gap, 1 << 31), gap);
        assert_eq!(spread(gap, u32::MAX), Duration::from_micros(1_499_999));
        assert_eq!(spread(SYNC_MAX, 1 << 30), Duration::from_secs(30) * 3 / 4);
    }

    #[test]
    fn a_new_address_is_published_at_once() {
        let mut s: SyncState<4, 0> = SyncState {
            record_dirty: false,
            ..SyncState::default()
        };
        s.note_observed(1, at([203, 0, 113, 7], 4000));
        assert_eq!(s.observed.as_slice(), &[at([203, 0, 113, 7], 4000)]);
        assert!(s.record_dirty);
        // Another address (a LAN one, or after a move): at once too.
        s.record_dirty = false;
        s.note_observed(2, at([192, 168, 1, 5], 51820));
        assert_eq!(s.observed[0], at([192, 168, 1, 5], 51820));
        assert!(s.record_dirty);
        // The same again changes nothing.
        s.record_dirty = false;
        s.note_observed(3, at([203, 0, 113, 7], 4000));
        assert!(!s.record_dirty);
        assert_eq!(s.observed.len(), 2);
    }

    #[test]
    fn per_destination_ports_are_not_published_one_by_one() {
        let mut s: SyncState<4, 0> = SyncState::default();
        s.note_observed(1, at([203, 0, 113, 7], 4000));
        s.record_dirty = false;
        // A symmetric NAT: every member sees its own port.
        for (slot, port) in [(2, 4001), (3, 4002), (4, 4003), (5, 4004), (6, 4005)] {
            s.note_observed(slot, at([203, 0, 113, 7], port));
            // Repeated by the same member: still one report.
            s.note_observed(slot, at([203, 0, 113, 7], port));
        }
        assert!(!s.record_dirty);
        assert_eq!(s.observed.as_slice(), &[at([203, 0, 113, 7], 4000)]);
    }

    #[test]
    fn a_changed_mapping_is_published_once_a_second_member_sees_it() {
        let mut s: SyncState<4, 0> = SyncState::default();
        s.note_observed(1, at([203, 0, 113, 7], 4000));
        s.note_observed(2, at([192, 168, 1, 5], 51820));
        s.record_dirty = false;
        s.note_observed(3, at([203, 0, 113, 7], 5000));
        assert!(!s.record_dirty);
        s.note_observed(4, at([203, 0, 113, 7], 5000));
        assert!(s.record_dirty);
        // It replaces the old port at that address, newest first.
        assert_eq!(
            s.observed.as_slice(),
            &[at([203, 0, 113, 7], 5000), at([192, 168, 1, 5], 51820)]
        );
        assert!(s.observed_pending.is_empty());
    }
}
