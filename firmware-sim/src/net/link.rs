//! One hop of the simulated network and the faults wrapped around it.
//!
//! A [`LinkConfig`] is an ideal link (a fixed one-way latency and an MTU)
//! wrapped by [`Faults`] (loss, jitter, reordering, duplication), in the
//! manner of smoltcp's `FaultInjector`: the ideal link says when a datagram
//! would arrive, the fault wrapper may drop, delay or copy it. The router
//! applies one link per hop: host <-> its LAN segment, and LAN gateway <->
//! internet core.
//!
//! This module owns the per-hop timing and fault decisions. It never knows
//! about addresses, NAT state or the event queue, and it draws from the RNG
//! only for faults that are switched on, so a fault-free link is exact.

use kairos_core::time::Duration;
use rand_chacha::ChaCha8Rng;
use rand_core::RngCore;

use super::stats::DropReason;

/// Bytes of IPv4 and UDP headers counted against the MTU on top of the
/// datagram payload.
pub const IP_UDP_OVERHEAD: usize = 28;

/// Default one-way latency of a host's link to its LAN segment.
pub const DEFAULT_LAN_LATENCY: Duration = Duration::from_micros(250);
/// Default one-way latency of a LAN's uplink to the internet core.
pub const DEFAULT_UPLINK_LATENCY: Duration = Duration::from_millis(20);
/// Default IP MTU of every link.
pub const DEFAULT_MTU: usize = 1500;

/// One hop: latency, MTU and the faults wrapped around them.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LinkConfig {
    /// Fixed one-way propagation delay.
    pub latency: Duration,
    /// Largest IP packet (payload + [`IP_UDP_OVERHEAD`]) the link carries;
    /// larger ones are dropped and counted as [`DropReason::Mtu`].
    pub mtu: usize,
    /// Faults applied on top of the ideal link.
    pub faults: Faults,
}

impl LinkConfig {
    /// An ideal link with this latency and a [`DEFAULT_MTU`].
    pub const fn new(latency: Duration) -> Self {
        LinkConfig {
            latency,
            mtu: DEFAULT_MTU,
            faults: Faults::NONE,
        }
    }
    /// A host's link to its LAN segment: [`DEFAULT_LAN_LATENCY`], no faults.
    pub const fn lan() -> Self {
        Self::new(DEFAULT_LAN_LATENCY)
    }
    /// A LAN's uplink to the internet: [`DEFAULT_UPLINK_LATENCY`], no faults.
    pub const fn uplink() -> Self {
        Self::new(DEFAULT_UPLINK_LATENCY)
    }
    /// With another latency.
    pub const fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
    /// With another MTU.
    pub const fn with_mtu(mut self, mtu: usize) -> Self {
        self.mtu = mtu;
        self
    }
    /// With these faults (replacing any set before).
    pub const fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }
    /// With a loss probability ([`Faults::with_loss`]).
    pub const fn with_loss(mut self, p: f64) -> Self {
        self.faults = self.faults.with_loss(p);
        self
    }
    /// With jitter ([`Faults::with_jitter`]).
    pub const fn with_jitter(mut self, jitter: Duration) -> Self {
        self.faults = self.faults.with_jitter(jitter);
        self
    }
    /// With reordering ([`Faults::with_reorder`]).
    pub const fn with_reorder(mut self, p: f64, delay: Duration) -> Self {
        self.faults = self.faults.with_reorder(p, delay);
        self
    }
    /// With duplication ([`Faults::with_duplicate`]).
    pub const fn with_duplicate(mut self, p: f64) -> Self {
        self.faults = self.faults.with_duplicate(p);
        self
    }

    /// Carries a datagram of `payload_len` bytes over this hop.
    pub(crate) fn carry(&self, rng: &mut ChaCha8Rng, payload_len: usize) -> Hop {
        if payload_len.saturating_add(IP_UDP_OVERHEAD) > self.mtu {
            return Hop::Dropped(DropReason::Mtu);
        }
        self.faults.apply(rng, self.latency)
    }
}

impl Default for LinkConfig {
    /// The LAN link: [`LinkConfig::lan`].
    fn default() -> Self {
        Self::lan()
    }
}

/// The faults a link injects. All off by default.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Faults {
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Upper bound of a uniform random extra delay per datagram.
    pub jitter: Duration,
    /// Probability that a datagram is held back by `reorder_delay`.
    pub reorder: f64,
    /// Extra delay of a held-back datagram.
    pub reorder_delay: Duration,
    /// Probability that a datagram is duplicated.
    pub duplicate: f64,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        loss: 0.0,
        jitter: Duration::ZERO,
        reorder: 0.0,
        reorder_delay: Duration::ZERO,
        duplicate: 0.0,
    };

    /// With a loss probability (0.0 ..= 1.0).
    pub const fn with_loss(mut self, p: f64) -> Self {
        self.loss = p;
        self
    }
    /// With a uniform extra delay in `0 ..= jitter`, drawn per datagram. A
    /// jitter larger than the gap between two datagrams reorders them.
    pub const fn with_jitter(mut self, jitter: Duration) -> Self {
        self.jitter = jitter;
        self
    }
    /// With a probability `p` that a datagram is held back by `delay` more,
    /// so that later datagrams overtake it.
    pub const fn with_reorder(mut self, p: f64, delay: Duration) -> Self {
        self.reorder = p;
        self.reorder_delay = delay;
        self
    }
    /// With a probability that a datagram arrives twice (the copy has its
    /// own jitter and reordering).
    pub const fn with_duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    /// Whether no fault is switched on.
    pub fn is_none(&self) -> bool {
        self.loss <= 0.0 && self.jitter.is_zero() && self.reorder <= 0.0 && self.duplicate <= 0.0
    }

    /// Wraps an ideal hop of `latency`: may drop, delay or duplicate.
    fn apply(&self, rng: &mut ChaCha8Rng, latency: Duration) -> Hop {
        if self.is_none() {
            return Hop::Arrive {
                delay: latency,
                duplicate: None,
            };
        }
        if chance(rng, self.loss) {
            return Hop::Dropped(DropReason::Loss);
        }
        let delay = self.delay(rng, latency);
        let duplicate = if chance(rng, self.duplicate) {
            Some(self.delay(rng, latency))
        } else {
            None
        };
        Hop::Arrive { delay, duplicate }
    }

    fn delay(&self, rng: &mut ChaCha8Rng, latency: Duration) -> Duration {
        let mut d = latency;
        let jitter = self.jitter.as_micros() as u64;
        if jitter > 0 {
            d += Duration::from_micros(rng.next_u64() % (jitter + 1));
        }
        if chance(rng, self.reorder) {
            d += self.reorder_delay;
        }
        d
    }
}

/// What a hop did with a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hop {
    /// Lost on this hop.
    Dropped(DropReason),
    /// Arrives at the far end after `delay`, and a copy after `duplicate`.
    Arrive {
        delay: Duration,
        duplicate: Option<Duration>,
    },
}

/// True with probability `p`; draws from `rng` only when `0 < p < 1`.
pub(crate) fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    if p <= 0.0 {
        return false;
    }
    if p >= 1.0 {
        return true;
    }
    // 53 random bits as a uniform float in [0, 1).
    ((rng.next_u64() >> 11) as f64) * (1.0 / (1u64 << 53) as f64) < p
}

#[cfg(test)]
mod tests {
    use super::super::{LanConfig, Network};
    use super::*;
    use kairos_core::time::Instant;
    use rand_core::SeedableRng;
    use std::net::SocketAddr;

    fn rng() -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(7)
    }

    #[test]
    fn ideal_link_is_exact_and_draws_nothing() {
        let mut a = rng();
        let link = LinkConfig::new(Duration::from_millis(3));
        for _ in 0..10 {
            assert_eq!(
                link.carry(&mut a, 100),
                Hop::Arrive {
                    delay: Duration::from_millis(3),
                    duplicate: None
                }
            );
        }
        assert_eq!(
            a.next_u64(),
            rng().next_u64(),
            "a fault-free link must not consume randomness"
        );
    }

    #[test]
    fn mtu_counts_the_ip_and_udp_headers() {
        let link = LinkConfig::lan().with_mtu(1280);
        let mut r = rng();
        assert!(matches!(link.carry(&mut r, 1280 - IP_UDP_OVERHEAD), Hop::Arrive { .. }));
        assert_eq!(
            link.carry(&mut r, 1280 - IP_UDP_OVERHEAD + 1),
            Hop::Dropped(DropReason::Mtu)
        );
    }

    #[test]
    fn jitter_stays_within_bounds_and_reorder_adds_its_delay() {
        let base = Duration::from_millis(10);
        let jitter = Duration::from_millis(5);
        let link = LinkConfig::new(base).with_jitter(jitter);
        let mut r = rng();
        let (mut min, mut max) = (Duration::MAX, Duration::ZERO);
        for _ in 0..2000 {
            let Hop::Arrive { delay, duplicate: None } = link.carry(&mut r, 10) else {
                panic!()
            };
            min = min.min(delay);
            max = max.max(delay);
        }
        assert!(min >= base && max <= base + jitter);
        assert!(max - min > Duration::from_millis(4), "jitter spreads over its range");

        let held = LinkConfig::new(base).with_reorder(1.0, Duration::from_millis(50));
        assert_eq!(
            held.carry(&mut r, 10),
            Hop::Arrive {
                delay: Duration::from_millis(60),
                duplicate: None
            }
        );
    }

    /// Host `a` on a public LAN whose uplink is `uplink`, host `b` on a clean one.
    fn lossy_pair(seed: u64, uplink: LinkConfig) -> (Network, super::super::HostId, SocketAddr) {
        let mut net = Network::new(seed);
        let la = net.add_lan(LanConfig::public().with_uplink(uplink));
        let lb = net.add_lan(LanConfig::public());
        let a = net.add_host(la);
        let b = net.add_host(lb);
        let to = SocketAddr::new(net.host_addr(b), 9000);
        (net, a, to)
    }

    #[test]
    fn loss_rate_matches_the_configuration_over_10k_datagrams() {
        let (mut net, a, to) = lossy_pair(42, LinkConfig::uplink().with_loss(0.1));
        let mut now = Instant::ZERO;
        for i in 0..10_000u32 {
            net.send(now, a, 9000, to, &i.to_be_bytes());
            now += Duration::from_micros(100);
        }
        let delivered = std::iter::from_fn(|| net.poll(Instant::FAR_FUTURE)).count() as u64;
        let lost = net.stats().drops.loss;
        assert_eq!(delivered + lost, 10_000);
        // Binomial(10k, 0.1): sd = 30; allow 5 sd.
        assert!((850..=1150).contains(&lost), "lost {lost}");
    }

    #[test]
    fn duplication_delivers_copies_and_counts_them() {
        let (mut net, a, to) = lossy_pair(3, LinkConfig::uplink().with_duplicate(0.5));
        for i in 0..1000u32 {
            net.send(Instant::from_millis(i as u64), a, 9000, to, &i.to_be_bytes());
        }
        let got: Vec<_> = std::iter::from_fn(|| net.poll(Instant::FAR_FUTURE)).collect();
        let dups = net.stats().duplicated;
        assert!((400..=600).contains(&dups), "duplicated {dups}");
        assert_eq!(got.len() as u64, 1000 + dups);
        assert_eq!(net.stats().delivered_packets, 1000 + dups);
        let mut ids: Vec<u32> = got
            .iter()
            .map(|d| u32::from_be_bytes(d.bytes[..4].try_into().unwrap()))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 1000, "every datagram arrives at least once");
    }

    #[test]
    fn oversized_datagrams_are_dropped_and_counted() {
        let (mut net, a, to) = lossy_pair(1, LinkConfig::uplink().with_mtu(1400));
        net.send(Instant::ZERO, a, 1, to, &[0; 1400 - IP_UDP_OVERHEAD]);
        net.send(Instant::ZERO, a, 1, to, &[0; 1400 - IP_UDP_OVERHEAD + 1]);
        // The LAN hop is 1500: a jumbo datagram dies on the first hop already.
        net.send(Instant::ZERO, a, 1, to, &[0; 9000]);
        assert_eq!(std::iter::from_fn(|| net.poll(Instant::FAR_FUTURE)).count(), 1);
        assert_eq!(net.stats().drops.mtu, 2);
    }

    #[test]
    fn jitter_and_explicit_reordering_reorder_a_stream() {
        for uplink in [
            LinkConfig::uplink().with_jitter(Duration::from_millis(10)),
            LinkConfig::uplink().with_reorder(0.1, Duration::from_millis(5)),
        ] {
            let (mut net, a, to) = lossy_pair(9, uplink);
            for i in 0..200u32 {
                // One datagram per millisecond.
                net.send(Instant::from_millis(i as u64), a, 1, to, &i.to_be_bytes());
            }
            let ids: Vec<u32> = std::iter::from_fn(|| net.poll(Instant::FAR_FUTURE))
                .map(|d| u32::from_be_bytes(d.bytes[..4].try_into().unwrap()))
                .collect();
            assert_eq!(ids.len(), 200);
            let inversions = ids.windows(2).filter(|w| w[0] > w[1]).count();
            assert!(inversions > 5, "{uplink:?}: {inversions} inversions");
        }
    }
}
