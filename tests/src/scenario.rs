//! Whole set-ups shared by the tests and the `demo-mesh` binary, so the
//! demo the README starts is the code the tests run.
//!
//! [`LanMesh`]: `n` agents on one LAN segment that share only the token.

use std::time::{Duration, Instant};

use crate::agent::{Agent, Kairos, NodeConfig};
use crate::api::Summary;
use crate::error::{HarnessError, Result};
use crate::lab::Lab;
use crate::topology::Segment;
use crate::wait::{wait_for, Poll};

/// The LAN segment's underlay range (inside the lab only).
pub const LAN_PREFIX: &str = "10.99.0";

/// `n` agents, `a`, `b`, `c`, ..., on one switch, sharing one token.
#[derive(Debug)]
pub struct LanMesh {
    /// The switch.
    pub lan: Segment,
    /// The token they share.
    pub token: String,
    /// The agents, in start order.
    pub agents: Vec<Agent>,
    /// When the first agent was started.
    pub started: Instant,
}

/// A name for node `i`: `a`, `b`, ... `z`, then `a1` ... `z1`, `a2` ...
/// (unique for any `i`).
pub fn node_name(i: usize) -> String {
    let letter = (b'a' + (i % 26) as u8) as char;
    match i / 26 {
        0 => letter.to_string(),
        round => format!("{letter}{round}"),
    }
}

/// The most nodes [`LanMesh`] puts on its segment (`10.99.0.11` up to
/// `10.99.0.254`).
pub const MAX_LAN_NODES: usize = 244;

impl LanMesh {
    /// Builds the segment, a namespace per node at `10.99.0.(11+i)/24`, and
    /// starts every agent with `token` (a fresh one if `None`).
    pub fn start(lab: &mut Lab, kairos: &Kairos, n: usize, token: Option<&str>) -> Result<LanMesh> {
        LanMesh::start_with(lab, kairos, n, token, |_, _| {})
    }

    /// [`LanMesh::start`], with `configure(i, config)` adjusting node `i`'s
    /// config before it starts.
    pub fn start_with(
        lab: &mut Lab,
        kairos: &Kairos,
        n: usize,
        token: Option<&str>,
        configure: impl Fn(usize, &mut NodeConfig),
    ) -> Result<LanMesh> {
        if n > MAX_LAN_NODES {
            return Err(HarnessError::Check(format!(
                "{n} nodes do not fit one segment (at most {MAX_LAN_NODES})"
            )));
        }
        let token = match token {
            Some(token) => token.to_owned(),
            None => kairos.generate_token()?,
        };
        let lan = lab.switch("lan")?;
        let mut hosts = Vec::new();
        for i in 0..n {
            let name = node_name(i);
            let ns = lab.host(&name)?;
            lab.plug(&ns, &lan, "eth0", &format!("{LAN_PREFIX}.{}/24", 11 + i))?;
            hosts.push((name, ns));
        }
        // Topology first, then the agents back to back: the time to
        // reachable counts from the first agent's start.
        let started = Instant::now();
        let mut agents = Vec::new();
        for (i, (name, ns)) in hosts.iter().enumerate() {
            let mut config = NodeConfig::new(&token);
            configure(i, &mut config);
            agents.push(lab.start_agent(kairos, ns, name, &config)?);
        }
        Ok(LanMesh {
            lan,
            token,
            agents,
            started,
        })
    }

    /// Waits until every agent reports an overlay IPv4 address, and then
    /// until two passes over the agents read back to back agree and hold no
    /// address twice. Returns the summaries of the last pass.
    ///
    /// One pass is not enough: nodes that claim the same free address at
    /// once settle it within a fraction of a second (one of them moves),
    /// and the summaries of one pass are read one after another, so a pass
    /// can hold one agent's address from before it moved and another's
    /// from after it moved in (two agents that never held it together). An
    /// address held twice until the deadline fails the wait with the two
    /// agents' names.
    pub fn wait_addresses(&self, lab: &mut Lab, deadline: Duration) -> Result<Vec<Summary>> {
        for agent in &self.agents {
            let left = deadline
                .saturating_sub(self.started.elapsed())
                .max(Duration::from_secs(1));
            lab.wait_address(agent, left)?;
        }
        let left = deadline
            .saturating_sub(self.started.elapsed())
            .max(Duration::from_secs(1));
        let mut last: Option<Vec<Option<String>>> = None;
        wait_for("every agent's address to be held by it alone", left, || {
            let summaries = self.agents.iter().map(|a| lab.summary(a)).collect::<Result<Vec<_>>>()?;
            let addresses: Vec<_> = summaries.iter().map(|s| s.ipv4.clone()).collect();
            let settled = last.as_ref() == Some(&addresses);
            last = Some(addresses);
            if let Some(i) = summaries.iter().position(|s| s.ipv4.is_none()) {
                return Ok(Poll::Pending(format!(
                    "{} has no address (moving)",
                    self.agents[i].name
                )));
            }
            Ok::<_, HarnessError>(match check_unique_addresses(&self.agents, &summaries) {
                Ok(()) if settled => Poll::Ready(summaries),
                Ok(()) => Poll::Pending("addresses moved since the last pass".into()),
                Err(e) => Poll::Pending(e.to_string()),
            })
        })
        .map(|w| w.value)
    }

    /// Waits until every agent pings every other one's overlay IPv4 address
    /// (and IPv6, when the API reports one). Returns the time from the
    /// first agent's start until all pairs answered.
    pub fn wait_all_pairs(&self, lab: &mut Lab, summaries: &[Summary], deadline: Duration) -> Result<Duration> {
        for (i, from) in self.agents.iter().enumerate() {
            for (j, to) in summaries.iter().enumerate() {
                if i == j {
                    continue;
                }
                let addresses = [to.ipv4.as_deref(), to.ipv6.as_deref()];
                for addr in addresses.into_iter().flatten() {
                    let left = deadline
                        .saturating_sub(self.started.elapsed())
                        .max(Duration::from_secs(1));
                    lab.wait_ping(from, addr, left)?;
                }
            }
        }
        Ok(self.started.elapsed())
    }

    /// One line per node: name, node id, addresses, members and paths, as
    /// the API reports them.
    pub fn status(&self, lab: &Lab) -> String {
        let mut out = format!(
            "{:<4} {:<18} {:<12} {:<39} {:>7} {:>8} {:>6} {:>7}\n",
            "node", "node_id", "ipv4", "ipv6", "members", "peers_up", "direct", "relayed"
        );
        for agent in &self.agents {
            match lab.summary(agent) {
                Ok(s) => {
                    let short: String = s.node_id.chars().take(16).collect();
                    let opt = |v: Option<u64>| v.map_or("-".to_owned(), |v| v.to_string());
                    out += &format!(
                        "{:<4} {:<18} {:<12} {:<39} {:>7} {:>8} {:>6} {:>7}\n",
                        agent.name,
                        short,
                        s.ipv4.as_deref().unwrap_or("-"),
                        s.ipv6.as_deref().unwrap_or("-"),
                        opt(s.members),
                        opt(s.peers_up),
                        opt(s.direct),
                        opt(s.relayed)
                    );
                }
                Err(e) => out += &format!("{:<4} API error: {e}\n", agent.name),
            }
        }
        out
    }
}

/// Checks that no two agents report the same overlay address.
pub fn check_unique_addresses(agents: &[Agent], summaries: &[Summary]) -> Result<()> {
    for (i, a) in summaries.iter().enumerate() {
        for (j, b) in summaries.iter().enumerate().skip(i + 1) {
            if a.ipv4.is_some() && a.ipv4 == b.ipv4 {
                return Err(HarnessError::Check(format!(
                    "{} and {} both have {}",
                    agents[i].name,
                    agents[j].name,
                    a.ipv4.as_deref().unwrap_or_default()
                )));
            }
            if a.node_id == b.node_id {
                return Err(HarnessError::Check(format!(
                    "{} and {} have the same node id {}",
                    agents[i].name, agents[j].name, a.node_id
                )));
            }
        }
    }
    Ok(())
}

/// What [`demo`] saw.
#[derive(Debug, Clone)]
pub struct DemoReport {
    /// From the first agent's start until every node had an address.
    pub addressed: Duration,
    /// From the first agent's start until every pair pinged.
    pub reachable: Duration,
    /// The status table ([`LanMesh::status`]).
    pub status: String,
}

/// The demo the README's first command runs (through the `demo-mesh`
/// binary) and the tests run too: `nodes` agents on one LAN in `lab`
/// sharing `token` (a fresh one if `None`), wait until they have addresses
/// and reach each other, then their status. The mesh keeps running until
/// `lab` is dropped.
pub fn demo(
    lab: &mut Lab,
    kairos: &Kairos,
    nodes: usize,
    token: Option<&str>,
    deadline: Duration,
) -> Result<(LanMesh, DemoReport)> {
    let mesh = LanMesh::start(lab, kairos, nodes, token)?;
    let summaries = mesh.wait_addresses(lab, deadline)?;
    let addressed = mesh.started.elapsed();
    let reachable = mesh.wait_all_pairs(lab, &summaries, deadline)?;
    let status = mesh.status(lab);
    Ok((
        mesh,
        DemoReport {
            addressed,
            reachable,
            status,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names_stay_unique_past_26() {
        assert_eq!(node_name(0), "a");
        assert_eq!(node_name(25), "z");
        assert_eq!(node_name(26), "a1");
        assert_eq!(node_name(53), "b2");
        let names: std::collections::HashSet<String> = (0..MAX_LAN_NODES).map(node_name).collect();
        assert_eq!(names.len(), MAX_LAN_NODES);
    }
}
