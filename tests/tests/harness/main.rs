//! Self-tests of the end-to-end harness, without the agent: a bridge joins
//! two namespaces, the NAT routers translate the way their kind says, a TCP
//! transfer is hashed on both ends, and a lab leaves nothing behind, not
//! even when its test panics or its process crashed.
//!
//! Each test needs root and the tools in `docs/testing.md`, and runs only
//! with `KAIROS_E2E=1` (see `kairos_tests::preflight`).

use std::collections::BTreeSet;
use std::time::Duration;

use kairos_tests::command::{self, DEFAULT_LIMIT};
use kairos_tests::preflight::note;
use kairos_tests::topology::addr;
use kairos_tests::wait::{wait_until, DEFAULT_DEADLINE};
use kairos_tests::{binaries, Lab, NatKind, Result};

/// The namespaces `ip netns list` shows.
fn namespaces() -> BTreeSet<String> {
    command::run_ok("ip", &["netns", "list"], DEFAULT_LIMIT)
        .expect("ip netns list")
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn bridge_joins_two_namespaces() -> Result<()> {
    let Some(mut lab) = Lab::start("bridge_joins_two_namespaces") else {
        return Ok(());
    };
    let lan = lab.switch("lan")?;
    let a = lab.host("a")?;
    let b = lab.host("b")?;
    lab.plug(&a, &lan, "eth0", "10.99.0.11/24")?;
    lab.plug(&b, &lan, "eth0", "10.99.0.12/24")?;
    let took = wait_until("a to ping b", DEFAULT_DEADLINE, || lab.ping(&a, "10.99.0.12"))?;
    wait_until("b to ping a", DEFAULT_DEADLINE, || lab.ping(&b, "10.99.0.11"))?;
    note(&format!("bridge_joins_two_namespaces: a reached b after {took:?}"));
    // Nothing was created in the machine's own namespace.
    let host_links = command::run_ok("ip", &["-o", "link"], DEFAULT_LIMIT)?;
    assert!(
        !host_links.contains(lab.namespaces()[0].name()),
        "a lab link leaked into the host namespace"
    );
    assert!(
        !host_links.contains("p1@"),
        "a switch port leaked into the host namespace:\n{host_links}"
    );
    lab.finish();
    Ok(())
}

/// A host `a` behind a NAT router of `kind`, and a public host `p` running
/// UDP echo servers on three ports: what `p` sees `a`'s one socket as.
fn observed_through_nat(test: &str, kind: NatKind) -> Result<Option<Vec<String>>> {
    let Some(mut lab) = Lab::start(test) else {
        return Ok(None);
    };
    let public = lab.switch("pub")?;
    let lan = lab.switch("lan")?;
    let p = lab.host("p")?;
    lab.plug(&p, &public, "eth0", "198.51.100.10/24")?;
    lab.nat_router("r", &lan, "10.99.1.1/24", &public, "198.51.100.1/24", kind)?;
    let a = lab.host("a")?;
    lab.plug(&a, &lan, "eth0", "10.99.1.10/24")?;
    lab.default_route(&a, "10.99.1.1")?;
    wait_until("a to ping p through the NAT", DEFAULT_DEADLINE, || {
        lab.ping(&a, "198.51.100.10")
    })?;
    // p has no route to the private segment: the NAT is the only way back.
    assert!(
        !lab.ping(&p, "10.99.1.10")?,
        "the public host reached a private address"
    );
    let tool = binaries::e2e_net()?;
    lab.spawn(
        &p,
        "udp-echo",
        &tool,
        &["udp-echo", "30", "0.0.0.0:7000", "0.0.0.0:7001", "0.0.0.0:7002"],
        &[],
    )?;
    let out = lab.net_tool_ok(
        &a,
        &[
            "udp-ask",
            "20",
            "198.51.100.10:7000",
            "198.51.100.10:7001",
            "198.51.100.10:7002",
        ],
        Duration::from_secs(30),
    )?;
    let seen: Vec<String> = out
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect();
    assert_eq!(seen.len(), 3, "udp-ask printed {out:?}");
    for s in &seen {
        assert_eq!(
            addr(&s.replace(':', "/")),
            "198.51.100.1",
            "a's packets must come from the router: {seen:?}"
        );
    }
    note(&format!("{test}: one socket of a seen as {seen:?}"));
    lab.finish();
    Ok(Some(seen))
}

#[test]
fn nat_port_restricted_cone_maps_one_socket_to_one_port() -> Result<()> {
    let test = "nat_port_restricted_cone_maps_one_socket_to_one_port";
    let Some(seen) = observed_through_nat(test, NatKind::PortRestrictedCone)? else {
        return Ok(());
    };
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "endpoint-independent mapping expected: {seen:?}"
    );
    Ok(())
}

#[test]
fn nat_symmetric_maps_each_destination_to_its_own_port() -> Result<()> {
    let test = "nat_symmetric_maps_each_destination_to_its_own_port";
    let Some(seen) = observed_through_nat(test, NatKind::Symmetric)? else {
        return Ok(());
    };
    // Random ports: three equal ones would happen about once in 2^32 runs.
    assert!(
        seen.iter().collect::<BTreeSet<_>>().len() > 1,
        "endpoint-dependent mapping expected: {seen:?}"
    );
    Ok(())
}

#[test]
fn tcp_transfer_is_hashed_on_both_ends() -> Result<()> {
    let Some(mut lab) = Lab::start("tcp_transfer_is_hashed_on_both_ends") else {
        return Ok(());
    };
    let lan = lab.switch("lan")?;
    let a = lab.host("a")?;
    let b = lab.host("b")?;
    lab.plug(&a, &lan, "eth0", "10.99.0.11/24")?;
    lab.plug(&b, &lan, "eth0", "10.99.0.12/24")?;
    wait_until("a to ping b", DEFAULT_DEADLINE, || lab.ping(&a, "10.99.0.12"))?;
    let transfer = lab.tcp_transfer(&a, &b, "10.99.0.12", 5001, 50 << 20, Duration::from_secs(60))?;
    assert!(transfer.intact(), "{transfer:?}");
    assert_eq!(transfer.received.bytes, 50 << 20);
    note(&format!(
        "tcp_transfer_is_hashed_on_both_ends: 50 MiB at {:.0} Mbit/s on the bare veths",
        transfer.mbit_s()
    ));
    lab.finish();
    Ok(())
}

#[test]
fn dropping_a_lab_removes_its_namespaces_and_processes() -> Result<()> {
    let test = "dropping_a_lab_removes_its_namespaces_and_processes";
    if !kairos_tests::preflight::should_run(test) {
        return Ok(());
    }
    let tool = binaries::e2e_net()?;
    let mut lab = Lab::new(test)?;
    let lan = lab.switch("lan")?;
    let a = lab.host("a")?;
    lab.plug(&a, &lan, "eth0", "10.99.0.11/24")?;
    let server = lab.spawn(&a, "udp-echo", &tool, &["udp-echo", "60", "0.0.0.0:7000"], &[])?;
    let pid = lab.pid(server);
    let names: Vec<String> = lab.namespaces().iter().map(|n| n.name().to_owned()).collect();
    assert!(names.iter().all(|n| namespaces().contains(n)));
    let dir = lab.dir().to_owned();
    lab.finish();
    let left = namespaces();
    assert!(names.iter().all(|n| !left.contains(n)), "namespaces left: {left:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} still runs"
    );
    assert!(!dir.exists(), "a passed lab's directory is removed");
    Ok(())
}

#[test]
fn a_panicking_test_still_cleans_up_and_keeps_its_logs() -> Result<()> {
    let test = "a_panicking_test_still_cleans_up_and_keeps_its_logs";
    if !kairos_tests::preflight::should_run(test) {
        return Ok(());
    }
    let tool = binaries::e2e_net()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = std::thread::spawn(move || {
        let mut lab = Lab::new(test).unwrap();
        let a = lab.host("a").unwrap();
        let server = lab
            .spawn(&a, "udp-echo", &tool, &["udp-echo", "60", "0.0.0.0:7000"], &[])
            .unwrap();
        tx.send((a.name().to_owned(), lab.pid(server), lab.dir().to_owned()))
            .unwrap();
        panic!("deliberate panic inside a lab (expected in this test's output)");
    })
    .join();
    assert!(outcome.is_err(), "the thread panicked");
    let (name, pid, dir) = rx.recv().expect("the lab was made");
    assert!(!namespaces().contains(&name), "namespace {name} survived the panic");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "process {pid} survived the panic"
    );
    assert!(dir.join("udp-echo.log").exists(), "a failed lab keeps its logs");
    std::fs::remove_dir_all(&dir).ok();
    Ok(())
}

#[test]
fn a_crashed_runs_namespaces_are_swept() -> Result<()> {
    let test = "a_crashed_runs_namespaces_are_swept";
    if !kairos_tests::preflight::should_run(test) {
        return Ok(());
    }
    // A pid that certainly exited: a child we started and reaped.
    let mut child = std::process::Command::new("true")
        .spawn()
        .map_err(|e| kairos_tests::HarnessError::io("true", e))?;
    let dead = child.id();
    child.wait().ok();
    let stale = format!("kt{dead}-0-stale");
    command::run_ok("ip", &["netns", "add", &stale], DEFAULT_LIMIT)?;
    kairos_tests::lab::sweep_stale();
    let left = namespaces();
    if left.contains(&stale) {
        command::run_ok("ip", &["netns", "del", &stale], DEFAULT_LIMIT).ok();
        panic!("the stale namespace {stale} was not swept");
    }
    // Our own live labs are never swept.
    let mut lab = Lab::new(test)?;
    let a = lab.host("a")?;
    kairos_tests::lab::sweep_stale();
    assert!(namespaces().contains(a.name()), "a live lab's namespace was swept");
    lab.finish();
    Ok(())
}
