//! `kairos validate` through the built binary: what an operator, an editor
//! or a CI job sees on stdout and in the exit code, for config files
//! written to a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// Runs `kairos validate ARGS` with no KAIROS_* variable set, plus `env`.
fn validate(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairos"));
    cmd.arg("validate").args(args);
    for var in [
        "KAIROS_TOKEN",
        "KAIROS_NETWORK_ID",
        "KAIROS_ROLE",
        "KAIROS_LISTEN_PORT",
        "KAIROS_BOOTSTRAP",
        "KAIROS_STATE_DIR",
        "KAIROS_API",
        "KAIROS_INTERFACE",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kairos runs");
    // The child may exit before reading everything (e.g. a file it refuses).
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

/// A fresh token from the binary itself.
fn token() -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_kairos"))
        .arg("generate-token")
        .output()
        .unwrap();
    assert!(o.status.success());
    stdout(&o).trim().to_owned()
}

struct Files(TempDir);

impl Files {
    fn new() -> Self {
        Files(tempfile::tempdir().unwrap())
    }

    fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let p = self.0.path().join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

fn arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_good_legacy_config_is_valid() {
    let f = Files::new();
    let p = f.write(
        "legacy.yaml",
        format!(
            "#cloud-config\nhostname: node-{{{{ trunc 4 .MachineID }}}}\nusers:\n- name: kairos\n  passwd: kairos\n\
             kairos:\n  network_token: \"{}\"\n  network_id: dev\n  role: master\n",
            token()
        ),
    );
    let o = validate(&[arg(&p)], &[], b"");
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), format!("{}: ok\n", p.display()));
    assert_eq!(stderr(&o), "");
}

#[test]
fn a_good_p2p_config_is_valid() {
    let f = Files::new();
    let p = f.write(
        "p2p.yaml",
        format!(
            "#cloud-config\np2p:\n  network_token: {}\n  role: auto\n  minimum_nodes: 2\n  vpn: {{create: true, use: true}}\n  \
             auto: {{enable: true, ha: {{enable: false, master_nodes: 2}}}}\n  dynamic_roles: false\n  mesh:\n    \
             listen_port: 51820\n    bootstrap_peers: [\"203.0.113.7:51820\"]\n    address: 10.1.0.0/24\n    \
             interface: kairos0\n    mtu: 1368\n    state_dir: /var/lib/kairos-mesh\n    api: 127.0.0.1:8080\n    \
             lan_beacons: true\nk3s:\n  args: [--disable=traefik]\n",
            token()
        ),
    );
    let o = validate(&[arg(&p)], &[], b"");
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o), format!("{}: ok\n", p.display()));
}

#[test]
fn three_errors_are_reported_together_with_lines_and_columns() {
    let f = Files::new();
    let p = f.write(
        "bad.yaml",
        format!(
            "#cloud-config\np2p:\n  network_token: {}\n  role: boss\n  mesh:\n    listen_port: abc\n    \
             bootstrap_peers:\n      - 203.0.113.7:51820\n      - 203.0.113.8\n",
            token()
        ),
    );
    let o = validate(&[arg(&p)], &[], b"");
    assert_eq!(code(&o), 2, "{}", stdout(&o));
    let file = p.display().to_string();
    assert_eq!(
        stdout(&o),
        format!(
            "{file}:4:9: error: p2p.role: expected a role: master, worker or auto, found \"boss\"\n\
             {file}:6:18: error: p2p.mesh.listen_port: expected a port number 0-65535, found \"abc\"\n\
             {file}:9:9: error: p2p.mesh.bootstrap_peers[1]: expected HOST:PORT, e.g. 203.0.113.7:51820 or \
             [2001:db8::1]:51820, found \"203.0.113.8\"\n\
             {file}: 3 errors\n"
        )
    );
    assert_eq!(stderr(&o), format!("error: {file} is invalid: 3 errors\n"));
}

#[test]
fn an_unknown_key_is_a_warning_with_a_suggestion() {
    let f = Files::new();
    let p = f.write(
        "typo.yaml",
        format!(
            "#cloud-config\np2p:\n  network_token: {}\n  mesh:\n    lsiten_port: 4000\n",
            token()
        ),
    );
    let o = validate(&[arg(&p)], &[], b"");
    assert_eq!(code(&o), 0, "warnings do not fail: {}", stdout(&o));
    assert_eq!(
        stdout(&o),
        format!(
            "{0}:5:5: warning: p2p.mesh.lsiten_port: unknown key `lsiten_port` (ignored); did you mean `listen_port`?\n\
             {0}: ok, 1 warning\n",
            p.display()
        )
    );
}

#[test]
fn a_yaml_bomb_is_refused() {
    // Billion laughs: 10^9 strings once expanded. The process must finish
    // (quickly, without eating memory) with an error.
    let mut bomb = String::from("#cloud-config\na0: &a0 [\"lol\"]\n");
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
    }
    bomb.push_str("p2p:\n  network_token: x\n  mesh: {bootstrap_peers: *a9}\n");
    let f = Files::new();
    let p = f.write("bomb.yaml", bomb);
    let o = validate(&[arg(&p)], &[], b"");
    assert_eq!(code(&o), 2);
    let out = stdout(&o);
    assert!(
        out.contains("error: the document expands to more than 100000 nodes"),
        "{out}"
    );
    assert!(out.contains("alias bomb"), "{out}");
}

#[test]
fn files_that_are_not_yaml_configs_are_refused() {
    let f = Files::new();
    let binary = f.write("kairos.bin", [0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0xff, 0xfe, 0, 0]);
    let o = validate(&[arg(&binary)], &[], b"");
    assert_eq!(code(&o), 2);
    assert!(
        stdout(&o).starts_with(&format!("{}:1:9: error: the file is not UTF-8 text", binary.display())),
        "{}",
        stdout(&o)
    );

    let broken = f.write("broken.yaml", "#cloud-config\np2p: {network_token: [x\n");
    let o = validate(&[arg(&broken)], &[], b"");
    assert_eq!(code(&o), 2);
    assert!(stdout(&o).contains(": error: invalid YAML: "), "{}", stdout(&o));

    let script = f.write("script.sh", "#!/bin/sh\necho hello\n");
    let o = validate(&[arg(&script)], &[], b"");
    assert_eq!(code(&o), 2);
    let out = stdout(&o);
    assert!(
        out.contains("warning: the file does not start with `#cloud-config`"),
        "{out}"
    );
    assert!(
        out.contains("error: expected a mapping of keys at the top level"),
        "{out}"
    );

    let huge = f.write("huge.yaml", vec![b'#'; 2 * 1024 * 1024]);
    let o = validate(&[arg(&huge)], &[], b"");
    assert_eq!(code(&o), 2);
    assert!(
        stdout(&o).contains("error: the file is larger than 1024 KiB"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_missing_file_is_an_io_failure() {
    let f = Files::new();
    let missing = f.0.path().join("nope.yaml");
    let o = validate(&[arg(&missing)], &[], b"");
    assert_eq!(code(&o), 1, "cannot read: exit 1, as for any I/O failure");
    assert_eq!(stdout(&o), "");
    let err = stderr(&o);
    assert!(
        err.starts_with(&format!("error: cannot read {}: ", missing.display())),
        "{err}"
    );
}

#[test]
fn reads_stdin_and_prints_json() {
    let config = format!(
        "#cloud-config\np2p:\n  network_token: {}\n  mesh: {{mtu: 100}}\n",
        token()
    );
    let o = validate(&["-", "--json"], &[], config.as_bytes());
    assert_eq!(code(&o), 2);
    let j: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(j["file"], "<stdin>");
    assert_eq!(j["valid"], false);
    assert_eq!(j["errors"], 1);
    let d = &j["diagnostics"][0];
    assert_eq!(d["severity"], "error");
    assert_eq!((d["line"].as_u64(), d["column"].as_u64()), (Some(4), Some(15)));
    assert_eq!(d["path"], "p2p.mesh.mtu");
    assert!(d["message"].as_str().unwrap().starts_with("expected an MTU from 1280"));

    let o = validate(&["-"], &[], config.replace("mtu: 100", "mtu: 1368").as_bytes());
    assert_eq!(code(&o), 0);
    assert_eq!(stdout(&o), "<stdin>: ok\n");
}

#[test]
fn environment_overrides_are_checked_and_named() {
    let f = Files::new();
    let p = f.write("env.yaml", "#cloud-config\np2p:\n  role: worker\n");
    let t = token();
    let o = validate(&[arg(&p)], &[("KAIROS_TOKEN", &t), ("KAIROS_LISTEN_PORT", "http")], b"");
    assert_eq!(code(&o), 2);
    let out = stdout(&o);
    assert!(
        out.contains("<environment>: note: KAIROS_TOKEN: overrides p2p.network_token\n"),
        "{out}"
    );
    assert!(
        out.contains("<environment>: error: KAIROS_LISTEN_PORT: expected a port number 0-65535, found \"http\"\n"),
        "{out}"
    );
    assert!(!out.contains(&t), "the token is never printed");

    let o = validate(&[arg(&p)], &[("KAIROS_TOKEN", &t)], b"");
    assert_eq!(code(&o), 0, "{}", stdout(&o));

    // --no-env checks the file alone: it has no token.
    let o = validate(&[arg(&p), "--no-env"], &[("KAIROS_TOKEN", &t)], b"");
    assert_eq!(code(&o), 2);
    assert!(
        stdout(&o).contains(":2:1: error: p2p: missing network_token"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn a_bad_token_is_never_echoed() {
    let t = token();
    let damaged = format!("{}{}", &t[..t.len() - 6], "AAAAAA");
    let f = Files::new();
    let p = f.write(
        "tok.yaml",
        format!("#cloud-config\nkairos:\n  network_token: {damaged}\n"),
    );
    for args in [vec![arg(&p)], vec![arg(&p), "--json"]] {
        let o = validate(&args, &[], b"");
        assert_eq!(code(&o), 2);
        let all = stdout(&o) + &stderr(&o);
        assert!(all.contains("invalid network token: "), "{all}");
        assert!(!all.contains(&damaged[10..30]), "{all}");
    }
}

#[test]
fn help_explains_the_format_and_exit_codes() {
    let o = validate(&["--help"], &[], b"");
    assert_eq!(code(&o), 0);
    let help = stdout(&o);
    for needle in [
        "FILE:LINE:COLUMN",
        "--json",
        "--no-env",
        "KAIROS_TOKEN",
        "Exit status",
        "`-` to read stdin",
    ] {
        assert!(help.contains(needle), "{needle} missing from:\n{help}");
    }
}
