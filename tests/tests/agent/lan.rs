//! Three nodes on one LAN segment that share only the token.

use std::time::Duration;

use kairos_tests::agent::lab_with_agent;
use kairos_tests::preflight::note;
use kairos_tests::scenario;
use kairos_tests::wait::{wait_for, Poll};
use kairos_tests::{HarnessError, Result};

use crate::{rss_kib, DEADLINE};

/// 50 MiB, the transfer of issue 4.
const TRANSFER_BYTES: u64 = 50 << 20;

#[test]
fn three_nodes_on_a_lan_get_unique_addresses_reach_each_other_and_move_50_mib_intact() -> Result<()> {
    let test = "three_nodes_on_a_lan";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    // The README's demo is this set-up: run its code.
    let (mesh, report) = scenario::demo(&mut lab, &kairos, 3, None, DEADLINE)?;
    note(&format!(
        "[bench] {test}: 3 agents on a LAN: all addressed {:.2} s, all pairs reachable over the overlay {:.2} s \
         after the first agent started",
        report.addressed.as_secs_f64(),
        report.reachable.as_secs_f64()
    ));
    note(&format!("{test}: status\n{}", report.status));
    let summaries = mesh
        .agents
        .iter()
        .map(|agent| lab.summary(agent))
        .collect::<Result<Vec<_>>>()?;

    // Every node lists the two others as up members, directly reached on a LAN.
    for (i, agent) in mesh.agents.iter().enumerate() {
        let own = &summaries[i].node_id;
        let others: Vec<&str> = summaries
            .iter()
            .map(|s| s.node_id.as_str())
            .filter(|id| *id != own)
            .collect();
        wait_for(
            &format!("{} to list the others as up and direct", agent.name),
            DEADLINE,
            || {
                let machines = lab.machines(agent)?;
                let missing: Vec<String> = others
                    .iter()
                    .filter(|id| !machines.iter().any(|m| m.node_id == **id && m.up && m.path == "direct"))
                    .map(|id| id.to_string())
                    .collect();
                Ok::<_, HarnessError>(if missing.is_empty() {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("not up+direct: {missing:?}; machines: {machines:?}"))
                })
            },
        )?;
    }

    let (a, c) = (&mesh.agents[0], &mesh.agents[2]);
    let c_ipv4 = summaries[2]
        .ipv4
        .clone()
        .ok_or_else(|| HarnessError::Check("c has no IPv4".into()))?;
    let transfer = lab.tcp_transfer(&a.ns, &c.ns, &c_ipv4, 5001, TRANSFER_BYTES, Duration::from_secs(120))?;
    assert!(
        transfer.intact(),
        "the transfer arrived damaged or incomplete: {transfer:?}"
    );
    assert_eq!(transfer.received.bytes, TRANSFER_BYTES);
    note(&format!(
        "[bench] {test}: 50 MiB over the overlay a -> c intact (sha256 {}) in {:.2} s, {:.0} Mbit/s (debug build, 2 agents on one machine)",
        &transfer.received.sha256[..16],
        transfer.received.secs,
        transfer.mbit_s()
    ));

    let rss: Vec<String> = mesh
        .agents
        .iter()
        .map(|agent| format!("{} {} KiB", agent.name, rss_kib(lab.pid(agent.process)).unwrap_or(0)))
        .collect();
    note(&format!(
        "[bench] {test}: agent RSS after the transfer: {}",
        rss.join(", ")
    ));
    lab.finish();
    Ok(())
}
