//! Two nodes, each behind its own NAT router, and a node on the public
//! segment that both name as their bootstrap peer.
//!
//! ```text
//!   a 10.99.1.10 ── r1 (NAT) ──┐                     ┌── r2 (NAT) ── b 10.99.2.10
//!                 198.51.100.1 ├── public segment ───┤ 198.51.100.2
//!                              └── p 198.51.100.10 (bootstrap)
//! ```

use kairos_tests::agent::{lab_with_agent, Agent, NodeConfig, LISTEN_PORT};
use kairos_tests::api::Machine;
use kairos_tests::lab::Lab;
use kairos_tests::preflight::note;
use kairos_tests::scenario::check_unique_addresses;
use kairos_tests::wait::{wait_for, Poll};
use kairos_tests::{HarnessError, NatKind, Result};

use crate::DEADLINE;

/// The running set-up once `a` and `b` reach each other.
struct NatedPair {
    lab: Lab,
    /// `[p, a, b]`.
    agents: Vec<Agent>,
    /// What a says about b, and b about a.
    paths: [Machine; 2],
}

/// Builds the topology, starts the three agents and waits until `a` and
/// `b` reach each other over the overlay and say by which path.
fn nated_pair(test: &str, kind: NatKind) -> Result<Option<NatedPair>> {
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(None);
    };
    let token = kairos.generate_token()?;
    let public = lab.switch("pub")?;
    let lan1 = lab.switch("lan1")?;
    let lan2 = lab.switch("lan2")?;
    let p = lab.host("p")?;
    lab.plug(&p, &public, "eth0", "198.51.100.10/24")?;
    lab.nat_router("r1", &lan1, "10.99.1.1/24", &public, "198.51.100.1/24", kind)?;
    lab.nat_router("r2", &lan2, "10.99.2.1/24", &public, "198.51.100.2/24", kind)?;
    let a = lab.host("a")?;
    lab.plug(&a, &lan1, "eth0", "10.99.1.10/24")?;
    lab.default_route(&a, "10.99.1.1")?;
    let b = lab.host("b")?;
    lab.plug(&b, &lan2, "eth0", "10.99.2.10/24")?;
    lab.default_route(&b, "10.99.2.1")?;

    let bootstrap = format!("198.51.100.10:{LISTEN_PORT}");
    let mut nated = NodeConfig::new(&token);
    nated.bootstrap_peers = vec![bootstrap];
    let agents = vec![
        lab.start_agent(&kairos, &p, "p", &NodeConfig::new(&token))?,
        lab.start_agent(&kairos, &a, "a", &nated)?,
        lab.start_agent(&kairos, &b, "b", &nated)?,
    ];
    let started = agents[0].started;
    let mut summaries = Vec::new();
    for agent in &agents {
        summaries.push(lab.wait_address(agent, DEADLINE)?.value);
    }
    check_unique_addresses(&agents, &summaries)?;
    let ip = |i: usize| summaries[i].ipv4.clone().unwrap_or_default();
    lab.wait_ping(&agents[1], &ip(2), DEADLINE)?;
    lab.wait_ping(&agents[2], &ip(1), DEADLINE)?;
    let reachable = started.elapsed();
    note(&format!(
        "[bench] {test}: a and b behind {kind:?} NATs reach each other over the overlay {:.2} s after the first agent started",
        reachable.as_secs_f64()
    ));

    // What each side says about the path to the other.
    let mut paths = Vec::new();
    for (from, to) in [(1, 2), (2, 1)] {
        let id = summaries[to].node_id.clone();
        let machine = wait_for(
            &format!("{} to report its path to {}", agents[from].name, agents[to].name),
            DEADLINE,
            || {
                let machines = lab.machines(&agents[from])?;
                Ok::<_, HarnessError>(match machines.into_iter().find(|m| m.node_id == id) {
                    Some(m) if m.up && (m.path == "direct" || m.path == "relayed") => Poll::Ready(m),
                    other => Poll::Pending(format!("{other:?}")),
                })
            },
        )?
        .value;
        paths.push(machine);
    }
    let paths: [Machine; 2] = paths.try_into().map_err(|_| HarnessError::Check("two paths".into()))?;
    Ok(Some(NatedPair { lab, agents, paths }))
}

#[test]
fn nodes_behind_port_restricted_cone_nats_reach_each_other_directly() -> Result<()> {
    let test = "nat_cone";
    let Some(NatedPair { lab, agents, paths }) = nated_pair(test, NatKind::PortRestrictedCone)? else {
        return Ok(());
    };
    // The architecture promises a punch through cone NATs (direct probes
    // every 10 s while relayed): wait for the upgrade if it started relayed.
    let ids: Vec<String> = paths.iter().map(|m| m.node_id.clone()).collect();
    for (from, to_id) in [(1, &ids[0]), (2, &ids[1])] {
        let took = wait_for(
            &format!("{} to reach its peer directly", agents[from].name),
            DEADLINE,
            || {
                let machines = lab.machines(&agents[from])?;
                Ok::<_, HarnessError>(match machines.into_iter().find(|m| &m.node_id == to_id) {
                    Some(m) if m.path == "direct" => Poll::Ready(()),
                    other => Poll::Pending(format!("{other:?}")),
                })
            },
        )?;
        note(&format!(
            "{test}: {} direct after {:.2} s more (first reported: {})",
            agents[from].name,
            took.elapsed.as_secs_f64(),
            paths[from - 1].path
        ));
    }
    lab.finish();
    Ok(())
}

#[test]
fn nodes_behind_symmetric_nats_reach_each_other_and_say_how() -> Result<()> {
    let test = "nat_symmetric";
    let Some(NatedPair { lab, paths, .. }) = nated_pair(test, NatKind::Symmetric)? else {
        return Ok(());
    };
    note(&format!(
        "{test}: a -> b path {} ({:?}), b -> a path {} ({:?})",
        paths[0].path, paths[0].endpoint, paths[1].path, paths[1].endpoint
    ));
    lab.finish();
    Ok(())
}
