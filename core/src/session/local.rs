//! [`Local`]: the local end of every tunnel a node has.
//!
//! It bundles what all of a node's tunnels share: the static keys, the
//! handshake admission control (MAC1, cookies, load), and the wall clock
//! reference for handshake timestamps. A node has one; each [`super::Tunnel`]
//! borrows it for the calls that handshake.

use crate::identity::Identity;
use crate::noise::{Admission, LocalKeys, Tai64N, DEFAULT_LOAD_THRESHOLD};
use crate::time::{Duration, Instant};
use crate::token::NetworkKeys;

/// The local end of a node's tunnels. See the module docs.
pub struct Local {
    /// The node's handshake keys.
    pub keys: LocalKeys,
    /// Admission control for incoming handshake messages.
    pub admission: Admission,
    wall_at_zero: Duration,
    last_timestamp: Tai64N,
    last_announce: Tai64N,
}

impl Local {
    /// The local end of `identity` on the network of `network`.
    /// `wall_at_zero` is the wall-clock time (since the UNIX epoch) at the
    /// caller's `Instant::ZERO`.
    pub fn new(identity: &Identity, network: &NetworkKeys, wall_at_zero: Duration) -> Self {
        Local {
            keys: LocalKeys::new(identity, network),
            admission: Admission::new(DEFAULT_LOAD_THRESHOLD),
            wall_at_zero,
            last_timestamp: Tai64N::ZERO,
            last_announce: Tai64N::ZERO,
        }
    }

    /// The timestamp for an initiation sent at `now`. Never goes backwards,
    /// even if the caller's reference moves.
    pub(crate) fn timestamp(&mut self, now: Instant) -> Tai64N {
        let t = Tai64N::at(self.wall_at_zero, now);
        if t > self.last_timestamp {
            self.last_timestamp = t;
        }
        self.last_timestamp
    }

    /// The timestamp for an announcement (beacon, hello, hello reply) sent
    /// at `now`: strictly newer than the last one, as receivers drop an
    /// announcement no newer than the last they took from its sender as a
    /// replay (a hello and the reply to the other's hello often leave
    /// within one whitened interval).
    pub(crate) fn announce_timestamp(&mut self, now: Instant) -> Tai64N {
        let t = Tai64N::at(self.wall_at_zero, now);
        self.last_announce = if t > self.last_announce {
            t
        } else {
            self.last_announce.successor()
        };
        self.last_announce
    }
}
