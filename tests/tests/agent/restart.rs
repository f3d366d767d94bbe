//! A node killed with SIGKILL comes back with the same identity and
//! address; a node stopped with SIGTERM leaves and removes its interface.

use std::time::{Duration, Instant};

use kairos_tests::agent::lab_with_agent;
use kairos_tests::preflight::note;
use kairos_tests::scenario::LanMesh;
use kairos_tests::wait::wait_until;
use kairos_tests::{HarnessError, Result};

use crate::DEADLINE;

#[test]
fn a_node_killed_and_restarted_keeps_its_address_and_is_reachable_again() -> Result<()> {
    let test = "sigkill_and_restart";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mut mesh = LanMesh::start(&mut lab, &kairos, 3, None)?;
    let summaries = mesh.wait_addresses(&mut lab, DEADLINE)?;
    mesh.wait_all_pairs(&mut lab, &summaries, DEADLINE)?;
    let before = summaries[1].clone();
    let b_ipv4 = before
        .ipv4
        .clone()
        .ok_or_else(|| HarnessError::Check("b has no IPv4".into()))?;

    let status = lab.kill(mesh.agents[1].process)?;
    note(&format!("{test}: b killed ({status})"));
    // Its TUN device went with the process; the others no longer reach it.
    let a = mesh.agents[0].clone();
    wait_until("a to stop reaching b", DEADLINE, || {
        lab.ping(&a.ns, &b_ipv4).map(|ok| !ok)
    })?;

    let mut b = mesh.agents[1].clone();
    lab.restart_agent(&kairos, &mut b)?;
    mesh.agents[1] = b.clone();
    let after = lab.wait_address(&b, DEADLINE)?.value;
    assert_eq!(after.node_id, before.node_id, "a restart must keep the identity");
    assert_eq!(after.ipv4, before.ipv4, "a restart must keep the address");
    let c = mesh.agents[2].clone();
    lab.wait_ping(&a, &b_ipv4, DEADLINE)?;
    lab.wait_ping(&c, &b_ipv4, DEADLINE)?;
    for other in [&summaries[0], &summaries[2]] {
        lab.wait_ping(&b, other.ipv4.as_deref().unwrap_or_default(), DEADLINE)?;
    }
    note(&format!(
        "[bench] {test}: b restarted after SIGKILL: same address {b_ipv4}, reachable both ways {:.2} s after its restart",
        b.started.elapsed().as_secs_f64()
    ));
    lab.finish();
    Ok(())
}

#[test]
fn sigterm_stops_a_node_and_removes_its_interface() -> Result<()> {
    let test = "sigterm_leaves_cleanly";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mesh = LanMesh::start(&mut lab, &kairos, 2, None)?;
    let summaries = mesh.wait_addresses(&mut lab, DEADLINE)?;
    mesh.wait_all_pairs(&mut lab, &summaries, DEADLINE)?;
    let b = &mesh.agents[1];
    let interface = b.config.interface.clone();
    assert!(
        lab.ip(&b.ns, &["link", "show", &interface]).is_ok(),
        "{interface} exists while b runs"
    );

    let stopping = Instant::now();
    let (status, in_grace) = lab.stop(b.process, Duration::from_secs(10))?;
    let took = stopping.elapsed();
    assert!(in_grace, "b ignored SIGTERM for 10 s");
    assert!(status.success(), "b exits 0 after SIGTERM, got {status}");
    assert!(
        lab.ip(&b.ns, &["link", "show", &interface]).is_err(),
        "b left {interface} behind"
    );
    note(&format!(
        "[bench] {test}: b stopped {:.2} s after SIGTERM, interface removed",
        took.as_secs_f64()
    ));
    lab.finish();
    Ok(())
}
