//! An embedded member (the no_std `kairos-embedded` firmware on
//! embassy-net) in a mesh of host-style nodes: it joins with the token,
//! gets its overlay address from the ledger, and serves TCP on the overlay
//! to a host, whose side is a smoltcp stack fed by its node.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use firmware_sim::net::{LanConfig, NatConfig, NatKind};
use firmware_sim::world::World;
use kairos_core::node::{Event, NodeConfig};
use kairos_core::time::{Duration, Instant};
use kairos_core::token::NetworkKeys;
use smoltcp::iface::{Config, Interface, SocketSet, SocketStorage};
use smoltcp::phy::{Device, DeviceCapabilities, Medium};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

use super::{keys, run_until};

/// Four host-style nodes on a public LAN (node 0 the bootstrap) and one
/// embedded node behind a port-restricted NAT, joining with `token`.
fn mesh_with_embedded(seed: u64, token: &NetworkKeys) -> World {
    mesh_of(4, seed, token, false)
}

/// `hosts` host-style nodes on a public LAN (node 0 the bootstrap, of the
/// other hosts too if `shared_bootstrap`) and one embedded node behind a
/// port-restricted NAT, joining with `token`.
fn mesh_of(hosts: usize, seed: u64, token: &NetworkKeys, shared_bootstrap: bool) -> World {
    let mut w = World::new(seed);
    let public = w.net.add_lan(LanConfig::public());
    for i in 0..hosts {
        let mut c = NodeConfig::default();
        if shared_bootstrap && i > 0 {
            c.bootstrap.push(w.endpoint(0)).unwrap();
        }
        w.add_node(public, &keys(), c, 16);
    }
    let home = w
        .net
        .add_lan(LanConfig::behind_nat(NatConfig::new(NatKind::PortRestrictedCone)));
    let mut c = NodeConfig::default();
    c.bootstrap.push(w.endpoint(0)).unwrap();
    w.add_embedded(home, token, c);
    w
}

/// Whether the embedded node and every host know each other, and the
/// embedded node has an overlay address.
fn joined(w: &World) -> bool {
    let e = &w.embedded[0];
    e.ipv4().is_some()
        && e.status.members.get() == w.hosts.len()
        && w.hosts
            .iter()
            .all(|h| h.node.member(&e.id).is_some_and(|m| m.ipv4() == e.ipv4()))
}

#[test]
fn an_embedded_member_joins_and_gets_a_unique_address_from_the_ledger() {
    let mut w = mesh_with_embedded(21, &keys());
    assert!(
        run_until(&mut w, Duration::from_secs(60), joined),
        "embedded: {:?} members {}, hosts knowing it: {}",
        w.embedded[0].ipv4(),
        w.embedded[0].status.members.get(),
        w.hosts
            .iter()
            .filter(|h| h.node.member(&w.embedded[0].id).is_some())
            .count()
    );
    let mut addrs: Vec<Ipv4Addr> = w.hosts.iter().map(|h| h.node.ipv4().expect("host address")).collect();
    addrs.push(w.embedded[0].ipv4().unwrap());
    let n = addrs.len();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), n, "unique overlay addresses: {addrs:?}");
    assert!(NodeConfig::default().overlay.contains(w.embedded[0].ipv4().unwrap()));
    assert_eq!(w.embedded[0].malformed(), 0);
}

#[test]
fn an_embedded_member_with_another_token_joins_nothing() {
    let mut w = mesh_with_embedded(22, &NetworkKeys::derive(&[9; 32]));
    w.run_for(Duration::from_secs(30));
    let e = &w.embedded[0];
    // Alone in a network of its own (it may claim an address there).
    assert_eq!((e.status.members.get(), e.status.peers_up.get()), (0, 0));
    assert!(w.hosts.iter().all(|h| h.node.member(&e.id).is_none()));
    assert!(e.status.tx_datagrams.get() > 0, "it did try (hellos)");
}

/// A host node's overlay interface as a smoltcp device: packets its node
/// delivered in, packets for `handle_ip_packet` out.
#[derive(Default)]
struct Overlay {
    rx: VecDeque<Vec<u8>>,
    tx: Vec<Vec<u8>>,
}

struct Rx(Vec<u8>);
struct Tx<'a>(&'a mut Vec<Vec<u8>>);

impl smoltcp::phy::RxToken for Rx {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for Tx<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut p = vec![0u8; len];
        let r = f(&mut p);
        self.0.push(p);
        r
    }
}

impl Device for Overlay {
    type RxToken<'a> = Rx;
    type TxToken<'a> = Tx<'a>;

    fn receive(&mut self, _: smoltcp::time::Instant) -> Option<(Rx, Tx<'_>)> {
        let p = self.rx.pop_front()?;
        Some((Rx(p), Tx(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Tx<'_>> {
        Some(Tx(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut c = DeviceCapabilities::default();
        c.medium = Medium::Ip;
        c.max_transmission_unit = 1280;
        c
    }
}

fn stamp(t: Instant) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(t.as_micros() as i64)
}

/// Host `h` opens a TCP connection to the embedded node's service over the
/// overlay, sends `request` and returns what came back before the close
/// (or the deadline).
fn tcp_exchange(w: &mut World, h: usize, request: &[u8], limit: Duration) -> Vec<u8> {
    let me = w.hosts[h].node.ipv4().expect("host address");
    let server = w.embedded[0].ipv4().expect("embedded address");
    let mut dev = Overlay::default();
    let mut iface = Interface::new(Config::new(HardwareAddress::Ip), &mut dev, stamp(w.now()));
    iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(me), 24)).unwrap());
    let mut storage = [SocketStorage::EMPTY; 1];
    let mut sockets = SocketSet::new(&mut storage[..]);
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 1024]);
    let socket = tcp::Socket::new(tcp::SocketBuffer::new(&mut rx[..]), tcp::SocketBuffer::new(&mut tx[..]));
    let handle = sockets.add(socket);
    sockets
        .get_mut::<tcp::Socket>(handle)
        .connect(
            iface.context(),
            (IpAddress::Ipv4(server), kairos_embedded::SERVICE_PORT),
            49152,
        )
        .unwrap();
    let mut seen = w.hosts[h].delivered.len();
    let (mut sent, mut response) = (false, Vec::new());
    let mut port = 49152;
    let end = w.now() + limit;
    while w.now() < end {
        dev.rx
            .extend(w.hosts[h].delivered[seen..].iter().map(|(_, p)| p.clone()));
        seen = w.hosts[h].delivered.len();
        iface.poll(stamp(w.now()), &mut dev, &mut sockets);
        let s = sockets.get_mut::<tcp::Socket>(handle);
        if !sent && s.state() == tcp::State::Closed {
            // Reset: the service is still closing the last connection
            // (it serves one at a time). Try again, as a client would.
            port += 1;
            s.connect(
                iface.context(),
                (IpAddress::Ipv4(server), kairos_embedded::SERVICE_PORT),
                port,
            )
            .unwrap();
        }
        if s.can_send() && !sent {
            s.send_slice(request).unwrap();
            sent = true;
        }
        if s.can_recv() {
            s.recv(|b| {
                response.extend_from_slice(b);
                (b.len(), ())
            })
            .unwrap();
        }
        let closed = sent && !s.may_recv() && !s.can_recv();
        if closed {
            s.close();
        }
        iface.poll(stamp(w.now()), &mut dev, &mut sockets);
        for p in dev.tx.drain(..) {
            // Refused only until the route exists; TCP retransmits.
            let _ = w.send_packet(h, &p);
        }
        if closed {
            break;
        }
        w.run_for(Duration::from_millis(10));
    }
    response
}

#[test]
fn a_host_reaches_the_embedded_tcp_service_over_the_overlay() {
    let mut w = mesh_with_embedded(23, &keys());
    assert!(run_until(&mut w, Duration::from_secs(60), joined));
    let request = b"hello from a host\n";
    let response = tcp_exchange(&mut w, 2, request, Duration::from_secs(30));
    assert_eq!(response, request, "the service echoes the line");
    assert_eq!(w.embedded[0].status.served.get(), 1);
    // A second connection, from another host, is served too.
    let response = tcp_exchange(&mut w, 3, b"again\n", Duration::from_secs(30));
    assert_eq!(response, b"again\n");
    assert_eq!(w.embedded[0].status.served.get(), 2);
}

/// The budget's member: as many peers as it has member slots, each of
/// which reaches its service in turn, though only a few tunnels fit at
/// once (idle ones are given back to the pool).
#[test]
fn every_one_of_sixteen_peers_reaches_the_embedded_service_in_turn() {
    // Every host bootstraps from host 0 as the embedded node does, so
    // they relay through it while their paths to the NATed member open.
    let mut w = mesh_of(kairos_embedded::PEERS, 26, &keys(), true);
    assert!(
        run_until(&mut w, Duration::from_secs(120), joined),
        "embedded knows {} members",
        w.embedded[0].status.members.get()
    );
    let start = w.now();
    for h in 0..w.hosts.len() {
        let request = format!("hello from host {h}\n");
        let response = tcp_exchange(&mut w, h, request.as_bytes(), Duration::from_secs(60));
        let e = &w.embedded[0].status;
        assert_eq!(
            response,
            request.as_bytes(),
            "host {h} of {}: pool full {} times, {} evicted, {} up; hosts up with it: {:?}",
            w.hosts.len(),
            e.tunnel_pool_full.get(),
            e.tunnels_evicted.get(),
            e.peers_up.get(),
            w.hosts
                .iter()
                .map(|x| x.node.member(&w.embedded[0].id).map(|m| m.is_up()))
                .collect::<Vec<_>>()
        );
    }
    // The first host's session made room long ago: it comes back.
    let response = tcp_exchange(&mut w, 0, b"back again\n", Duration::from_secs(60));
    assert_eq!(response, b"back again\n");
    let e = &w.embedded[0].status;
    assert_eq!(e.served.get(), kairos_embedded::PEERS as u32 + 1);
    println!(
        "16 peers served in turn, and the first again, in {:?} (simulated): {} quiet sessions evicted, pool full {} times, {} up at the end",
        w.now().saturating_since(start),
        e.tunnels_evicted.get(),
        e.tunnel_pool_full.get(),
        e.peers_up.get()
    );
    assert!(
        e.tunnels_evicted.get() > 0,
        "more peers than tunnels: some session made room"
    );
    // Each member whose session made room was told (GOODBYE) and reported
    // the embedded member down at once (an unused session would have taken
    // 180 s to expire, longer than this run).
    let id = w.embedded[0].id;
    let told = w
        .hosts
        .iter()
        .filter(|h| h.events.iter().any(|(_, ev)| *ev == Event::PeerDown(id)))
        .count();
    assert!(told >= 8, "{told} hosts saw the embedded member go down");
}

#[test]
fn the_embedded_budget_is_measured() {
    let w = mesh_with_embedded(24, &keys());
    let b = w.embedded[0].budget;
    println!("{b}");
    assert_eq!(b.peers, kairos_embedded::PEERS);
    assert!(b.tasks > 0 && b.total() == b.core_state + b.ip_resources + b.tasks);
    assert_eq!(b.member_table, b.peers * b.member_slot);
}

#[test]
fn a_mesh_with_an_embedded_member_is_deterministic() {
    let trace = |seed| {
        let mut w = mesh_with_embedded(seed, &keys());
        w.run_for(Duration::from_secs(20));
        let e = &w.embedded[0];
        let events: Vec<_> = w.hosts.iter().map(|h| h.events.clone()).collect();
        (
            e.ipv4(),
            e.status.rx_datagrams.get(),
            e.status.tx_datagrams.get(),
            events,
        )
    };
    assert_eq!(trace(25), trace(25));
}

/// An idle mesh leaves the embedded member's few sessions alone: hosts do
/// not pick a member that said it is small as a mesh neighbour, so a
/// session that made room is not opened again at once (which would make
/// room again, and so on: a handshake every few seconds, for ever).
#[test]
fn an_idle_mesh_does_not_churn_the_embedded_members_sessions() {
    for hosts in [6, 8] {
        let mut w = mesh_of(hosts, 26, &keys(), true);
        assert!(run_until(&mut w, Duration::from_secs(60), joined));
        w.run_for(Duration::from_secs(60));
        let e = &w.embedded[0].status;
        let before = (e.tunnels_evicted.get(), e.tunnel_pool_full.get());
        w.run_for(Duration::from_secs(300));
        let e = &w.embedded[0].status;
        let (evicted, refused) = (e.tunnels_evicted.get() - before.0, e.tunnel_pool_full.get() - before.1);
        println!("{hosts} hosts, 300 idle s: {evicted} sessions made room, {refused} refused");
        assert!(
            evicted <= 2 && refused <= 10,
            "{hosts} hosts: {evicted} evicted, {refused} refused"
        );
    }
}

/// Entries the embedded member does not hold cost it nothing: a 4 KB
/// kubeconfig (longer than it takes) and every host's `owner/info` record
/// (a bucket it does not keep: with 16 hosts it would fill its ledger).
/// It says it is a small replica (`FEATURES`), and its peers push and
/// compare only the mesh's own short records with it. Its traffic over
/// 200 idle seconds is what it is without those entries (it was 5 to 14
/// times as much: every exchange found the digests different and sent the
/// entries again, in vain).
#[test]
fn entries_the_embedded_member_does_not_hold_cost_it_nothing() {
    let traffic = |extra: bool| {
        let mut w = mesh_of(kairos_embedded::PEERS, 31, &keys(), true);
        assert!(run_until(&mut w, Duration::from_secs(120), joined));
        if extra {
            let now = w.now();
            w.hosts[0]
                .node
                .ledger_put(now, b"kairos", b"master-kubeconfig", &[b'x'; 4000], 0)
                .unwrap();
            for h in &mut w.hosts {
                let key = h.node.node_id().to_string();
                h.node
                    .ledger_put(now, b"owner/info", key.as_bytes(), &[b'i'; 200], 0)
                    .unwrap();
            }
        }
        w.run_for(Duration::from_secs(100));
        let e = &w.embedded[0].status;
        let before = (e.tx_datagrams.get(), e.rx_datagrams.get());
        w.run_for(Duration::from_secs(200));
        let e = &w.embedded[0].status;
        assert!(
            w.hosts
                .iter()
                .all(|h| h.node.ledger().get(b"kairos", b"master-kubeconfig").is_some() == extra),
            "every host holds the long entry"
        );
        (e.tx_datagrams.get() - before.0, e.rx_datagrams.get() - before.1)
    };
    let (quiet, extra) = (traffic(false), traffic(true));
    println!(
        "embedded member over 200 idle s (sent, received): {quiet:?} without, {extra:?} with a 4 KB entry and 16 owner/info records"
    );
    assert!(extra.0 <= quiet.0 * 5 / 4 + 10, "sent {extra:?} vs {quiet:?}");
    assert!(extra.1 <= quiet.1 * 5 / 4 + 10, "received {extra:?} vs {quiet:?}");
}
