//! The bootstrap's decisions, as pure functions of what the driver says
//! ([`K3sInputs`]), the role deployed before a restart (the marker) and
//! what runs now: which [`Deployment`] k3s should run ([`target`]), whether
//! to start, restart or stop it ([`step`]), when to publish the master's
//! entries ([`publish`]) and when to report a deployment
//! ([`to_report`]).
//!
//! Nothing here reads a clock, a file or a channel: the runner does, and
//! hands the results in. That is what makes every rule below a unit test.
//!
//! The rules:
//! - The role is the driver's (the config's forced role, else the
//!   election's). Before the driver knows it, a node that deployed before
//!   takes the role it deployed in, so k3s comes back at boot at once.
//! - A master without HA, or the HA primary, runs a cluster of its own
//!   ([`Kind::Primary`]). `--cluster-init` is passed only to an HA primary
//!   that never deployed, and never with an external datastore.
//!   With HA, the node the election names as the primary runs its own
//!   cluster whatever its role's flag says.
//! - Other HA masters join the primary as servers ([`Kind::Server`]); workers
//!   join it as agents ([`Kind::Agent`]). Both wait for the master's ledger
//!   entries: `ip-master` and the node token. When the election names a
//!   primary, `ip-master` must be its address (otherwise the entries are a
//!   previous primary's, and its token would not work).
//! - A running deployment is restarted when its target changes (a new
//!   master address or token, a new own address, a new role), kept while
//!   the target waits for something, and stopped only when a master
//!   became a worker or a worker a master (it cannot run the new role yet).

use std::fmt;
use std::net::Ipv4Addr;
use std::time::Duration;

use kairos_core::election::Role;

use super::K3sInputs;

/// k3s's API port on every server.
pub const API_PORT: u16 = 6443;
/// How long a master waits before it puts its entries back after the
/// ledger shows someone else's (another master's, or a stale copy).
pub const REPUBLISH_AFTER: Duration = Duration::from_secs(10);

/// What the cluster looks like, from the config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cluster {
    /// `auto.ha.enable`.
    pub ha: bool,
    /// `auto.ha.external_db` is set: servers share a datastore, no etcd.
    pub external_db: bool,
}

/// The server a joining node talks to, and the token it joins with.
#[derive(Clone, PartialEq, Eq)]
pub struct Join {
    /// The primary's overlay address.
    pub server: Ipv4Addr,
    /// The node token the primary published.
    pub token: String,
}

impl Join {
    /// `https://<server>:6443`, k3s's `K3S_URL` / `--server`.
    pub fn url(&self) -> String {
        server_url(self.server)
    }
}

impl fmt::Debug for Join {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Join {{ server: {}, token: <redacted> }}", self.server)
    }
}

/// `https://<ip>:6443`.
pub fn server_url(ip: Ipv4Addr) -> String {
    format!("https://{ip}:{API_PORT}")
}

/// How k3s runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `k3s server` running a cluster of its own.
    Primary {
        /// Pass `--cluster-init` (an HA primary's first start).
        cluster_init: bool,
    },
    /// `k3s server` joining the primary (HA).
    Server(Join),
    /// `k3s agent` of the primary.
    Agent(Join),
}

/// Everything k3s runs with, so that two equal deployments need no restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// The role this deployment runs (what is reported and recorded).
    pub role: Role,
    /// This node's overlay address: `--node-ip`.
    pub node_ip: Ipv4Addr,
    /// Server or agent, and what it joins.
    pub kind: Kind,
}

impl Deployment {
    /// Whether k3s runs as a server.
    pub fn is_server(&self) -> bool {
        !matches!(self.kind, Kind::Agent(_))
    }

    /// Whether this deployment publishes the master's entries (only the
    /// node that runs a cluster of its own).
    pub fn publishes(&self) -> bool {
        matches!(self.kind, Kind::Primary { .. })
    }

    /// Whether `other` is the same deployment, but for `--cluster-init`,
    /// which only matters on the first start: dropping it after the first
    /// start needs no restart.
    pub fn same_as(&self, other: &Deployment) -> bool {
        let strip = |d: &Deployment| match d.kind {
            Kind::Primary { .. } => Deployment {
                kind: Kind::Primary { cluster_init: false },
                ..d.clone()
            },
            _ => d.clone(),
        };
        strip(self) == strip(other)
    }
}

/// Why nothing can run yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// The election has not given this node a role.
    Role,
    /// This node has no overlay IPv4 address yet.
    Address,
    /// No `ip-master` in the ledger yet (or not an IPv4 address).
    MasterAddress,
    /// No node token in the ledger yet.
    Token,
    /// The election names this primary, but `ip-master` is still another
    /// node's: the primary has not published yet.
    Primary(Ipv4Addr),
    /// `ip-master` is this node's own address (left from when it was master).
    OwnAddress,
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Role => f.write_str("waiting for a role from the election"),
            Wait::Address => f.write_str("waiting for an overlay IPv4 address"),
            Wait::MasterAddress => f.write_str("waiting for the master's address (ip-master) in the ledger"),
            Wait::Token => f.write_str("waiting for the master's node token (token-nodetoken) in the ledger"),
            Wait::Primary(ip) => write!(f, "waiting for the primary {ip} to publish its address and token"),
            Wait::OwnAddress => f.write_str("waiting for a master: ip-master is this node's own address"),
        }
    }
}

/// What k3s should run now. `deployed` is the role recorded by the last
/// deployment (the marker), if any.
pub fn target(inputs: &K3sInputs, cluster: Cluster, deployed: Option<Role>) -> Result<Deployment, Wait> {
    let role = inputs.role.or(deployed).ok_or(Wait::Role)?;
    let node_ip = inputs.ipv4.ok_or(Wait::Address)?;
    let kind = match role {
        Role::Master { cluster_init: true } => Kind::Primary {
            cluster_init: !cluster.external_db && deployed != Some(role),
        },
        // Without HA every master runs its own cluster; with HA, the one
        // the election names as the primary does, even without the flag.
        Role::Master { cluster_init: false } if !cluster.ha || inputs.primary_ipv4 == Some(node_ip) => {
            Kind::Primary { cluster_init: false }
        }
        Role::Master { cluster_init: false } => Kind::Server(join(inputs, node_ip)?),
        Role::Worker => Kind::Agent(join(inputs, node_ip)?),
    };
    Ok(Deployment { role, node_ip, kind })
}

/// The primary to join and its token, from the ledger and the election.
fn join(inputs: &K3sInputs, own: Ipv4Addr) -> Result<Join, Wait> {
    let published = inputs
        .ip_master
        .as_deref()
        .and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
    let server = match (inputs.primary_ipv4, published) {
        (Some(primary), Some(p)) if p == primary => p,
        (Some(primary), _) => return Err(Wait::Primary(primary)),
        (None, Some(p)) => p,
        (None, None) => return Err(Wait::MasterAddress),
    };
    if server == own {
        return Err(Wait::OwnAddress);
    }
    let token = inputs
        .node_token
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(Wait::Token)?;
    Ok(Join {
        server,
        token: token.to_string(),
    })
}

/// What to do about k3s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Keep what runs (or keep not running anything).
    Keep,
    /// Start this; nothing runs.
    Start(Deployment),
    /// Stop what runs and start this.
    Restart(Deployment),
    /// Stop what runs: its role is no longer this node's.
    Stop,
}

/// Given what runs and the [`target`], what to do. `role` is the driver's
/// role (not the marker's).
pub fn step(running: Option<&Deployment>, target: &Result<Deployment, Wait>, role: Option<Role>) -> Step {
    match (running, target) {
        (None, Ok(t)) => Step::Start(t.clone()),
        (None, Err(_)) => Step::Keep,
        (Some(r), Ok(t)) if r.same_as(t) => Step::Keep,
        (Some(_), Ok(t)) => Step::Restart(t.clone()),
        // Waiting for a new master or address: the old one serves meanwhile.
        // But a master that stepped down (or a worker promoted) leaves now.
        (Some(r), Err(_)) => match role {
            Some(role) if is_master(role) != is_master(r.role) => Step::Stop,
            _ => Step::Keep,
        },
    }
}

fn is_master(role: Role) -> bool {
    matches!(role, Role::Master { .. })
}

/// The master's entries, as this node would publish them.
#[derive(Clone, PartialEq, Eq)]
pub struct Entries {
    /// `ip-master`: the overlay address.
    pub ip_master: String,
    /// `token-nodetoken`: k3s's node token.
    pub node_token: String,
    /// `master-kubeconfig`: the kubeconfig with the server on the overlay.
    pub kubeconfig: Vec<u8>,
}

impl fmt::Debug for Entries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Entries {{ ip_master: {}, node_token: <redacted>, kubeconfig: <{} bytes> }}",
            self.ip_master,
            self.kubeconfig.len()
        )
    }
}

/// Whether a master running a cluster of its own puts its entries into the
/// ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publish {
    /// Now.
    Now,
    /// Not now; ask again after this long (the ledger shows other entries).
    After(Duration),
    /// Not until the inputs or the entries change.
    No,
}

/// Whether a master running a cluster of its own puts `own` into the ledger.
/// `last` is what it last put, `since_last` how long ago.
///
/// It publishes when it has never published, when its entries changed
/// (a new address, a new token), and, every [`REPUBLISH_AFTER`], when the
/// ledger shows other entries: unless the election names another node as
/// the primary, in which case the ledger is that node's to write.
pub fn publish(own: &Entries, inputs: &K3sInputs, last: Option<&Entries>, since_last: Duration) -> Publish {
    let own_ip = own.ip_master.parse::<Ipv4Addr>().ok();
    if inputs.primary_ipv4.is_some() && inputs.primary_ipv4 != own_ip {
        return Publish::No;
    }
    match last {
        None => Publish::Now,
        Some(l) if l != own => Publish::Now,
        Some(_) => {
            let diverges = inputs.ip_master.as_deref().map(str::trim) != Some(own.ip_master.as_str())
                || inputs.node_token.as_deref().map(str::trim) != Some(own.node_token.as_str())
                || inputs.kubeconfig.as_deref() != Some(own.kubeconfig.as_slice());
            match REPUBLISH_AFTER.checked_sub(since_last) {
                _ if !diverges => Publish::No,
                Some(left) if !left.is_zero() => Publish::After(left),
                _ => Publish::Now,
            }
        }
    }
}

/// The role to report as deployed, if any: once k3s is ready in the
/// driver's role and that was not reported yet for this deployment.
pub fn to_report(role: Option<Role>, running: &Deployment, ready: bool, reported: Option<Role>) -> Option<Role> {
    match role {
        Some(role) if ready && role == running.role && reported != Some(role) => Some(role),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASTER: Role = Role::Master { cluster_init: false };
    const INIT: Role = Role::Master { cluster_init: true };
    const WORKER: Role = Role::Worker;
    const ME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 7);
    const PRIMARY: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const HA: Cluster = Cluster {
        ha: true,
        external_db: false,
    };
    const SOLO: Cluster = Cluster {
        ha: false,
        external_db: false,
    };

    fn inputs(role: Option<Role>) -> K3sInputs {
        K3sInputs {
            role,
            ipv4: Some(ME),
            primary_ipv4: Some(PRIMARY),
            ip_master: Some(PRIMARY.to_string()),
            node_token: Some("K10abc::server:def\n".into()),
            kubeconfig: None,
        }
    }

    fn join_primary() -> Join {
        Join {
            server: PRIMARY,
            token: "K10abc::server:def".into(),
        }
    }

    #[test]
    fn a_master_without_ha_runs_its_own_cluster() {
        let d = target(&inputs(Some(MASTER)), SOLO, None).unwrap();
        assert_eq!(d.kind, Kind::Primary { cluster_init: false });
        assert_eq!((d.role, d.node_ip), (MASTER, ME));
        assert!(d.publishes() && d.is_server());
        // A master needs nothing from the ledger.
        let alone = K3sInputs {
            role: Some(MASTER),
            ipv4: Some(ME),
            ..K3sInputs::default()
        };
        assert!(target(&alone, SOLO, None).is_ok());
    }

    #[test]
    fn cluster_init_only_on_the_first_start_and_never_with_an_external_datastore() {
        let first = target(&inputs(Some(INIT)), HA, None).unwrap();
        assert_eq!(first.kind, Kind::Primary { cluster_init: true });
        let again = target(&inputs(Some(INIT)), HA, Some(INIT)).unwrap();
        assert_eq!(again.kind, Kind::Primary { cluster_init: false });
        assert_eq!(again.role, INIT);
        assert!(first.same_as(&again), "dropping --cluster-init is no reason to restart");
        let db = Cluster {
            ha: true,
            external_db: true,
        };
        assert_eq!(
            target(&inputs(Some(INIT)), db, None).unwrap().kind,
            Kind::Primary { cluster_init: false }
        );
    }

    #[test]
    fn ha_masters_and_workers_join_the_primary() {
        let s = target(&inputs(Some(MASTER)), HA, None).unwrap();
        assert_eq!(s.kind, Kind::Server(join_primary()));
        assert!(s.is_server() && !s.publishes());
        // The election's primary runs its own cluster, flag or not.
        let mut me_primary = inputs(Some(MASTER));
        me_primary.primary_ipv4 = Some(ME);
        assert_eq!(
            target(&me_primary, HA, None).unwrap().kind,
            Kind::Primary { cluster_init: false }
        );
        let w = target(&inputs(Some(WORKER)), SOLO, None).unwrap();
        assert_eq!(w.kind, Kind::Agent(join_primary()));
        assert!(!w.is_server() && !w.publishes());
        assert_eq!(join_primary().url(), "https://10.1.0.2:6443");
    }

    #[test]
    fn what_a_joining_node_waits_for() {
        let t = |f: &dyn Fn(&mut K3sInputs)| {
            let mut i = inputs(Some(WORKER));
            f(&mut i);
            target(&i, SOLO, None)
        };
        assert_eq!(t(&|i| i.role = None), Err(Wait::Role));
        assert_eq!(t(&|i| i.ipv4 = None), Err(Wait::Address));
        assert_eq!(t(&|i| i.node_token = None), Err(Wait::Token));
        assert_eq!(t(&|i| i.node_token = Some(" \n".into())), Err(Wait::Token));
        assert_eq!(t(&|i| i.ip_master = None), Err(Wait::Primary(PRIMARY)));
        // The ledger still names the previous primary: its token is stale.
        assert_eq!(
            t(&|i| i.ip_master = Some("10.1.0.9".into())),
            Err(Wait::Primary(PRIMARY))
        );
        assert_eq!(
            t(&|i| {
                i.primary_ipv4 = None;
                i.ip_master = None
            }),
            Err(Wait::MasterAddress)
        );
        assert_eq!(
            t(&|i| {
                i.primary_ipv4 = None;
                i.ip_master = Some("not an address".into())
            }),
            Err(Wait::MasterAddress)
        );
        assert_eq!(
            t(&|i| {
                i.primary_ipv4 = None;
                i.ip_master = Some(ME.to_string())
            }),
            Err(Wait::OwnAddress)
        );
        // Without an election's word, the ledger's master is followed.
        let follow = t(&|i| {
            i.primary_ipv4 = None;
            i.ip_master = Some(" 10.1.0.9\n".into())
        })
        .unwrap();
        assert_eq!(
            follow.kind,
            Kind::Agent(Join {
                server: Ipv4Addr::new(10, 1, 0, 9),
                token: "K10abc::server:def".into()
            })
        );
        assert!(Wait::Primary(PRIMARY).to_string().contains("10.1.0.2"));
    }

    #[test]
    fn a_node_that_deployed_takes_its_role_back_before_the_election_speaks() {
        let i = inputs(None);
        assert_eq!(target(&i, SOLO, Some(WORKER)).unwrap().role, WORKER);
        let init = target(&i, HA, Some(INIT)).unwrap();
        assert_eq!((init.role, init.kind), (INIT, Kind::Primary { cluster_init: false }));
        // The election's word wins over the marker (a step-down, a promotion).
        assert_eq!(target(&inputs(Some(MASTER)), SOLO, Some(WORKER)).unwrap().role, MASTER);
    }

    #[test]
    fn steps() {
        let agent = target(&inputs(Some(WORKER)), SOLO, None).unwrap();
        assert_eq!(step(None, &Ok(agent.clone()), Some(WORKER)), Step::Start(agent.clone()));
        assert_eq!(step(None, &Err(Wait::Token), Some(WORKER)), Step::Keep);
        assert_eq!(step(Some(&agent), &Ok(agent.clone()), Some(WORKER)), Step::Keep);
        // The master moved: follow it.
        let mut moved = inputs(Some(WORKER));
        moved.primary_ipv4 = Some(Ipv4Addr::new(10, 1, 0, 3));
        moved.ip_master = Some("10.1.0.3".into());
        let follow = target(&moved, SOLO, None).unwrap();
        assert_eq!(
            step(Some(&agent), &Ok(follow.clone()), Some(WORKER)),
            Step::Restart(follow)
        );
        // A new primary that has not published yet: the old one serves meanwhile.
        moved.ip_master = None;
        let t = target(&moved, SOLO, None);
        assert_eq!(step(Some(&agent), &t, Some(WORKER)), Step::Keep);
        // A new own address: restart with it.
        let mut readdressed = inputs(Some(WORKER));
        readdressed.ipv4 = Some(Ipv4Addr::new(10, 1, 0, 8));
        let t = target(&readdressed, SOLO, None);
        assert!(matches!(step(Some(&agent), &t, Some(WORKER)), Step::Restart(_)));
        // Promoted: start the server at once.
        let server = target(&inputs(Some(MASTER)), SOLO, None).unwrap();
        assert_eq!(
            step(Some(&agent), &Ok(server.clone()), Some(MASTER)),
            Step::Restart(server.clone())
        );
        // A master that stepped down leaves its cluster even before it can join the new one.
        assert_eq!(step(Some(&server), &Err(Wait::Token), Some(WORKER)), Step::Stop);
        assert_eq!(step(Some(&server), &Err(Wait::Address), None), Step::Keep);
        // A master stays a master: no stop while it waits.
        assert_eq!(step(Some(&server), &Err(Wait::Token), Some(INIT)), Step::Keep);
    }

    fn entries() -> Entries {
        Entries {
            ip_master: ME.to_string(),
            node_token: "K10abc::server:def".into(),
            kubeconfig: b"server: https://10.1.0.7:6443".to_vec(),
        }
    }

    #[test]
    fn publishing() {
        let own = entries();
        let mut i = inputs(Some(MASTER));
        i.primary_ipv4 = None;
        i.ip_master = None;
        i.node_token = None;
        assert_eq!(publish(&own, &i, None, Duration::ZERO), Publish::Now, "first time");
        // Right after a put the ledger may not show it yet: no flood.
        assert_eq!(
            publish(&own, &i, Some(&own), Duration::from_secs(1)),
            Publish::After(Duration::from_secs(9))
        );
        assert_eq!(
            publish(&own, &i, Some(&own), REPUBLISH_AFTER),
            Publish::Now,
            "put it back"
        );
        assert_eq!(publish(&own, &i, Some(&own), Duration::MAX), Publish::Now);
        i.ip_master = Some(own.ip_master.clone());
        i.node_token = Some(format!("{}\n", own.node_token));
        assert_eq!(
            publish(&own, &i, Some(&own), REPUBLISH_AFTER),
            Publish::Now,
            "another kubeconfig (or none the master wrote): put it back"
        );
        i.kubeconfig = Some(own.kubeconfig.clone());
        assert_eq!(
            publish(&own, &i, Some(&own), Duration::from_secs(3600)),
            Publish::No,
            "the ledger agrees"
        );
        assert_eq!(publish(&own, &i, Some(&own), Duration::ZERO), Publish::No);
        let mut changed = own.clone();
        changed.node_token = "K10new".into();
        assert_eq!(
            publish(&changed, &i, Some(&own), Duration::ZERO),
            Publish::Now,
            "a new token"
        );
        // Another node is the election's primary: the ledger is its to write.
        i.primary_ipv4 = Some(PRIMARY);
        assert_eq!(publish(&own, &i, None, Duration::ZERO), Publish::No);
        i.ip_master = Some(PRIMARY.to_string());
        assert_eq!(publish(&own, &i, Some(&own), Duration::from_secs(3600)), Publish::No);
        i.primary_ipv4 = Some(ME);
        assert_eq!(publish(&own, &i, None, Duration::ZERO), Publish::Now);
        assert!(!format!("{own:?}").contains("def"));
    }

    #[test]
    fn reporting() {
        let d = target(&inputs(Some(INIT)), HA, Some(INIT)).unwrap();
        assert_eq!(to_report(Some(INIT), &d, false, None), None, "not ready");
        assert_eq!(to_report(Some(INIT), &d, true, None), Some(INIT));
        assert_eq!(to_report(Some(INIT), &d, true, Some(INIT)), None, "once");
        assert_eq!(
            to_report(None, &d, true, None),
            None,
            "started from the marker: wait for the driver"
        );
        assert_eq!(to_report(Some(WORKER), &d, true, None), None, "not the role that runs");
    }
}
