//! End-to-end tests of the k3s bootstrap (issue 6): agents in network
//! namespaces with the k3s bootstrap on, `tests/src/bin/k3s-standin.rs` in
//! place of k3s (`KAIROS_K3S_BIN`) and a root of their own per node
//! (`KAIROS_ROOT`). The stand-in records every start (arguments and
//! `K3S_*` environment) and writes the node token and kubeconfig where k3s
//! does; the tests read that record.
//!
//! Needs root and `KAIROS_E2E=1` like the agent tests.

use std::time::Duration;

use kairos_tests::agent::{lab_with_agent, Agent, Kairos};
use kairos_tests::k3s::{self, Start};
use kairos_tests::lab::Lab;
use kairos_tests::preflight::note;
use kairos_tests::scenario::{LanMesh, LAN_PREFIX};
use kairos_tests::wait::{wait_for, Poll};
use kairos_tests::{HarnessError, Result};

/// The deadline of every wait (generous: timing goals are benchmarks).
const DEADLINE: Duration = Duration::from_secs(40);

fn check(what: impl Into<String>) -> HarnessError {
    HarnessError::Check(what.into())
}

/// The overlay IPv4 of `agent`.
fn ipv4(lab: &Lab, agent: &Agent) -> Result<String> {
    lab.summary(agent)?
        .ipv4
        .ok_or_else(|| check(format!("{} has no IPv4", agent.name)))
}

/// The latest start of k3s on each agent (`None` where it has not started).
fn latest(lab: &Lab, agents: &[Agent]) -> Result<Vec<Option<Start>>> {
    agents
        .iter()
        .map(|a| k3s::starts(lab, a).map(|s| s.last().cloned()))
        .collect()
}

/// Checks the master's command line: its own overlay address everywhere
/// and the mesh interface.
fn assert_server_args(start: &Start, ip: &str) {
    for arg in [
        format!("--node-ip={ip}"),
        format!("--advertise-address={ip}"),
        format!("--bind-address={ip}"),
        format!("--tls-san={ip}"),
        "--flannel-iface=kairos0".to_owned(),
    ] {
        assert!(start.has(&arg), "server without {arg}: {:?}", start.argv);
    }
}

/// Checks a worker's start: joins `master_ip` with `token` over the overlay.
fn assert_worker_args(start: &Start, ip: &str, master_ip: &str, token: &str) {
    assert_eq!(start.command(), "agent", "{:?}", start.argv);
    for arg in [
        format!("--node-ip={ip}"),
        "--flannel-iface=kairos0".to_owned(),
        "--with-node-id".to_owned(),
    ] {
        assert!(start.has(&arg), "agent without {arg}: {:?}", start.argv);
    }
    assert_eq!(start.env("K3S_URL"), Some(format!("https://{master_ip}:6443").as_str()));
    assert_eq!(
        start.env("K3S_TOKEN"),
        Some(token),
        "the worker got the master's node token"
    );
    assert!(
        !start.argv.iter().any(|a| a.contains(token)),
        "the token is never on the command line"
    );
}

/// Waits until every agent runs k3s, `servers` of them as servers.
fn wait_roles(lab: &mut Lab, agents: &[Agent], servers: usize) -> Result<Vec<Start>> {
    wait_roles_within(lab, agents, servers, DEADLINE)
}

/// [`wait_roles`] with its own deadline.
fn wait_roles_within(lab: &mut Lab, agents: &[Agent], servers: usize, deadline: Duration) -> Result<Vec<Start>> {
    wait_for(&format!("k3s on every node, {servers} server(s)"), deadline, || {
        let starts = latest(lab, agents)?;
        let all: Vec<Start> = starts.iter().flatten().cloned().collect();
        let n_servers = all.iter().filter(|s| s.command() == "server").count();
        Ok::<_, HarnessError>(if all.len() == agents.len() && n_servers == servers {
            Poll::Ready(all)
        } else {
            Poll::Pending(format!(
                "{:?}",
                starts
                    .iter()
                    .map(|s| s.as_ref().map(|s| s.argv.clone()))
                    .collect::<Vec<_>>()
            ))
        })
    })
    .map(|w| w.value)
}

/// Starts a mesh of `n` nodes with the bootstrap on; `configure` adjusts node i.
fn k3s_mesh(
    lab: &mut Lab,
    kairos: &Kairos,
    n: usize,
    configure: impl Fn(usize, &mut kairos_tests::agent::NodeConfig),
) -> Result<LanMesh> {
    // Stand-in paths are per node name; compute them before the closure borrows nothing of the lab.
    let names: Vec<String> = (0..n).map(kairos_tests::scenario::node_name).collect();
    let mut enabled = Vec::new();
    for name in &names {
        let mut c = kairos_tests::agent::NodeConfig::new("");
        k3s::enable(lab, name, &mut c)?;
        enabled.push(c);
    }
    LanMesh::start_with(lab, kairos, n, None, |i, config| {
        config.top_yaml += &enabled[i].top_yaml;
        config.env.extend(enabled[i].env.iter().cloned());
        configure(i, config);
    })
}

#[test]
fn three_nodes_elect_one_master_and_two_workers_join_it_over_the_overlay() -> Result<()> {
    let test = "k3s_one_master_two_workers";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mesh = k3s_mesh(&mut lab, &kairos, 3, |_, _| {})?;
    mesh.wait_addresses(&mut lab, DEADLINE)?;
    let started = std::time::Instant::now();
    let starts = wait_roles(&mut lab, &mesh.agents, 1)?;
    let master_i = starts.iter().position(|s| s.command() == "server").expect("one server");
    let master = &mesh.agents[master_i];
    let master_ip = ipv4(&lab, master)?;
    assert_server_args(&starts[master_i], &master_ip);
    assert!(!starts[master_i].has("--cluster-init"), "no HA: no --cluster-init");
    let token = k3s::node_token(&lab, master).ok_or_else(|| check("the master wrote no node token"))?;
    for (i, agent) in mesh.agents.iter().enumerate() {
        if i != master_i {
            assert_worker_args(&starts[i], &ipv4(&lab, agent)?, &master_ip, &token);
        }
    }
    note(&format!(
        "[bench] {test}: one server and two agents running {:.2} s after the mesh was addressed",
        started.elapsed().as_secs_f64()
    ));

    // An operator's bridge gets the master's kubeconfig, on the overlay.
    let op = lab.host("op")?;
    lab.plug(&op, &mesh.lan, "eth0", &format!("{LAN_PREFIX}.50/24"))?;
    let bridge = lab.start_bridge(&kairos, &op, "op", &mesh.token, &[])?;
    lab.wait_address(&bridge, DEADLINE)?;
    let api = bridge.api();
    let get_kubeconfig = |lab: &Lab| {
        lab.exec(
            &op,
            kairos.path().to_str().unwrap_or_default(),
            &["get-kubeconfig", "--api", &api],
            Duration::from_secs(20),
        )
    };
    let kubeconfig = wait_for("get-kubeconfig through the bridge", DEADLINE, || {
        let out = get_kubeconfig(&lab)?;
        Ok::<_, HarnessError>(if out.success() {
            Poll::Ready(out.stdout)
        } else {
            Poll::Pending(out.stderr)
        })
    })?
    .value;
    assert!(
        kubeconfig.contains(&format!("server: https://{master_ip}:6443")),
        "the kubeconfig points at the master's overlay address: {kubeconfig}"
    );

    // A worker overwrites the kubeconfig (the bucket is open to every
    // member): the master puts its own back, and the operator gets it.
    let worker = mesh.agents.iter().find(|a| a.name != master.name).expect("a worker");
    let forged = lab.dir().join("forged-kubeconfig");
    std::fs::write(&forged, "apiVersion: v1\nclusters: []\n")
        .map_err(|e| HarnessError::io("writing the forged kubeconfig", e))?;
    let worker_api = worker.api();
    let out = lab.exec(
        &worker.ns,
        kairos.path().to_str().unwrap_or_default(),
        &[
            "ledger",
            "put",
            "kairos",
            "master-kubeconfig",
            "--file",
            &forged.to_string_lossy(),
            "--api",
            &worker_api,
        ],
        Duration::from_secs(20),
    )?;
    assert!(out.success(), "the worker's put: {}", out.stderr);
    let overwritten = std::time::Instant::now();
    wait_for("the master to put its kubeconfig back", DEADLINE, || {
        let body = lab.http_get(&bridge.ns, &api, "/api/writers/kairos")?;
        let writers: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let k = &writers["master-kubeconfig"];
        Ok::<_, HarnessError>(
            if k["master"] == true && k["value"].as_str().is_some_and(|v| v.contains(&master_ip)) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{k}"))
            },
        )
    })?;
    note(&format!(
        "{test}: the master put its kubeconfig back {:.1} s after a worker overwrote it",
        overwritten.elapsed().as_secs_f64()
    ));
    let out = get_kubeconfig(&lab)?;
    assert!(
        out.success() && out.stdout == kubeconfig,
        "the master's again: {}{}",
        out.stdout,
        out.stderr
    );
    lab.finish();
    Ok(())
}

#[test]
fn forced_roles_are_respected() -> Result<()> {
    let test = "k3s_forced_roles";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    // c is forced master; a and b are forced workers.
    let mesh = k3s_mesh(&mut lab, &kairos, 3, |i, c| {
        c.p2p_yaml += if i == 2 { "  role: master\n" } else { "  role: worker\n" };
    })?;
    mesh.wait_addresses(&mut lab, DEADLINE)?;
    let starts = wait_roles(&mut lab, &mesh.agents, 1)?;
    assert_eq!(starts[2].command(), "server", "the forced master runs the server");
    let master_ip = ipv4(&lab, &mesh.agents[2])?;
    assert_server_args(&starts[2], &master_ip);
    let token = k3s::node_token(&lab, &mesh.agents[2]).ok_or_else(|| check("no node token"))?;
    for (start, agent) in starts.iter().zip(&mesh.agents).take(2) {
        assert_worker_args(start, &ipv4(&lab, agent)?, &master_ip, &token);
    }
    lab.finish();
    Ok(())
}

#[test]
fn two_network_ids_on_one_token_get_a_master_each_and_get_kubeconfig_picks_one() -> Result<()> {
    let test = "k3s_two_network_ids";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    // a, b in "east"; c, d in "west".
    let mesh = k3s_mesh(&mut lab, &kairos, 4, |i, c| {
        c.network_id = Some(if i < 2 { "east" } else { "west" }.to_owned());
    })?;
    mesh.wait_addresses(&mut lab, DEADLINE)?;
    let starts = wait_roles(&mut lab, &mesh.agents, 2)?;
    let mut masters = Vec::new();
    for (net, range) in [("east", 0..2), ("west", 2..4)] {
        let servers: Vec<usize> = range.clone().filter(|&i| starts[i].command() == "server").collect();
        assert_eq!(servers.len(), 1, "{net} has one master: {starts:?}");
        let m = servers[0];
        let ip = ipv4(&lab, &mesh.agents[m])?;
        let token = k3s::node_token(&lab, &mesh.agents[m]).ok_or_else(|| check("no node token"))?;
        for w in range.filter(|&i| i != m) {
            assert_worker_args(&starts[w], &ipv4(&lab, &mesh.agents[w])?, &ip, &token);
        }
        masters.push((net, ip, token));
    }
    assert_ne!(masters[0].2, masters[1].2, "separate clusters, separate tokens");

    let a = &mesh.agents[0];
    let api = a.api();
    let cli = |args: &[&str]| {
        let mut full = vec!["get-kubeconfig", "--api", api.as_str()];
        full.extend_from_slice(args);
        lab.exec(
            &a.ns,
            kairos.path().to_str().unwrap_or_default(),
            &full,
            Duration::from_secs(20),
        )
    };
    let several = wait_for("both clusters' kubeconfigs to be published", DEADLINE, || {
        let out = cli(&[])?;
        Ok::<_, HarnessError>(
            if !out.success() && out.stderr.contains("east") && out.stderr.contains("west") {
                Poll::Ready(out)
            } else {
                Poll::Pending(format!("{}: {}", out.status, out.stderr))
            },
        )
    })?
    .value;
    assert_eq!(
        several.status.code(),
        Some(2),
        "several clusters and none picked: exit 2"
    );
    for (net, ip, _) in &masters {
        let out = cli(&["--network-id", net])?;
        assert!(out.success(), "{net}: {}", out.stderr);
        assert!(
            out.stdout.contains(&format!("server: https://{ip}:6443")),
            "{net}: {}",
            out.stdout
        );
    }
    lab.finish();
    Ok(())
}

#[test]
fn ha_has_one_cluster_init_two_joining_servers_and_a_restart_never_inits_again() -> Result<()> {
    let test = "k3s_ha_three_masters";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    // master_nodes: 2 -> the cluster-init master plus two.
    let mut mesh = k3s_mesh(&mut lab, &kairos, 3, |_, c| {
        c.p2p_yaml += "  minimum_nodes: 3\n  auto:\n    ha:\n      enable: true\n      master_nodes: 2\n";
    })?;
    mesh.wait_addresses(&mut lab, DEADLINE)?;
    let starts = wait_for(
        "three servers, one of them cluster-init, two joining it",
        DEADLINE,
        || {
            let starts = latest(&lab, &mesh.agents)?;
            let all: Vec<Start> = starts.iter().flatten().cloned().collect();
            let init = all.iter().filter(|s| s.has("--cluster-init")).count();
            let joining = all
                .iter()
                .filter(|s| s.argv.iter().any(|a| a.starts_with("--server=")))
                .count();
            Ok::<_, HarnessError>(if all.len() == 3 && init == 1 && joining == 2 {
                Poll::Ready(all)
            } else {
                Poll::Pending(format!("{:?}", all.iter().map(|s| s.argv.clone()).collect::<Vec<_>>()))
            })
        },
    )?
    .value;
    let primary_i = starts
        .iter()
        .position(|s| s.has("--cluster-init"))
        .expect("one cluster-init");
    let primary = mesh.agents[primary_i].clone();
    let primary_ip = ipv4(&lab, &primary)?;
    assert_server_args(&starts[primary_i], &primary_ip);
    let token = k3s::node_token(&lab, &primary).ok_or_else(|| check("no node token"))?;
    for (i, s) in starts.iter().enumerate() {
        if i == primary_i {
            continue;
        }
        assert_eq!(s.command(), "server");
        assert!(s.has(&format!("--server=https://{primary_ip}:6443")), "{:?}", s.argv);
        assert_eq!(s.env("K3S_TOKEN"), Some(token.as_str()));
        assert_server_args(s, &ipv4(&lab, &mesh.agents[i])?);
    }

    // The primary restarts: same role, no second --cluster-init.
    let before = k3s::starts(&lab, &primary)?.len();
    let (status, graceful) = lab.stop(primary.process, Duration::from_secs(30))?;
    assert!(graceful, "the agent stops on SIGTERM ({status})");
    let mut restarted = primary.clone();
    lab.restart_agent(&kairos, &mut restarted)?;
    mesh.agents[primary_i] = restarted.clone();
    let again = wait_for("the restarted primary to start k3s again", DEADLINE, || {
        let s = k3s::starts(&lab, &restarted)?;
        Ok::<_, HarnessError>(if s.len() > before {
            Poll::Ready(s.last().cloned().expect("a start"))
        } else {
            Poll::Pending(format!("{} starts", s.len()))
        })
    })?
    .value;
    assert_eq!(again.command(), "server", "a deployed master stays master");
    assert!(
        !again.has("--cluster-init"),
        "cluster-init runs once ever: {:?}",
        again.argv
    );
    lab.finish();
    Ok(())
}

#[test]
fn with_dynamic_roles_a_dead_master_is_replaced_and_the_workers_follow() -> Result<()> {
    let test = "k3s_dynamic_roles_failover";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mut mesh = k3s_mesh(&mut lab, &kairos, 3, |_, c| {
        c.p2p_yaml += "  dynamic_roles: true\n";
        c.extra_mesh_yaml += "    master_timeout: 5\n";
    })?;
    mesh.wait_addresses(&mut lab, DEADLINE)?;
    let starts = wait_roles(&mut lab, &mesh.agents, 1)?;
    let old_i = starts.iter().position(|s| s.command() == "server").expect("one server");
    let old = mesh.agents.remove(old_i);
    // SIGKILL: no goodbye; its k3s (the stand-in) dies with it. The others
    // notice when its liveness advertisement expires (120 s in a small
    // network), then wait master_timeout.
    lab.kill(old.process)?;
    let killed = std::time::Instant::now();
    let survivors = mesh.agents.clone();
    let replaced = wait_for(
        "a surviving node to become master and the other to follow it",
        Duration::from_secs(240),
        || {
            let latest = latest(&lab, &survivors)?;
            let servers: Vec<usize> = (0..2)
                .filter(|&i| latest[i].as_ref().is_some_and(|s| s.command() == "server"))
                .collect();
            let Some(&new_i) = servers.first() else {
                return Ok::<_, HarnessError>(Poll::Pending(format!("no new server: {latest:?}")));
            };
            let new_ip = ipv4(&lab, &survivors[new_i])?;
            let worker = &latest[1 - new_i];
            let follows = worker
                .as_ref()
                .is_some_and(|s| s.env("K3S_URL") == Some(format!("https://{new_ip}:6443").as_str()));
            Ok(if servers.len() == 1 && follows {
                Poll::Ready((new_i, new_ip))
            } else {
                Poll::Pending(format!("servers {servers:?}, worker {worker:?}"))
            })
        },
    )?
    .value;
    let (new_i, _) = replaced;
    let token = k3s::node_token(&lab, &survivors[new_i]).ok_or_else(|| check("the new master wrote no token"))?;
    let worker_start = latest(&lab, &survivors)?[1 - new_i].clone().expect("a start");
    assert_eq!(
        worker_start.env("K3S_TOKEN"),
        Some(token.as_str()),
        "the worker uses the new master's token"
    );
    note(&format!(
        "[bench] {test}: master replaced and the worker following it {:.1} s after the old master was killed \
         (liveness ttl 120 s + master_timeout 5 s)",
        killed.elapsed().as_secs_f64()
    ));
    lab.finish();
    Ok(())
}

/// Every start of k3s as a server across `agents`.
fn server_starts(lab: &Lab, agents: &[Agent]) -> Result<usize> {
    let mut n = 0;
    for a in agents {
        n += k3s::starts(lab, a)?.iter().filter(|s| s.command() == "server").count();
    }
    Ok(n)
}

#[test]
fn a_partition_after_a_master_exists_never_makes_a_second_master() -> Result<()> {
    let test = "k3s_partition_after_master";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mesh = k3s_mesh(&mut lab, &kairos, 5, |_, _| {})?;
    let summaries = mesh.wait_addresses(&mut lab, DEADLINE)?;
    let starts = wait_roles(&mut lab, &mesh.agents, 1)?;
    let m = starts.iter().position(|s| s.command() == "server").expect("one server");
    let master_id = summaries[m].node_id.clone();
    // The master and one worker on one side, the three others (a majority
    // of the five) on the other.
    let w = (m + 1) % 5;
    let (small, big): (Vec<usize>, Vec<usize>) = (0..5).partition(|&i| i == m || i == w);
    let lan_ip = |i: usize| format!("{LAN_PREFIX}.{}", 11 + i);
    let big_ips: Vec<String> = big.iter().map(|&i| lan_ip(i)).collect();
    let small_ips: Vec<String> = small.iter().map(|&i| lan_ip(i)).collect();
    for &i in &small {
        lab.cut_off(
            &mesh.agents[i].ns,
            &big_ips.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
    }
    for &i in &big {
        lab.cut_off(
            &mesh.agents[i].ns,
            &small_ips.iter().map(String::as_str).collect::<Vec<_>>(),
        )?;
    }
    let cut = std::time::Instant::now();
    // The majority side stops counting the master as live once its
    // liveness advertisement expires (120 s in a small network).
    let observer = mesh.agents[big[0]].clone();
    wait_for(
        "the majority side to see the master's liveness expire",
        Duration::from_secs(200),
        || {
            let body = lab.http_get(&observer.ns, &observer.api(), "/api/ledger/owner%2Falive")?;
            let alive: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            Ok::<_, HarnessError>(if alive.is_object() && alive.get(master_id.as_str()).is_none() {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("alive: {body:.300}"))
            })
        },
    )?;
    note(&format!(
        "{test}: the majority side saw the master's liveness expire {:.1} s after the cut",
        cut.elapsed().as_secs_f64()
    ));
    // For the next 10 s (40 election gaps) no node starts a second server.
    let watch_until = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < watch_until {
        assert_eq!(
            server_starts(&lab, &mesh.agents)?,
            1,
            "a second master appeared during the partition"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for &i in &big {
        let role = lab.summary(&mesh.agents[i])?.raw["role"].clone();
        assert_eq!(role, "worker", "the majority side keeps its role: {role}");
    }
    // Heal: the mesh is whole again with the same single master.
    for &i in small.iter().chain(&big) {
        lab.heal(&mesh.agents[i].ns)?;
    }
    for &i in &big {
        let agent = mesh.agents[i].clone();
        let id = master_id.clone();
        wait_for("the majority side to see the master again", DEADLINE, || {
            let machines = lab.machines(&agent)?;
            Ok::<_, HarnessError>(if machines.iter().any(|x| x.node_id == id && x.up) {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("{machines:?}"))
            })
        })?;
    }
    assert_eq!(server_starts(&lab, &mesh.agents)?, 1, "still one master after the heal");
    assert_eq!(
        k3s::starts(&lab, &mesh.agents[m])?.len(),
        1,
        "the master's k3s never restarted"
    );
    lab.finish();
    Ok(())
}

#[test]
fn a_partition_during_the_first_election_lets_only_a_majority_elect() -> Result<()> {
    let test = "k3s_partition_first_election";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    // Four nodes meet while minimum_nodes (5) holds the election back.
    let mut mesh = k3s_mesh(&mut lab, &kairos, 4, |_, c| c.p2p_yaml += "  minimum_nodes: 5\n")?;
    let summaries = mesh.wait_addresses(&mut lab, DEADLINE)?;
    for agent in &mesh.agents {
        let agent = agent.clone();
        wait_for(
            &format!("{} to hold all four role records", agent.name),
            DEADLINE,
            || {
                let body = lab.http_get(&agent.ns, &agent.api(), "/api/ledger/owner%2Froles")?;
                let roles: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let n = roles.as_object().map_or(0, |o| o.len());
                Ok::<_, HarnessError>(if n == 4 {
                    Poll::Ready(())
                } else {
                    Poll::Pending(format!("{n} records"))
                })
            },
        )?;
    }
    assert_eq!(server_starts(&lab, &mesh.agents)?, 0, "no election below minimum_nodes");

    // Split {a, b} | {c, d} (and the node e to come, on c and d's side).
    let lan_ip = |i: usize| format!("{LAN_PREFIX}.{}", 11 + i);
    let (left, right) = (vec![0, 1], vec![2, 3, 4]);
    let right_ips: Vec<String> = right.iter().map(|&i| lan_ip(i)).collect();
    let left_ips: Vec<String> = left.iter().map(|&i| lan_ip(i)).collect();
    let right_refs: Vec<&str> = right_ips.iter().map(String::as_str).collect();
    let left_refs: Vec<&str> = left_ips.iter().map(String::as_str).collect();
    for &i in &left {
        lab.cut_off(&mesh.agents[i].ns, &right_refs)?;
    }
    for &i in &right[..2] {
        lab.cut_off(&mesh.agents[i].ns, &left_refs)?;
    }
    // The operator lowers minimum_nodes to 2 everywhere: each side now has
    // enough live nodes, but a quorum is a strict majority of the members
    // a node knows (4), so neither pair may elect.
    for i in 0..4 {
        let mut agent = mesh.agents[i].clone();
        lab.stop(agent.process, Duration::from_secs(30))?;
        agent.config.p2p_yaml = agent.config.p2p_yaml.replace("minimum_nodes: 5", "minimum_nodes: 2");
        std::fs::write(&agent.config_path, agent.config.to_yaml(&agent.state_dir))
            .map_err(|e| HarnessError::io("rewriting a config", e))?;
        lab.restart_agent(&kairos, &mut agent)?;
        mesh.agents[i] = agent;
    }
    for agent in mesh.agents.clone() {
        lab.wait_address(&agent, DEADLINE)?;
    }
    // A fifth node joins the right side only: {c, d, e} are three of the
    // five members they know, a majority; {a, b} still two of four.
    let e_ns = lab.host("e")?;
    lab.plug(&e_ns, &mesh.lan, "eth0", &format!("{}/24", lan_ip(4)))?;
    lab.cut_off(&e_ns, &left_refs)?;
    let mut e_config = kairos_tests::agent::NodeConfig::new(&mesh.token);
    k3s::enable(&lab, "e", &mut e_config)?;
    e_config.p2p_yaml += "  minimum_nodes: 2\n";
    let e = lab.start_agent(&kairos, &e_ns, "e", &e_config)?;
    let right_agents: Vec<Agent> = vec![mesh.agents[2].clone(), mesh.agents[3].clone(), e.clone()];
    // If a member of the other side holds the highest ballot, the majority
    // waits for its liveness advertisement to expire first (120 s in a
    // small network; docs/roles.md, "Liveness").
    let started = wait_roles_within(&mut lab, &right_agents, 1, Duration::from_secs(200))?;
    let master_i = started
        .iter()
        .position(|s| s.command() == "server")
        .expect("one server");
    let master_id = lab.summary(&right_agents[master_i])?.node_id;
    // The minority never ran a server.
    let left_agents: Vec<Agent> = left.iter().map(|&i| mesh.agents[i].clone()).collect();
    assert_eq!(
        server_starts(&lab, &left_agents)?,
        0,
        "a minority side elected a master"
    );

    // Heal: a and b join the majority's master as workers.
    for &i in &left {
        lab.heal(&mesh.agents[i].ns)?;
    }
    for &i in &right[..2] {
        lab.heal(&mesh.agents[i].ns)?;
    }
    lab.heal(&e_ns)?;
    let master_ip = ipv4(&lab, &right_agents[master_i])?;
    for agent in &left_agents {
        let want = format!("https://{master_ip}:6443");
        wait_for(
            &format!("{} to join the master as a worker", agent.name),
            DEADLINE,
            || {
                let last = k3s::starts(&lab, agent)?.last().cloned();
                Ok::<_, HarnessError>(match last {
                    Some(s) if s.command() == "agent" && s.env("K3S_URL") == Some(want.as_str()) => Poll::Ready(()),
                    other => Poll::Pending(format!("{other:?}")),
                })
            },
        )?;
    }
    let mut all = mesh.agents.clone();
    all.push(e);
    assert_eq!(server_starts(&lab, &all)?, 1, "one master in the healed mesh");
    let _ = (summaries, master_id);
    lab.finish();
    Ok(())
}
