//! [`Driver`]: the task that runs the node's control side, in quinn's
//! `ConnectionDriver` shape. It waits on whichever comes first:
//!
//! - word from the data path thread ([`super::pump`]) that the node has
//!   events, datagrams to send or an earlier timer,
//! - a datagram on the LAN beacon socket, a packet of the userspace stack,
//! - a [`Command`] (API requests, shutdown),
//! - the node's next timer (`poll_timeout`), or the ledger snapshot timer,
//!
//! hands it to the node, then drains `poll_transmit` (sending each
//! datagram) and `poll_event` (logs, addresses on the interface, state to
//! disk). Nothing polls on a schedule of its own: with nothing to do it
//! sleeps until the node's next timer. The node is shared with the data
//! path thread, which moves the mesh socket's datagrams and the
//! interface's packets: the driver locks it for each of its turns, and
//! never holds it across an `await`.
//!
//! It never blocks on disk (blobs go to the [`StateWriter`] thread) except
//! for the final flush at shutdown.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use kairos_core::identity::NodeId;
use kairos_core::ledger::buckets::{self, is_owner_only, owner_key};
use kairos_core::ledger::LedgerError;
use kairos_core::node::{Event, Input};
use kairos_core::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant as TokioInstant, Sleep};

use super::datapath::TxPath;
use super::dns::{self, DnsView};
use super::lan::LanBeacons;
use super::mesh::MeshNode;
use super::persist::StateWriter;
use super::publishers::Publishers;
use super::pump::{Locked, Pump, Shared, Sink, TRANSMIT_BUF};
use super::snapshot;
use super::status::{
    self, AgentInfo, Blockchain, LedgerView, Machine, Metrics, NodeEntry, Path, Peer, PeerstoreEntry, Summary,
    WritersView,
};
use super::tun::Interface;
use super::udp::MeshSocket;
use super::userspace::Link;
use crate::clock::Clock;
use crate::k3s::{K3sInputs, K3sOutput};
use crate::state::blobs;

/// What the rest of the agent asks the driver. Each read answers on its
/// channel with the node's state at that moment; each write answers with
/// the node's verdict (the API maps [`LedgerError`] to HTTP statuses).
#[derive(Debug)]
pub enum Command {
    /// The node's summary, for `GET /api/summary`.
    Summary(oneshot::Sender<Summary>),
    /// The other members, for `GET /api/machines`.
    Machines(oneshot::Sender<Vec<Machine>>),
    /// The sessions, for `GET /api/peers`.
    Peers(oneshot::Sender<Vec<Peer>>),
    /// This node and the members, for `GET /api/nodes`.
    Nodes(oneshot::Sender<Vec<NodeEntry>>),
    /// The members' endpoints, for `GET /api/peerstore`.
    Peerstore(oneshot::Sender<Vec<PeerstoreEntry>>),
    /// The ledger's position, for `GET /api/blockchain`.
    Blockchain(oneshot::Sender<Blockchain>),
    /// The counters, for `GET /metrics`.
    Metrics(oneshot::Sender<Metrics>),
    /// The live entries of one bucket (`Some`) or of all, for `GET /api/ledger...`.
    Ledger {
        /// The bucket, or `None` for every bucket.
        bucket: Option<Vec<u8>>,
        /// The entries.
        reply: oneshot::Sender<LedgerView>,
    },
    /// One live value, shown as text, for `GET /api/ledger/:bucket/:key`.
    LedgerGet {
        /// The bucket.
        bucket: Vec<u8>,
        /// The key.
        key: Vec<u8>,
        /// The value, `None` if absent.
        reply: oneshot::Sender<Option<String>>,
    },
    /// Who wrote each live entry of a bucket, for `GET /api/writers/:bucket`.
    Writers {
        /// The bucket.
        bucket: Vec<u8>,
        /// The writers by key.
        reply: oneshot::Sender<WritersView>,
    },
    /// Writes a value signed by this node (no ttl), for `PUT /api/ledger/...`.
    LedgerPut {
        /// The bucket.
        bucket: Vec<u8>,
        /// The key.
        key: Vec<u8>,
        /// The value.
        value: Vec<u8>,
        /// The node's verdict.
        reply: oneshot::Sender<Result<(), LedgerError>>,
    },
    /// Deletes one key, for `DELETE /api/ledger/:bucket/:key`.
    LedgerDelete {
        /// The bucket.
        bucket: Vec<u8>,
        /// The key.
        key: Vec<u8>,
        /// `Ok(false)`: no live value under the key.
        reply: oneshot::Sender<Result<bool, LedgerError>>,
    },
    /// Deletes every key of a bucket this node may delete (in an owner-only
    /// bucket, only its own), for `DELETE /api/ledger/:bucket`.
    LedgerDeleteBucket {
        /// The bucket.
        bucket: Vec<u8>,
        /// How many keys were deleted.
        reply: oneshot::Sender<Result<usize, LedgerError>>,
    },
    /// Save state, remove the interface and return.
    Shutdown,
}

/// The largest datagram received on the beacon socket.
const MAX_DATAGRAM: usize = 65535;
/// How long after a ledger change the snapshot is written: changes come in
/// bursts, and one write covers the burst.
const SNAPSHOT_DELAY: std::time::Duration = std::time::Duration::from_secs(1);
/// The shortest gap between two timer wake-ups when the node reports a
/// deadline that has already passed: a guard against spinning.
const MIN_TIMER_GAP: Duration = Duration::from_millis(1);

/// What woke the driver.
enum Wake {
    Lan(io::Result<(usize, SocketAddr)>),
    Stack(Option<Vec<u8>>),
    Command(Option<Command>),
    /// The data path thread has something for the driver.
    Node,
    Timer,
    Snapshot,
    K3s(Option<K3sOutput>),
}

/// See the module docs.
pub struct Driver {
    shared: Arc<Shared>,
    /// The data path thread (stopped before the interface is removed).
    pump: Option<Pump>,
    clock: Clock,
    socket: Arc<MeshSocket>,
    lan: Option<LanBeacons>,
    tun: Option<Interface>,
    commands: mpsc::Receiver<Command>,
    writer: StateWriter,
    info: AgentInfo,
    overlay_prefix: u8,
    /// The last path logged for each member that is up.
    paths: HashMap<NodeId, Path>,
    /// The DNS resolver's view, when it runs.
    dns: Option<watch::Sender<DnsView>>,
    /// The k3s bootstrap, when it runs.
    k3s: Option<K3sLink>,
    /// The userspace stack, in place of the interface (`bridge --userspace`).
    userspace: Option<Link>,
    /// Something the DNS view or the k3s inputs derive from may have
    /// changed since they were last sent.
    side_dirty: bool,
    /// After a timer run: no timer wake-up before this.
    not_before: Option<Instant>,
    /// Wakes the driver for the node's timers.
    timer: Alarm,
    /// Wakes it to save the ledger (set at the first change after a save).
    snapshot: Alarm,
    /// The userspace stack's packets -> socket (with the stack only).
    tx_path: Option<TxPath>,
    lan_rx: Vec<u8>,
    tx: Vec<u8>,
}

/// The driver's parts.
pub struct Parts {
    /// The node.
    pub node: Box<MeshNode>,
    /// The clock the node runs on.
    pub clock: Clock,
    /// The mesh socket.
    pub socket: MeshSocket,
    /// The LAN beacon socket, if beacons are on.
    pub lan: Option<LanBeacons>,
    /// The overlay interface, if one is made.
    pub tun: Option<Interface>,
    /// Commands from the API and the signal handler.
    pub commands: mpsc::Receiver<Command>,
    /// Where blobs go.
    pub writer: StateWriter,
    /// What the summary shows besides the node.
    pub info: AgentInfo,
    /// The prefix length of the overlay range.
    pub overlay_prefix: u8,
    /// The DNS resolver's view, when `p2p.dns` / `--dns` is on.
    pub dns: Option<watch::Sender<DnsView>>,
    /// The k3s bootstrap, when it runs.
    pub k3s: Option<K3sLink>,
    /// The userspace stack, in place of the interface (`bridge --userspace`).
    pub userspace: Option<Link>,
}

/// The driver's side of the k3s bootstrap ([`crate::k3s::run`]).
pub struct K3sLink {
    /// The bucket of this node's cluster (`network_id`).
    pub network_id: String,
    /// What the bootstrap is told.
    pub inputs: watch::Sender<K3sInputs>,
    /// What it asks of the node.
    pub outputs: mpsc::Receiver<K3sOutput>,
}

impl Driver {
    /// A driver for `parts`, with its data path thread started.
    pub fn new(parts: Parts) -> io::Result<Driver> {
        let offload = parts
            .tun
            .as_ref()
            .is_some_and(|t| *t.offload() == super::tun::Offload::On);
        let shared = Shared::new(parts.node);
        let socket = Arc::new(parts.socket);
        let sink = match (&parts.tun, &parts.userspace) {
            (Some(t), _) => Some(Sink::Tun(t.io()?)),
            (None, Some(s)) => Some(Sink::Stack(s.sink())),
            (None, None) => None,
        };
        let pump = Pump::start(shared.clone(), socket.clone(), sink, parts.clock, offload)?;
        let tx_path = parts.userspace.as_ref().map(|_| TxPath::new(false));
        Ok(Driver {
            shared,
            pump: Some(pump),
            clock: parts.clock,
            socket,
            lan: parts.lan,
            tun: parts.tun,
            commands: parts.commands,
            writer: parts.writer,
            info: parts.info,
            overlay_prefix: parts.overlay_prefix,
            paths: HashMap::new(),
            dns: parts.dns,
            k3s: parts.k3s,
            userspace: parts.userspace,
            side_dirty: true,
            not_before: None,
            timer: Alarm::new(),
            snapshot: Alarm::new(),
            tx_path,
            lan_rx: vec![0; MAX_DATAGRAM],
            tx: vec![0; TRANSMIT_BUF],
        })
    }

    /// Runs until [`Command::Shutdown`], then saves state and removes the
    /// interface.
    pub async fn run(mut self) {
        loop {
            self.arm_timer();
            let wake = {
                let Driver {
                    shared,
                    lan,
                    commands,
                    lan_rx,
                    timer,
                    snapshot,
                    k3s,
                    userspace,
                    ..
                } = &mut self;
                tokio::select! {
                    () = shared.notified() => Wake::Node,
                    r = lan_recv(lan.as_ref(), lan_rx) => Wake::Lan(r),
                    p = stack_recv(userspace.as_mut()) => Wake::Stack(p),
                    c = commands.recv() => Wake::Command(c),
                    () = timer.wait() => Wake::Timer,
                    () = snapshot.wait() => Wake::Snapshot,
                    o = k3s_recv(k3s.as_mut()) => Wake::K3s(o),
                }
            };
            match wake {
                Wake::Node => {
                    if self.shared.failed() {
                        tracing::error!("the data path stopped; stopping");
                        break;
                    }
                    self.not_before = None;
                }
                Wake::Lan(Ok((n, from))) => self.on_beacon(from, n),
                Wake::Lan(Err(e)) => {
                    // ICMP errors of earlier sends surface here; not fatal.
                    tracing::debug!(error = %e, "receive error");
                }
                Wake::Stack(Some(packet)) => self.on_stack_packet(packet),
                Wake::Stack(None) => {
                    tracing::error!("the userspace stack stopped; stopping");
                    break;
                }
                Wake::Command(Some(Command::Shutdown) | None) => break,
                Wake::Command(Some(c)) => self.on_command(c),
                Wake::Timer => {
                    let now = self.clock.now();
                    self.shared.lock().node.handle_timeout(now);
                    self.not_before = Some(now + MIN_TIMER_GAP);
                    self.log_path_changes();
                    // The election runs on timers: the role to deploy may change.
                    self.side_dirty = true;
                }
                Wake::Snapshot => self.save_ledger(),
                Wake::K3s(Some(output)) => self.on_k3s(output),
                Wake::K3s(None) => {
                    tracing::warn!("the k3s bootstrap stopped; the mesh goes on without it");
                    self.k3s = None;
                }
            }
            self.flush().await;
            if self.side_dirty {
                self.side_dirty = false;
                self.update_side_tasks();
            }
        }
        if let Some(pump) = self.pump.take() {
            pump.stop();
        }
        // Tell the peers first, so they report this node down at once.
        self.shared.lock().node.leave();
        self.flush().await;
        self.shutdown();
    }

    /// Answers an API command (everything but [`Command::Shutdown`]). A
    /// closed reply channel (the client went away) is not an error.
    fn on_command(&mut self, command: Command) {
        let now = self.clock.now();
        // quinn-udp turns GSO off for good after a send the device refuses:
        // show what the socket does now, not what it did at start.
        let udp = self.socket.offload();
        self.info.offload.udp_gso_segments = udp.gso_segments;
        self.info.offload.udp_gro_segments = udp.gro_segments;
        let mut locked = self.shared.lock();
        let Locked { node, stats, .. } = &mut *locked;
        match command {
            Command::Summary(reply) => {
                let _ = reply.send(status::summary(node, &self.info));
            }
            Command::Machines(reply) => {
                let _ = reply.send(status::machines(node, now, &self.info));
            }
            Command::Peers(reply) => {
                let _ = reply.send(status::peers(node, now));
            }
            Command::Nodes(reply) => {
                let _ = reply.send(status::nodes(node));
            }
            Command::Peerstore(reply) => {
                let _ = reply.send(status::peerstore(node));
            }
            Command::Blockchain(reply) => {
                let _ = reply.send(status::blockchain(node));
            }
            Command::Metrics(reply) => {
                let saves = self.writer.stats();
                let _ = reply.send(status::metrics(node, now, &self.info, *stats, saves));
            }
            Command::Ledger { bucket, reply } => {
                let _ = reply.send(status::ledger_view(node, bucket.as_deref()));
            }
            Command::LedgerGet { bucket, key, reply } => {
                let _ = reply.send(status::ledger_get(node, &bucket, &key));
            }
            Command::Writers { bucket, reply } => {
                let _ = reply.send(status::writers(node, &bucket, now));
            }
            Command::LedgerPut {
                bucket,
                key,
                value,
                reply,
            } => {
                let r = node.ledger_put(now, &bucket, &key, &value, 0);
                if let Err(e) = &r {
                    tracing::debug!(error = %e, "API ledger write refused");
                }
                let _ = reply.send(r);
            }
            Command::LedgerDelete { bucket, key, reply } => {
                let _ = reply.send(delete_key(node, now, &bucket, &key));
            }
            Command::LedgerDeleteBucket { bucket, reply } => {
                let _ = reply.send(delete_bucket(node, now, &bucket));
            }
            Command::Shutdown => {}
        }
    }

    /// Sets the timer for the node's next one, and tells the data path
    /// thread which it is (it wakes the driver for an earlier one).
    fn arm_timer(&mut self) {
        let at = {
            let locked = self.shared.lock();
            let at = locked.node.poll_timeout();
            self.shared.set_driver_timer(at);
            at
        };
        let at = at.map(|at| match self.not_before {
            Some(floor) if at < floor => floor,
            _ => at,
        });
        self.timer
            .set(at.map(|at| TokioInstant::from_std(self.clock.to_std(at))));
    }

    /// Hands a datagram from the LAN beacon socket to the node (beacons;
    /// members' traffic comes to the mesh socket).
    fn on_beacon(&mut self, from: SocketAddr, n: usize) {
        let now = self.clock.now();
        self.not_before = None;
        let mut locked = self.shared.lock();
        let Locked { node, stats, .. } = &mut *locked;
        match node.handle_datagram(now, from, &mut self.lan_rx[..n]) {
            Ok(Input::Consumed) => {}
            Ok(_) => tracing::debug!(%from, "mesh traffic on the beacon socket ignored"),
            Err(reason) => {
                stats.rx_drops[reason.index()] += 1;
                tracing::trace!(%from, ?reason, "beacon dropped");
            }
        }
    }

    /// Sends what the node wants sent and handles its events (which may
    /// give more to send), then does what must wait for the node to be
    /// let go: beacons, and the interface's new address.
    async fn flush(&mut self) {
        let now = self.clock.now();
        let mut address = None;
        let beacons = {
            let shared = self.shared.clone();
            let mut locked = shared.lock();
            loop {
                locked.transmit(now, &mut self.tx, &self.socket);
                let Some(event) = locked.node.poll_event() else { break };
                if let Some(a) = self.on_event(&mut locked.node, event) {
                    address = Some(a);
                }
            }
            std::mem::take(&mut locked.beacons)
        };
        if let Some(lan) = &mut self.lan {
            for b in &beacons {
                if let Err(e) = lan.send(b).await {
                    tracing::debug!(error = %e, "cannot send a LAN beacon");
                }
            }
        }
        if let (Some(addr), Some(tun)) = (address, &mut self.tun) {
            if let Err(e) = tun.set_ipv4(addr, self.overlay_prefix).await {
                tracing::error!(error = %e, "cannot put the overlay address on the interface");
            }
        }
    }

    /// Handles one event of `node`; returns the address to put on the
    /// interface when one was assigned (after `node` is let go).
    fn on_event(&mut self, node: &mut MeshNode, event: Event) -> Option<Ipv4Addr> {
        if matches!(
            event,
            Event::LedgerChanged
                | Event::AddressAssigned(_)
                | Event::RoleChanged(_)
                | Event::RoleRecordChanged
                | Event::MemberDiscovered(_)
        ) {
            self.side_dirty = true;
        }
        // The core may add events; the ones this agent does not know are
        // logged at debug.
        #[allow(unreachable_patterns)]
        match event {
            Event::MemberDiscovered(id) => {
                let endpoint = node.member(&id).and_then(|m| m.endpoint());
                tracing::info!(peer = %id, endpoint = ?endpoint, "member discovered");
            }
            Event::PeerUp(id) => {
                let (path, endpoint) = match node.member(&id) {
                    Some(m) => (Path::of(m), m.endpoint()),
                    None => (Path::None, None),
                };
                self.paths.insert(id, path);
                tracing::info!(peer = %id, path = path.as_str(), endpoint = ?endpoint, "peer up");
            }
            Event::PeerDown(id) => {
                self.paths.remove(&id);
                tracing::info!(peer = %id, "peer down");
            }
            Event::LedgerChanged => {
                if !self.snapshot.is_set() {
                    self.snapshot.set(Some(TokioInstant::now() + SNAPSHOT_DELAY));
                }
            }
            Event::AddressAssigned(addr) => {
                tracing::info!(ipv4 = %addr, prefix = self.overlay_prefix, "address assigned");
                self.writer
                    .write(blobs::ADDRESS_CLAIM, snapshot::encode_claim(addr).to_vec());
                if let Some(stack) = &self.userspace {
                    stack.set_address(addr);
                }
                return Some(addr);
            }
            Event::RoleChanged(role) => {
                match role {
                    Some(r) => tracing::info!(role = %status::role_name(r), detail = ?r, "role changed"),
                    None => tracing::info!("role withdrawn (the election decides again)"),
                }
                self.mirror_role(node, role);
            }
            Event::RoleRecordChanged => {
                let mut record = [0u8; kairos_core::election::MAX_RECORD_LEN];
                if let Some(n) = node.role_record(&mut record) {
                    self.writer.write(blobs::ROLE_RECORD, record[..n].to_vec());
                }
            }
            other => tracing::debug!(event = ?other, "core event"),
        }
        None
    }

    /// Seals and sends `packet` from the userspace stack, then the others
    /// it has ready (up to a batch, so the other sources get their turn).
    fn on_stack_packet(&mut self, packet: Vec<u8>) {
        const BATCH: usize = 64;
        let now = self.clock.now();
        self.not_before = None;
        let mut locked = self.shared.lock();
        let Locked { node, stats, .. } = &mut *locked;
        let Driver {
            socket,
            tx_path: Some(tx_path),
            userspace,
            ..
        } = self
        else {
            return;
        };
        tx_path.handle_packet(node, now, socket, stats, &packet);
        for _ in 1..BATCH {
            let Some(p) = userspace.as_mut().and_then(Link::try_recv) else {
                break;
            };
            tx_path.handle_packet(node, now, socket, stats, &p);
        }
    }

    /// Sends the DNS resolver its view, the userspace stack the members'
    /// names and the k3s bootstrap its inputs, if they changed.
    fn update_side_tasks(&mut self) {
        let locked = self.shared.lock();
        let node = &locked.node;
        if let Some(stack) = &self.userspace {
            let names = status::member_names(node);
            let hosts: Vec<dns::Host> = names.iter().filter_map(dns::Host::of).collect();
            let names = dns::Names::new(&hosts);
            stack.names().send_if_modified(|cur| {
                let changed = *cur != names;
                if changed {
                    *cur = names;
                }
                changed
            });
        }
        if let Some(dns) = &self.dns {
            let names = status::member_names(node);
            let hosts: Vec<dns::Host> = names.iter().filter_map(dns::Host::of).collect();
            let mut listen = Vec::new();
            if self.tun.is_some() {
                listen.extend(node.ipv4().map(IpAddr::V4));
                listen.push(IpAddr::V6(node.ipv6()));
            }
            let view = DnsView {
                names: dns::Names::new(&hosts),
                listen,
            };
            dns.send_if_modified(|cur| {
                let changed = *cur != view;
                if changed {
                    *cur = view;
                }
                changed
            });
        }
        if let Some(k3s) = &self.k3s {
            let inputs = k3s_inputs(node, &k3s.network_id, self.clock.now());
            k3s.inputs.send_if_modified(|cur| {
                let changed = *cur != inputs;
                if changed {
                    *cur = inputs;
                }
                changed
            });
        }
    }

    /// Mirrors this node's role into Kairos' key `<network_id>/<node
    /// id>-role` (`master`, `master/clusterinit`, `master/ha`, `worker`), so
    /// bridges and tools that read Kairos' keys see every node's role.
    /// Removed when the role is withdrawn.
    fn mirror_role(&self, node: &mut MeshNode, role: Option<kairos_core::election::Role>) {
        let Some(network_id) = node.network_id().map(str::to_owned) else {
            return;
        };
        let now = self.clock.now();
        let key = buckets::NodeKey::of_node(&node.node_id(), buckets::NodeKeyKind::Role);
        let current = node
            .ledger()
            .get(network_id.as_bytes(), key.as_bytes())
            .map(|e| e.value().to_vec());
        let result = match role {
            Some(r) => {
                let value = r.kairos_value(self.info.ha).as_bytes();
                if current.as_deref() == Some(value) {
                    return;
                }
                node.ledger_put(now, network_id.as_bytes(), key.as_bytes(), value, 0)
            }
            None if current.is_some() => node.ledger_delete(now, network_id.as_bytes(), key.as_bytes()),
            None => return,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot mirror the role into Kairos' keys");
        }
    }

    /// Does what the k3s bootstrap asks.
    fn on_k3s(&mut self, output: K3sOutput) {
        let now = self.clock.now();
        let Some(k3s) = &self.k3s else { return };
        let mut locked = self.shared.lock();
        match output {
            K3sOutput::Publish { key, value } => {
                let bucket = &k3s.network_id;
                if let Err(e) = locked
                    .node
                    .ledger_put(now, bucket.as_bytes(), key.as_bytes(), &value, 0)
                {
                    tracing::warn!(bucket = %bucket, key, error = %e, "cannot publish for k3s");
                }
            }
            K3sOutput::Deployed(role) => {
                tracing::info!(role = %role, "k3s runs in this role");
                locked.node.role_deployed(now);
            }
        }
        drop(locked);
        self.side_dirty = true;
    }

    /// Logs members whose path (direct, relayed) changed while up.
    fn log_path_changes(&mut self) {
        let locked = self.shared.lock();
        for m in locked.node.members() {
            let path = Path::of(m);
            if path == Path::None {
                continue;
            }
            if let Some(old) = self.paths.insert(m.id(), path) {
                if old != path {
                    tracing::info!(peer = %m.id(), from = old.as_str(), to = path.as_str(), "path changed");
                }
            }
        }
    }

    fn save_ledger(&mut self) {
        self.snapshot.set(None);
        let bytes = snapshot::encode_ledger(self.shared.lock().node.ledger());
        self.writer.write(blobs::LEDGER_SNAPSHOT, bytes);
    }

    fn shutdown(mut self) {
        self.save_ledger();
        let Driver { writer, tun, .. } = self;
        writer.finish();
        if let Some(tun) = tun {
            let name = tun.name().to_owned();
            drop(tun);
            tracing::info!(interface = %name, "interface removed");
        }
    }
}

/// Deletes `(bucket, key)`: `Ok(false)` if no live value is there.
pub fn delete_key(node: &mut MeshNode, now: Instant, bucket: &[u8], key: &[u8]) -> Result<bool, LedgerError> {
    if node.ledger().get(bucket, key).is_none() {
        return Ok(false);
    }
    node.ledger_delete(now, bucket, key).map(|()| true)
}

/// Deletes every live key of `bucket` this node may delete (in an
/// owner-only bucket, only its own) and returns how many. A refusal
/// part-way (the ledger full of tombstones) returns the count so far; the
/// error only if nothing was deleted.
pub fn delete_bucket(node: &mut MeshNode, now: Instant, bucket: &[u8]) -> Result<usize, LedgerError> {
    let mine = owner_key(&node.node_id());
    let keys: Vec<Vec<u8>> = node
        .ledger()
        .iter_bucket(bucket)
        .map(|e| e.key().to_vec())
        .filter(|k| !is_owner_only(bucket) || k[..] == mine[..])
        .collect();
    let mut deleted = 0;
    for k in keys {
        match node.ledger_delete(now, bucket, &k) {
            Ok(()) => deleted += 1,
            Err(e) if deleted == 0 => return Err(e),
            Err(_) => break,
        }
    }
    Ok(deleted)
}

/// The next packet of the userspace stack; never, without one.
async fn stack_recv(stack: Option<&mut Link>) -> Option<Vec<u8>> {
    match stack {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

async fn lan_recv(lan: Option<&LanBeacons>, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
    match lan {
        Some(l) => l.recv_from(buf).await,
        None => std::future::pending().await,
    }
}

/// What the k3s bootstrap needs to know from `node`, a member of
/// `network_id`.
fn k3s_inputs(node: &MeshNode, network_id: &str, now: Instant) -> K3sInputs {
    let publishers = Publishers::new(node.ledger(), network_id, node.primary(), now);
    let primary_ipv4 = node.primary().and_then(|id| {
        if id == node.node_id() {
            node.ipv4()
        } else {
            node.member(&id).and_then(|m| m.ipv4())
        }
    });
    K3sInputs {
        role: node.role_to_deploy().or(node.role()),
        ipv4: node.ipv4(),
        primary_ipv4,
        ip_master: publishers.text(buckets::IP_MASTER),
        node_token: publishers.text(buckets::TOKEN_NODETOKEN),
        kubeconfig: publishers.value(buckets::MASTER_KUBECONFIG).map(<[u8]>::to_vec),
    }
}

/// The next output of the k3s bootstrap; never, without one.
async fn k3s_recv(k3s: Option<&mut K3sLink>) -> Option<K3sOutput> {
    match k3s {
        Some(k) => k.outputs.recv().await,
        None => std::future::pending().await,
    }
}

/// A deadline the driver waits on, kept from one turn of its loop to the
/// next: moved only when it changes, where a sleep made afresh at every
/// turn was entered into the runtime's timer wheel and taken out again at
/// every packet.
struct Alarm {
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to; `None`: waits forever.
    armed: Option<TokioInstant>,
}

impl Alarm {
    fn new() -> Alarm {
        Alarm {
            sleep: Box::pin(tokio::time::sleep_until(TokioInstant::now())),
            armed: None,
        }
    }

    /// Sets the deadline (`None`: never).
    fn set(&mut self, at: Option<TokioInstant>) {
        if at != self.armed {
            if let Some(t) = at {
                self.sleep.as_mut().reset(t);
            }
            self.armed = at;
        }
    }

    /// Whether it has a deadline.
    fn is_set(&self) -> bool {
        self.armed.is_some()
    }

    /// Until the deadline (at once if it has passed); forever if none.
    async fn wait(&mut self) {
        if self.armed.is_none() {
            return std::future::pending().await;
        }
        self.sleep.as_mut().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::status::tests::with_node;
    use kairos_core::ledger::buckets::MACHINES;

    /// An alarm ends at its deadline as last set, never before it, and
    /// never when it has none.
    #[tokio::test(flavor = "current_thread")]
    async fn an_alarm_ends_at_its_last_deadline() {
        let ms = std::time::Duration::from_millis;
        let mut alarm = Alarm::new();
        assert!(
            tokio::time::timeout(ms(30), alarm.wait()).await.is_err(),
            "no deadline: no end"
        );
        let start = TokioInstant::now();
        alarm.set(Some(start + ms(20)));
        alarm.set(Some(start + ms(60)));
        alarm.set(Some(start + ms(60)));
        tokio::time::timeout(ms(5000), alarm.wait()).await.expect("never ended");
        assert!(TokioInstant::now() >= start + ms(60), "ended before its deadline");
        // Moved earlier after it ended: ends at once (that deadline passed).
        alarm.set(Some(start + ms(40)));
        tokio::time::timeout(ms(5000), alarm.wait())
            .await
            .expect("a passed deadline never ended");
        alarm.set(None);
        assert!(
            tokio::time::timeout(ms(30), alarm.wait()).await.is_err(),
            "disarmed: no end"
        );
    }

    #[test]
    fn the_driver_holds_its_node_boxed() {
        // A node held by value (about 90 KiB) makes every async function
        // that moves the driver take a frame that size, probed page by page
        // at each wake-up, and kept resident (it cost 550 KiB of stack).
        assert!(std::mem::size_of::<super::super::mesh::MeshNode>() > 16 * 1024);
        assert!(
            std::mem::size_of::<Driver>() < 8 * 1024,
            "{}",
            std::mem::size_of::<Driver>()
        );
    }

    #[test]
    fn deletes_keep_to_what_this_node_may_delete() {
        with_node(|node, now| {
            let me = node.node_id().to_string();
            node.ledger_put(now, b"kairos", b"a", b"1", 0).unwrap();
            node.ledger_put(now, b"kairos", b"b", b"2", 0).unwrap();
            node.ledger_put(now, MACHINES.as_bytes(), me.as_bytes(), b"m", 0)
                .unwrap();
            assert_eq!(delete_key(node, now, b"kairos", b"a"), Ok(true));
            assert_eq!(
                delete_key(node, now, b"kairos", b"a"),
                Ok(false),
                "a tombstone is absent"
            );
            assert_eq!(delete_key(node, now, b"kairos", b"nope"), Ok(false));
            assert_eq!(delete_bucket(node, now, b"kairos"), Ok(1));
            assert_eq!(delete_bucket(node, now, b"kairos"), Ok(0));
            assert_eq!(delete_bucket(node, now, MACHINES.as_bytes()), Ok(1));
            assert_eq!(node.ledger().iter_bucket(b"kairos").count(), 0);
        });
    }
}
