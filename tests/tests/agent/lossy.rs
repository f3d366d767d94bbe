//! A lossy link (issue 8): one node's link drops 20% of UDP datagrams each
//! way from the moment the agents start. The three nodes still get unique
//! addresses and reach each other, and TCP over the overlay through the
//! lossy node completes intact in both directions (TCP repairs what the
//! overlay loses; the overlay must only not stall). Jitter, reordering and
//! duplication, which nftables cannot make, are `impaired`'s (a userspace
//! relay) and the simulator's (`firmware-sim`, `faults`).
//!
//! nftables sees a UDP GSO send, or a GRO-merged receive, as one packet, so
//! it drops such a burst whole. The lossy node runs without offloads
//! (`KAIROS_OFFLOAD=off`), so what it sends is lost datagram by datagram;
//! what the others send it with GSO is lost in bursts of up to 45
//! datagrams, which is harsher.

use std::time::Duration;

use kairos_tests::agent::lab_with_agent;
use kairos_tests::preflight::note;
use kairos_tests::scenario::LanMesh;
use kairos_tests::Result;

/// Per transfer: a few hundred segments, so losses hit it many times.
const TRANSFER_BYTES: u64 = 1 << 20;
/// Loss on the lossy node's link, each way.
const LOSS_PERCENT: u8 = 20;

#[test]
fn a_node_behind_a_lossy_link_joins_and_carries_tcp_both_ways() -> Result<()> {
    let test = "lossy_link";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mesh = LanMesh::start_with(&mut lab, &kairos, 3, None, |i, config| {
        if i == 0 {
            config.env.push(("KAIROS_OFFLOAD".into(), "off".into()));
        }
    })?;
    lab.lossy(&mesh.agents[0].ns, LOSS_PERCENT)?;
    // Losses make joins slower: a longer deadline than the clean tests'.
    let deadline = Duration::from_secs(90);
    let summaries = mesh.wait_addresses(&mut lab, deadline)?;
    let joined = mesh.wait_all_pairs(&mut lab, &summaries, deadline)?;
    note(&format!(
        "[bench] {test}: all pairs reachable {:.1} s after the first start, {LOSS_PERCENT}% UDP loss each way on one node",
        joined.as_secs_f64()
    ));
    let (lossy, clean) = (&mesh.agents[0], &mesh.agents[1]);
    let addr = |i: usize| summaries[i].ipv4.clone().expect("an address");
    let mut port = 5200;
    for (from, to, to_i) in [(lossy, clean, 1), (clean, lossy, 0)] {
        port += 1;
        let t = lab.tcp_transfer(
            &from.ns,
            &to.ns,
            &addr(to_i),
            port,
            TRANSFER_BYTES,
            Duration::from_secs(120),
        )?;
        assert!(t.intact(), "{} -> {}: damaged or incomplete: {t:?}", from.name, to.name);
        note(&format!(
            "[bench] {test}: 1 MiB {} -> {} through the lossy link in {:.2} s",
            from.name, to.name, t.received.secs
        ));
    }
    let dropped = lab.loss_drops(&lossy.ns)?;
    // The loss really happened (a 1 MiB transfer is about 800 datagrams
    // each way; a fifth of them, give or take).
    assert!(dropped > 50, "only {dropped} packets dropped: was the link lossy?");
    note(&format!(
        "[bench] {test}: {dropped} packets (datagrams or GSO/GRO bursts) dropped on the lossy link"
    ));
    lab.finish();
    Ok(())
}
