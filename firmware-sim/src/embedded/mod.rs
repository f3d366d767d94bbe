//! Embedded members in the simulation: `kairos-embedded`'s firmware on
//! embassy-net, on a simulated host.
//!
//! An [`EmbeddedHost`] is a host of the simulated network whose node is the
//! no_std firmware of the `kairos-embedded` crate, unchanged: its
//! embassy-net stack runs over a [`device::SimDevice`] (the
//! `embassy_net_driver::Driver` on the simulator's links), its clock is the
//! world's virtual time ([`clock`]), and its four tasks are polled by a tiny
//! executor ([`task`]). The world hands it datagrams as IPv4/UDP packets
//! and sends the packets it transmits; it joins the mesh like any member.
//!
//! This module is the glue (it may use std); the node's logic is all in
//! `kairos-embedded`. Its memory is allocated once and leaked, as a
//! firmware's statics live for the whole program.

pub mod clock;
pub mod device;
pub mod task;

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};

use embassy_net::{Ipv4Cidr, StaticConfigV4};
use kairos_core::identity::{Identity, NodeId};
use kairos_core::node::NodeConfig;
use kairos_core::time::Instant;
use kairos_core::token::NetworkKeys;
pub use kairos_embedded::budget::Budget;
use kairos_embedded::firmware::{self, Firmware, Resources, Status};
use std::mem::size_of_val;

use crate::net::{Delivery, HostId, Network};
use crate::world::WALL_AT_ZERO;
use device::{Frames, SimDevice};
use task::Tasks;

/// One embedded node and the host it runs on.
pub struct EmbeddedHost {
    /// The network host.
    pub host: HostId,
    /// The node's id.
    pub id: NodeId,
    /// What the firmware reports.
    pub status: &'static Status,
    /// Its memory, measured (the tasks' futures included).
    pub budget: Budget,
    frames: Frames,
    tasks: Tasks,
    /// When the task wants to run again.
    pub(crate) wake: Option<Instant>,
}

impl EmbeddedHost {
    /// Builds the firmware for `host` (its address on the network; its
    /// wall clock reads [`WALL_AT_ZERO`] at virtual zero, as other nodes')
    /// and runs it up to its first wait.
    pub(crate) fn start(
        now: Instant,
        host: HostId,
        addr: IpAddr,
        identity: Identity,
        network: &NetworkKeys,
        mut config: NodeConfig,
        seed: u64,
    ) -> Self {
        let IpAddr::V4(addr) = addr else {
            panic!("the simulated underlay is IPv4");
        };
        let id = identity.public().node_id();
        config.port = kairos_embedded::PORT;
        // No multicast group on the firmware's underlay, and no k3s to run.
        config.lan_beacons = false;
        config.roles = None;
        let prefix = config.overlay.prefix_len();
        let node = Box::leak(Box::new(firmware::core_node(
            identity,
            network,
            config,
            seed,
            WALL_AT_ZERO,
        )));
        let status: &'static Status = Box::leak(Box::default());
        let frames = Frames::default();
        let underlay = StaticConfigV4 {
            address: Ipv4Cidr::new(addr, 24),
            gateway: Some(device::gateway_for(addr)),
            dns_servers: Default::default(),
        };
        let resources: &'static mut Resources = Box::leak(Box::new(Resources::new()));
        let fw = firmware::start(SimDevice::new(frames.clone()), underlay, seed, resources);
        let Firmware {
            underlay,
            overlay,
            udp,
            tcp,
            overlay_stack,
            pipe,
        } = fw;
        let (underlay, overlay, udp) = (
            Box::leak(Box::new(underlay)),
            Box::leak(Box::new(overlay)),
            &*Box::leak(Box::new(udp)),
        );
        let owned = size_of_val(&*underlay) + size_of_val(&*overlay) + size_of_val(udp) + size_of_val(&tcp);
        let (a, b) = (underlay.run(), overlay.run());
        let c = firmware::mesh(node, udp, pipe, overlay_stack, prefix, status);
        let d = firmware::serve(tcp, status);
        let futures = size_of_val(&a) + size_of_val(&b) + size_of_val(&c) + size_of_val(&d);
        let budget = Budget::measure().with_tasks(owned + futures);
        let tasks = Tasks::new(vec![
            Box::pin(async move {
                a.await;
            }),
            Box::pin(async move {
                b.await;
            }),
            Box::pin(async move {
                c.await;
            }),
            Box::pin(async move {
                d.await;
            }),
        ]);
        let mut h = EmbeddedHost {
            host,
            id,
            status,
            budget,
            frames,
            tasks,
            wake: None,
        };
        h.wake = h.tasks.poll(now);
        h
    }

    /// Hands the node a datagram the network delivered, as the IPv4/UDP
    /// packet its device receives, and lets it run.
    pub(crate) fn deliver(&mut self, net: &mut Network, d: Delivery) {
        let IpAddr::V4(me) = net.host_addr(self.host) else {
            unreachable!("IPv4 network");
        };
        self.frames.deliver(d.from, SocketAddrV4::new(me, d.dst_port), &d.bytes);
        net.recycle(d.bytes);
        self.run(net, d.at.max(net.now()));
    }

    /// Lets the task run at `now` and sends what it transmitted.
    pub(crate) fn run(&mut self, net: &mut Network, now: Instant) {
        self.wake = self.tasks.poll(now);
        for d in self.frames.take_transmitted() {
            net.send(now, self.host, d.src_port, d.to, &d.payload);
        }
    }

    /// The node's overlay IPv4 address, once the ledger gave it one.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.status.ipv4.get()
    }

    /// Packets the device dropped as not UDP over IPv4.
    pub fn malformed(&self) -> u64 {
        self.frames.malformed()
    }
}
