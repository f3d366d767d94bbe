//! Counters of the simulated network: what was sent, delivered and dropped.
//!
//! This module owns the counter types and the list of reasons a datagram can
//! be lost. It never decides a drop: the links, NAT boxes and the router do,
//! and record it here.

/// Why the network dropped a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// A lossy link lost it (random, per the link's loss probability).
    Loss,
    /// It was larger than a link's MTU.
    Mtu,
    /// A NAT had a live mapping on the port but its filter refused the sender.
    NatFilter,
    /// It reached a NAT's public address on a port with no live mapping.
    NoMapping,
    /// A NAT had no free external port left for a new mapping.
    NatPortsExhausted,
    /// It was sent from behind a NAT to that NAT's own public address and the
    /// NAT does not hairpin.
    Hairpin,
    /// Sender and receiver were on different sides of a partition.
    Partition,
    /// The sending or the receiving host was down.
    HostDown,
    /// No host or NAT has the destination address (including private
    /// addresses of other LANs, which the internet does not route), or the
    /// destination is not IPv4.
    UnknownDestination,
}

/// Datagrams dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drops {
    /// See [`DropReason::Loss`].
    pub loss: u64,
    /// See [`DropReason::Mtu`].
    pub mtu: u64,
    /// See [`DropReason::NatFilter`].
    pub nat_filter: u64,
    /// See [`DropReason::NoMapping`].
    pub no_mapping: u64,
    /// See [`DropReason::NatPortsExhausted`].
    pub nat_ports_exhausted: u64,
    /// See [`DropReason::Hairpin`].
    pub hairpin: u64,
    /// See [`DropReason::Partition`].
    pub partition: u64,
    /// See [`DropReason::HostDown`].
    pub host_down: u64,
    /// See [`DropReason::UnknownDestination`].
    pub unknown_destination: u64,
}

impl Drops {
    /// The counter for `reason`.
    pub fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::Loss => self.loss,
            DropReason::Mtu => self.mtu,
            DropReason::NatFilter => self.nat_filter,
            DropReason::NoMapping => self.no_mapping,
            DropReason::NatPortsExhausted => self.nat_ports_exhausted,
            DropReason::Hairpin => self.hairpin,
            DropReason::Partition => self.partition,
            DropReason::HostDown => self.host_down,
            DropReason::UnknownDestination => self.unknown_destination,
        }
    }

    /// All drops, whatever the reason.
    pub fn total(&self) -> u64 {
        self.loss
            + self.mtu
            + self.nat_filter
            + self.no_mapping
            + self.nat_ports_exhausted
            + self.hairpin
            + self.partition
            + self.host_down
            + self.unknown_destination
    }

    pub(crate) fn record(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Loss => &mut self.loss,
            DropReason::Mtu => &mut self.mtu,
            DropReason::NatFilter => &mut self.nat_filter,
            DropReason::NoMapping => &mut self.no_mapping,
            DropReason::NatPortsExhausted => &mut self.nat_ports_exhausted,
            DropReason::Hairpin => &mut self.hairpin,
            DropReason::Partition => &mut self.partition,
            DropReason::HostDown => &mut self.host_down,
            DropReason::UnknownDestination => &mut self.unknown_destination,
        };
        *counter += 1;
    }
}

/// Network-wide counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct NetStats {
    /// Datagrams hosts handed to the network (unicast and multicast, one per
    /// call, including those dropped at once because the sender was down).
    pub sent_packets: u64,
    /// Payload bytes of `sent_packets`.
    pub sent_bytes: u64,
    /// Datagrams handed to a receiving host (a multicast counts once per
    /// receiver, a duplicate once per copy).
    pub delivered_packets: u64,
    /// Payload bytes of `delivered_packets`.
    pub delivered_bytes: u64,
    /// Extra copies made by duplicating links.
    pub duplicated: u64,
    /// Datagrams (or copies) dropped, by reason.
    pub drops: Drops,
}

/// Counters of one host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostStats {
    /// Datagrams this host sent (unicast and multicast).
    pub sent_packets: u64,
    /// Payload bytes of `sent_packets`.
    pub sent_bytes: u64,
    /// Datagrams delivered to this host.
    pub recv_packets: u64,
    /// Payload bytes of `recv_packets`.
    pub recv_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drops_are_counted_per_reason_and_in_total() {
        let mut d = Drops::default();
        let all = [
            DropReason::Loss,
            DropReason::Mtu,
            DropReason::NatFilter,
            DropReason::NoMapping,
            DropReason::NatPortsExhausted,
            DropReason::Hairpin,
            DropReason::Partition,
            DropReason::HostDown,
            DropReason::UnknownDestination,
        ];
        for (i, r) in all.iter().enumerate() {
            for _ in 0..=i {
                d.record(*r);
            }
        }
        for (i, r) in all.iter().enumerate() {
            assert_eq!(d.get(*r), i as u64 + 1, "{r:?}");
        }
        assert_eq!(d.total(), (1..=all.len() as u64).sum::<u64>());
    }
}
