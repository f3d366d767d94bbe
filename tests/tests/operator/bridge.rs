//! A bridge joins a three-node mesh and operates it.

use std::path::Path;
use std::time::{Duration, Instant};

use kairos_tests::agent::{hostname, lab_with_agent, Agent, Kairos};
use kairos_tests::command::Output;
use kairos_tests::lab::{Lab, Namespace};
use kairos_tests::preflight::note;
use kairos_tests::scenario::{LanMesh, LAN_PREFIX};
use kairos_tests::wait::{wait_for, wait_until, Poll};
use kairos_tests::{HarnessError, Result};
use rustix::process::Signal;
use serde_json::Value;

use crate::{missing_tool, DEADLINE};

/// How long one CLI command may take.
const CLI_LIMIT: Duration = Duration::from_secs(20);

/// The kubeconfig a master would publish (k3s writes the server as
/// 127.0.0.1; `get-kubeconfig` must point it at the master's overlay address).
const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: ZTJlLWZha2UtY2E=
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
preferences: {}
users:
- name: default
  user:
    client-certificate-data: ZTJlLWZha2UtY2VydA==
    client-key-data: ZTJlLWZha2Uta2V5
";

fn check(what: impl Into<String>) -> HarnessError {
    HarnessError::Check(what.into())
}

/// Runs `kairos args...` inside `ns`.
fn kairos_cli(lab: &Lab, kairos: &Kairos, ns: &Namespace, args: &[&str]) -> Result<Output> {
    lab.exec(ns, kairos.path().to_str().unwrap_or_default(), args, CLI_LIMIT)
}

/// `kairos args...` that must succeed; its stdout.
fn kairos_ok(lab: &Lab, kairos: &Kairos, ns: &Namespace, args: &[&str]) -> Result<String> {
    let out = kairos_cli(lab, kairos, ns, args)?;
    if !out.success() {
        return Err(check(format!(
            "kairos {} failed ({}): {}{}",
            args.join(" "),
            out.status,
            out.stdout,
            out.stderr
        )));
    }
    Ok(out.stdout)
}

/// `GET path` of `agent`'s API as JSON.
fn get_json(lab: &Lab, agent: &Agent, path: &str) -> Result<Value> {
    let body = lab.http_get(&agent.ns, &agent.api(), path)?;
    serde_json::from_str(&body).map_err(|e| check(format!("{path} of {}: not JSON ({e}): {body:.300}", agent.name)))
}

/// Any request to `agent`'s API: (status code, body).
fn request(lab: &Lab, agent: &Agent, method: &str, path: &str, body: Option<&Path>) -> Result<(u16, String)> {
    let api = agent.api();
    let mut args = vec!["http", method, api.as_str(), path];
    let file;
    if let Some(b) = body {
        file = b.to_string_lossy().into_owned();
        args.push(&file);
    }
    let out = lab.net_tool_ok(&agent.ns, &args, Duration::from_secs(10))?;
    let (status_line, rest) = out.split_once('\n').unwrap_or((&out, ""));
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| check(format!("no status in {status_line:?}")))?;
    Ok((code, rest.to_owned()))
}

/// Asserts that `body` is a JSON error naming something.
fn assert_json_error(what: &str, body: &str) {
    let v: Value =
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{what}: error body is not JSON ({e}): {body}"));
    let text = v["error"].as_str().unwrap_or_default();
    assert!(!text.is_empty(), "{what}: no error text in {body}");
}

/// The value of `bucket/key` on `agent`, `None` while absent (404).
fn ledger_value(lab: &Lab, agent: &Agent, bucket: &str, key: &str) -> Result<Option<String>> {
    let (code, body) = request(lab, agent, "GET", &format!("/api/ledger/{bucket}/{key}"), None)?;
    match code {
        200 => Ok(serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))),
        404 => Ok(None),
        other => Err(check(format!("GET /api/ledger/{bucket}/{key}: HTTP {other}: {body}"))),
    }
}

#[test]
fn a_bridge_joins_a_three_node_mesh_and_operates_it() -> Result<()> {
    let test = "bridge_operates_a_mesh";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let mesh = LanMesh::start(&mut lab, &kairos, 3, None)?;
    let summaries = mesh.wait_addresses(&mut lab, DEADLINE)?;

    // The operator's laptop on the same LAN, with only the token.
    let op_ns = lab.host("op")?;
    lab.plug(&op_ns, &mesh.lan, "eth0", &format!("{LAN_PREFIX}.50/24"))?;
    let started = Instant::now();
    let bridge = lab.start_bridge(&kairos, &op_ns, "op", &mesh.token, &["--dns"])?;
    let own = lab.wait_address(&bridge, DEADLINE)?.value;
    let bridge_ipv4 = own.ipv4.clone().ok_or_else(|| check("the bridge has no IPv4"))?;
    assert_eq!(own.raw["kind"], "bridge", "{}", own.raw);
    assert!(own.raw["role"].is_null(), "a bridge has no role: {}", own.raw);
    for s in &summaries {
        assert_ne!(
            s.ipv4.as_deref(),
            Some(bridge_ipv4.as_str()),
            "the bridge took a member's address"
        );
    }

    // Every node is reachable from the laptop, and the laptop from them.
    for s in &summaries {
        for addr in [s.ipv4.as_deref(), s.ipv6.as_deref()].into_iter().flatten() {
            lab.wait_ping(&bridge, addr, DEADLINE)?;
        }
    }
    for agent in &mesh.agents {
        lab.wait_ping(agent, &bridge_ipv4, DEADLINE)?;
    }
    note(&format!(
        "[bench] {test}: bridge addressed and reaching all 3 nodes {:.2} s after its start",
        started.elapsed().as_secs_f64()
    ));

    check_machines_and_roles(&mut lab, &mesh, &bridge)?;
    check_routes(&lab, &mesh, &bridge)?;
    check_ledger_round_trip(&mut lab, &kairos, &mesh, &bridge)?;
    check_get_kubeconfig(&mut lab, &kairos, &mesh, &bridge)?;
    check_dns(&mut lab, &mesh, &bridge, &bridge_ipv4, &summaries)?;
    check_dashboard(&lab, &mesh, &bridge)?;
    check_bad_requests(&lab, &mesh, &bridge)?;

    // Ctrl-C: the bridge leaves at once, its interface goes, the members see it gone.
    let bridge_id = own.node_id.clone();
    lab.signal(bridge.process, Signal::INT)?;
    let status = lab.wait_exit(bridge.process, Duration::from_secs(10))?;
    assert!(status.success(), "the bridge exits 0 on Ctrl-C: {status}");
    let link = lab.exec(&op_ns, "ip", &["link", "show", "kairos0"], Duration::from_secs(5))?;
    assert!(!link.success(), "the interface is removed: {}", link.stdout);
    let a = mesh.agents[0].clone();
    wait_until("a to see the bridge gone", DEADLINE, || {
        lab.machines(&a)
            .map(|ms| !ms.iter().any(|m| m.node_id == bridge_id && m.up))
    })?;
    lab.finish();
    Ok(())
}

/// The bridge lists the three nodes with their names, cluster and up; the
/// election gives one master and two workers and leaves the bridge out.
fn check_machines_and_roles(lab: &mut Lab, mesh: &LanMesh, bridge: &Agent) -> Result<()> {
    let names: Vec<String> = mesh.agents.iter().map(|a| hostname(&a.name)).collect();
    wait_for(
        "the bridge to list the 3 nodes, named, up, with one master",
        DEADLINE,
        || {
            let machines = get_json(lab, bridge, "/api/machines")?;
            let list = machines.as_array().cloned().unwrap_or_default();
            let mut masters = 0;
            let mut seen = Vec::new();
            for m in &list {
                if m["up"] == true && m["network_id"] == "kairos" {
                    seen.push(m["hostname"].as_str().unwrap_or_default().to_owned());
                }
                if m["role"].as_str().is_some_and(|r| r.starts_with("master")) {
                    masters += 1;
                }
            }
            seen.sort();
            Ok::<_, HarnessError>(if seen == names && masters == 1 {
                Poll::Ready(())
            } else {
                Poll::Pending(format!("named+up {seen:?}, masters {masters}: {machines}"))
            })
        },
    )?;
    // The nodes see the bridge as a member without a role or cluster.
    let a = mesh.agents[0].clone();
    wait_for("a to list the bridge without a role", DEADLINE, || {
        let machines = get_json(lab, &a, "/api/machines")?;
        let found = machines
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["hostname"] == hostname(&bridge.name))
            .cloned();
        Ok::<_, HarnessError>(match found {
            Some(m) if m["role"].is_null() && m["kind"] == "bridge" => Poll::Ready(()),
            other => Poll::Pending(format!("{other:?}")),
        })
    })?;
    Ok(())
}

/// Every read route answers with data of this mesh.
fn check_routes(lab: &Lab, mesh: &LanMesh, bridge: &Agent) -> Result<()> {
    let ids: Vec<String> = mesh
        .agents
        .iter()
        .map(|a| lab.summary(a).map(|s| s.node_id))
        .collect::<Result<_>>()?;
    let summary = get_json(lab, bridge, "/api/summary")?;
    assert_eq!(summary["Machines"], 4, "EdgeVPN count includes self: {summary}");
    assert!(summary["NodeID"].is_string(), "{summary}");

    let nodes = get_json(lab, bridge, "/api/nodes")?;
    for id in &ids {
        assert!(
            nodes
                .as_array()
                .into_iter()
                .flatten()
                .any(|n| n["ID"] == id.as_str() && n["Online"] == true),
            "/api/nodes lacks {id} online: {nodes}"
        );
    }
    let peers = get_json(lab, bridge, "/api/peers")?;
    for id in &ids {
        let p = peers
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["node_id"] == id.as_str())
            .unwrap_or_else(|| panic!("/api/peers lacks {id}: {peers}"));
        assert_eq!(p["path"], "direct", "a LAN peer is direct: {p}");
        assert!(p["rx_bytes"].as_u64().unwrap_or(0) > 0, "traffic counted: {p}");
    }
    let peerstore = get_json(lab, bridge, "/api/peerstore")?;
    assert_eq!(peerstore.as_array().map(Vec::len), Some(3), "{peerstore}");
    for path in ["/api/users", "/api/services", "/api/dns", "/api/files"] {
        assert!(get_json(lab, bridge, path)?.is_object(), "{path} is an object");
    }
    let chain = get_json(lab, bridge, "/api/blockchain")?;
    assert!(chain["entries"].as_u64().unwrap_or(0) > 0, "{chain}");
    let ledger = get_json(lab, bridge, "/api/ledger")?;
    let info = &ledger["owner/info"];
    for id in &ids {
        assert!(
            info[id.as_str()].is_string(),
            "the ledger holds {id}'s info record: {info}"
        );
    }
    let openapi = get_json(lab, bridge, "/api/openapi.json")?;
    for path in [
        "/api/summary",
        "/api/machines",
        "/api/peers",
        "/api/ledger/{bucket}/{key}",
    ] {
        assert!(openapi["paths"][path].is_object(), "openapi.json documents {path}");
    }
    let metrics = lab.http_get(&bridge.ns, &bridge.api(), "/metrics")?;
    assert!(
        metrics.lines().any(|l| l.starts_with("kairos_") && !l.starts_with('#')),
        "Prometheus text with kairos_ metrics: {metrics:.500}"
    );
    let _ = mesh;
    Ok(())
}

/// A value put on one node is read on the others and through the bridge;
/// a delete from the bridge reaches the node that wrote it.
fn check_ledger_round_trip(lab: &mut Lab, kairos: &Kairos, mesh: &LanMesh, bridge: &Agent) -> Result<()> {
    let (a, c) = (mesh.agents[0].clone(), mesh.agents[2].clone());
    let a_api = a.api();
    kairos_ok(
        lab,
        kairos,
        &a.ns,
        &["ledger", "put", "e2e", "greeting", "hello", "--api", &a_api],
    )?;
    for reader in [&c, bridge] {
        wait_until(&format!("{} to read e2e/greeting", reader.name), DEADLINE, || {
            ledger_value(lab, reader, "e2e", "greeting").map(|v| v.as_deref() == Some("hello"))
        })?;
    }
    let out = kairos_ok(
        lab,
        kairos,
        &bridge.ns,
        &["ledger", "get", "e2e", "greeting", "--api", &bridge.api()],
    )?;
    assert_eq!(out.trim(), "hello", "kairos ledger get prints the value");
    kairos_ok(
        lab,
        kairos,
        &bridge.ns,
        &["ledger", "rm", "e2e", "greeting", "--api", &bridge.api()],
    )?;
    wait_until("a to see e2e/greeting deleted", DEADLINE, || {
        ledger_value(lab, &a, "e2e", "greeting").map(|v| v.is_none())
    })?;
    Ok(())
}

/// What a master publishes is what `get-kubeconfig` returns, pointed at
/// the master's overlay address, and `kubectl` accepts it; what another
/// member writes in its place is refused.
fn check_get_kubeconfig(lab: &mut Lab, kairos: &Kairos, mesh: &LanMesh, bridge: &Agent) -> Result<()> {
    // The elected master (no k3s here: it publishes by hand below).
    let (master, master_ipv4) = wait_for("an agent to report itself master", DEADLINE, || {
        for agent in &mesh.agents {
            let summary = get_json(lab, agent, "/api/summary")?;
            if let (Some("master"), Some(ip)) = (summary["role"].as_str(), summary["ipv4"].as_str()) {
                return Ok(Poll::Ready((agent.clone(), ip.to_owned())));
            }
        }
        Ok::<_, HarnessError>(Poll::Pending("no master yet".to_owned()))
    })?
    .value;
    let worker = mesh
        .agents
        .iter()
        .find(|a| a.name != master.name)
        .cloned()
        .ok_or_else(|| check("a mesh without a worker".to_owned()))?;
    let a_ipv4 = master_ipv4.as_str();
    let a = master;
    let file = lab.dir().join("published-kubeconfig.yaml");
    std::fs::write(&file, KUBECONFIG).map_err(|e| HarnessError::io("writing the kubeconfig", e))?;
    let file_arg = file.to_string_lossy().into_owned();
    let a_api = a.api();
    kairos_ok(
        lab,
        kairos,
        &a.ns,
        &["ledger", "put", "kairos", "ip-master", a_ipv4, "--api", &a_api],
    )?;
    let put_kubeconfig = |lab: &Lab, agent: &Agent, file: &str| {
        let api = agent.api();
        kairos_ok(
            lab,
            kairos,
            &agent.ns,
            &[
                "ledger",
                "put",
                "kairos",
                "master-kubeconfig",
                "--file",
                file,
                "--api",
                &api,
            ],
        )
    };
    put_kubeconfig(lab, &a, &file_arg)?;
    let api = bridge.api();
    let fetched = wait_for(
        "get-kubeconfig on the bridge to return the published kubeconfig",
        DEADLINE,
        || {
            let out = kairos_cli(lab, kairos, &bridge.ns, &["get-kubeconfig", "--api", &api])?;
            Ok::<_, HarnessError>(if out.success() && out.stdout.contains("client-key-data") {
                Poll::Ready(out.stdout)
            } else {
                Poll::Pending(format!("{}: {}{}", out.status, out.stdout, out.stderr))
            })
        },
    )?
    .value;
    let server = format!("server: https://{a_ipv4}:6443");
    assert!(fetched.contains(&server), "the server points at the master: {fetched}");
    assert!(!fetched.contains("127.0.0.1"), "{fetched}");
    let out_file = lab.dir().join("kubeconfig");
    std::fs::write(&out_file, &fetched).map_err(|e| HarnessError::io("writing the kubeconfig", e))?;
    // `kubectl config view` parses it (no cluster is contacted).
    let has_kubectl = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_kubectl {
        let out = lab.exec(
            &bridge.ns,
            "kubectl",
            &["config", "view", "--kubeconfig", &out_file.to_string_lossy()],
            CLI_LIMIT,
        )?;
        assert!(out.success(), "kubectl config view: {}", out.stderr);
        assert!(out.stdout.contains(&server), "{}", out.stdout);
    } else {
        missing_tool(
            "kubectl (apt-get install kubernetes-client)",
            "the kubectl check of get-kubeconfig",
        );
    }
    // A worker overwrites the kubeconfig (the bucket is open to every
    // member): refused, naming the writer, until the master's is back.
    let forged = lab.dir().join("forged-kubeconfig.yaml");
    let forged_yaml = KUBECONFIG.replace("https://127.0.0.1:6443", "https://192.0.2.66:6443");
    std::fs::write(&forged, forged_yaml).map_err(|e| HarnessError::io("writing the kubeconfig", e))?;
    put_kubeconfig(lab, &worker, &forged.to_string_lossy())?;
    let worker_id = get_json(lab, &worker, "/api/summary")?["node_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refusal = wait_for("get-kubeconfig to refuse the worker's kubeconfig", DEADLINE, || {
        let out = kairos_cli(lab, kairos, &bridge.ns, &["get-kubeconfig", "--api", &api])?;
        Ok::<_, HarnessError>(if !out.success() && out.stderr.contains("not its master") {
            Poll::Ready(out)
        } else {
            Poll::Pending(format!("{}: {}{}", out.status, out.stdout, out.stderr))
        })
    })?
    .value;
    assert!(refusal.stdout.is_empty(), "nothing on stdout: {}", refusal.stdout);
    assert!(
        refusal.stderr.contains(&worker_id[..8]),
        "the refusal names the writer {worker_id}: {}",
        refusal.stderr
    );
    put_kubeconfig(lab, &a, &file_arg)?;
    wait_for("get-kubeconfig to take the master's again", DEADLINE, || {
        let out = kairos_cli(lab, kairos, &bridge.ns, &["get-kubeconfig", "--api", &api])?;
        Ok::<_, HarnessError>(if out.success() && out.stdout.contains(&server) {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{}: {}{}", out.status, out.stdout, out.stderr))
        })
    })?;

    // Without a published kubeconfig for a network id: a clear refusal.
    let out = kairos_cli(
        lab,
        kairos,
        &bridge.ns,
        &["get-kubeconfig", "--network-id", "nope", "--api", &api],
    )?;
    assert!(!out.success(), "no kubeconfig for network id nope: {}", out.stdout);
    assert!(
        out.stderr.contains("nope"),
        "the error names the network id: {}",
        out.stderr
    );
    Ok(())
}

/// The bridge's resolver answers the members' names over the overlay, and
/// refuses the rest of the world.
fn check_dns(
    lab: &mut Lab,
    mesh: &LanMesh,
    bridge: &Agent,
    bridge_ipv4: &str,
    summaries: &[kairos_tests::api::Summary],
) -> Result<()> {
    let ask = |lab: &Lab, ns: &Namespace, name: &str, qtype: &str| {
        lab.net_tool_ok(ns, &["dns", bridge_ipv4, name, qtype], Duration::from_secs(10))
    };
    for (agent, s) in mesh.agents.iter().zip(summaries) {
        let want = s.ipv4.clone().unwrap_or_default();
        let name = format!("{}.kairos.mesh", hostname(&agent.name));
        wait_until(&format!("the bridge's DNS to answer {name}"), DEADLINE, || {
            ask(lab, &bridge.ns, &name, "A").map(|out| out.starts_with("rcode 0\n") && out.lines().any(|l| l == want))
        })?;
    }
    // From a node, over the overlay, the bare host name.
    let b = &mesh.agents[1];
    let out = ask(lab, &b.ns, &hostname("a"), "AAAA")?;
    assert!(out.starts_with("rcode 0\n"), "{out}");
    assert_eq!(out.lines().nth(1), summaries[0].ipv6.as_deref(), "{out}");
    assert_eq!(
        ask(lab, &bridge.ns, "nobody.kairos.mesh", "A")?.lines().next(),
        Some("rcode 3")
    );
    assert_eq!(
        ask(lab, &bridge.ns, "example.com", "A")?.lines().next(),
        Some("rcode 5"),
        "nothing forwarded"
    );
    Ok(())
}

/// The dashboard, rendered by headless Chromium, shows every member.
fn check_dashboard(lab: &Lab, mesh: &LanMesh, bridge: &Agent) -> Result<()> {
    let Some(chromium) = ["chromium", "chromium-browser"].into_iter().find(|c| {
        std::process::Command::new(c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    }) else {
        missing_tool("chromium (apt-get install chromium)", "the dashboard check");
        return Ok(());
    };
    let profile = lab.dir().join("chromium-profile");
    let profile_arg = format!("--user-data-dir={}", profile.display());
    let url = format!("http://{}/", bridge.api());
    let ids: Vec<String> = mesh
        .agents
        .iter()
        .map(|a| lab.summary(a).map(|s| s.node_id))
        .collect::<Result<_>>()?;
    let dom = wait_for("the dashboard to render the members", DEADLINE * 2, || {
        let out = lab.exec(
            &bridge.ns,
            chromium,
            &[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-default-apps",
                &profile_arg,
                "--virtual-time-budget=10000",
                "--dump-dom",
                &url,
            ],
            Duration::from_secs(60),
        )?;
        let dom = out.stdout;
        let all = ids.iter().all(|id| dom.contains(&format!("data-node-id=\"{id}\"")))
            && mesh.agents.iter().all(|a| dom.contains(&hostname(&a.name)))
            && dom.contains("data-loaded=\"1\"");
        Ok::<_, HarnessError>(if all {
            Poll::Ready(dom)
        } else {
            Poll::Pending(format!("{}: {:.400} ... stderr {:.300}", out.status, dom, out.stderr))
        })
    })?;
    note(&format!(
        "bridge_operates_a_mesh: the dashboard rendered {} bytes of DOM with the 3 members",
        dom.value.len()
    ));
    Ok(())
}

/// Bad requests are refused with a status and a JSON reason.
fn check_bad_requests(lab: &Lab, mesh: &LanMesh, bridge: &Agent) -> Result<()> {
    let big = lab.dir().join("big-value");
    std::fs::write(&big, vec![b'x'; 100 * 1024]).map_err(|e| HarnessError::io("writing a big value", e))?;
    let (code, body) = request(lab, bridge, "PUT", "/api/ledger/e2e/big", Some(&big))?;
    assert_eq!(code, 413, "an oversized value: {body}");
    assert_json_error("413", &body);
    let long_bucket = "b".repeat(100);
    let (code, body) = request(lab, bridge, "GET", &format!("/api/ledger/{long_bucket}/k"), None)?;
    assert_eq!(code, 400, "a bucket name over the limit: {body}");
    assert_json_error("400", &body);
    let a_id = lab.summary(&mesh.agents[0])?.node_id;
    let (code, body) = request(lab, bridge, "PUT", &format!("/api/ledger/machines/{a_id}/forged"), None)?;
    assert_eq!(code, 403, "another member's owner-only key: {body}");
    assert_json_error("403", &body);
    let (code, body) = request(lab, bridge, "GET", "/api/no-such-route", None)?;
    assert_eq!(code, 404, "{body}");
    assert_json_error("404", &body);
    let (code, body) = request(lab, bridge, "POST", "/api/summary", None)?;
    assert_eq!(code, 405, "{body}");
    // The bridge is still there after all of it.
    lab.summary(bridge)?;
    Ok(())
}
