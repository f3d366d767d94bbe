//! The fixed cast of the network targets: two identities on one network,
//! their addresses, the start of time and the RNG seeds. Fixed, so that the
//! same input always does the same thing and the corpus generator can build
//! datagrams the targets accept.

use std::net::SocketAddr;
use std::sync::OnceLock;

use kairos_core::crypto::RustCryptoProvider;
use kairos_core::identity::Identity;
use kairos_core::noise::{Admission, DEFAULT_LOAD_THRESHOLD};
use kairos_core::session::{Local, Tunnel, TunnelConfig};
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// The network secret both nodes share.
pub const NETWORK_SECRET: [u8; 32] = [1; 32];
/// The initiator's persisted identity.
pub const INITIATOR_ID: [u8; 64] = [1; 64];
/// The responder's persisted identity (the node under test).
pub const RESPONDER_ID: [u8; 64] = [2; 64];
/// Wall-clock time at `Instant::ZERO` (for handshake timestamps).
pub const WALL_AT_ZERO: Duration = Duration::from_secs(1_800_000_000);
/// Where every script starts.
pub const START: Instant = Instant::from_secs(1);
/// Seed of the responder's RNG (its ephemeral keys, indices, cookies).
pub const RESPONDER_SEED: u64 = 0x6b61_6972_6f73_0002;
/// Seed of the initiator's RNG.
pub const INITIATOR_SEED: u64 = 0x6b61_6972_6f73_0001;

/// The tunnel type every target uses: the default, pure-Rust provider.
pub type FuzzTunnel = Tunnel<RustCryptoProvider>;

/// Which of the two fixed identities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Identity `[1; 64]`, at 127.0.0.1:1001.
    Initiator,
    /// Identity `[2; 64]`, at 127.0.0.1:1002: the node under test.
    Responder,
}

impl Role {
    /// The other one.
    pub fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }

    /// This node's UDP address.
    pub fn addr(self) -> SocketAddr {
        match self {
            Role::Initiator => SocketAddr::from(([127, 0, 0, 1], 1001)),
            Role::Responder => SocketAddr::from(([127, 0, 0, 1], 1002)),
        }
    }

    /// This node's identity (computed once per process: key generation is
    /// the same every time and costs two scalar multiplications).
    pub fn identity(self) -> &'static Identity {
        static IDS: OnceLock<[Identity; 2]> = OnceLock::new();
        let ids = IDS.get_or_init(|| [Identity::from_bytes(&INITIATOR_ID), Identity::from_bytes(&RESPONDER_ID)]);
        match self {
            Role::Initiator => &ids[0],
            Role::Responder => &ids[1],
        }
    }

    /// The RNG seed of this node.
    pub fn seed(self) -> u64 {
        match self {
            Role::Initiator => INITIATOR_SEED,
            Role::Responder => RESPONDER_SEED,
        }
    }
}

/// The network both nodes are on (derived once per process).
pub fn network() -> &'static NetworkKeys {
    static NET: OnceLock<NetworkKeys> = OnceLock::new();
    NET.get_or_init(|| NetworkKeys::derive(&NETWORK_SECRET))
}

/// How a node is set up, beyond its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    /// Handshake messages per second above which cookies are required
    /// (0: always).
    pub load_threshold: u32,
    /// The tunnel's persistent keepalive.
    pub persistent_keepalive: Option<Duration>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            load_threshold: DEFAULT_LOAD_THRESHOLD,
            persistent_keepalive: None,
        }
    }
}

impl Setup {
    /// Reads a setup from two bits of a mode byte: bits 1-2 pick the load
    /// threshold (default, 0 = always under load, 1, 4), bit 3 a persistent
    /// keepalive of 25 s.
    pub fn from_mode(mode: u8) -> Setup {
        Setup {
            load_threshold: [DEFAULT_LOAD_THRESHOLD, 0, 1, 4][usize::from((mode >> 1) & 3)],
            persistent_keepalive: (mode & 8 != 0).then(|| Duration::from_secs(25)),
        }
    }
}

/// One node with its only tunnel (to the other role) and its RNG.
pub struct Node {
    /// Which identity.
    pub role: Role,
    /// The node's keys and admission control.
    pub local: Local,
    /// The tunnel to the other role.
    pub tunnel: FuzzTunnel,
    /// The node's deterministic RNG.
    pub rng: ChaCha20Rng,
    /// The persistent keepalive its tunnel was made with.
    tunnel_keepalive: Option<Duration>,
}

impl Node {
    /// A fresh node as `role`, set up as `setup`: a copy of one made once
    /// per process (making one costs an X25519 operation, per input that
    /// would be most of the time spent on short inputs).
    pub fn new(role: Role, setup: Setup) -> Node {
        static FRESH: OnceLock<[Node; 4]> = OnceLock::new();
        let fresh = FRESH.get_or_init(|| {
            let keepalive = Some(Duration::from_secs(25));
            [
                Node::make(Role::Initiator, None),
                Node::make(Role::Initiator, keepalive),
                Node::make(Role::Responder, None),
                Node::make(Role::Responder, keepalive),
            ]
        });
        let i = 2 * usize::from(role == Role::Responder) + usize::from(setup.persistent_keepalive.is_some());
        let mut node = fresh[i].snapshot();
        assert_eq!(
            node.tunnel_keepalive, setup.persistent_keepalive,
            "templates cover every setup"
        );
        node.local.admission = Admission::new(setup.load_threshold);
        node
    }

    fn make(role: Role, persistent_keepalive: Option<Duration>) -> Node {
        let local = Local::new(role.identity(), network(), WALL_AT_ZERO);
        let mut config = TunnelConfig::default();
        config.persistent_keepalive = persistent_keepalive;
        let tunnel = FuzzTunnel::new(&local, role.peer().identity().static_public(), config)
            .expect("the fixed peer key is not of low order");
        Node {
            role,
            local,
            tunnel,
            rng: ChaCha20Rng::seed_from_u64(role.seed()),
            tunnel_keepalive: persistent_keepalive,
        }
    }

    /// An independent copy of this node in its current state: what `Clone`
    /// would give, if `Local` and `Tunnel` implemented it.
    pub fn snapshot(&self) -> Node {
        Node {
            role: self.role,
            // SAFETY: see `duplicate`.
            local: unsafe { duplicate(&self.local) },
            // SAFETY: see `duplicate`.
            tunnel: unsafe { duplicate(&self.tunnel) },
            rng: self.rng.clone(),
            tunnel_keepalive: self.tunnel_keepalive,
        }
    }
}

/// A bitwise copy of `value`.
///
/// # Safety
///
/// Sound only for a type that owns nothing outside its own bytes (no heap
/// memory, handle or borrowed data): a bitwise copy of one is what `Clone`
/// would make. `kairos_core::session::{Local, Tunnel}` are such types:
/// kairos-core is `no_std` without `alloc` (it "allocates nothing"), and
/// neither type has a lifetime parameter, so their state is keys, counters,
/// options and fixed-size `heapless` collections, all inline. Each copy
/// zeroizes its own bytes when dropped. (If kairos-core derives `Clone` for
/// them one day, use that instead.)
unsafe fn duplicate<T>(value: &T) -> T {
    // SAFETY: `value` is a valid, aligned `T`; the caller vouches that a
    // second owner of its bytes is harmless.
    unsafe { std::ptr::read(value) }
}
