//! Who may publish a network's k3s entries (`ip-master`,
//! `token-nodetoken`, `master-kubeconfig`): this module owns the rule that
//! the k3s bootstrap's inputs (`driver`) and `GET /api/writers` (`status`)
//! apply. The entries live in the bucket named after the `network_id`,
//! which every member may write (`docs/security.md`, gap 3).

use std::cell::OnceCell;

use kairos_core::election::{elect, read_view, DeployedAs, ElectionConfig, MemberView, RoleRecord, ROLES};
use kairos_core::identity::NodeId;
use kairos_core::ledger::buckets::owner_key;
use kairos_core::time::Instant;

use super::mesh::AgentLedger;

/// Who may publish the k3s entries (`ip-master`, `token-nodetoken`,
/// `master-kubeconfig`) of one network. Its bucket is open to every member,
/// so any member could write them; readers take only what the master
/// wrote, and the master puts its own back when the ledger holds others
/// (`k3s::plan::publish`).
///
/// The master is the primary this node's election names. Where it names
/// none (a bridge, another network's bucket, an election that has not
/// spoken here yet), it is a member whose role record shows it deployed as
/// a master (primary or HA server; a master that stepped down records its
/// new role), or the primary those records show (`election::elect` over
/// them finds a candidate a quorum accepted, which covers a master without
/// k3s, that never records a deployment).
pub struct Publishers<'l> {
    ledger: &'l AgentLedger,
    network_id: &'l str,
    primary: Option<NodeId>,
    now: Instant,
    recorded: OnceCell<Option<NodeId>>,
}

impl<'l> Publishers<'l> {
    /// The publishers of `network_id` in `ledger`; `primary`: the one this
    /// node's election names for it, if any.
    pub fn new(ledger: &'l AgentLedger, network_id: &'l str, primary: Option<NodeId>, now: Instant) -> Self {
        Publishers {
            ledger,
            network_id,
            primary,
            now,
            recorded: OnceCell::new(),
        }
    }

    /// Whether `id` may publish.
    pub fn contains(&self, id: &NodeId) -> bool {
        match self.primary {
            Some(p) => *id == p,
            None => {
                deployed_master(self.ledger, self.network_id, id)
                    || *self
                        .recorded
                        .get_or_init(|| recorded_primary(self.ledger, self.network_id, self.now))
                        == Some(*id)
            }
        }
    }

    /// The value under `key` of the network's bucket, if a publisher wrote it.
    pub fn value(&self, key: &str) -> Option<&'l [u8]> {
        let e = self.ledger.get(self.network_id.as_bytes(), key.as_bytes())?;
        self.contains(&e.origin_id()).then(|| e.value())
    }

    pub fn text(&self, key: &str) -> Option<String> {
        self.value(key)
            .and_then(|v| std::str::from_utf8(v).ok())
            .map(str::to_owned)
    }
}

/// Whether `id`'s role record shows it deployed as a master (primary or
/// HA server) of `network_id`.
fn deployed_master(ledger: &AgentLedger, network_id: &str, id: &NodeId) -> bool {
    ledger
        .get(ROLES.as_bytes(), &owner_key(id))
        .and_then(|r| RoleRecord::parse(r.value()).ok())
        .is_some_and(|(net, r)| {
            net == network_id
                && r.deployment
                    .is_some_and(|d| matches!(d.role, DeployedAs::Primary | DeployedAs::Server))
        })
}

/// The primary of `network_id` by the role records in `ledger`.
fn recorded_primary(ledger: &AgentLedger, network_id: &str, now: Instant) -> Option<NodeId> {
    let mut scratch = vec![MemberView::default(); ledger.len() + 1];
    let view = read_view(ledger, network_id, now, &mut scratch);
    elect(&view, &ElectionConfig::DEFAULT, now).primary().map(|m| m.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_take_the_k3s_keys_only_from_the_master() {
        use kairos_core::election::{Deployment, MAX_RECORD_LEN, MEMBER_TTL_SECS};
        use kairos_core::identity::Identity;
        use kairos_core::ledger::buckets::IP_MASTER;
        let now = Instant::from_secs(5);
        let master = Identity::from_bytes(&[1; 64]);
        let other = Identity::from_bytes(&[2; 64]);
        let record = |l: &mut AgentLedger, who: &Identity, net: &str, role: Option<DeployedAs>, since: u64| {
            let r = RoleRecord {
                deployment: role.map(|role| Deployment { role, epoch: 1, since }),
                ..RoleRecord::default()
            };
            let mut buf = [0u8; MAX_RECORD_LEN];
            let n = r.emit(net, &mut buf).unwrap();
            l.put(
                now,
                who,
                ROLES.as_bytes(),
                &owner_key(&who.node_id()),
                &buf[..n],
                MEMBER_TTL_SECS,
            )
            .unwrap();
        };
        let ip = |l: &mut AgentLedger, who: &Identity| {
            l.put(now, who, b"kairos", IP_MASTER.as_bytes(), b"10.1.0.7", 0)
                .unwrap();
        };
        let read = |l: &AgentLedger, primary| Publishers::new(l, "kairos", primary, now).text(IP_MASTER);
        let (m, o) = (master.node_id(), other.node_id());

        let mut l: Box<AgentLedger> = Box::default();
        ip(&mut l, &master);
        assert_eq!(read(&l, Some(m)).as_deref(), Some("10.1.0.7"), "the elected primary's");
        assert_eq!(read(&l, Some(o)), None, "the election names another primary");
        assert_eq!(read(&l, None), None, "no record shows who is master");
        record(&mut l, &master, "kairos", Some(DeployedAs::Primary), 1);
        assert_eq!(read(&l, None).as_deref(), Some("10.1.0.7"), "a deployed primary's");

        // Another member overwrites the key: ignored, whatever it records.
        ip(&mut l, &other);
        assert_eq!(read(&l, Some(m)), None);
        assert_eq!(read(&l, None), None, "no record of its own");
        record(&mut l, &other, "kairos", Some(DeployedAs::Worker), 2);
        assert_eq!(read(&l, None), None, "a worker's");
        record(&mut l, &other, "prod", Some(DeployedAs::Primary), 0);
        assert_eq!(
            read(&l, None),
            None,
            "the primary of another network's, older than ours"
        );
        // An HA server of this network may publish (after a failover it
        // runs the cluster); the election, where it names one, decides.
        record(&mut l, &other, "kairos", Some(DeployedAs::Server), 2);
        assert_eq!(read(&l, None).as_deref(), Some("10.1.0.7"), "a deployed server's");
        assert_eq!(read(&l, Some(m)), None);
        // A master that stepped down records its new role.
        record(&mut l, &other, "kairos", Some(DeployedAs::Worker), 3);
        assert_eq!(read(&l, None), None);
    }
}
