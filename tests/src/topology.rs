//! Building blocks of test networks, all inside a lab's namespaces:
//! switches (a Linux bridge in its own namespace, one per segment), hosts
//! plugged into them by veth pairs, direct veth wires between two
//! namespaces, and NAT routers (a namespace with a
//! `lan` and a `wan` leg, forwarding, and nftables masquerade).
//!
//! Addresses are the caller's; tests use `10.99.x.y` for private segments
//! and the documentation range `198.51.100.0/24` for the "public" one. They
//! exist only inside the lab's namespaces.

use crate::error::Result;
use crate::lab::{Lab, Namespace};

/// A LAN segment: a namespace holding the bridge `br0`, into which hosts
/// are plugged.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The switch's namespace.
    pub ns: Namespace,
}

/// How a NAT router maps inside endpoints to its outside address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    /// Plain `masquerade`: Linux keeps the inside source port when it is
    /// free, so one inside socket appears on one outside port whatever the
    /// destination (endpoint-independent mapping); conntrack lets in only
    /// replies from the endpoint that was sent to (a port-restricted cone).
    /// Simultaneous sends punch through it, with one Linux quirk that
    /// many home routers share: a peer's packet that arrives before the
    /// inside host has sent to that peer creates an inbound conntrack entry,
    /// and the inside host's own flow to the peer then clashes with it and
    /// gets another outside port. A punch has to keep its first packets
    /// from reaching the other NAT too early (or retry once such entries
    /// expire, 30 s after the last packet).
    PortRestrictedCone,
    /// [`NatKind::PortRestrictedCone`] on a router with a firewall, as home
    /// routers ship (OpenWrt's WAN zone, for one): nothing but replies may
    /// reach the router itself from `wan`. An early punch is then dropped
    /// before conntrack confirms an entry for it, so it leaves nothing
    /// that moves the late side's port, and a punch goes through.
    FirewalledCone,
    /// `masquerade fully-random`: every new destination gets a random
    /// outside port (endpoint-dependent mapping), like a symmetric NAT. A
    /// punch cannot predict the port; traffic has to be relayed.
    Symmetric,
}

/// The address part of `a.b.c.d/len`.
pub fn addr(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

impl Lab {
    /// Creates a switch: namespace `short` with an up bridge `br0`.
    /// Multicast snooping is off, so LAN multicast (beacons) floods to every
    /// port as on a dumb switch.
    pub fn switch(&mut self, short: &str) -> Result<Segment> {
        let ns = self.namespace(short)?;
        self.ip(&ns, &["link", "add", "br0", "type", "bridge", "mcast_snooping", "0"])?;
        self.ip(&ns, &["link", "set", "br0", "up"])?;
        Ok(Segment { ns })
    }

    /// Creates a host namespace (an alias of [`Lab::namespace`] that reads
    /// better in topologies).
    pub fn host(&mut self, short: &str) -> Result<Namespace> {
        self.namespace(short)
    }

    /// Plugs `ns` into `segment`: a veth pair with `iface` in `ns` (address
    /// `cidr`, up) and a port `pN` on the switch's bridge.
    pub fn plug(&mut self, ns: &Namespace, segment: &Segment, iface: &str, cidr: &str) -> Result<()> {
        self.links += 1;
        let port = format!("p{}", self.links);
        // Created inside the switch's namespace with the peer directly in the
        // host's: nothing appears in the machine's own namespace.
        self.ip(
            &segment.ns,
            &[
                "link",
                "add",
                &port,
                "type",
                "veth",
                "peer",
                "name",
                iface,
                "netns",
                ns.name(),
            ],
        )?;
        self.ip(&segment.ns, &["link", "set", &port, "master", "br0", "up"])?;
        self.ip(ns, &["addr", "add", cidr, "dev", iface])?;
        self.ip(ns, &["link", "set", iface, "up"])?;
        Ok(())
    }

    /// Joins `a` and `b` by one veth pair, no switch between: `a_iface`
    /// in `a` with `a_cidr`, `b_iface` in `b` with `b_cidr`, both up.
    /// Created inside `a` with the peer put straight into `b`, so nothing
    /// appears in the machine's own namespace.
    pub fn wire(
        &mut self,
        (a, a_iface, a_cidr): (&Namespace, &str, &str),
        (b, b_iface, b_cidr): (&Namespace, &str, &str),
    ) -> Result<()> {
        self.ip(
            a,
            &[
                "link",
                "add",
                a_iface,
                "type",
                "veth",
                "peer",
                "name",
                b_iface,
                "netns",
                b.name(),
            ],
        )?;
        for (ns, iface, cidr) in [(a, a_iface, a_cidr), (b, b_iface, b_cidr)] {
            self.ip(ns, &["addr", "add", cidr, "dev", iface])?;
            self.ip(ns, &["link", "set", iface, "up"])?;
        }
        Ok(())
    }

    /// Sets the default route of `ns` via `gateway`.
    pub fn default_route(&self, ns: &Namespace, gateway: &str) -> Result<()> {
        self.ip(ns, &["route", "add", "default", "via", gateway])?;
        Ok(())
    }

    /// Creates a NAT router `short`: leg `lan` on `inside` (address
    /// `inside_cidr`, the gateway of that segment), leg `wan` on `outside`
    /// (`outside_cidr`), forwarding on, and nftables rules that masquerade
    /// traffic leaving `wan` and let in only replies to it.
    pub fn nat_router(
        &mut self,
        short: &str,
        inside: &Segment,
        inside_cidr: &str,
        outside: &Segment,
        outside_cidr: &str,
        kind: NatKind,
    ) -> Result<Namespace> {
        let ns = self.namespace(short)?;
        self.plug(&ns, inside, "lan", inside_cidr)?;
        self.plug(&ns, outside, "wan", outside_cidr)?;
        // Per-namespace sysctl, written directly (procps is not on every machine).
        self.exec_ok(
            &ns,
            "sh",
            &["-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"],
            crate::command::DEFAULT_LIMIT,
        )?;
        let masquerade = match kind {
            NatKind::PortRestrictedCone | NatKind::FirewalledCone => "masquerade",
            NatKind::Symmetric => "masquerade fully-random",
        };
        let input = match kind {
            NatKind::FirewalledCone => {
                "\tchain input { type filter hook input priority filter; policy accept;\n\
                 \t\tiifname \"wan\" ct state established,related accept\n\
                 \t\tiifname \"wan\" drop\n\
                 \t}\n"
            }
            NatKind::PortRestrictedCone | NatKind::Symmetric => "",
        };
        let ruleset = format!(
            "table ip nat {{\n\
             \tchain postrouting {{ type nat hook postrouting priority srcnat; policy accept;\n\
             \t\toifname \"wan\" {masquerade}\n\
             \t}}\n\
             }}\n\
             table ip filter {{\n\
             \tchain forward {{ type filter hook forward priority filter; policy drop;\n\
             \t\tct state established,related accept\n\
             \t\tiifname \"lan\" oifname \"wan\" accept\n\
             \t}}\n\
             {input}\
             }}\n"
        );
        let file = self.dir().join(format!("{short}.nft"));
        std::fs::write(&file, ruleset)
            .map_err(|e| crate::error::HarnessError::io(format!("writing {}", file.display()), e))?;
        self.exec_ok(
            &ns,
            "nft",
            &["-f", file.to_str().unwrap_or_default()],
            crate::command::DEFAULT_LIMIT,
        )?;
        Ok(ns)
    }

    /// Cuts `ns` off from the underlay addresses `peers` (both directions,
    /// beacons included): an nftables table `partition` that drops their
    /// packets. [`Lab::heal`] removes it.
    pub fn cut_off(&self, ns: &Namespace, peers: &[&str]) -> Result<()> {
        let set = peers.join(", ");
        let ruleset = format!(
            "table ip partition {{\n\
             \tchain input {{ type filter hook input priority filter; policy accept;\n\
             \t\tip saddr {{ {set} }} drop\n\
             \t}}\n\
             \tchain output {{ type filter hook output priority filter; policy accept;\n\
             \t\tip daddr {{ {set} }} drop\n\
             \t}}\n\
             }}\n"
        );
        self.apply_nft(ns, "partition", &ruleset)
    }

    /// Loads `ruleset` into `ns` with `nft -f`, from a file named after
    /// `what` in the lab's directory (kept with the logs).
    fn apply_nft(&self, ns: &Namespace, what: &str, ruleset: &str) -> Result<()> {
        let file = self.dir().join(format!("{}-{what}.nft", ns.short()));
        std::fs::write(&file, ruleset)
            .map_err(|e| crate::error::HarnessError::io(format!("writing {}", file.display()), e))?;
        self.exec_ok(
            ns,
            "nft",
            &["-f", file.to_str().unwrap_or_default()],
            crate::command::DEFAULT_LIMIT,
        )?;
        Ok(())
    }

    /// Makes `ns`'s link lossy for UDP: an nftables table `loss` that drops
    /// `percent` % of the UDP datagrams it receives and of those it sends,
    /// at random (`numgen random`), and counts what it dropped
    /// ([`Lab::loss_drops`]). So every path through `ns` loses about that
    /// share each way; paths between other namespaces are untouched.
    pub fn lossy(&self, ns: &Namespace, percent: u8) -> Result<()> {
        let ruleset = format!(
            "table inet loss {{\n\
             \tchain input {{ type filter hook input priority filter; policy accept;\n\
             \t\tmeta l4proto udp numgen random mod 100 < {percent} counter drop\n\
             \t}}\n\
             \tchain output {{ type filter hook output priority filter; policy accept;\n\
             \t\tmeta l4proto udp numgen random mod 100 < {percent} counter drop\n\
             \t}}\n\
             }}\n"
        );
        self.apply_nft(ns, "loss", &ruleset)
    }

    /// The datagrams [`Lab::lossy`] dropped in `ns` so far, both ways.
    pub fn loss_drops(&self, ns: &Namespace) -> Result<u64> {
        let listing = self.exec_ok(
            ns,
            "nft",
            &["list", "table", "inet", "loss"],
            crate::command::DEFAULT_LIMIT,
        )?;
        Ok(listing
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[0] == "packets")
            .filter_map(|w| w[1].parse::<u64>().ok())
            .sum())
    }

    /// Removes what [`Lab::cut_off`] added to `ns`.
    pub fn heal(&self, ns: &Namespace) -> Result<()> {
        self.exec_ok(
            ns,
            "nft",
            &["delete", "table", "ip", "partition"],
            crate::command::DEFAULT_LIMIT,
        )?;
        Ok(())
    }
}
