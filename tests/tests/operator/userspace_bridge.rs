//! A rootless bridge (issue 9): `kairos bridge --userspace`, run as an
//! unprivileged user made for the test, joins a two-node mesh on the LAN
//! (beacons and the mesh socket unprivileged), and a web page served on a
//! node's overlay address is fetched through its SOCKS5 proxy (by address
//! by IPv6 and by the node's host name) and through a port forward; a bigger
//! download through the forward arrives intact, and a port nobody listens
//! on is refused. `get-kubeconfig --userspace-forward`, run as that user
//! too, points the kubeconfig at the forward. A `kairos agent` with
//! `p2p.vpn.create: false`, as the same user, joins for coordination only.

use std::time::Duration;

use kairos_tests::agent::{hostname, lab_with_agent, NodeConfig};
use kairos_tests::binaries;
use kairos_tests::command::Output;
use kairos_tests::lab::{Lab, Namespace};
use kairos_tests::preflight::note;
use kairos_tests::scenario::{LanMesh, LAN_PREFIX};
use kairos_tests::usage::{ticks_per_second, Usage};
use kairos_tests::user::SystemUser;
use kairos_tests::wait::{wait_for, Poll};
use kairos_tests::{HarnessError, Result};
use rustix::process::Signal;

use crate::{missing_tool, DEADLINE};

/// The unprivileged account the bridge runs as.
const USER: &str = "kairos-e2e-rootless";
/// The page the node serves.
const PAGE: &str = "<html><body>hello from the overlay</body></html>\n";
/// The port of the page on the node's overlay address.
const PAGE_PORT: u16 = 8080;
/// The port of the big file.
const BIG_PORT: u16 = 8081;
/// The bridge's SOCKS5 proxy (on its namespace's loopback).
const SOCKS: &str = "127.0.0.1:1080";
/// The bridge's forward to the page.
const PAGE_FORWARD: &str = "127.0.0.1:18080";
/// The bridge's forward to the big file.
const BIG_FORWARD: &str = "127.0.0.1:18081";
/// The big file: enough to fill the stack's windows many times over.
const BIG_BYTES: usize = 4 << 20;
/// How long the bridge's CPU time is measured (idle, then behind a slow reader).
const CPU_WINDOW: Duration = Duration::from_secs(2);
/// How long one curl may take.
const CURL_LIMIT: Duration = Duration::from_secs(30);

fn check(what: impl Into<String>) -> HarnessError {
    HarnessError::Check(what.into())
}

/// `curl -sS args...` inside `ns`.
fn curl(lab: &Lab, ns: &Namespace, args: &[&str]) -> Result<Output> {
    let mut full = vec!["-sS", "--max-time", "15"];
    full.extend_from_slice(args);
    lab.exec(ns, "curl", &full, CURL_LIMIT)
}

/// Retries `curl args...` until it prints `want` (the first request may
/// wait for the session to come up).
fn fetch(lab: &Lab, ns: &Namespace, what: &str, args: &[&str], want: &str) -> Result<()> {
    wait_for(what, DEADLINE, || {
        let out = curl(lab, ns, args)?;
        Ok::<_, HarnessError>(if out.success() && out.stdout == want {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{}: {:.200} {}", out.status, out.stdout, out.stderr))
        })
    })
    .map(drop)
}

/// The real, effective, saved and file-system user ids of a process.
fn uids(pid: u32) -> Result<Vec<u32>> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| HarnessError::io(format!("reading /proc/{pid}/status"), e))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .ok_or_else(|| check("no Uid: line"))?;
    Ok(line[4..].split_whitespace().filter_map(|u| u.parse().ok()).collect())
}

#[test]
fn a_userspace_bridge_reaches_a_node_without_root() -> Result<()> {
    let test = "userspace_bridge";
    let Some((lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    // Made before the lab's guard binding, so it is dropped after it: the
    // lab stops the bridge first, then the account goes.
    let user = SystemUser::ensure(USER)?;
    let mut lab = lab;
    let has_curl = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let mesh = LanMesh::start(&mut lab, &kairos, 2, None)?;
    let summaries = mesh.wait_addresses(&mut lab, DEADLINE)?;
    let a = mesh.agents[0].clone();
    let a_ipv4 = summaries[0].ipv4.clone().ok_or_else(|| check("a has no IPv4"))?;
    let a_ipv6 = summaries[0].ipv6.clone().ok_or_else(|| check("a has no IPv6"))?;

    // a serves a page and a big file on its overlay address only.
    let page = lab.dir().join("page.html");
    std::fs::write(&page, PAGE).map_err(|e| HarnessError::io("writing the page", e))?;
    let big = lab.dir().join("big.bin");
    let big_bytes: Vec<u8> = (0..BIG_BYTES).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(&big, &big_bytes).map_err(|e| HarnessError::io("writing the big file", e))?;
    let net = binaries::e2e_net()?;
    let servers = [
        (format!("{a_ipv4}:{PAGE_PORT}"), &page, "page"),
        (format!("{a_ipv4}:{BIG_PORT}"), &big, "big"),
        (format!("[{a_ipv6}]:{PAGE_PORT}"), &page, "page-v6"),
    ];
    for (bind, file, label) in servers {
        let file = file.to_string_lossy().into_owned();
        lab.spawn(
            &a.ns,
            &format!("a-http-{label}"),
            &net,
            &["http-serve", &bind, "300", &file],
            &[],
        )?;
    }

    let ca = start_tls_server(&mut lab, &a, &a_ipv4)?;

    // The operator's machine on the same LAN, the bridge as a plain user.
    let op_ns = lab.host("op")?;
    lab.plug(&op_ns, &mesh.lan, "eth0", &format!("{LAN_PREFIX}.50/24"))?;
    let page_forward = format!("{PAGE_FORWARD}={a_ipv4}:{PAGE_PORT}");
    let big_forward = format!("{BIG_FORWARD}={a_ipv4}:{BIG_PORT}");
    let api_forward = format!("127.0.0.1:6443={a_ipv4}:6443");
    let bridge = lab.start_bridge_as(
        &kairos,
        &op_ns,
        "op",
        &mesh.token,
        &[
            "--userspace",
            "--socks",
            SOCKS,
            "--forward",
            &page_forward,
            "--forward",
            &big_forward,
            "--forward",
            &api_forward,
        ],
        Some(&user),
    )?;
    let own = lab.wait_address(&bridge, DEADLINE)?.value;
    let ids = uids(lab.pid(bridge.process))?;
    assert!(
        ids.len() == 4 && ids.iter().all(|&u| u == user.uid()),
        "the bridge runs as {} (uid {}), not root: Uid: {ids:?}",
        user.name(),
        user.uid()
    );
    assert_eq!(own.raw["interface"], "userspace", "{}", own.raw);
    assert_eq!(own.raw["userspace"]["socks"], SOCKS, "{}", own.raw);
    assert_eq!(
        own.raw["userspace"]["forwards"][0],
        page_forward.as_str(),
        "{}",
        own.raw
    );
    assert_ne!(own.ipv4.as_deref(), Some(a_ipv4.as_str()));
    let link = lab.exec(&op_ns, "ip", &["-o", "link", "show"], Duration::from_secs(5))?;
    assert!(!link.stdout.contains("kairos0"), "no interface: {}", link.stdout);
    let program = kairos.path().to_string_lossy().into_owned();
    let status = lab.exec_ok(
        &op_ns,
        &program,
        &["status", "--api", "127.0.0.1:8080"],
        Duration::from_secs(20),
    )?;
    assert!(
        status.contains(&format!("Proxy:   SOCKS5 {SOCKS}; forwards {page_forward}, ")),
        "kairos status shows the proxy: {status}"
    );
    // The stack in the process answers pings to the bridge's address.
    let bridge_ipv4 = own.ipv4.clone().ok_or_else(|| check("the bridge has no IPv4"))?;
    lab.wait_ping(&a, &bridge_ipv4, DEADLINE)?;

    if !has_curl {
        missing_tool("curl (apt-get install curl)", "the SOCKS5 and forward fetches");
        lab.finish();
        return Ok(());
    }
    let url = format!("http://{a_ipv4}:{PAGE_PORT}/");
    fetch(
        &lab,
        &op_ns,
        "the page over SOCKS5",
        &["--socks5-hostname", SOCKS, &url],
        PAGE,
    )?;
    let by_name = format!("http://{}:{PAGE_PORT}/", hostname("a"));
    fetch(
        &lab,
        &op_ns,
        "the page over SOCKS5 by a's host name",
        &["--socks5-hostname", SOCKS, &by_name],
        PAGE,
    )?;
    let v6_url = format!("http://[{a_ipv6}]:{PAGE_PORT}/");
    fetch(
        &lab,
        &op_ns,
        "the page over SOCKS5 by IPv6",
        &["--socks5-hostname", SOCKS, &v6_url],
        PAGE,
    )?;
    let forwarded = format!("http://{PAGE_FORWARD}/");
    fetch(&lab, &op_ns, "the page over the forward", &[&forwarded], PAGE)?;

    // A download bigger than every buffer on the way arrives whole.
    let out_file = lab.dir().join("big.out");
    let out_arg = out_file.to_string_lossy().into_owned();
    let big_url = format!("http://{BIG_FORWARD}/");
    let started = std::time::Instant::now();
    let out = curl(&lab, &op_ns, &["-o", &out_arg, &big_url])?;
    let took = started.elapsed().as_secs_f64();
    assert!(out.success(), "the big download: {}", out.stderr);
    let got = std::fs::read(&out_file).map_err(|e| HarnessError::io("reading the download", e))?;
    assert!(got == big_bytes, "{} of {BIG_BYTES} bytes, intact: false", got.len());
    note(&format!(
        "[bench] {test}: {} MiB through the forward in {took:.2} s ({:.0} Mbit/s, debug build)",
        BIG_BYTES >> 20,
        (BIG_BYTES * 8) as f64 / took / 1e6
    ));

    // Nothing listens on port 9: the proxy says refused, the client fails.
    let closed = format!("http://{a_ipv4}:9/");
    let out = curl(&lab, &op_ns, &["--socks5-hostname", SOCKS, &closed])?;
    assert!(!out.success(), "port 9 is closed: {}", out.stdout);
    // curl shows the SOCKS reply code: 5, connection refused.
    assert!(out.stderr.contains("(5)"), "refused: {}", out.stderr);
    // Outside the overlay: refused at once.
    let out = curl(
        &lab,
        &op_ns,
        &[
            "--socks5-hostname",
            SOCKS,
            &format!("http://{LAN_PREFIX}.11:{PAGE_PORT}/"),
        ],
    )?;
    assert!(!out.success(), "the underlay is not proxied: {}", out.stdout);
    assert!(out.stderr.contains("(3)"), "network unreachable: {}", out.stderr);

    // Idle, the stack sleeps until its next timer; behind a reader that
    // takes 20 kB/s of a 4 MiB download, it waits on the reader (the
    // buffers full, the far end's window closed) instead of spinning.
    let pid = lab.pid(bridge.process);
    let cpu = || -> Result<f64> {
        let before = Usage::read(pid, "lo")?;
        std::thread::sleep(CPU_WINDOW);
        Ok(Usage::read(pid, "lo")?.since(&before, ticks_per_second()).cpu_percent)
    };
    let idle = cpu()?;
    let slow = lab.spawn(
        &op_ns,
        "slow-reader",
        std::path::Path::new("curl"),
        &[
            "-sS",
            "--max-time",
            "10",
            "--limit-rate",
            "20k",
            "-o",
            "/dev/null",
            &big_url,
        ],
        &[],
    )?;
    let behind_slow_reader = cpu()?;
    lab.kill(slow)?;
    note(&format!(
        "[bench] {test}: the userspace bridge uses {idle:.1}% CPU idle, {behind_slow_reader:.1}% behind a \
         20 kB/s reader, over {CPU_WINDOW:?} each"
    ));
    assert!(idle < 10.0, "the bridge spins when idle: {idle:.1}%");
    assert!(
        behind_slow_reader < 20.0,
        "the bridge spins behind a slow reader: {behind_slow_reader:.1}%"
    );

    check_get_kubeconfig(&lab, &kairos, &user, &mesh, &op_ns, &a_ipv4, ca.as_deref())?;
    check_agent_without_interface(&mut lab, &kairos, &user, &mesh, &bridge)?;

    lab.signal(bridge.process, Signal::INT)?;
    let status = lab.wait_exit(bridge.process, Duration::from_secs(10))?;
    assert!(status.success(), "the bridge exits 0 on Ctrl-C: {status}");
    lab.finish();
    drop(user);
    Ok(())
}

/// A kubeconfig a master would publish (k3s writes the server as
/// 127.0.0.1), with `CA` for the certificate authority's data.
const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: CA
    server: https://127.0.0.1:6443
  name: default
contexts:
- context:
    cluster: default
    user: default
  name: default
current-context: default
users:
- name: default
  user:
    token: e2e-fake
";

/// A stand-in for the Kubernetes API on `a`: `openssl s_server` on
/// `a_ipv4:6443` with a self-signed certificate for that address only (as
/// k3s's names the node's address, not 127.0.0.1). Returns the
/// certificate's base64 for `certificate-authority-data`; `None` without
/// openssl.
fn start_tls_server(lab: &mut Lab, a: &kairos_tests::agent::Agent, a_ipv4: &str) -> Result<Option<String>> {
    if !std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        missing_tool("openssl", "the kubectl call through the forward");
        return Ok(None);
    }
    let dir = lab.dir().to_path_buf();
    let (cert, key) = (dir.join("k3s-cert.pem"), dir.join("k3s-key.pem"));
    let (cert, key) = (cert.to_string_lossy().into_owned(), key.to_string_lossy().into_owned());
    let san = format!("subjectAltName=IP:{a_ipv4}");
    kairos_tests::command::run_ok(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=k3s-standin",
            "-addext",
            &san,
            "-keyout",
            &key,
            "-out",
            &cert,
        ],
        Duration::from_secs(20),
    )?;
    let accept = format!("{a_ipv4}:6443");
    lab.spawn(
        &a.ns,
        "a-tls",
        std::path::Path::new("openssl"),
        &[
            "s_server", "-accept", &accept, "-cert", &cert, "-key", &key, "-www", "-quiet",
        ],
        &[],
    )?;
    let b64 = kairos_tests::command::run_ok("base64", &["-w0", &cert], Duration::from_secs(5))?;
    Ok(Some(b64.trim().to_owned()))
}

/// `get-kubeconfig --userspace-forward`, as the unprivileged user through
/// the rootless bridge's API: the server is the local forward, and TLS is
/// verified for the master's overlay address. With openssl and kubectl,
/// kubectl reaches a TLS server on the master's overlay address through
/// the forward and verifies its certificate, and without
/// `tls-server-name` the same call fails verification.
fn check_get_kubeconfig(
    lab: &Lab,
    kairos: &kairos_tests::agent::Kairos,
    user: &SystemUser,
    mesh: &LanMesh,
    op_ns: &Namespace,
    a_ipv4: &str,
    ca: Option<&str>,
) -> Result<()> {
    let program = kairos.path().to_string_lossy().into_owned();
    // Only the elected master's kubeconfig is taken: publish through it,
    // whichever node it is (the values still name a, where the stand-in
    // API server runs).
    let master = wait_for("an agent to report itself master", DEADLINE, || {
        for agent in &mesh.agents {
            let body = lab.http_get(&agent.ns, &agent.api(), "/api/summary")?;
            let summary: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if summary["role"] == "master" {
                return Ok(Poll::Ready(agent.clone()));
            }
        }
        Ok::<_, HarnessError>(Poll::Pending("no master yet".to_owned()))
    })?
    .value;
    let a = &master;
    let file = lab.dir().join("published-kubeconfig.yaml");
    let published = KUBECONFIG.replace("CA", ca.unwrap_or("ZTJlLWZha2UtY2E="));
    std::fs::write(&file, published).map_err(|e| HarnessError::io("writing the kubeconfig", e))?;
    let file = file.to_string_lossy().into_owned();
    let api = a.api();
    for args in [
        vec!["ledger", "put", "kairos", "ip-master", a_ipv4, "--api", &api],
        vec![
            "ledger",
            "put",
            "kairos",
            "master-kubeconfig",
            "--file",
            &file,
            "--api",
            &api,
        ],
    ] {
        lab.exec_ok(&a.ns, &program, &args, Duration::from_secs(20))?;
    }
    let mut as_user: Vec<String> = user.setpriv_args();
    as_user.extend(
        [
            &program,
            "get-kubeconfig",
            "--userspace-forward",
            "--api",
            "127.0.0.1:8080",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let as_user: Vec<&str> = as_user.iter().map(String::as_str).collect();
    let fetched = wait_for("get-kubeconfig --userspace-forward as the user", DEADLINE, || {
        let out = lab.exec(op_ns, "setpriv", &as_user, Duration::from_secs(20))?;
        Ok::<_, HarnessError>(if out.success() {
            Poll::Ready(out)
        } else {
            Poll::Pending(format!("{}: {}{}", out.status, out.stdout, out.stderr))
        })
    })?
    .value;
    assert!(
        fetched.stdout.contains("server: https://127.0.0.1:6443\n"),
        "the server is the forward: {}",
        fetched.stdout
    );
    assert!(
        fetched.stdout.contains(&format!("tls-server-name: {a_ipv4}\n")),
        "TLS verified for the master's address: {}",
        fetched.stdout
    );
    let hint = format!("--forward 127.0.0.1:6443={a_ipv4}:6443");
    assert!(
        fetched.stderr.contains(&hint),
        "the forward to start: {}",
        fetched.stderr
    );
    let has_kubectl = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if has_kubectl {
        let out_file = lab.dir().join("kubeconfig");
        std::fs::write(&out_file, &fetched.stdout).map_err(|e| HarnessError::io("writing the kubeconfig", e))?;
        let out = lab.exec(
            op_ns,
            "kubectl",
            &["config", "view", "--kubeconfig", &out_file.to_string_lossy()],
            Duration::from_secs(20),
        )?;
        assert!(out.success(), "kubectl config view: {}", out.stderr);
        assert!(
            out.stdout.contains(&format!("tls-server-name: {a_ipv4}")),
            "kubectl reads tls-server-name: {}",
            out.stdout
        );
        if ca.is_some() {
            let kubeconfig = out_file.to_string_lossy().into_owned();
            let raw = wait_for("kubectl through the forward", DEADLINE, || {
                let out = lab.exec(
                    op_ns,
                    "kubectl",
                    &["--kubeconfig", &kubeconfig, "get", "--raw", "/"],
                    Duration::from_secs(20),
                )?;
                Ok::<_, HarnessError>(if out.success() {
                    Poll::Ready(out.stdout)
                } else {
                    Poll::Pending(format!("{}: {}{}", out.status, out.stdout, out.stderr))
                })
            })?
            .value;
            assert!(raw.contains("s_server"), "the stand-in's page: {raw:.300}");
            // The same without tls-server-name: the certificate is not for 127.0.0.1.
            let unnamed = lab.dir().join("kubeconfig-unnamed");
            let text = fetched.stdout.replace(&format!("    tls-server-name: {a_ipv4}\n"), "");
            std::fs::write(&unnamed, text).map_err(|e| HarnessError::io("writing the kubeconfig", e))?;
            let out = lab.exec(
                op_ns,
                "kubectl",
                &["--kubeconfig", &unnamed.to_string_lossy(), "get", "--raw", "/"],
                Duration::from_secs(20),
            )?;
            assert!(
                !out.success(),
                "verification fails without tls-server-name: {}",
                out.stdout
            );
            assert!(out.stderr.contains("x509"), "a certificate error: {}", out.stderr);
            note(&format!(
                "userspace_bridge: kubectl verified the master's certificate through the forward \
                 (tls-server-name {a_ipv4}); without it: {}",
                out.stderr.lines().last().unwrap_or_default()
            ));
        }
    } else {
        missing_tool(
            "kubectl (apt-get install kubernetes-client)",
            "the kubectl check of get-kubeconfig --userspace-forward",
        );
    }
    Ok(())
}

/// `kairos agent` with `p2p.vpn.create: false`, as the unprivileged user:
/// it joins (an address from the mesh, up on the bridge) without an
/// interface.
fn check_agent_without_interface(
    lab: &mut Lab,
    kairos: &kairos_tests::agent::Kairos,
    user: &SystemUser,
    mesh: &LanMesh,
    bridge: &kairos_tests::agent::Agent,
) -> Result<()> {
    let c_ns = lab.host("c")?;
    lab.plug(&c_ns, &mesh.lan, "eth0", &format!("{LAN_PREFIX}.13/24"))?;
    let mut config = NodeConfig::new(&mesh.token);
    config.p2p_yaml = "  vpn:\n    create: false\n".to_owned();
    let c = lab.start_agent_as(kairos, &c_ns, "c", &config, Some(user))?;
    let own = lab.wait_address(&c, DEADLINE)?.value;
    assert!(own.raw["interface"].is_null(), "no interface: {}", own.raw);
    let ids = uids(lab.pid(c.process))?;
    assert!(ids.iter().all(|&u| u == user.uid()), "c runs as the user: {ids:?}");
    let link = lab.exec(&c_ns, "ip", &["-o", "link", "show"], Duration::from_secs(5))?;
    assert!(!link.stdout.contains("kairos0"), "no interface: {}", link.stdout);
    let c_id = own.node_id.clone();
    wait_for("the bridge to see c up", DEADLINE, || {
        let machines = lab.machines(bridge)?;
        Ok::<_, HarnessError>(if machines.iter().any(|m| m.node_id == c_id && m.up) {
            Poll::Ready(())
        } else {
            Poll::Pending(format!("{machines:?}"))
        })
    })?;
    Ok(())
}
