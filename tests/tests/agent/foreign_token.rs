//! A node with a different token on the same LAN joins nothing.

use std::time::Duration;

use kairos_tests::agent::{lab_with_agent, NodeConfig};
use kairos_tests::preflight::note;
use kairos_tests::wait::{holds_for, Poll};
use kairos_tests::{HarnessError, Result};

use crate::DEADLINE;

/// How long the outsider is watched after the members met (several LAN
/// beacon intervals).
const WATCH: Duration = Duration::from_secs(6);

#[test]
fn a_node_with_another_token_joins_nothing_and_learns_no_member() -> Result<()> {
    let test = "foreign_token";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let token = kairos.generate_token()?;
    let other_token = kairos.generate_token()?;
    let lan = lab.switch("lan")?;
    let mut agents = Vec::new();
    for (i, (name, token)) in [("a", &token), ("b", &token), ("x", &other_token)]
        .into_iter()
        .enumerate()
    {
        let ns = lab.host(name)?;
        lab.plug(&ns, &lan, "eth0", &format!("10.99.0.{}/24", 11 + i))?;
        agents.push(lab.start_agent(&kairos, &ns, name, &NodeConfig::new(token))?);
    }
    let (a, b, x) = (agents[0].clone(), agents[1].clone(), agents[2].clone());
    // The two members meet on this LAN: beacons flow here.
    lab.wait_address(&a, DEADLINE)?;
    let sb = lab.wait_address(&b, DEADLINE)?.value;
    lab.wait_ping(&a, sb.ipv4.as_deref().unwrap_or_default(), DEADLINE)?;
    let sx = lab.wait_for_api(&x, DEADLINE)?;

    holds_for(
        &format!("x to know no member of the other network for {WATCH:?}"),
        WATCH,
        || {
            let machines = lab.machines(&x)?;
            let known: Vec<&str> = machines
                .iter()
                .map(|m| m.node_id.as_str())
                .filter(|id| *id != sx.node_id)
                .collect();
            let summary = lab.summary(&x)?;
            Ok::<_, HarnessError>(if !known.is_empty() {
                Poll::Pending(format!("x lists {known:?}"))
            } else if summary.peers_up.unwrap_or(0) > 0 {
                Poll::Pending(format!("x has peers up: {}", summary.raw))
            } else {
                Poll::Ready(())
            })
        },
    )?;
    for member in [&a, &b] {
        let machines = lab.machines(member)?;
        assert!(
            machines.iter().all(|m| m.node_id != sx.node_id),
            "{} lists the outsider x: {machines:?}",
            member.name
        );
    }
    note(&format!(
        "{test}: x ({}) saw no member of a/b's network for {WATCH:?}",
        sx.node_id
    ));
    lab.finish();
    Ok(())
}
