//! [`Node`]: one member of the mesh, as a sans-IO state machine.
//!
//! The node owns the member table, discovery (LAN beacons and hellos to
//! bootstrap endpoints), one [`Tunnel`] per member it talks to, and routing
//! of overlay IP packets to members. Its interface is quinn's:
//!
//! - `handle_datagram(now, from, buf)`: a UDP datagram arrived. An IP packet
//!   for the local stack comes back as a slice of `buf` (decrypted in place).
//! - `handle_ip_packet(now, buf, len)`: the local stack sends an overlay IP
//!   packet; it is sealed in place and comes back with its endpoint.
//! - `handle_timeout(now)` / `poll_timeout()`: timers.
//! - `poll_transmit(now, out)`: datagrams the node itself wants sent
//!   (announcements, handshakes, keepalives, replies).
//! - `poll_event()`: members discovered, peers up and down.
//!
//! It never reads a clock, a socket or an RNG of its own: `now` is passed
//! in, the RNG is given at construction, and the member table is storage the
//! caller provides (its length is the capacity; see [`member`]).
//!
//! Sessions are made on demand: a node keeps sessions with up to
//! `NodeConfig::neighbors` members proactively (the ones it discovers
//! first) and opens others when traffic needs them, so a large mesh does not
//! cost every node a handshake with every other.

mod addr;
pub mod ipam;
pub mod member;
mod outbox;
pub mod pool;
pub mod record;
pub mod relay;
mod roles;
pub mod sync;
mod table;

pub use addr::{interface_id, ula, ula_prefix};
pub use member::{Discovery, Member, MemberSlot, TunnelSlot};
pub use outbox::{Destination, OUTBOX_LEN, OUTBOX_MTU};
#[cfg(feature = "alloc")]
pub use pool::BoxedTunnels;
pub use pool::TunnelPool;
pub use relay::RELAY_HEADROOM;
pub use roles::{record_gap, RoleConfig, ELECTION_GAP, RECORD_GAP_MAX};
pub use table::SortedMap;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use heapless::{Deque, Vec};
use rand_core::{CryptoRng, RngCore};

use crate::crypto::CryptoProvider;
use crate::discovery::{AnnounceKind, AnnounceRepr, Trickle, ANNOUNCE_LEN};
use crate::election::{MemberView, Role};
use crate::identity::{Identity, NodeId, PublicIdentity};
use crate::ledger::{Ledger, SignatureVerifier, MAX_ENTRY_LEN};
use crate::noise::{consume_initiation, Refusal, RemoteKeys};
use crate::session::timers::REKEY_TIMEOUT;
use crate::session::{DropReason, Local, Received, Tunnel, TunnelConfig, TunnelEvent, INDEX_SLOT_MASK};
use crate::time::{Duration, Instant};
use crate::token::{NetworkKeys, OverlayRange, MAX_BOOTSTRAP};
use crate::wire::{InitiationPacket, MessageType, INITIATION_LEN, TRANSPORT_HEADER_LEN};
use outbox::Outbox;
use roles::Roles;
use sync::SyncState;

/// How a node behaves; all fields have sane defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NodeConfig {
    /// The UDP port the node listens on (announced to others).
    pub port: u16,
    /// Endpoints to send hellos to until a session with a member there is up.
    pub bootstrap: Vec<SocketAddr, MAX_BOOTSTRAP>,
    /// Whether to send LAN multicast beacons.
    pub lan_beacons: bool,
    /// The longest gap between beacons once the node has settled (they start
    /// at one a second and back off to this).
    pub beacon_interval: Duration,
    /// The longest gap between hellos to a bootstrap endpoint that has not
    /// answered (the first ones go out faster).
    pub hello_interval: Duration,
    /// Sessions the node keeps up proactively.
    pub neighbors: usize,
    /// Keepalive for sessions, to hold NAT mappings open.
    pub persistent_keepalive: Option<Duration>,
    /// The overlay IPv4 range addresses are claimed in.
    pub overlay: OverlayRange,
    /// Endpoints to publish besides the ones others observe (e.g. the
    /// host's LAN addresses with the node's port).
    pub advertise: Vec<SocketAddr, 2>,
    /// The role election this node takes part in (`None`: none, e.g. an
    /// operator's bridge).
    pub roles: Option<RoleConfig>,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            port: 0,
            bootstrap: Vec::new(),
            lan_beacons: true,
            beacon_interval: Duration::from_secs(30),
            hello_interval: Duration::from_secs(2),
            neighbors: 8,
            persistent_keepalive: Some(Duration::from_secs(25)),
            overlay: OverlayRange::new(Ipv4Addr::new(10, 1, 0, 0), 24).expect("valid range"),
            advertise: Vec::new(),
            roles: Some(RoleConfig::default()),
        }
    }
}

/// Something the caller may want to know, log or show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A member was learned for the first time.
    MemberDiscovered(NodeId),
    /// A session with a member came up.
    PeerUp(NodeId),
    /// The session with a member expired or could not be made.
    PeerDown(NodeId),
    /// The ledger changed (read it with [`Node::ledger`]).
    LedgerChanged,
    /// This node's overlay IPv4 address is now this one (first claim, or a
    /// move after losing a conflict).
    AddressAssigned(Ipv4Addr),
    /// The path to a member whose session is up changed: relayed to
    /// direct (a punch worked) or to another relay (see [`Node::path`]).
    PathChanged(NodeId),
    /// The election gave this node a role, changed it, or took it back
    /// (`None`: no role decided for it; see [`Node::role_to_deploy`]).
    RoleChanged(Option<Role>),
    /// This node's role record changed: persist [`Node::role_record`] and
    /// hand it to [`Node::restore_role_record`] after a restart.
    RoleRecordChanged,
}

/// How traffic to a member travels ([`Node::path`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// Straight to this endpoint.
    Direct(SocketAddr),
    /// Through this member, end-to-end encrypted.
    Relayed(NodeId),
}

/// What an incoming datagram produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Input<'a> {
    /// An overlay IP packet for the local stack (decrypted in place in the
    /// caller's buffer).
    Deliver(&'a mut [u8]),
    /// Consumed by the node (handshake, announcement, keepalive, control).
    Consumed,
    /// Relayed for another member: send `datagram` (re-sealed in place in
    /// the caller's buffer) to `to`.
    Send {
        /// Where it goes.
        to: SocketAddr,
        /// The datagram.
        datagram: &'a [u8],
    },
}

/// Bytes the caller leaves before an outbound IP packet in the buffer given
/// to [`Node::handle_ip_packet`]: room for the transport header and, for a
/// relayed member, the relay envelope.
pub const HEADROOM: usize = RELAY_HEADROOM + TRANSPORT_HEADER_LEN;
/// Bytes the caller leaves after it: two authentication tags.
pub const TAILROOM: usize = 2 * crate::crypto::TAG_LEN;

/// What [`Node::handle_ip_packet`] did with a packet.
#[derive(Debug, PartialEq, Eq)]
pub enum Outbound<'a> {
    /// Send this datagram (sealed in place in the caller's buffer) to `to`.
    Datagram {
        /// The endpoint (a relay's, if the member is relayed).
        to: SocketAddr,
        /// The datagram.
        datagram: &'a [u8],
    },
    /// Held until the session with the member is up (a handshake started).
    Queued,
}

/// Packets a node holds while their sessions come up (the default of
/// [`Node`]'s `H`).
pub const STAGED: usize = 8;
/// The largest packet a node holds while a session comes up.
pub const STAGE_MTU: usize = 1500;
/// How long a held packet waits for its session.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(10);

struct Staged {
    slot: u16,
    len: u16,
    at: Instant,
    bytes: [u8; STAGE_MTU],
}

/// Where a queued reply goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Straight there.
    Direct(Destination),
    /// Through the member in slot `via`, to the member `dst`.
    Relay { via: u16, dst: NodeId },
}

/// Where an authenticated datagram came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// Straight from this address.
    Direct(SocketAddr),
    /// Relayed by the member in this slot.
    Relay { via: u16 },
}

/// A datagram the node wrote with `poll_transmit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where it goes.
    pub destination: Destination,
    /// Its length at the start of the output buffer.
    pub len: usize,
}

/// Counters of a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStats {
    /// Datagrams handled.
    pub rx_datagrams: u64,
    /// Datagrams dropped (any reason).
    pub rx_dropped: u64,
    /// Datagrams written by `poll_transmit` or `handle_ip_packet`.
    pub tx_datagrams: u64,
    /// Events lost because the caller did not poll them.
    pub events_lost: u64,
    /// Datagrams this node relayed between two other members.
    pub relayed: u64,
    /// Packets held for a session that were dropped (queue full, or the
    /// session did not come up in time).
    pub staged_dropped: u64,
    /// Replies (handshake responses, cookie and hello replies) dropped
    /// because more were queued than the caller polled.
    pub replies_dropped: u64,
    /// Ledger entries refused (bad signature, owner rule, full).
    pub ledger_refused: u64,
    /// Control messages dropped because more were queued than polled.
    pub control_dropped: u64,
    /// Ledger entries sent whole (alone or in a batch; not fragments).
    pub ledger_entries_sent: u64,
    /// Versions this node wrote itself (its records, its advertisements,
    /// the host's puts and deletes): every replica has to receive each.
    pub ledger_writes: u64,
    /// `LEDGER_BATCH` messages sent (each carries two entries or more).
    pub ledger_batches_sent: u64,
    /// Anti-entropy requests sent (each asks a member for up to
    /// [`crate::ledger::wire::REQUEST_MAX_IDS`] entries).
    pub ledger_requests_sent: u64,
    /// Anti-entropy exchanges this node started (digests sent).
    pub ledger_exchanges_started: u64,
    /// Exchanges started with a member that answers digests
    /// (`ANSWERS_DIGESTS`) that got no answer in time: a sign of loss.
    pub ledger_exchanges_unanswered: u64,
    /// Handshake initiations sent (first tries and retries).
    pub initiations_sent: u64,
    /// Handshake initiations answered with a response.
    pub initiations_answered: u64,
    /// Handshakes completed, as initiator or responder.
    pub handshakes: u64,
    /// Sessions refused or not started because every tunnel in the pool
    /// was busy (see [`crate::node::member`]).
    pub tunnel_pool_full: u64,
    /// Quiet sessions closed (`GOODBYE`) to make room in a full tunnel
    /// pool for another member's.
    pub tunnels_evicted: u64,
}

const EVENT_QUEUE: usize = 64;
/// The first hellos to a bootstrap endpoint that has not answered go out
/// this often (doubling up to `hello_interval`): a bootstrap node that
/// starts a moment later is met at once.
const FIRST_HELLO_GAP: Duration = Duration::from_millis(250);
/// A session with nothing received for this long has gone silent: its
/// tunnel's new handshakes (WireGuard starts one after `KEEPALIVE_TIMEOUT +
/// REKEY_TIMEOUT` without an answer) also try the member's published
/// endpoints (`initiate_at_candidates`).
const SILENT_AFTER: Duration = Duration::from_secs(15);
/// How often the node tops up its proactive sessions.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// A full tunnel pool takes the tunnel of a member with a session up only
/// once nothing went either way on it for this long (see
/// `Node::install_tunnel`).
pub const EVICT_QUIET: Duration = Duration::from_secs(5);
/// How long after its start a node may bridge to a member heard on the LAN
/// whose machines record it lacks (see `handle_announce`).
pub const BRIDGE_AFTER: Duration = Duration::from_secs(10);

struct Bootstrap {
    endpoint: SocketAddr,
    next_hello: Instant,
    /// The gap after the next hello (from `FIRST_HELLO_GAP` up to
    /// `hello_interval`; back to the first when the session goes down).
    hello_gap: Duration,
    /// Whether a session with the member at `endpoint` is up.
    connected: bool,
}

/// One member of the mesh. See the module docs.
///
/// Storage is the caller's: `S` the member table, `T` the tunnel pool, `L`
/// the ledger (`E` records, `A` bytes), `W` the election views. The other
/// capacities have defaults sized for hosts, which a small device lowers:
/// `Q` queued control intents ([`sync::INTENTS`]), `H` packets held while
/// sessions come up ([`STAGED`]), `F` the longest ledger entry taken in
/// fragments ([`MAX_ENTRY_LEN`]; a longer one is dropped, as an entry the
/// ledger has no room for is).
pub struct Node<
    P,
    R,
    V,
    S,
    T,
    L,
    W,
    const E: usize,
    const A: usize,
    const Q: usize = { sync::INTENTS },
    const H: usize = STAGED,
    const F: usize = MAX_ENTRY_LEN,
> where
    P: CryptoProvider,
    R: RngCore + CryptoRng,
    V: SignatureVerifier,
    S: AsMut<[MemberSlot<P>]> + AsRef<[MemberSlot<P>]>,
    T: TunnelPool<P>,
    L: AsMut<Ledger<E, A>> + AsRef<Ledger<E, A>>,
    W: AsMut<[MemberView]>,
{
    identity: Identity,
    public: PublicIdentity,
    id: NodeId,
    local: Local,
    network: NetworkKeys,
    ula_prefix: [u8; 8],
    config: NodeConfig,
    rng: R,
    members: S,
    /// The tunnel pool: a member with a tunnel holds its index here.
    tunnels: T,
    active_head: Option<u16>,
    /// Members in the table.
    member_count: usize,
    /// Members heard by LAN beacon (see `handle_announce`).
    lan_members: usize,
    /// Length of the active list.
    active: usize,
    /// Queue of slots whose tunnels may have output (linked through
    /// `Member::next_pending`), so a send never walks every session.
    pending_head: Option<u16>,
    pending_tail: Option<u16>,
    /// Slots with a session up (the first 64), and whether that changed
    /// since they were listed.
    ups: Vec<u16, 64>,
    ups_dirty: bool,
    /// When the relay checks (stuck handshakes, upgrade probes) run next.
    relay_due: Instant,
    /// When a handshake in progress has waited `RELAY_AFTER` (the relay
    /// checks must run then, not at the next tick).
    relay_wake: Option<Instant>,
    /// Whether a tunnel may have something to send (cleared by a walk of the
    /// active list that found nothing), so a datagram that touched no
    /// tunnel costs no walk.
    transmit_pending: bool,
    /// The earliest member timer, recomputed lazily when `timers_dirty`.
    timer_cache: core::cell::Cell<Option<Instant>>,
    timers_dirty: core::cell::Cell<bool>,
    /// The last IPv4 destination routed and its slot: a hit is checked
    /// against the slot (one read), so it never needs invalidating, and a
    /// stream of packets to one member skips the walk of the table.
    route_v4: core::cell::Cell<Option<(Ipv4Addr, u16)>>,
    outbox: Outbox<Route>,
    staged: Deque<Staged, H>,
    events: Deque<Event, EVENT_QUEUE>,
    bootstrap: Vec<Bootstrap, MAX_BOOTSTRAP>,
    /// When beacons go out ([`Trickle`]: a few per interval on a LAN).
    beacons: Trickle,
    next_maintenance: Instant,
    /// The last top-up found nothing to do, and nothing has changed that
    /// could give it something: `poll_timeout` leaves it out (an idle
    /// node is not woken every second for it).
    maintenance_quiet: bool,
    /// Stirred since it was quiet: `handle_timeout` finds its time again.
    maintenance_stirred: bool,
    ipv4: Option<Ipv4Addr>,
    stats: NodeStats,
    ledger: L,
    verifier: V,
    sync: SyncState<Q, F>,
    roles: Option<Roles<W>>,
    _provider: core::marker::PhantomData<P>,
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
    W: AsMut<[MemberView]>,
{
    /// A node with `identity` on the network of `network`. `members` is the
    /// member table (every slot `None`; at most 65536 slots), `tunnels` the
    /// tunnel pool (every entry `None`; as long as the member table gives
    /// every member a session, shorter caps the sessions at once: a
    /// tunnel gone idle is taken back for another member), `ledger` its
    /// replica of the ledger (empty, or restored from disk), `verifier`
    /// checks ledger signatures; `views` is scratch for the role election
    /// (longer than the network is large: a member table's length plus
    /// one is right); `wall_at_zero` is the wall-clock time at the caller's
    /// `Instant::ZERO`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        identity: Identity,
        network: &NetworkKeys,
        config: NodeConfig,
        rng: R,
        members: S,
        tunnels: T,
        ledger: L,
        verifier: V,
        views: W,
        wall_at_zero: Duration,
    ) -> Self {
        debug_assert!(members.as_ref().len() <= INDEX_SLOT_MASK as usize + 1);
        let local = Local::new(&identity, network, wall_at_zero);
        let public = identity.public();
        let bootstrap = config
            .bootstrap
            .iter()
            .map(|&endpoint| Bootstrap {
                endpoint,
                next_hello: Instant::ZERO,
                hello_gap: first_hello_gap(&config),
                connected: false,
            })
            .collect();
        let roles = config.roles.clone().map(|c| Roles::new(c, views));
        let id = public.node_id();
        let beacons = Trickle::new(
            config.beacon_interval,
            u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes")),
        );
        Node {
            id,
            public,
            identity,
            local,
            ula_prefix: ula_prefix(&network.network_id),
            network: network.clone(),
            config,
            rng,
            members,
            tunnels,
            active_head: None,
            member_count: 0,
            lan_members: 0,
            active: 0,
            pending_head: None,
            pending_tail: None,
            ups: Vec::new(),
            ups_dirty: false,
            relay_due: Instant::ZERO,
            relay_wake: None,
            transmit_pending: false,
            timer_cache: core::cell::Cell::new(None),
            timers_dirty: core::cell::Cell::new(false),
            route_v4: core::cell::Cell::new(None),
            outbox: Outbox::default(),
            staged: Deque::new(),
            events: Deque::new(),
            bootstrap,
            beacons,
            next_maintenance: Instant::ZERO,
            maintenance_quiet: false,
            maintenance_stirred: false,
            ipv4: None,
            stats: NodeStats::default(),
            ledger,
            verifier,
            sync: SyncState::default(),
            roles,
            _provider: core::marker::PhantomData,
        }
    }

    /// This node's id.
    pub fn node_id(&self) -> NodeId {
        self.id
    }

    /// This node's identity (its keys; secret).
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// This node's overlay IPv6 address.
    pub fn ipv6(&self) -> Ipv6Addr {
        ula(&self.ula_prefix, &self.id)
    }

    /// This node's overlay IPv4 address, once it has one.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ipv4
    }

    /// This node's replica of the ledger.
    pub fn ledger(&self) -> &Ledger<E, A> {
        self.ledger.as_ref()
    }

    /// Writes `value` under `(bucket, key)` in the ledger, signed by this
    /// node (`ttl_secs` 0 for none), and pushes it to the mesh.
    pub fn ledger_put(
        &mut self,
        now: Instant,
        bucket: &[u8],
        key: &[u8],
        value: &[u8],
        ttl_secs: u32,
    ) -> Result<(), crate::ledger::LedgerError> {
        self.ledger
            .as_mut()
            .put(now, &self.identity, bucket, key, value, ttl_secs)?;
        self.process_changes(now, None);
        Ok(())
    }

    /// Deletes `(bucket, key)` from the ledger (a signed tombstone).
    pub fn ledger_delete(&mut self, now: Instant, bucket: &[u8], key: &[u8]) -> Result<(), crate::ledger::LedgerError> {
        self.ledger.as_mut().delete(now, &self.identity, bucket, key)?;
        self.process_changes(now, None);
        Ok(())
    }

    /// Counters.
    pub fn stats(&self) -> NodeStats {
        NodeStats {
            replies_dropped: self.outbox.dropped(),
            control_dropped: self.sync.intents_dropped,
            ..self.stats
        }
    }

    /// The members this node knows.
    pub fn members(&self) -> impl Iterator<Item = &Member<P>> {
        self.members.as_ref().iter().flatten()
    }

    /// The member with node id `id`.
    pub fn member(&self, id: &NodeId) -> Option<&Member<P>> {
        self.find(id)
            .and_then(|slot| self.members.as_ref()[slot as usize].as_ref())
    }

    /// The tunnel with member `id`, if it has one.
    pub fn tunnel(&self, id: &NodeId) -> Option<&Tunnel<P>> {
        self.tunnels.get(self.member(id)?.tunnel? as usize)
    }

    /// How traffic to member `id` travels now (`None`: not a member, or no
    /// session up).
    pub fn path(&self, id: &NodeId) -> Option<Path> {
        let m = self.member(id)?;
        if !m.up {
            return None;
        }
        Some(match m.via {
            Some(via) => Path::Relayed(self.members.as_ref()[via as usize].as_ref()?.id),
            None => Path::Direct(m.endpoint?),
        })
    }

    /// The overlay IPv6 address of member `id`.
    pub fn member_ipv6(&self, id: &NodeId) -> Ipv6Addr {
        ula(&self.ula_prefix, id)
    }

    // ---- incoming datagrams ------------------------------------------

    /// Handles a UDP datagram from `from`. See the module docs.
    pub fn handle_datagram<'a>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        buf: &'a mut [u8],
    ) -> Result<Input<'a>, DropReason> {
        self.stats.rx_datagrams += 1;
        let result = self.dispatch(now, from, buf);
        if result.is_err() {
            self.stats.rx_dropped += 1;
        }
        result
    }

    fn dispatch<'a>(&mut self, now: Instant, from: SocketAddr, buf: &'a mut [u8]) -> Result<Input<'a>, DropReason> {
        self.dispatch_from(now, Source::Direct(from), buf)
    }

    fn dispatch_from<'a>(&mut self, now: Instant, source: Source, buf: &'a mut [u8]) -> Result<Input<'a>, DropReason> {
        match MessageType::of(buf)? {
            MessageType::Beacon | MessageType::Hello | MessageType::HelloReply => {
                // Announcements are for LANs and bootstraps, never relayed.
                let Source::Direct(from) = source else {
                    return Err(DropReason::Malformed(crate::wire::Error::UnknownType(buf[0])));
                };
                self.handle_announce(now, from, buf)?;
                Ok(Input::Consumed)
            }
            MessageType::Initiation => {
                self.handle_initiation(now, source, buf)?;
                Ok(Input::Consumed)
            }
            MessageType::Response | MessageType::CookieReply | MessageType::Transport => {
                let at = if buf[0] == MessageType::Response as u8 { 8 } else { 4 };
                if buf.len() < at + 4 {
                    return Err(DropReason::Malformed(crate::wire::Error::Truncated));
                }
                let index = crate::wire::read_u32(buf, at);
                self.handle_for_slot(now, source, (index & INDEX_SLOT_MASK) as u16, buf)
            }
        }
    }

    /// A member's session is up but nothing came from it for
    /// [`SILENT_AFTER`], so its tunnel asks for a new handshake: the member
    /// may have moved to a network whose NAT, or ours, filters the old
    /// path. The initiation also goes to every endpoint its machines
    /// record lists besides `endpoint`: a roamed member publishes its new
    /// address once someone tells it (`OBSERVED`, see `note_source`), and
    /// it has been sending to us from there, so its NAT lets our
    /// initiation in and ours lets its answer back. The answer's source
    /// becomes its endpoint.
    fn initiate_at_candidates(&mut self, slot: u16, endpoint: SocketAddr, initiation: &[u8]) {
        let Some(m) = self.members.as_ref()[slot as usize].as_ref() else {
            return;
        };
        let candidates = m.candidates.clone();
        for c in candidates.into_iter().filter(|c| *c != endpoint) {
            self.outbox.push(Route::Direct(Destination::Unicast(c)), initiation);
        }
    }

    /// The address to hand a tunnel as the datagram's source (for cookies).
    fn source_addr(&self, source: Source) -> SocketAddr {
        match source {
            Source::Direct(a) => a,
            Source::Relay { via } => self.members.as_ref()[via as usize]
                .as_ref()
                .and_then(|m| m.endpoint)
                .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)),
        }
    }

    /// Where replies to a datagram from the member `id` that came from
    /// `source` go.
    fn reply_route(source: Source, id: NodeId) -> Route {
        match source {
            Source::Direct(a) => Route::Direct(Destination::Unicast(a)),
            Source::Relay { via } => Route::Relay { via, dst: id },
        }
    }

    /// Notes where an authenticated datagram from the member in `slot` came
    /// from; `response` says it was a handshake response.
    fn note_source(&mut self, now: Instant, slot: u16, source: Source, response: bool) {
        let m = self.members.as_mut()[slot as usize].as_mut().expect("member slot");
        m.last_seen = Some(now);
        match source {
            // A handshake response straight from a relayed member: it got
            // our direct initiation (a responder answers where the
            // initiation came from) and its answer reached us, so the
            // direct path works both ways.
            Source::Direct(a) if response && m.via.is_some() => {
                m.go_direct(a);
                if m.up {
                    let id = m.id;
                    self.push_event(Event::PathChanged(id));
                }
            }
            // Direct traffic updates the endpoint (the member may have
            // roamed); a relayed member stays relayed until a probe proves
            // the direct path both ways, and its endpoint is where the
            // probes go (see `probe_direct`).
            //
            // A direct datagram from a relayed member says the path works
            // its way at least (loss may have eaten the handshake that made
            // us relay, and the relay may not get through any more): probe
            // it now rather than at the next punch attempt (once between
            // two scheduled attempts, see `probe_hinted`).
            Source::Direct(a) => {
                let moved = m.up && m.endpoint.is_some_and(|e| e != a);
                let found = m.endpoint.is_none();
                m.endpoint = Some(a);
                if found {
                    self.stir_maintenance();
                }
                if moved {
                    // It roamed: tell it where it is now, so it publishes
                    // the new address and members whose NATs filter it
                    // can reach it there (see `next_transmit`).
                    self.tell_observed(slot, a);
                }
                self.probe_hinted(now, slot);
            }
            // Answer through the relay the member's traffic comes through:
            // it works in that direction at least, where ours may not
            // (both sides then settle on one relay).
            Source::Relay { via } => {
                if (m.via.is_some() || !m.up) && m.via != Some(via) {
                    let changed = m.up;
                    m.via = Some(via);
                    if changed {
                        let id = m.id;
                        self.push_event(Event::PathChanged(id));
                    }
                }
            }
        }
    }

    fn handle_for_slot<'a>(
        &mut self,
        now: Instant,
        source: Source,
        slot: u16,
        buf: &'a mut [u8],
    ) -> Result<Input<'a>, DropReason> {
        enum Got {
            Ip(usize),
            Reply(usize),
            Control(crate::wire::ControlKind, usize),
            Nothing,
        }
        let from = self.source_addr(source);
        let response = buf.first() == Some(&(MessageType::Response as u8));
        let got = {
            let Node {
                members,
                tunnels,
                local,
                rng,
                ula_prefix,
                ..
            } = self;
            let member = members
                .as_mut()
                .get_mut(slot as usize)
                .and_then(|m| m.as_mut())
                .ok_or(DropReason::UnknownIndex)?;
            let tunnel = pooled(tunnels, member.tunnel).ok_or(DropReason::UnknownIndex)?;
            match tunnel.handle_datagram(now, local, rng, from, &mut *buf) {
                Ok(Received::Ip(packet)) => {
                    if !source_is(member, ula_prefix, packet) {
                        return Err(DropReason::SourceMismatch);
                    }
                    Ok(Got::Ip(packet.len()))
                }
                Ok(Received::Reply(reply)) => Ok(Got::Reply(reply.len())),
                Ok(Received::Control(kind, payload)) => Ok(Got::Control(kind, payload.len())),
                Ok(Received::Keepalive | Received::Handshake) => Ok(Got::Nothing),
                Err(e) => Err((e, tunnel.wants_keepalive())),
            }
        };
        let got = match got {
            Ok(got) => got,
            Err((e, nudged)) => {
                if nudged {
                    // Transport on a session the member dropped: confirm
                    // ours (see `session::tunnel`); the datagram is
                    // dropped all the same.
                    self.mark_pending(slot);
                }
                return Err(e);
            }
        };
        self.note_source(now, slot, source, response);
        let id = self.members.as_ref()[slot as usize].as_ref().expect("member slot").id;
        self.after_tunnel_activity(now, slot);
        const PAYLOAD: usize = TRANSPORT_HEADER_LEN + 1;
        match got {
            Got::Ip(len) => Ok(Input::Deliver(
                &mut buf[TRANSPORT_HEADER_LEN..TRANSPORT_HEADER_LEN + len],
            )),
            Got::Reply(len) => {
                self.outbox.push(Self::reply_route(source, id), &buf[..len]);
                Ok(Input::Consumed)
            }
            Got::Nothing => Ok(Input::Consumed),
            Got::Control(kind, len) if kind == crate::wire::ControlKind::RELAY => {
                // Forward for the sender, in place.
                let inner = len
                    .checked_sub(16)
                    .ok_or(DropReason::Malformed(crate::wire::Error::Truncated))?;
                let (to, n) = self.forward(now, slot, buf, inner)?;
                self.stats.tx_datagrams += 1;
                Ok(Input::Send {
                    to,
                    datagram: &buf[..n],
                })
            }
            Got::Control(kind, len) if kind == crate::wire::ControlKind::RELAYED => {
                // A datagram from another member, relayed by this one.
                if len < 16 {
                    return Err(DropReason::Malformed(crate::wire::Error::Truncated));
                }
                let origin = NodeId(crate::wire::array(buf, PAYLOAD));
                self.find(&origin).ok_or(DropReason::UnknownIndex)?;
                let inner = &mut buf[RELAY_HEADROOM..PAYLOAD + len];
                self.dispatch_from(now, Source::Relay { via: slot }, inner)
            }
            Got::Control(kind, len) => {
                let direct = match source {
                    Source::Direct(a) => Some(a),
                    Source::Relay { .. } => None,
                };
                self.handle_control(now, slot, direct, kind, &buf[PAYLOAD..PAYLOAD + len])?;
                Ok(Input::Consumed)
            }
        }
    }

    fn handle_initiation(&mut self, now: Instant, source: Source, buf: &mut [u8]) -> Result<(), DropReason> {
        let from = self.source_addr(source);
        InitiationPacket::new_checked(&*buf)?;
        match self.local.admission.admit(now, &self.local.keys, from, buf) {
            Ok(()) => {}
            Err(Refusal::BadMac1) => return Err(DropReason::BadMac1),
            Err(Refusal::CookieRequired) => {
                let mut msg = [0u8; INITIATION_LEN];
                msg.copy_from_slice(buf);
                let mut reply = [0u8; 64];
                let n = self.local.admission.write_cookie_reply(
                    now,
                    &self.local.keys,
                    from,
                    &msg,
                    &mut self.rng,
                    &mut reply,
                );
                match source {
                    Source::Direct(a) => self.outbox.push(Route::Direct(Destination::Unicast(a)), &reply[..n]),
                    // A cookie cannot reach a relayed initiator: under load,
                    // relayed handshakes wait.
                    Source::Relay { .. } => return Err(DropReason::InitiationFlood),
                }
                return Ok(());
            }
        }
        let mut half = consume_initiation(&self.local.keys, &InitiationPacket::new_unchecked(&*buf))?;
        let static_key = *half.initiator_static();
        let mut reply = [0u8; crate::wire::RESPONSE_LEN];
        let mut candidate = self.slot_of_static(&static_key);
        let mut retried = false;
        let (slot, n) = loop {
            break match candidate {
                Some(slot) => {
                    let last_initiation = self.members.as_ref()[slot as usize]
                        .as_ref()
                        .filter(|m| m.tunnel.is_none())
                        .map(|m| m.last_initiation);
                    let answered = match last_initiation {
                        // No tunnel yet: authenticate on a new one before it
                        // takes an entry of the pool (a full pool gives up
                        // another member's session for it), so a forged or
                        // replayed initiation costs nobody their session.
                        Some(last) => {
                            let mut t = self.new_tunnel(slot, &static_key)?;
                            t.refuse_initiations_until(last);
                            let Node { local, rng, .. } = self;
                            let answered = t
                                .handle_half_initiation(now, local, rng, half, &mut reply)
                                .map(|r| r.len());
                            if answered.is_ok() {
                                let stamp = t.last_initiation();
                                if let Err(e) = self.install_tunnel(now, slot, t) {
                                    // Refused, but authentic: its timestamp
                                    // is spent, so a replay of it cannot
                                    // make room later.
                                    if let Some(m) = self.members.as_mut()[slot as usize].as_mut() {
                                        m.last_initiation = m.last_initiation.max(stamp);
                                    }
                                    return Err(e);
                                }
                            }
                            answered
                        }
                        None => {
                            let Node {
                                members,
                                tunnels,
                                local,
                                rng,
                                ..
                            } = self;
                            let m = members.as_ref()[slot as usize].as_ref().expect("found slot");
                            let t = pooled(tunnels, m.tunnel).expect("has a tunnel");
                            t.handle_half_initiation(now, local, rng, half, &mut reply)
                                .map(|r| r.len())
                        }
                    };
                    let n = match answered {
                        Ok(n) => n,
                        Err(DropReason::ReplayedInitiation) => {
                            // A node with a short pool makes no session of
                            // its own for it: that could cost another
                            // member its session, on a replay.
                            if last_initiation.is_none() || !self.short_pool() {
                                self.answer_stale(now, slot);
                            }
                            return Err(DropReason::ReplayedInitiation);
                        }
                        Err(e) => return Err(e),
                    };
                    let Node { members, tunnels, .. } = self;
                    let m = members.as_mut()[slot as usize].as_mut().expect("found slot");
                    let t = pooled(tunnels, m.tunnel).expect("just installed");
                    if t.peer_signing_key() != Some(&m.identity.signing_key) {
                        // Same static key, another signing key: not the member in
                        // this slot. Another member may have published a record
                        // pairing this static key with its own signing key (the
                        // first slot with the key was its): the initiator's node
                        // id, from both keys it proved, names the right slot.
                        // Answer there; the answer made here is dropped, and this
                        // slot's session stays unconfirmed.
                        let signing_key = t.peer_signing_key().copied();
                        let other = signing_key.and_then(|signing_key| {
                            self.find(
                                &PublicIdentity {
                                    static_key,
                                    signing_key,
                                }
                                .node_id(),
                            )
                        });
                        match other {
                            Some(other) if other != slot && !retried => {
                                retried = true;
                                candidate = Some(other);
                                half = consume_initiation(&self.local.keys, &InitiationPacket::new_unchecked(&*buf))?;
                                continue;
                            }
                            _ => return Err(DropReason::IdentityMismatch),
                        }
                    }
                    (slot, n)
                }
                None => {
                    // A member we have not heard of: authenticate it first, then
                    // give it a slot by its node id and a tunnel there.
                    let remote = RemoteKeys::new(&self.local.keys, &static_key)?;
                    let (state, opened) = half.finish(&remote)?;
                    let identity = PublicIdentity {
                        static_key,
                        signing_key: opened.signing_key,
                    };
                    let slot = self.place(now, Member::new(identity, Discovery::Handshake))?;
                    let mut t = Tunnel::with_remote_keys(remote, tunnel_config(&self.config, slot));
                    let Node { local, rng, .. } = self;
                    let n = t.accept_initiation(now, local, rng, state, opened, &mut reply)?.len();
                    self.install_tunnel(now, slot, t)?;
                    (slot, n)
                }
            };
        };
        self.note_source(now, slot, source, false);
        let id = self.members.as_ref()[slot as usize].as_ref().expect("member slot").id;
        self.outbox.push(Self::reply_route(source, id), &reply[..n]);
        self.stats.initiations_answered += 1;
        self.activate(slot);
        self.after_tunnel_activity(now, slot);
        Ok(())
    }

    fn handle_announce(&mut self, now: Instant, from: SocketAddr, buf: &[u8]) -> Result<(), DropReason> {
        let a = AnnounceRepr::open(&self.network.beacon_key, buf).map_err(DropReason::Announce)?;
        if a.identity == self.public {
            return Ok(()); // our own beacon, looped back by multicast
        }
        // A beacon may leave from another socket than the mesh one, so its
        // sender's mesh port is the announced one. A hello or hello reply
        // leaves from the mesh socket itself: its source is where the
        // sender is reached, which differs from the announced port behind
        // a port forward or a NAT that changes ports.
        let endpoint = match a.kind {
            AnnounceKind::Beacon => SocketAddr::new(from.ip(), a.port),
            AnnounceKind::Hello | AnnounceKind::HelloReply => from,
        };
        // The node id binds both keys: an announcement pairing a known
        // static key with another signing key names another id, and the
        // handshake (which proves the static key) will not match it.
        let known = self.find(&a.identity.node_id());
        let slot = match known {
            Some(slot) => {
                let m = self.members.as_mut()[slot as usize].as_mut().expect("found slot");
                if a.timestamp <= m.last_announce {
                    if m.tunnel.is_some() {
                        self.answer_stale(now, slot);
                    }
                    return Err(DropReason::ReplayedAnnouncement);
                }
                slot
            }
            None => {
                let discovery = if a.kind == AnnounceKind::Beacon {
                    Discovery::Beacon
                } else {
                    Discovery::Hello
                };
                self.place(now, Member::new(a.identity, discovery))?
            }
        };
        let m = self.members.as_mut()[slot as usize].as_mut().expect("slot filled");
        m.last_announce = a.timestamp;
        // An authenticated source beats an announced one; keep it while the
        // session is up.
        if !m.up {
            let found = m.endpoint.is_none();
            m.endpoint = Some(endpoint);
            if found {
                self.stir_maintenance();
            }
        }
        let connect = match a.kind {
            AnnounceKind::Hello => {
                self.reply_hello(now, from);
                false
            }
            AnnounceKind::HelloReply => true,
            AnnounceKind::Beacon => {
                self.beacons.heard(now, known.is_some());
                let m = self.members.as_mut()[slot as usize].as_mut().expect("slot filled");
                m.sightings = m.sightings.saturating_add(1);
                let first_sighting = m.sightings == 1;
                // The lower id connects at once; the higher one on its second
                // sighting, in case the lower one is not going to.
                let (id, want) = (m.id, self.id < m.id || m.sightings >= 2);
                self.lan_members += usize::from(first_sighting);
                // Sessions being made count: otherwise a node hearing many
                // beacons at once would handshake with all of them.
                let room = self.active < self.config.neighbors;
                // A member whose machines record this replica lacks is a
                // newcomer, or a node of another mesh that this LAN now
                // joins to ours (the two sides of a healed split). With
                // every neighbour taken, a settled node still bridges to
                // it if the pair is one of about (neighbours / members
                // heard on the LAN) of the pairs, chosen by both ids, so
                // the same few nodes bridge to it however often it
                // beacons: two meshes that meet on a LAN, each with its
                // neighbours among its own, would otherwise never make a
                // session between them, and their ledgers (members,
                // address claims, roles) would never merge. Not in its
                // first [`BRIDGE_AFTER`] (nodes that start together hear
                // each other before their records spread), and not with a
                // short pool, where a bridge would cost a quiet session.
                let bridge = !room
                    && !self.short_pool()
                    && self.sync.record_written
                    && self.sync.started.is_some_and(|t| now >= t + BRIDGE_AFTER)
                    && bridge_pair(&self.id, &id, self.lan_members, self.config.neighbors)
                    && !self.has_machine_record(&id);
                want && (room || bridge)
            }
        };
        let m = self.members.as_ref()[slot as usize].as_ref().expect("slot filled");
        let tunnel = m.tunnel.and_then(|i| self.tunnels.get(i as usize));
        if connect && tunnel.is_none_or(|t| !t.is_established(now)) {
            self.connect_neighbour(now, slot)?;
        }
        Ok(())
    }

    /// An authenticated initiation or announcement from the member in
    /// `slot` carried a timestamp older than one already accepted from it:
    /// a replay, or the member restarted with its wall clock set back (or
    /// after running with it set ahead), and will be refused until its
    /// clock passes the old timestamp, hours maybe. Our own handshake does
    /// not depend on its clock, so start one, if nothing authenticated came
    /// from it for `REKEY_TIMEOUT` (a live, busy session is left alone).
    ///
    /// Replay safety: the stale message changes nothing here (timestamp,
    /// endpoint and sessions stay as they were); the most a replay can do
    /// is make us initiate to the endpoint we already had, at most once per
    /// `REKEY_TIMEOUT` (the tunnel's rate limit). The real member answers
    /// that with a rekey; anyone else cannot answer it at all.
    fn answer_stale(&mut self, now: Instant, slot: u16) {
        let quiet = self.members.as_ref()[slot as usize]
            .as_ref()
            .is_some_and(|m| m.last_seen.is_none_or(|t| now.saturating_since(t) >= REKEY_TIMEOUT));
        if quiet {
            let _ = self.connect_slot(now, slot);
        }
    }

    fn reply_hello(&mut self, now: Instant, to: SocketAddr) {
        let mut out = [0u8; ANNOUNCE_LEN];
        let n = self.seal_announce(now, AnnounceKind::HelloReply, &mut out);
        self.outbox.push(Route::Direct(Destination::Unicast(to)), &out[..n]);
    }

    // ---- outgoing IP packets -------------------------------------------

    /// Seals the overlay IP packet at `buf[HEADROOM..][..len]` in place for
    /// the member that owns its destination address. `buf` needs
    /// [`TAILROOM`] bytes after the packet. Returns the datagram to send
    /// (a slice of `buf`), or [`Outbound::Queued`] when the session is not
    /// up yet: the handshake starts and the packet goes out with
    /// `poll_transmit` once it completes (up to [`STAGED`] packets per
    /// node, for at most [`STAGE_TIMEOUT`]).
    pub fn handle_ip_packet<'a>(
        &mut self,
        now: Instant,
        buf: &'a mut [u8],
        len: usize,
    ) -> Result<Outbound<'a>, DropReason> {
        let end = HEADROOM.checked_add(len).ok_or(DropReason::BufferTooSmall)?;
        let packet = buf.get(HEADROOM..end).ok_or(DropReason::BufferTooSmall)?;
        let dst = destination(packet).ok_or(DropReason::Malformed(crate::wire::Error::Truncated))?;
        let slot = self.route(dst).ok_or(DropReason::NoRoute)?;
        match self.seal_for(now, slot, buf, len) {
            Ok((to, start, n)) => Ok(Outbound::Datagram {
                to,
                datagram: &buf[start..start + n],
            }),
            Err(DropReason::NoSession) => {
                if len > STAGE_MTU {
                    return Err(DropReason::NoSession);
                }
                if self.staged.is_full() {
                    self.staged.pop_front();
                    self.stats.staged_dropped += 1;
                }
                let mut bytes = [0u8; STAGE_MTU];
                bytes[..len].copy_from_slice(&buf[HEADROOM..end]);
                let _ = self.staged.push_back(Staged {
                    slot,
                    len: len as u16,
                    at: now,
                    bytes,
                });
                Ok(Outbound::Queued)
            }
            Err(e) => Err(e),
        }
    }

    /// Seals the packet at `buf[HEADROOM..][..len]` for the member in
    /// `slot`: returns the endpoint and where the datagram starts and how
    /// long it is. Starts a handshake when there is no session.
    fn seal_for(
        &mut self,
        now: Instant,
        slot: u16,
        buf: &mut [u8],
        len: usize,
    ) -> Result<(SocketAddr, usize, usize), DropReason> {
        let m = self.members.as_mut()[slot as usize].as_mut().expect("routed slot");
        let (via, id) = (m.via, m.id);
        let endpoint = m.endpoint;
        let sealed = match pooled(&mut self.tunnels, m.tunnel) {
            Some(t) => t.encapsulate(now, &mut buf[RELAY_HEADROOM..], len).map(|d| d.len()),
            None => Err(DropReason::NoSession),
        };
        let result = match (sealed, via) {
            (Err(DropReason::NoSession), _) => {
                self.connect_on_demand(now, slot)?;
                Err(DropReason::NoSession)
            }
            (Err(e), _) => Err(e),
            (Ok(n), None) => match endpoint {
                Some(to) => Ok((to, RELAY_HEADROOM, n)),
                None => Err(DropReason::NoRoute),
            },
            (Ok(n), Some(via)) => match self.wrap(now, via, crate::wire::ControlKind::RELAY, &id, buf, n) {
                Some(Transmit {
                    destination: Destination::Unicast(to),
                    len,
                }) => Ok((to, 0, len)),
                _ => Err(DropReason::NoRoute),
            },
        };
        if result.is_ok() {
            self.stats.tx_datagrams += 1;
        }
        self.after_tunnel_activity(now, slot);
        result
    }

    /// The next staged packet whose session is up, sealed into `out`.
    fn next_staged(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        while let Some(front) = self.staged.front() {
            if now.saturating_since(front.at) >= STAGE_TIMEOUT {
                self.staged.pop_front();
                self.stats.staged_dropped += 1;
                continue;
            }
            break;
        }
        let i = self.staged.iter().position(|p| {
            self.members.as_ref()[p.slot as usize]
                .as_ref()
                .and_then(|m| self.tunnels.get(m.tunnel? as usize))
                .is_some_and(|t| t.is_established(now))
        })?;
        // Take it out of the middle of the queue, keeping the order of the rest.
        let mut taken = None;
        for k in 0..self.staged.len() {
            let p = self.staged.pop_front().expect("counted");
            if k == i {
                taken = Some(p);
            } else {
                let _ = self.staged.push_back(p);
            }
        }
        let p = taken?;
        let len = p.len as usize;
        out[HEADROOM..HEADROOM + len].copy_from_slice(&p.bytes[..len]);
        let (to, start, n) = self.seal_for(now, p.slot, out, len).ok()?;
        out.copy_within(start..start + n, 0);
        Some(Transmit {
            destination: Destination::Unicast(to),
            len: n,
        })
    }

    fn route(&self, dst: IpAddr) -> Option<u16> {
        let slots = self.members.as_ref();
        let found = match dst {
            IpAddr::V6(v6) => {
                let iid = interface_id(&self.ula_prefix, &v6)?;
                return self.probe(iid, |m| m.iid == iid);
            }
            IpAddr::V4(v4) => {
                if let Some((addr, slot)) = self.route_v4.get() {
                    if addr == v4 && slots[slot as usize].as_ref().is_some_and(|m| m.ipv4 == Some(v4)) {
                        return Some(slot);
                    }
                }
                slots
                    .iter()
                    .position(|m| m.as_ref().is_some_and(|m| m.ipv4 == Some(v4)))
            }
        };
        let slot = found? as u16;
        if let IpAddr::V4(v4) = dst {
            self.route_v4.set(Some((v4, slot)));
        }
        Some(slot)
    }

    // ---- timers and output ----------------------------------------------

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Only the tunnels whose timer is due (none, most of the time).
        let mut cursor = if self.member_timers().is_some_and(|t| t <= now) {
            self.active_head
        } else {
            None
        };
        while let Some(slot) = cursor {
            let m = self.members.as_mut()[slot as usize].as_mut().expect("active slot");
            cursor = m.next_active;
            if m.timer.is_none_or(|t| t > now) {
                continue;
            }
            if let Some(t) = pooled(&mut self.tunnels, m.tunnel) {
                t.handle_timeout(now);
            }
            self.after_tunnel_activity(now, slot);
        }
        debug_assert!(
            !self.maintenance_quiet || !self.top_up_has_work(),
            "the top-up is quiet but has work: a change did not stir it"
        );
        if self.maintenance_quiet || self.maintenance_stirred {
            // The top-ups skipped while quiet keep their times: the next
            // is the first of them not yet past.
            self.maintenance_stirred = false;
            if now > self.next_maintenance {
                let behind = now.as_micros() - self.next_maintenance.as_micros();
                let step = MAINTENANCE_INTERVAL.as_micros() as u64;
                let ahead = behind.div_ceil(step) * step;
                self.next_maintenance += Duration::from_micros(ahead);
            }
        }
        if now >= self.next_maintenance && !self.maintenance_quiet {
            self.next_maintenance = now + MAINTENANCE_INTERVAL;
            self.maintenance_quiet = !self.maintain(now);
        }
        self.sync_timeout(now);
        if now >= self.relay_due || self.relay_wake.is_some_and(|t| now >= t) {
            self.relay_due = now + relay::RELAY_TICK;
            self.relay_timeout(now);
        }
        self.roles_timeout(now);
    }

    /// Opens proactive sessions until `neighbors` are up or being made.
    /// Says whether the next top-up may have something to do: false when
    /// no session is wanted or no member could take one, which only a
    /// change of those (see `stir_maintenance`) alters.
    fn maintain(&mut self, now: Instant) -> bool {
        let mut wanted = self.config.neighbors.saturating_sub(self.active);
        if wanted == 0 {
            return false;
        }
        let candidates: Vec<u16, 16> = self
            .members
            .as_ref()
            .iter()
            .enumerate()
            .filter_map(|(i, m)| m.as_ref().filter(|m| top_up_candidate(m)).map(|_| i as u16))
            .take(16)
            .collect();
        if candidates.is_empty() {
            return false;
        }
        for slot in candidates {
            if wanted == 0 {
                break;
            }
            if self.connect_neighbour(now, slot).is_ok() {
                wanted -= 1;
            }
        }
        true
    }

    /// Whether a top-up would find work: what a quiet top-up stands for
    /// (checked in debug builds, so a change that gives it work without
    /// `stir_maintenance` shows up in the tests).
    fn top_up_has_work(&self) -> bool {
        self.config.neighbors > self.active && self.members.as_ref().iter().flatten().any(|m| top_up_candidate(m))
    }

    /// Something the top-up looks at changed (a member, its endpoint or
    /// tunnel, a session gone): the next top-up runs at its time again.
    fn stir_maintenance(&mut self) {
        if self.maintenance_quiet {
            self.maintenance_quiet = false;
            self.maintenance_stirred = true;
        }
    }

    /// When `handle_timeout` next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = (!self.maintenance_quiet).then_some(self.next_maintenance);
        let mut at = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        if self.config.lan_beacons {
            at(self.beacons.poll_timeout());
        }
        for b in &self.bootstrap {
            if !b.connected {
                at(b.next_hello);
            }
        }
        if self.transmit_pending {
            at(Instant::ZERO); // poll_transmit first; nothing is late
        }
        if let Some(t) = self.member_timers() {
            at(t);
        }
        if let Some(t) = self.sync_poll_timeout() {
            at(t);
        }
        if let Some(r) = &self.roles {
            at(r.poll_timeout());
        }
        if let Some(t) = self.relay_wake {
            at(t);
        }
        next
    }

    /// Each timer `poll_timeout` takes the earliest of, by name (for
    /// diagnosing a node that asks to be woken and then has nothing to do).
    pub fn timers(&self) -> [(&'static str, Option<Instant>); 7] {
        [
            (
                "maintenance",
                (!self.maintenance_quiet).then_some(self.next_maintenance),
            ),
            ("beacon", self.config.lan_beacons.then(|| self.beacons.poll_timeout())),
            (
                "hello",
                self.bootstrap
                    .iter()
                    .filter(|b| !b.connected)
                    .map(|b| b.next_hello)
                    .min(),
            ),
            ("transmit", self.transmit_pending.then_some(Instant::ZERO)),
            ("sessions", self.member_timers()),
            ("sync", self.sync_poll_timeout()),
            ("roles", self.roles.as_ref().map(|r| r.poll_timeout())),
        ]
    }

    /// The earliest timer of the member tunnels.
    fn member_timers(&self) -> Option<Instant> {
        if self.timers_dirty.get() {
            let mut next: Option<Instant> = None;
            let mut cursor = self.active_head;
            while let Some(slot) = cursor {
                let m = self.members.as_ref()[slot as usize].as_ref().expect("active slot");
                if let Some(t) = m.timer {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
                cursor = m.next_active;
            }
            self.timer_cache.set(next);
            self.timers_dirty.set(false);
        }
        self.timer_cache.get()
    }

    /// Writes the next datagram the node wants sent into `out` (at least
    /// 1500 bytes is safe) and says where it goes.
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        let t = self.next_transmit(now, out);
        if t.is_some() {
            self.stats.tx_datagrams += 1;
        }
        t
    }

    fn next_transmit(&mut self, now: Instant, out: &mut [u8]) -> Option<Transmit> {
        if let Some((route, len)) = self.outbox.pop(&mut out[RELAY_HEADROOM..]) {
            if let Some(t) = self.route_out(now, route, out, len) {
                return Some(t);
            }
        }
        if self.config.lan_beacons && now >= self.beacons.poll_timeout() {
            let alone = self.up_slots().is_empty();
            if self.beacons.poll(now, alone) {
                let len = self.seal_announce(now, AnnounceKind::Beacon, out);
                return Some(Transmit {
                    destination: Destination::LanMulticast,
                    len,
                });
            }
        }
        if let Some(b) = self.bootstrap.iter_mut().find(|b| !b.connected && now >= b.next_hello) {
            b.next_hello = now + b.hello_gap;
            b.hello_gap = (b.hello_gap * 2).min(self.config.hello_interval);
            let endpoint = b.endpoint;
            let len = self.seal_announce(now, AnnounceKind::Hello, out);
            return Some(Transmit {
                destination: Destination::Unicast(endpoint),
                len,
            });
        }
        if let Some(t) = self.next_intent(now, out) {
            return Some(t);
        }
        if !self.staged.is_empty() {
            if let Some(t) = self.next_staged(now, out) {
                return Some(t);
            }
        }
        if !self.transmit_pending {
            return None;
        }
        // Tunnels touched since they last had nothing to send, oldest first;
        // one stays at the head while it has more.
        while let Some(slot) = self.pending_head {
            let Node {
                members,
                tunnels,
                local,
                rng,
                ..
            } = self;
            let m = members.as_mut()[slot as usize].as_mut().expect("pending slot");
            let (id, via, endpoint, up) = (m.id, m.via, m.endpoint, m.up);
            let silent = up && m.last_seen.is_none_or(|t| now.saturating_since(t) >= SILENT_AFTER);
            let Some(t) = pooled(tunnels, m.tunnel) else {
                self.pop_pending();
                continue;
            };
            let polled = match via {
                None => t.poll_transmit(now, local, rng, out),
                Some(_) => t.poll_transmit(now, local, rng, &mut out[RELAY_HEADROOM..]),
            };
            let Some(len) = polled else {
                self.pop_pending();
                continue;
            };
            let sent = match via {
                None => &out[..len],
                Some(_) => &out[RELAY_HEADROOM..][..len],
            };
            if MessageType::of(sent) == Ok(MessageType::Initiation) {
                self.stats.initiations_sent += 1;
            }
            self.after_tunnel_activity(now, slot);
            match via {
                // With nowhere to send (no endpoint known yet, no relay)
                // the datagram is dropped, but the tunnel's timers still move
                // on: it retries, a relay is picked, or it gives up.
                None => {
                    if let Some(endpoint) = endpoint {
                        if silent && MessageType::of(&out[..len]) == Ok(MessageType::Initiation) {
                            self.initiate_at_candidates(slot, endpoint, &out[..len]);
                        }
                        return Some(Transmit {
                            destination: Destination::Unicast(endpoint),
                            len,
                        });
                    }
                }
                Some(via) => {
                    // While no session is up, an initiation through a relay
                    // also goes straight to the member: the direct handshake
                    // may have been lost, not blocked, and a relay may not
                    // reach the member either (it may be relayed itself).
                    // A direct response proves the direct path both ways
                    // (see `note_source`).
                    let inner = &out[RELAY_HEADROOM..][..len];
                    if let (false, Some(endpoint), Some(MessageType::Initiation)) =
                        (up, endpoint, MessageType::of(inner).ok())
                    {
                        self.outbox.push(Route::Direct(Destination::Unicast(endpoint)), inner);
                    }
                    if let Some(t) = self.wrap(now, via, crate::wire::ControlKind::RELAY, &id, out, len) {
                        return Some(t);
                    }
                }
            }
        }
        self.transmit_pending = false;
        None
    }

    /// Queues `slot`'s tunnel to be polled for output (idempotent).
    pub(crate) fn mark_pending(&mut self, slot: u16) {
        self.transmit_pending = true;
        let tail = self.pending_tail;
        let slots = self.members.as_mut();
        let Some(m) = slots[slot as usize].as_mut() else { return };
        if m.pending {
            return;
        }
        m.pending = true;
        m.next_pending = None;
        match tail {
            Some(t) => slots[t as usize].as_mut().expect("pending tail").next_pending = Some(slot),
            None => self.pending_head = Some(slot),
        }
        self.pending_tail = Some(slot);
    }

    fn pop_pending(&mut self) {
        let Some(head) = self.pending_head else { return };
        let m = self.members.as_mut()[head as usize].as_mut().expect("pending slot");
        m.pending = false;
        self.pending_head = m.next_pending.take();
        if self.pending_head.is_none() {
            self.pending_tail = None;
        }
    }

    /// Keeps the cached earliest member timer right after one member's
    /// timer moved from `old` to `new`, without a walk when it can.
    fn note_timer(&self, old: Option<Instant>, new: Option<Instant>) {
        if self.timers_dirty.get() || old == new {
            return;
        }
        let cache = self.timer_cache.get();
        match (new, cache) {
            (Some(n), Some(c)) if n <= c => self.timer_cache.set(Some(n)),
            (Some(n), None) => self.timer_cache.set(Some(n)),
            // It may have been the earliest: find the next one when asked.
            _ if old.is_some() && old == cache => self.timers_dirty.set(true),
            _ => {}
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Whether [`Node::poll_event`] has an event to give (for a host that
    /// hands packets to the node on one thread and its events to the rest
    /// of the host on another).
    pub fn has_events(&self) -> bool {
        !self.events.is_empty()
    }

    // ---- internals ---------------------------------------------------------

    fn seal_announce(&mut self, now: Instant, kind: AnnounceKind, out: &mut [u8]) -> usize {
        let mut nonce = [0u8; 24];
        self.rng.fill_bytes(&mut nonce);
        let repr = AnnounceRepr {
            kind,
            identity: self.public,
            timestamp: self.local.announce_timestamp(now),
            port: self.config.port,
        };
        repr.seal(&self.network.beacon_key, &nonce, out)
    }

    fn slot_of_static(&self, key: &[u8; 32]) -> Option<u16> {
        self.members
            .as_ref()
            .iter()
            .position(|m| m.as_ref().is_some_and(|m| m.identity.static_key == *key))
            .map(|i| i as u16)
    }

    /// The slot where the probe for `key` (the first 8 bytes of a node id)
    /// starts. Members are placed by open addressing on their node id, so
    /// lookups by id and by overlay IPv6 address take O(1) probes while the
    /// table is not nearly full; slots never move, so session indices and
    /// the active list stay valid. (Members are not removed yet; removal
    /// will need tombstones to keep probe chains intact.)
    fn home(&self, key: u64) -> usize {
        (key % self.members.as_ref().len().max(1) as u64) as usize
    }

    fn probe(&self, key: u64, matches: impl Fn(&Member<P>) -> bool) -> Option<u16> {
        let slots = self.members.as_ref();
        let n = slots.len();
        let start = self.home(key);
        for i in 0..n {
            let slot = (start + i) % n;
            match &slots[slot] {
                Some(m) if matches(m) => return Some(slot as u16),
                Some(_) => continue,
                None => return None,
            }
        }
        None
    }

    fn find(&self, id: &NodeId) -> Option<u16> {
        self.probe(iid_of(id), |m| m.id == *id)
    }

    /// Stores a new member and returns its slot.
    fn place(&mut self, now: Instant, member: Member<P>) -> Result<u16, DropReason> {
        let slots = self.members.as_ref();
        let n = slots.len();
        let start = self.home(member.iid);
        let slot = (0..n)
            .map(|i| (start + i) % n)
            .find(|&s| slots[s].is_none())
            .ok_or(DropReason::TableFull)?;
        let id = member.id;
        self.members.as_mut()[slot] = Some(member);
        self.member_count += 1;
        self.stir_maintenance();
        self.adopt_claim(now, slot as u16);
        self.push_event(Event::MemberDiscovered(id));
        Ok(slot as u16)
    }

    /// Gives the member in `slot` the tunnel `t`, in a free entry of the
    /// pool, else in one whose tunnel went idle (no session, no handshake
    /// under way): its member gives it back. Else (a small device whose
    /// pool is shorter than its member table) the session quiet longest,
    /// [`EVICT_QUIET`] at least, makes room: sessions made for traffic
    /// before mesh neighbours, and its member is told (`GOODBYE`) so it
    /// drops the session at once and makes a new one when it needs one.
    /// With none of these, the pool is full (`TableFull`).
    fn install_tunnel(&mut self, now: Instant, slot: u16, mut t: Tunnel<P>) -> Result<(), DropReason> {
        let members = self.members.as_ref();
        let pool = &self.tunnels;
        let index = match pool.free_entry() {
            Some(i) => i,
            None => {
                let idle = |t: &Tunnel<P>| {
                    let owner = t.config().index_slot as usize;
                    t.poll_timeout().is_none()
                        && owner != slot as usize
                        && members[owner].as_ref().is_some_and(|m| !m.up)
                };
                if let Some(i) = (0..pool.len()).find(|&i| pool.get(i).is_some_and(idle)) {
                    let owner = pool.get(i).expect("found").config().index_slot as u16;
                    self.release_tunnel(owner);
                    i
                } else if let Some(i) = self.quietest_session(now, slot) {
                    let owner = pool.get(i).expect("found").config().index_slot as u16;
                    self.evict(now, owner);
                    i
                } else {
                    self.stats.tunnel_pool_full += 1;
                    return Err(DropReason::TableFull);
                }
            }
        };
        let m = self.members.as_mut()[slot as usize].as_mut().expect("member slot");
        t.refuse_initiations_until(m.last_initiation);
        m.tunnel = Some(index as u16);
        self.tunnels.put(index, t);
        Ok(())
    }

    /// The pool entry whose session may make room for the member in
    /// `slot` (see [`Node::install_tunnel`]): no handshake of ours under
    /// way, nothing sent or received for [`EVICT_QUIET`], not a relay of
    /// another member; sessions made for traffic first, then the one quiet
    /// longest.
    fn quietest_session(&self, now: Instant, slot: u16) -> Option<usize> {
        let members = self.members.as_ref();
        let pool = &self.tunnels;
        (0..pool.len())
            .filter_map(|i| {
                let t = pool.get(i)?;
                let owner = t.config().index_slot;
                let m = members.get(owner as usize)?.as_ref()?;
                let last = m.last_seen.max(t.last_sent())?;
                // A relay carries other members' sessions too.
                let relays = members
                    .iter()
                    .flatten()
                    .any(|x| x.via.is_some_and(|v| u32::from(v) == owner));
                let quiet = owner != u32::from(slot)
                    && !relays
                    && !t.is_handshaking()
                    && now.saturating_since(last) >= EVICT_QUIET;
                quiet.then_some((!m.on_demand, last, i))
            })
            .min()
            .map(|(_, _, i)| i)
    }

    /// Takes the tunnel of the member in `owner` back to the pool for
    /// another member, telling it with a `GOODBYE` sealed on the session
    /// (queued in the outbox) so it reports us down at once rather than
    /// sending into a session we no longer have.
    fn evict(&mut self, now: Instant, owner: u16) {
        self.stats.tunnels_evicted += 1;
        let Some(m) = self.members.as_mut()[owner as usize].as_mut() else {
            return;
        };
        let route = match (m.via, m.endpoint) {
            (Some(via), _) => Some(Route::Relay { via, dst: m.id }),
            (None, Some(to)) => Some(Route::Direct(Destination::Unicast(to))),
            (None, None) => None,
        };
        let mut buf = [0u8; TRANSPORT_HEADER_LEN + 1 + crate::crypto::TAG_LEN];
        buf[TRANSPORT_HEADER_LEN] = crate::wire::ControlKind::GOODBYE.0;
        if let (Some(route), Some(t)) = (route, pooled(&mut self.tunnels, m.tunnel)) {
            if let Ok(sealed) = t.encapsulate(now, &mut buf, 1) {
                let n = sealed.len();
                self.outbox.push(route, &buf[..n]);
            }
        }
        self.member_left(owner);
    }

    /// Takes the idle tunnel of the member in `slot` back to the pool.
    fn release_tunnel(&mut self, slot: u16) {
        let Some(m) = self.members.as_mut()[slot as usize].as_mut() else {
            return;
        };
        if let Some(t) = m.tunnel.take().and_then(|i| self.tunnels.take(i as usize)) {
            m.last_initiation = m.last_initiation.max(t.last_initiation());
        }
        let old_timer = m.timer.take();
        m.connecting_since = None;
        self.note_timer(old_timer, None);
        self.deactivate(slot);
    }

    fn new_tunnel(&self, slot: u16, remote_static: &[u8; 32]) -> Result<Tunnel<P>, DropReason> {
        Ok(Tunnel::new(
            &self.local,
            remote_static,
            tunnel_config(&self.config, slot),
        )?)
    }

    /// Starts a session with the member in `slot` as a mesh neighbour
    /// (gossip goes along it).
    fn connect_neighbour(&mut self, now: Instant, slot: u16) -> Result<(), DropReason> {
        self.mark_on_demand(slot, false);
        self.connect_slot(now, slot)
    }

    /// Starts a session with the member in `slot` for traffic: once up, the
    /// member is told (`ON_DEMAND`) and neither end forwards other members'
    /// ledger entries along it.
    pub(crate) fn connect_on_demand(&mut self, now: Instant, slot: u16) -> Result<(), DropReason> {
        self.mark_on_demand(slot, true);
        self.connect_slot(now, slot)
    }

    /// Sets how a session being made is meant; a session that is up keeps
    /// what it was made as.
    fn mark_on_demand(&mut self, slot: u16, on_demand: bool) {
        if let Some(m) = self.members.as_mut()[slot as usize].as_mut() {
            if !m.up {
                m.on_demand = on_demand;
            }
        }
    }

    pub(crate) fn connect_slot(&mut self, now: Instant, slot: u16) -> Result<(), DropReason> {
        let static_key = self.members.as_ref()[slot as usize]
            .as_ref()
            .ok_or(DropReason::UnknownIndex)?
            .identity
            .static_key;
        if self.members.as_ref()[slot as usize]
            .as_ref()
            .is_some_and(|m| m.tunnel.is_none())
        {
            let t = self.new_tunnel(slot, &static_key)?;
            self.install_tunnel(now, slot, t)?;
        }
        let m = self.members.as_mut()[slot as usize].as_mut().expect("checked");
        pooled(&mut self.tunnels, m.tunnel).expect("just ensured").connect();
        if !m.up && m.connecting_since.is_none() {
            m.connecting_since = Some(now);
            let due = now + relay::RELAY_AFTER;
            self.relay_wake = Some(self.relay_wake.map_or(due, |t| t.min(due)));
        }
        self.after_tunnel_activity(now, slot);
        Ok(())
    }

    /// Puts `slot` on the active list (idempotent).
    fn activate(&mut self, slot: u16) {
        let head = self.active_head;
        let slots = self.members.as_mut();
        let m = slots[slot as usize].as_mut().expect("activating a member");
        if m.prev_active.is_some() || head == Some(slot) {
            return;
        }
        m.next_active = head;
        m.prev_active = None;
        if let Some(h) = head {
            slots[h as usize].as_mut().expect("active head").prev_active = Some(slot);
        }
        self.active_head = Some(slot);
        self.active += 1;
    }

    fn deactivate(&mut self, slot: u16) {
        // Its tunnel may be gone too (`release_tunnel`, `member_left`).
        self.stir_maintenance();
        let head = self.active_head;
        let slots = self.members.as_mut();
        let Some(m) = slots[slot as usize].as_ref() else { return };
        if m.prev_active.is_none() && head != Some(slot) {
            return; // not on the list
        }
        self.active -= 1;
        let (prev, next) = {
            let m = slots[slot as usize].as_mut().expect("deactivating a member");
            let links = (m.prev_active, m.next_active);
            m.prev_active = None;
            m.next_active = None;
            links
        };
        match prev {
            Some(p) => slots[p as usize].as_mut().expect("linked").next_active = next,
            None => self.active_head = next,
        }
        if let Some(n) = next {
            slots[n as usize].as_mut().expect("linked").prev_active = prev;
        }
    }

    /// Turns tunnel events into node events, and takes idle tunnels off the
    /// active list.
    fn after_tunnel_activity(&mut self, now: Instant, slot: u16) {
        let Some(m) = self.members.as_mut()[slot as usize].as_mut() else {
            return;
        };
        let Some(t) = pooled(&mut self.tunnels, m.tunnel) else {
            return;
        };
        let id = m.id;
        let mut up = m.up;
        let mut events: Vec<Event, 4> = Vec::new();
        let mut established = false;
        while let Some(e) = t.poll_event() {
            if let TunnelEvent::Established { .. } = e {
                established = true;
                self.stats.handshakes += 1;
            }
            match e {
                TunnelEvent::Established { .. } if !up => {
                    up = true;
                    let _ = events.push(Event::PeerUp(id));
                }
                TunnelEvent::Expired | TunnelEvent::HandshakeFailed if up => {
                    up = false;
                    let _ = events.push(Event::PeerDown(id));
                }
                _ => {}
            }
        }
        let changed = m.up != up;
        let came_up = changed && up;
        m.up = up;
        if established {
            // A new session, perhaps with a restarted (older or newer)
            // node: what it reads is said again on it.
            m.batches = false;
            m.answers = false;
            m.features_heard = false;
        }
        let old_timer = m.timer;
        m.timer = t.poll_timeout();
        let new_timer = m.timer;
        let idle = new_timer.is_none();
        let endpoint = m.endpoint;
        self.note_timer(old_timer, new_timer);
        self.mark_pending(slot);
        if changed {
            self.ups_dirty = true;
            let first_gap = first_hello_gap(&self.config);
            for b in self.bootstrap.iter_mut().filter(|b| Some(b.endpoint) == endpoint) {
                b.connected = up;
                b.hello_gap = first_gap;
            }
        }
        for e in events {
            self.push_event(e);
        }
        if changed {
            if let Some(m) = self.members.as_mut()[slot as usize].as_mut() {
                m.connecting_since = None;
                if !up {
                    // The next session says again what it is for.
                    m.on_demand = false;
                    m.on_demand_told = None;
                    m.batches = false;
                    m.answers = false;
                    m.features_heard = false;
                }
            }
            if !up {
                // Members relayed through this one need another path.
                for m in self.members.as_mut().iter_mut().flatten() {
                    if m.via == Some(slot) {
                        m.via = None;
                    }
                }
            }
        }
        if established {
            self.queue(sync::Intent::Features { to: slot, ask: false });
        }
        if came_up && self.beyond_neighbour_quota() {
            // A small pool: a session another member opened as its
            // neighbour, past our own neighbours, carries traffic only, so
            // it can make room for another when it goes quiet.
            if let Some(m) = self.members.as_mut()[slot as usize].as_mut() {
                m.on_demand = true;
            }
        }
        if came_up {
            // Tell it where we see it, and compare ledgers at once.
            if let Some(addr) = endpoint {
                self.tell_observed(slot, addr);
            }
            self.greet(slot);
            self.tell_on_demand(now, slot);
            self.claim_after_up(now);
        }
        if idle {
            self.deactivate(slot);
        } else {
            self.activate(slot);
        }
    }

    /// Whether this node's tunnel pool is shorter than its member table (a
    /// small device: a new session may cost another member its own).
    fn short_pool(&self) -> bool {
        self.tunnels.len() < self.members.as_ref().len()
    }

    /// Whether this node's tunnel pool is shorter than its member table
    /// and more mesh-neighbour sessions are up than `neighbors`.
    fn beyond_neighbour_quota(&self) -> bool {
        self.short_pool()
            && self
                .members
                .as_ref()
                .iter()
                .flatten()
                .filter(|m| m.up && !m.on_demand)
                .count()
                > self.config.neighbors
    }

    /// The member in `slot` said goodbye: forget its session (a new one is
    /// made if it comes back) and report it down.
    pub(crate) fn member_left(&mut self, slot: u16) {
        let Some(m) = self.members.as_mut()[slot as usize].as_mut() else {
            return;
        };
        let (id, was_up, endpoint, old_timer) = (m.id, m.up, m.endpoint, m.timer);
        if let Some(t) = m.tunnel.take().and_then(|i| self.tunnels.take(i as usize)) {
            m.last_initiation = m.last_initiation.max(t.last_initiation());
        }
        m.up = false;
        m.timer = None;
        m.via = None;
        m.connecting_since = None;
        m.on_demand = false;
        m.on_demand_told = None;
        m.batches = false;
        m.answers = false;
        m.features_heard = false;
        self.note_timer(old_timer, None);
        self.deactivate(slot);
        self.ups_dirty = true;
        let first_gap = first_hello_gap(&self.config);
        for b in self.bootstrap.iter_mut().filter(|b| Some(b.endpoint) == endpoint) {
            b.connected = false;
            b.hello_gap = first_gap;
        }
        for m in self.members.as_mut().iter_mut().flatten() {
            if m.via == Some(slot) {
                m.via = None;
            }
        }
        if was_up {
            self.push_event(Event::PeerDown(id));
        }
    }

    fn push_event(&mut self, e: Event) {
        if self.events.is_full() {
            self.events.pop_front();
            self.stats.events_lost += 1;
        }
        let _ = self.events.push_back(e);
    }
}

/// The gap after the first hello to a bootstrap endpoint.
/// A member the top-up may open a session with: none yet, an endpoint to
/// reach, and not a small device (it keeps its few sessions for its own
/// neighbours and for traffic).
fn top_up_candidate<P: CryptoProvider>(m: &Member<P>) -> bool {
    m.tunnel.is_none() && m.endpoint.is_some() && !m.small_entries
}

fn first_hello_gap(config: &NodeConfig) -> Duration {
    FIRST_HELLO_GAP.min(config.hello_interval)
}

fn tunnel_config(config: &NodeConfig, slot: u16) -> TunnelConfig {
    TunnelConfig {
        index_slot: slot as u32,
        persistent_keepalive: config.persistent_keepalive,
    }
}

/// The tunnel at `index` in the tunnel pool.
fn pooled<P: CryptoProvider>(pool: &mut impl TunnelPool<P>, index: Option<u16>) -> Option<&mut Tunnel<P>> {
    pool.get_mut(index? as usize)
}

/// Whether the pair `a`, `b` is one of the pairs that bridge (see
/// `handle_announce`): about `neighbors` in `heard + 1`, the same answer at
/// both ends and at every beacon.
fn bridge_pair(a: &NodeId, b: &NodeId, heard: usize, neighbors: usize) -> bool {
    let mixed = (iid_of(a) ^ iid_of(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    (mixed % (heard as u64 + 1)) < neighbors as u64
}

/// The first 8 bytes of a node id: its overlay interface id and its hash.
fn iid_of(id: &NodeId) -> u64 {
    u64::from_be_bytes(crate::wire::array(&id.0, 0))
}

/// The destination address of an IP packet.
fn destination(packet: &[u8]) -> Option<IpAddr> {
    match packet.first()? >> 4 {
        4 if packet.len() >= 20 => Some(IpAddr::V4(Ipv4Addr::from(crate::wire::array::<4>(packet, 16)))),
        6 if packet.len() >= 40 => Some(IpAddr::V6(Ipv6Addr::from(crate::wire::array::<16>(packet, 24)))),
        _ => None,
    }
}

/// Whether an IP packet's source is one of `member`'s overlay addresses.
fn source_is<P: CryptoProvider>(member: &Member<P>, prefix: &[u8; 8], packet: &[u8]) -> bool {
    match packet.first().map(|b| b >> 4) {
        Some(4) if packet.len() >= 20 => member.ipv4 == Some(Ipv4Addr::from(crate::wire::array::<4>(packet, 12))),
        Some(6) if packet.len() >= 40 => {
            let src = Ipv6Addr::from(crate::wire::array::<16>(packet, 8));
            interface_id(prefix, &src) == Some(member.iid)
        }
        _ => false,
    }
}
