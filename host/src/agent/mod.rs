//! `kairos agent`: the node daemon. This module owns the start-up order and
//! the wiring; each part lives in its own file:
//!
//! | file | owns |
//! |---|---|
//! | `preflight` | root / `CAP_NET_ADMIN` / `/dev/net/tun`, checked before any side effect |
//! | `mesh` | the node type and the config → `NodeConfig` mapping |
//! | `snapshot` | ledger snapshot and address claim blobs |
//! | `restore` | reading the blobs back at start, and what was repaired |
//! | `persist` | the state writer thread |
//! | `udp` | the mesh UDP socket |
//! | `lan` | the LAN beacon multicast socket |
//! | `tun`, `netlink` | the overlay interface and its addresses |
//! | `driver` | the task that runs the node's control side (timers, API, events) |
//! | `pump` | the data path thread: mesh socket and interface, the node shared with the driver |
//! | `datapath` | the packet batches both move (offloads, GSO/GRO) |
//! | `status`, `api` | what the HTTP API shows |
//! | `dns` | the resolver of members' names (`p2p.dns`, `bridge --dns`) |
//! | `info` | the machine info record (`owner/info`) |
//! | `notify` | systemd readiness |
//! | `userspace` | `bridge --userspace`: the overlay on smoltcp, SOCKS5 and forwards |
//!
//! Start-up, in order, so that a failure leaves nothing behind: the state
//! dir (locked), identity, ledger and role record from disk; the UDP socket;
//! bootstrap endpoints; the API listener; the userspace stack's listeners
//! (`bridge --userspace`); the LAN socket; the node; the interface (or the
//! userspace stack). Then the data path thread and the driver run until
//! SIGTERM or SIGINT; the driver stops the thread, saves state and
//! removes the interface (the kernel deletes a non-persistent TUN device
//! with its addresses and routes when its file is closed, so a crash cleans
//! up too). The documentation for operators is `docs/agent.md`.

pub mod api;
pub mod datapath;
pub mod dns;
pub mod driver;
mod error;
pub mod info;
pub mod lan;
pub mod mesh;
pub mod netlink;
mod notify;
pub mod persist;
pub mod preflight;
pub mod publishers;
pub mod pump;
pub mod restore;
pub mod snapshot;
pub mod status;
pub mod tun;
pub mod udp;
pub mod userspace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use rand_core::OsRng;
use tokio::sync::mpsc;

pub use error::AgentError;

use crate::clock::Clock;
use crate::config::agent::{AgentConfig, Endpoint, NodeKind};
use crate::state::StateDir;
use driver::{Command, Driver, Parts};
use mesh::AgentLedger;
use status::AgentInfo;

/// How long the agent waits at shutdown for the k3s bootstrap to stop k3s.
const K3S_STOP_TIMEOUT: StdDuration = StdDuration::from_secs(25);
/// How long a bootstrap host name may take to resolve.
const RESOLVE_TIMEOUT: StdDuration = StdDuration::from_secs(5);

/// Runs the agent with `config` until SIGTERM or SIGINT. The caller has
/// run the preflight checks.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let started = std::time::Instant::now();
    let bridge = config.kind == NodeKind::Bridge;
    if config.dns && !config.vpn.create {
        tracing::warn!("DNS is on but there is no interface (p2p.vpn.create: false): nothing to listen on");
    }
    let dir = Arc::new(StateDir::open(&config.mesh.state_dir)?);
    let loaded = dir.load_or_create_identity(&mut OsRng)?;
    if loaded.created && dir.has_blobs()? {
        tracing::warn!(
            state_dir = %dir.path().display(),
            "identity.key was missing: generated a new identity, so this machine joins as a new node \
             (the other members see a new node id); the state files of the earlier identity are used as they are"
        );
    } else if loaded.created {
        tracing::info!(state_dir = %dir.path().display(), "first start: generated this node's identity");
    }
    if let Some(mode) = loaded.loosened_mode {
        tracing::warn!(
            mode = format!("{mode:o}"),
            "identity.key was readable by others; its mode is now 0600"
        );
    }
    let clock = Clock::start();
    let now = clock.now();

    let mut restore = restore::Restore::new(&dir);
    let mut ledger = new_ledger()?;
    restore.ledger(&mut ledger, now)?;

    let socket = udp::MeshSocket::bind(config.mesh.listen_port).map_err(|source| AgentError::Udp {
        port: config.mesh.listen_port,
        source,
    })?;
    let listen = socket.local_addr().map_err(|source| AgentError::Udp {
        port: config.mesh.listen_port,
        source,
    })?;
    let port = listen.port();

    let advertise = mesh::advertise(&mesh::host_addresses(), &config.mesh.interface, port);
    let from_config = resolve(&config.mesh.bootstrap_peers).await;
    let bootstrap = mesh::merge_bootstrap(&from_config, config.network_token.bootstrap(), &advertise, port);
    let (node_config, warnings) = mesh::node_config(&config, port, &bootstrap, &advertise);
    for w in warnings.0 {
        tracing::warn!("{w}");
    }

    let api_token = api::token_from_env().map_err(AgentError::ApiAccess)?;
    api::check_exposure(&config.mesh.api, api_token.as_deref()).map_err(AgentError::ApiAccess)?;
    let api_listener = api::bind(&config.mesh.api).await.map_err(|source| AgentError::Api {
        addr: config.mesh.api.to_string(),
        source,
    })?;

    let userspace_listeners = match &config.userspace {
        Some(u) => Some(userspace::Listeners::bind(u).await?),
        None => None,
    };

    let lan = if config.mesh.lan_beacons {
        match lan::LanBeacons::open(&config.mesh.interface) {
            Ok(l) => Some(l),
            Err(e) => {
                tracing::warn!(error = %e, "LAN beacons are off: cannot open the beacon socket");
                None
            }
        }
    } else {
        None
    };

    let capacity = mesh::member_capacity(&config);
    let keys = config.network_token.keys();
    let mut node = mesh::new_node(
        loaded.identity,
        &keys,
        node_config,
        capacity,
        ledger,
        clock.wall_at_zero(),
    );
    restore.role_record(&mut node)?;
    restore.claim(&mut node, &config, now)?;
    let state_repairs = restore.finish();
    let machine = if bridge {
        info::MachineInfo::local(None, info::Kind::Bridge)
    } else {
        info::MachineInfo::local(Some(&config.network_id), info::Kind::Agent)
    };
    write_machine_info(&mut node, &machine, now);

    let tun = if config.vpn.create {
        let netlink = netlink::Netlink::open().map_err(tun::TunError::from)?;
        let offload = offload_wanted()?;
        Some(tun::Interface::create(&config.mesh.interface, config.mesh.mtu, node.ipv6(), netlink, offload).await?)
    } else {
        None
    };
    let userspace_info = userspace_listeners.as_ref().map(|l| l.info().clone());
    let userspace = userspace_listeners.map(|l| {
        userspace::start(
            l,
            usize::from(config.mesh.mtu),
            node.ipv4(),
            config.mesh.address.prefix_len(),
            node.ipv6(),
        )
    });
    let interface = match (&tun, &userspace) {
        (Some(t), _) => Some(t.name().to_owned()),
        (None, Some(_)) => Some(userspace::INTERFACE.to_owned()),
        (None, None) => None,
    };
    let offload = status::OffloadInfo::new(tun.as_ref().map(|t| t.offload()), socket.offload());
    match tun.as_ref().map(|t| t.offload()) {
        Some(tun::Offload::Off(why)) => tracing::warn!(
            reason = %why,
            "interface offloads are off: one packet per read and write (slower bulk transfers)"
        ),
        Some(tun::Offload::On) => tracing::debug!("interface offloads on (TSO, checksums)"),
        None => {}
    }

    tracing::info!(
        node_id = %node.node_id(),
        kind = config.kind.as_str(),
        network_id = %config.network_id,
        listen = %listen,
        interface = interface.as_deref().unwrap_or("none"),
        mtu = config.mesh.mtu,
        ipv6 = %node.ipv6(),
        overlay = %config.mesh.address,
        bootstrap = bootstrap.len(),
        lan_beacons = lan.is_some(),
        api = %config.mesh.api,
        offload = %offload,
        "started"
    );

    let (commands_tx, commands) = mpsc::channel(64);
    let signals = tokio::spawn(wait_for_signal(commands_tx.clone()));
    let api_options = api::ApiOptions { token: api_token };
    let api_task = tokio::spawn(api::serve(api_listener, api::router(commands_tx, api_options)));
    let writer = persist::StateWriter::start(dir.clone()).map_err(|source| AgentError::Io {
        what: "start the state writer",
        source,
    })?;
    let info = AgentInfo {
        network_id: (!bridge).then(|| config.network_id.clone()),
        interface,
        userspace: userspace_info,
        listen,
        overlay: config.mesh.address.to_string(),
        started,
        machine,
        ha: config.auto.ha.enable,
        offload,
        state_repairs,
    };
    let (dns, dns_task) = if config.dns {
        let (tx, rx) = tokio::sync::watch::channel(dns::DnsView::default());
        (Some(tx), Some(tokio::spawn(dns::serve(rx))))
    } else {
        (None, None)
    };
    let (k3s, k3s_task) = match crate::k3s::K3sSettings::from_config(&config) {
        Some(settings) => {
            let (inputs, inputs_rx) = tokio::sync::watch::channel(crate::k3s::K3sInputs::default());
            let (outputs_tx, outputs) = mpsc::channel(16);
            let task = tokio::spawn(crate::k3s::run(settings, inputs_rx, outputs_tx));
            let link = driver::K3sLink {
                network_id: config.network_id.clone(),
                inputs,
                outputs,
            };
            (Some(link), Some(task))
        }
        None => (None, None),
    };
    let driver = Driver::new(Parts {
        node,
        clock,
        socket,
        lan,
        tun,
        commands,
        writer,
        info,
        overlay_prefix: config.mesh.address.prefix_len(),
        dns,
        k3s,
        userspace,
    })
    .map_err(|source| AgentError::Io {
        what: "start the data path thread",
        source,
    })?;
    notify::notify("READY=1");
    driver.run().await;
    api_task.abort();
    signals.abort();
    if let Some(task) = dns_task {
        task.abort();
    }
    if let Some(task) = k3s_task {
        // The driver dropped the bootstrap's inputs: it stops k3s (a child
        // gets SIGTERM, then SIGKILL after 20 s; a systemd unit runs on).
        if tokio::time::timeout(K3S_STOP_TIMEOUT, task).await.is_err() {
            tracing::warn!("the k3s bootstrap did not stop in time");
        }
    }
    if let crate::config::agent::ApiAddress::Unix(path) = &config.mesh.api {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!(uptime_s = started.elapsed().as_secs(), "stopped");
    Ok(())
}

/// `KAIROS_OFFLOAD`: `on` (the default) or `off`, which makes the
/// interface without offloads (for comparison, or a kernel that misbehaves
/// with them).
fn offload_wanted() -> Result<bool, AgentError> {
    match std::env::var("KAIROS_OFFLOAD") {
        Err(_) => Ok(true),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "on" | "1" | "true" | "yes" => Ok(true),
            "off" | "0" | "false" | "no" => Ok(false),
            _ => Err(AgentError::Setting {
                name: "KAIROS_OFFLOAD",
                value: v,
                expected: "on or off",
            }),
        },
    }
}

/// How much stack the thread that builds the ledger may use: the empty
/// ledger is built on it before it moves into its box, and a debug build
/// makes several copies on the way (twice the ledger overflowed). Only the
/// pages touched are ever resident, and only until the thread exits.
const LEDGER_BUILD_STACK: usize = 16 * std::mem::size_of::<AgentLedger>();

/// An empty ledger replica on the heap. `Ledger::new()` is a value of about
/// 1.5 MB that Rust builds on the stack and then moves into the box; built on
/// the main thread, those stack pages would stay resident for the agent's
/// whole life (they were 1.5 of its 3.5 MiB of resident stack). A thread's
/// stack is given back to the system when the thread exits, so the ledger
/// is built on a short-lived one.
fn new_ledger() -> Result<Box<AgentLedger>, AgentError> {
    let io = |source| AgentError::Io {
        what: "start the thread that builds the ledger",
        source,
    };
    std::thread::Builder::new()
        .name("ledger-build".into())
        .stack_size(LEDGER_BUILD_STACK)
        .spawn(Box::<AgentLedger>::default)
        .map_err(io)?
        .join()
        .map_err(|_| io(std::io::Error::other("the thread panicked")))
}

/// Writes this machine's info record (`owner/info/<node id>`), so the
/// other members can show its host name; a refusal is logged, not fatal.
/// The same record restored from the snapshot is not written again.
pub fn write_machine_info(node: &mut mesh::MeshNode, machine: &info::MachineInfo, now: kairos_core::time::Instant) {
    let key = node.node_id().to_string();
    let value = machine.encode();
    let held = node.ledger().get(info::INFO.as_bytes(), key.as_bytes());
    if held.is_some_and(|e| e.value() == value.as_slice()) {
        return;
    }
    match node.ledger_put(now, info::INFO.as_bytes(), key.as_bytes(), &value, 0) {
        Ok(()) => tracing::debug!(hostname = %machine.hostname, "machine info written"),
        Err(e) => tracing::warn!(error = %e, "cannot write the machine info record"),
    }
}

/// Sends [`Command::Shutdown`] on the first SIGTERM or SIGINT.
async fn wait_for_signal(commands: mpsc::Sender<Command>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::warn!("cannot install signal handlers; stop the agent with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    tracing::info!(signal = name, "stopping");
    notify::notify("STOPPING=1");
    let _ = commands.send(Command::Shutdown).await;
}

/// Resolves the configured bootstrap peers; a name that does not resolve
/// is logged and skipped (the others still work).
async fn resolve(peers: &[Endpoint]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for p in peers {
        match p {
            Endpoint::Addr(a) => out.push(*a),
            Endpoint::Name { host, port } => {
                let lookup = tokio::net::lookup_host((host.as_str(), *port));
                match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
                    Ok(Ok(addrs)) => {
                        let addrs: Vec<SocketAddr> = addrs.collect();
                        // One address per name: IPv4 first (most underlays).
                        let pick = addrs.iter().find(|a| a.is_ipv4()).or(addrs.first());
                        match pick {
                            Some(a) => out.push(*a),
                            None => tracing::warn!(peer = %p, "bootstrap peer resolves to nothing; skipped"),
                        }
                    }
                    Ok(Err(e)) => tracing::warn!(peer = %p, error = %e, "cannot resolve bootstrap peer; skipped"),
                    Err(_) => tracing::warn!(peer = %p, "resolving bootstrap peer timed out; skipped"),
                }
            }
        }
    }
    out
}
