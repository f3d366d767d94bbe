//! The data path (issue 7): interface offloads (TSO, checksums), UDP GSO
//! and GRO, and the fallback without them. Two nodes on a LAN, one with
//! offloads and one without (`KAIROS_OFFLOAD=off`), so both paths run and
//! each must understand the other: TCP in both directions over IPv4 and
//! IPv6 arrives intact, the summary says which node batches, and the
//! counters in `/metrics` show the batching really happened.

use std::time::Duration;

use kairos_tests::agent::lab_with_agent;
use kairos_tests::preflight::note;
use kairos_tests::scenario::LanMesh;
use kairos_tests::{HarnessError, Result};

use crate::DEADLINE;

/// Per transfer: enough for TCP to build full-size super-packets.
const TRANSFER_BYTES: u64 = 16 << 20;

/// The value of an unlabelled counter in a `/metrics` text.
fn counter(metrics: &str, name: &str) -> Result<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| HarnessError::Check(format!("no counter {name} in /metrics")))
}

#[test]
fn offloaded_and_plain_nodes_carry_tcp_both_ways_intact_and_batch_where_they_can() -> Result<()> {
    let test = "datapath_offloads";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mesh = LanMesh::start_with(&mut lab, &kairos, 2, None, |i, config| {
        if i == 1 {
            config.env.push(("KAIROS_OFFLOAD".into(), "off".into()));
        }
    })?;
    let summaries = mesh.wait_addresses(&mut lab, DEADLINE)?;
    mesh.wait_all_pairs(&mut lab, &summaries, DEADLINE)?;
    let (fast, plain) = (&mesh.agents[0], &mesh.agents[1]);

    let offload = |i: usize| {
        summaries[i].raw["offload"]["interface"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(offload(0), "on", "the first node makes its interface with offloads");
    assert!(
        offload(1).starts_with("off: turned off"),
        "the second node says why it has none: {:?}",
        offload(1)
    );

    // Offloads come with a longer transmit queue for bursts of super-packets.
    let name = summaries[0]
        .interface
        .clone()
        .ok_or_else(|| HarnessError::Check("no interface in the summary".into()))?;
    let link = lab.ip(&fast.ns, &["link", "show", &name])?;
    assert!(link.contains("qlen 5000"), "transmit queue of {name}: {link}");

    let addr = |i: usize, v6: bool| -> Result<String> {
        let s = &summaries[i];
        let a = if v6 { s.ipv6.clone() } else { s.ipv4.clone() };
        a.ok_or_else(|| HarnessError::Check(format!("node {i} has no overlay address (v6 {v6})")))
    };
    let mut port = 5100;
    for (from, to, to_i) in [(fast, plain, 1), (plain, fast, 0)] {
        for v6 in [false, true] {
            let target = addr(to_i, v6)?;
            port += 1;
            let t = lab.tcp_transfer(
                &from.ns,
                &to.ns,
                &target,
                port,
                TRANSFER_BYTES,
                Duration::from_secs(120),
            )?;
            assert!(
                t.intact(),
                "{} -> {} over {target}: damaged or incomplete: {t:?}",
                from.name,
                to.name
            );
            note(&format!(
                "[bench] {test}: 16 MiB {} -> {} over {} in {:.2} s, {:.0} Mbit/s (debug build)",
                from.name,
                to.name,
                if v6 { "IPv6" } else { "IPv4" },
                t.received.secs,
                t.mbit_s()
            ));
        }
    }

    let fast_m = lab.http_get(&fast.ns, &fast.api(), "/metrics")?;
    let plain_m = lab.http_get(&plain.ns, &plain.api(), "/metrics")?;
    // The offloaded node sent super-packets as GSO runs, and merged what it
    // received into fewer interface writes.
    let tso = counter(&fast_m, "kairos_tso_packets_total")?;
    let segs = counter(&fast_m, "kairos_tso_segments_total")?;
    let gso = counter(&fast_m, "kairos_gso_sends_total")?;
    let gro_writes = counter(&fast_m, "kairos_gro_writes_total")?;
    let gro_segs = counter(&fast_m, "kairos_gro_segments_total")?;
    note(&format!(
        "{test}: offloaded node: {tso} super-packets into {segs} segments, {gso} GSO sends; \
         {gro_segs} segments merged into {gro_writes} writes"
    ));
    assert!(
        tso > 0 && segs > 2 * tso,
        "super-packets were read and cut: {tso} into {segs}"
    );
    assert!(gso > 0, "runs of datagrams left in single sends");
    assert!(
        gro_writes > 0 && gro_segs > 2 * gro_writes,
        "received segments were merged: {gro_segs} into {gro_writes}"
    );
    assert_eq!(counter(&fast_m, "kairos_offload_errors_total")?, 0);
    // The plain node did none of it.
    assert_eq!(counter(&plain_m, "kairos_tso_packets_total")?, 0);
    assert_eq!(counter(&plain_m, "kairos_gro_writes_total")?, 0);
    lab.finish();
    Ok(())
}
