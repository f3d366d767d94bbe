//! [`Member`]: what a node knows about one other member of the mesh, and the
//! slot it lives in.
//!
//! The member table is storage the caller provides (`[MemberSlot; N]` on an
//! embedded target, a boxed slice on a host): its length is the node's
//! capacity, and a slot's index is stable for the member's lifetime, so
//! session indices can carry it (see `session::INDEX_SLOT_BITS`). Slots with
//! a tunnel are threaded on an intrusive list so timers only visit those.
//!
//! Tunnels live in a second table the caller provides, the tunnel pool
//! ([`TunnelSlot`]s): a member holds the index of its tunnel there. A pool
//! as long as the member table gives every member its own; a shorter one
//! (a small device) holds only the sessions open at once: a member whose
//! tunnel went idle gives it back when another member needs one, and else
//! the session quiet longest makes room (see `Node::install_tunnel`).

use core::net::{Ipv4Addr, SocketAddr};

use crate::crypto::CryptoProvider;
use crate::identity::{NodeId, PublicIdentity};
use crate::noise::Tai64N;
use crate::session::Tunnel;
use crate::time::Instant;

/// One slot of the member table: empty or a member.
pub type MemberSlot<P> = Option<Member<P>>;

/// One entry of the tunnel pool: free or a member's tunnel.
pub type TunnelSlot<P> = Option<Tunnel<P>>;

/// How a member was first learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// A LAN beacon.
    Beacon,
    /// A hello or hello reply (bootstrap).
    Hello,
    /// An incoming handshake.
    Handshake,
    /// Its `machines` entry in the ledger.
    Ledger,
}

/// What a node knows about one member.
pub struct Member<P: CryptoProvider> {
    pub(crate) identity: PublicIdentity,
    pub(crate) id: NodeId,
    /// Interface id of the member's overlay IPv6 address.
    pub(crate) iid: u64,
    /// The member's overlay IPv4 address, once claimed.
    pub(crate) ipv4: Option<Ipv4Addr>,
    /// Where datagrams for it go: the last authenticated source, else the
    /// last announced endpoint.
    pub(crate) endpoint: Option<SocketAddr>,
    /// Endpoints its machines record lists.
    pub(crate) candidates: heapless::Vec<SocketAddr, { crate::node::record::MAX_ENDPOINTS }>,
    /// Its tunnel's index in the tunnel pool.
    pub(crate) tunnel: Option<u16>,
    /// The newest initiation timestamp its last tunnel accepted, kept when
    /// the tunnel went back to the pool (so old initiations stay refused).
    pub(crate) last_initiation: Tai64N,
    pub(crate) discovery: Discovery,
    /// Newest announcement timestamp seen from it (replays are ignored).
    pub(crate) last_announce: Tai64N,
    /// When an authenticated packet last arrived from it.
    pub(crate) last_seen: Option<Instant>,
    /// Whether a session is up (for up/down events).
    pub(crate) up: bool,
    /// Sightings without a session (the higher node id connects on the second).
    pub(crate) sightings: u8,
    /// The member relaying our traffic to it, while no direct path works.
    pub(crate) via: Option<u16>,
    /// When we started a handshake that has not completed yet.
    pub(crate) connecting_since: Option<Instant>,
    /// The session was made for traffic (by either end), not as a mesh
    /// neighbour: other members' ledger entries are not forwarded along it.
    /// Cleared when the session goes down.
    pub(crate) on_demand: bool,
    /// When we last told it (`ON_DEMAND`) that our session is on demand.
    pub(crate) on_demand_told: Option<Instant>,
    /// It reads `LEDGER_BATCH` (said by its `FEATURES` on this session).
    /// Cleared when the session goes down: it may come back older.
    pub(crate) batches: bool,
    /// It answers every digest, with an empty summary page when the
    /// replicas agree (`FEATURES`), so an exchange with it that gets no
    /// answer was lost. Cleared when the session goes down, like `batches`.
    pub(crate) answers: bool,
    /// Its `FEATURES` arrived on this session (cleared with each new one).
    pub(crate) features_heard: bool,
    /// It holds only small ledger entries (`FEATURES`, see
    /// [`crate::ledger::Scope`]): a small device, which is also never
    /// picked as a mesh neighbour. Set by each session's `FEATURES` and
    /// kept across sessions (unlike `batches`: taking a member for a small
    /// one only sends it fewer entries, so a stale or a lost `FEATURES`
    /// costs nothing).
    pub(crate) small_entries: bool,
    /// When to probe its direct endpoints next (while relayed).
    pub(crate) next_probe: Option<Instant>,
    /// The nonce of our last direct probe.
    pub(crate) probe_nonce: u64,
    /// Where a timed punch we lead stands (see `node::relay`).
    pub(crate) punch: Punch,
    /// Punch attempts led since the pair was last direct.
    pub(crate) punch_tries: u16,
    /// While relayed: we probed its direct path outside the punch schedule
    /// (on a hint, see `Node::probe_hinted`) since the last scheduled
    /// attempt of either side; one such probe per attempt at most.
    pub(crate) hinted: bool,
    /// The tunnel's next timer, cached after every call into it.
    pub(crate) timer: Option<Instant>,
    /// Intrusive list of slots with a tunnel.
    pub(crate) next_active: Option<u16>,
    pub(crate) prev_active: Option<u16>,
    /// On the node's queue of tunnels to poll for output.
    pub(crate) pending: bool,
    pub(crate) next_pending: Option<u16>,
    _provider: core::marker::PhantomData<fn() -> P>,
}

/// Where a timed punch that this node leads with a relayed member stands;
/// its instants are kept in `Member::next_probe` (see `node::relay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Punch {
    /// None under way; `next_probe` is the next attempt.
    Idle,
    /// `PUNCH_REQUEST` (step 1) sent at `next_probe`, waiting for the
    /// member's `PUNCH_NOTIFY` with `probe_nonce`.
    Waiting,
    /// Step 2 sent; our probes leave at `next_probe`.
    ProbeAt,
}

impl<P: CryptoProvider> Member<P> {
    pub(crate) fn new(identity: PublicIdentity, discovery: Discovery) -> Self {
        let id = identity.node_id();
        Member {
            identity,
            id,
            iid: u64::from_be_bytes(crate::wire::array(&id.0, 0)),
            ipv4: None,
            endpoint: None,
            candidates: heapless::Vec::new(),
            tunnel: None,
            last_initiation: Tai64N::ZERO,
            discovery,
            last_announce: Tai64N::ZERO,
            last_seen: None,
            up: false,
            sightings: 0,
            via: None,
            connecting_since: None,
            on_demand: false,
            on_demand_told: None,
            batches: false,
            answers: false,
            features_heard: false,
            small_entries: false,
            next_probe: None,
            probe_nonce: 0,
            punch: Punch::Idle,
            punch_tries: 0,
            hinted: false,
            timer: None,
            next_active: None,
            prev_active: None,
            pending: false,
            next_pending: None,
            _provider: core::marker::PhantomData,
        }
    }

    /// The direct path to it at `addr` works both ways: stop relaying and
    /// punching (the next relayed spell starts its attempts afresh).
    pub(crate) fn go_direct(&mut self, addr: SocketAddr) {
        self.via = None;
        self.endpoint = Some(addr);
        self.next_probe = None;
        self.punch = Punch::Idle;
        self.punch_tries = 0;
        self.hinted = false;
    }

    /// The member's node id.
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The member's public keys.
    pub fn identity(&self) -> &PublicIdentity {
        &self.identity
    }

    /// Where its datagrams go now.
    pub fn endpoint(&self) -> Option<SocketAddr> {
        self.endpoint
    }

    /// Its overlay IPv4 address, if claimed.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4
    }

    /// Whether a session with it is up.
    pub fn is_up(&self) -> bool {
        self.up
    }

    /// How it was first learned.
    pub fn discovery(&self) -> Discovery {
        self.discovery
    }

    /// When an authenticated packet last arrived from it.
    pub fn last_seen(&self) -> Option<Instant> {
        self.last_seen
    }

    /// Whether its traffic goes through a relay.
    pub fn is_relayed(&self) -> bool {
        self.via.is_some()
    }
}
