//! `kairos demo` end to end: two peers on loopback UDP complete the
//! handshake and move checked packets both ways.

use std::process::Command;

fn kairos() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kairos"));
    c.env_remove("KAIROS_TOKEN");
    c
}

#[test]
fn demo_runs_a_tunnel_on_loopback() {
    let out = kairos()
        .args(["demo", "--pings", "25", "--packets", "500", "--size", "1200"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "demo failed\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("handshake "), "{stdout}");
    assert!(stdout.contains("echo      25/25 replies"), "{stdout}");
    assert!(stdout.contains("bulk      500 packets x 1200 B"), "{stdout}");
    assert!(stdout.contains("Established { initiator: true }"), "{stdout}");
    // a sent 1 keepalive + 25 pings + 500 bulk packets; b received them all.
    assert!(stdout.contains("received 526 packets"), "{stdout}");
    assert!(stdout.contains("dropped 0"), "{stdout}");
}

#[test]
fn demo_uses_the_given_token_and_refuses_a_bad_one() {
    let token = kairos().arg("generate-token").output().unwrap();
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).unwrap();
    let token = token.trim();
    let id = kairos().args(["token", "inspect", "--json", token]).output().unwrap();
    let id: serde_json::Value = serde_json::from_slice(&id.stdout).unwrap();
    let network_id = id["network_id"].as_str().unwrap().to_string();

    let out = kairos()
        .args(["demo", "--pings", "1", "--packets", "0"])
        .env("KAIROS_TOKEN", token)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("network   {network_id}")), "{stdout}");

    let mut bad: Vec<char> = token.chars().collect();
    let mid = bad.len() / 2;
    bad[mid] = if bad[mid] == 'A' { 'B' } else { 'A' };
    let bad: String = bad.into_iter().collect();
    let out = kairos().args(["demo", "--token", &bad]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("checksum"));
}
