//! A path MTU smaller than expected (issue 8): once the mesh is up, both
//! nodes' underlay links drop to an MTU of 1300 bytes, below the 1368-byte
//! overlay packets plus their 52 bytes of UDP, IP and transport headers.
//! The agent lets outer datagrams be fragmented (no DF bit; see
//! `host/src/agent/udp.rs`, `allow_fragments`), so TCP over the overlay
//! still completes intact both ways instead of stalling on datagrams that
//! no longer fit (a black hole).

use std::time::Duration;

use kairos_tests::agent::lab_with_agent;
use kairos_tests::preflight::note;
use kairos_tests::scenario::LanMesh;
use kairos_tests::Result;

use crate::DEADLINE;

/// The underlay MTU the links drop to.
const SMALL_MTU: &str = "1300";
/// Per transfer: full-size segments all along.
const TRANSFER_BYTES: u64 = 4 << 20;

#[test]
fn tcp_flows_when_the_underlay_mtu_shrinks_below_the_overlay_packets() -> Result<()> {
    let test = "small_mtu";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mesh = LanMesh::start(&mut lab, &kairos, 2, None)?;
    let summaries = mesh.wait_addresses(&mut lab, DEADLINE)?;
    mesh.wait_all_pairs(&mut lab, &summaries, DEADLINE)?;
    for agent in &mesh.agents {
        lab.ip(&agent.ns, &["link", "set", "eth0", "mtu", SMALL_MTU])?;
    }
    let mut port = 5300;
    for (from, to) in [(0, 1), (1, 0)] {
        port += 1;
        let target = summaries[to].ipv4.clone().expect("an address");
        let (a, b) = (&mesh.agents[from], &mesh.agents[to]);
        let t = lab.tcp_transfer(&a.ns, &b.ns, &target, port, TRANSFER_BYTES, Duration::from_secs(60))?;
        assert!(
            t.intact(),
            "{} -> {} with a {SMALL_MTU}-byte underlay MTU: {t:?}",
            a.name,
            b.name
        );
        note(&format!(
            "[bench] {test}: 4 MiB {} -> {} over a {SMALL_MTU}-byte underlay MTU in {:.2} s",
            a.name, b.name, t.received.secs
        ));
    }
    lab.finish();
    Ok(())
}
