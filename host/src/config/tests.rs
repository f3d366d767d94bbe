//! The config module as a whole: whole cloud-configs in, an `AgentConfig`
//! and diagnostics out.

use kairos_core::token::NetworkToken;
use rand_core::OsRng;

use super::agent::{ApiAddress, Endpoint, LogLevel, Role};
use super::diagnostic::{Severity, Span};
use super::*;

fn token() -> String {
    NetworkToken::generate(&mut OsRng).to_string()
}

fn run(text: &str) -> Checked {
    check(&Source::from_text("node.yaml", text), &EnvOverrides::none())
}

fn run_env(text: &str, env: &[(&str, &str)]) -> Checked {
    check(&Source::from_text("node.yaml", text), &EnvOverrides::from_pairs(env))
}

fn errors(c: &Checked) -> Vec<String> {
    c.diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(ToString::to_string)
        .collect()
}

fn warnings(c: &Checked) -> Vec<String> {
    c.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .map(ToString::to_string)
        .collect()
}

#[test]
fn a_legacy_config_resolves_with_defaults() {
    let t = token();
    let c = run(&format!(
        "#cloud-config\nusers:\n- name: kairos\nkairos:\n  network_token: \"{t}\"\n  network_id: dev\n  role: master\n  \
         skip_auto: true\n  ha: {{enable: true, master_nodes: 2}}\n  hybrid: true\n"
    ));
    assert_eq!(c.diagnostics, [], "a clean file");
    let cfg = c.config.unwrap();
    assert_eq!(cfg.network_token, NetworkToken::decode(&t).unwrap());
    assert_eq!(cfg.network_id, "dev");
    assert_eq!(cfg.role, Role::Master);
    assert!(!cfg.auto.enable, "skip_auto inverts auto.enable");
    assert!(cfg.auto.ha.enable);
    assert_eq!(cfg.auto.ha.master_nodes, Some(2));
    assert!(cfg.legacy.hybrid);
    assert_eq!(cfg.mesh.listen_port, 51820);
    assert_eq!(cfg.mesh.mtu, 1368);
}

#[test]
fn a_p2p_config_resolves_every_key() {
    let t = token();
    let c = run(&format!(
        r#"#cloud-config
p2p:
  network_token: {t}
  network_id: kairos
  role: auto
  dns: true
  loglevel: debug
  minimum_nodes: 3
  disable_dht: true
  vpn: {{create: true, use: false, env: {{DHCP: false, ADDRESS: "10.2.0.30/24"}}}}
  auto: {{enable: true, ha: {{enable: false, external_db: "", master_nodes: 2}}}}
  dynamic_roles: true
  distribution: k3s
  mesh:
    listen_port: 0
    bootstrap_peers: ["203.0.113.7:51820", "seed.example.com:51820"]
    address: 10.7.0.0/16
    interface: mesh0
    mtu: 1280
    state_dir: /srv/mesh
    api: unix:///run/kairos-mesh.sock
    lan_beacons: false
k3s:
  args: [--disable=traefik]
  env: {{K3S_TOKEN: s3cret}}
k3s-agent: {{}}
"#
    ));
    assert_eq!(c.diagnostics, [], "a clean file");
    let cfg = c.config.unwrap();
    assert!(cfg.dns && cfg.disable_dht && cfg.dynamic_roles);
    assert_eq!(cfg.log_level, LogLevel::Debug);
    assert_eq!(cfg.minimum_nodes, 3);
    assert!(cfg.vpn.create && !cfg.vpn.use_for_kubernetes);
    assert_eq!(cfg.vpn.env["DHCP"], "false");
    assert!(!cfg.auto.ha.enable, "explicit enable: false wins over master_nodes");
    assert_eq!(cfg.auto.ha.external_db, None);
    assert_eq!(cfg.mesh.listen_port, 0);
    assert_eq!(
        cfg.mesh.bootstrap_peers,
        [
            Endpoint::Addr("203.0.113.7:51820".parse().unwrap()),
            Endpoint::Name {
                host: "seed.example.com".into(),
                port: 51820
            }
        ]
    );
    assert_eq!(cfg.mesh.address.to_string(), "10.7.0.0/16");
    assert_eq!(cfg.mesh.interface, "mesh0");
    assert_eq!(cfg.mesh.mtu, 1280);
    assert_eq!(cfg.mesh.state_dir, std::path::PathBuf::from("/srv/mesh"));
    assert_eq!(cfg.mesh.api, ApiAddress::Unix("/run/kairos-mesh.sock".into()));
    assert!(!cfg.mesh.lan_beacons);
    let k3s = cfg.k3s.as_ref().unwrap();
    assert_eq!(k3s.0["args"][0], "--disable=traefik");
    assert!(cfg.k3s_agent.is_some());
    let debug = format!("{cfg:?}");
    assert!(!debug.contains(&t) && !debug.contains("s3cret"), "{debug}");
}

#[test]
fn p2p_wins_over_the_legacy_block_key_by_key_with_a_warning() {
    let (a, b) = (token(), token());
    let c = run(&format!(
        "#cloud-config\nkairos:\n  network_token: {a}\n  role: master\n  network_id: dev\np2p:\n  network_token: {b}\n  role: worker\n"
    ));
    let cfg = c.config.unwrap();
    assert_eq!(cfg.network_token, NetworkToken::decode(&b).unwrap());
    assert_eq!(cfg.role, Role::Worker);
    assert_eq!(cfg.network_id, "dev", "keys only the legacy block sets still count");
    // An empty string in p2p is "not set": the legacy value stands.
    let empty = run(&format!(
        "#cloud-config\nkairos:\n  network_token: {a}\n  role: master\np2p:\n  role: \"\"\n  network_id: \"\"\n  loglevel: \"\"\n"
    ));
    assert_eq!(
        empty.config.as_ref().unwrap().role,
        Role::Master,
        "{:?}",
        empty.diagnostics
    );
    let w = warnings(&Checked {
        config: None,
        diagnostics: c.diagnostics,
    });
    assert_eq!(
        w,
        [
            "kairos: both the legacy `kairos:` block and `p2p:` are present: `p2p` wins key by key \
          (set in both: network_token, role) (line 2, column 1)"
        ]
    );
}

#[test]
fn every_error_is_reported_with_its_position() {
    let c = run(&format!(
        "#cloud-config\np2p:\n  network_token: {}\n  role: boss\n  mesh:\n    listen_port: abc\n    address: 10.1.0.0\n",
        token()
    ));
    assert!(c.config.is_none());
    assert_eq!(
        errors(&c),
        [
            "p2p.role: expected a role: master, worker or auto, found \"boss\" (line 4, column 9)",
            "p2p.mesh.listen_port: expected a port number 0-65535, found \"abc\" (line 6, column 18)",
            "p2p.mesh.address: expected an IPv4 range like 10.1.0.0/24 (missing /prefix), found \"10.1.0.0\" (line 7, column 14)",
        ]
    );
}

#[test]
fn bad_tokens_name_the_check_and_never_the_token() {
    let good = token();
    // One character changed in the middle: the checksum catches it.
    let mid = good.len() / 2;
    let swapped = if &good[mid..=mid] == "A" { "B" } else { "A" };
    let bad = format!("{}{swapped}{}", &good[..mid], &good[mid + 1..]);
    let c = run(&format!("#cloud-config\np2p:\n  network_token: \"{bad}\"\n"));
    let e = errors(&c);
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("p2p.network_token: invalid network token: "), "{e:?}");
    assert!(e[0].ends_with("(line 3, column 18)"), "{e:?}");
    assert!(e[0].contains("checksum"), "{e:?}");
    assert!(!e[0].contains(&bad[8..20]));
    let c = run("#cloud-config\np2p:\n  network_token: 12345\n");
    assert_eq!(
        errors(&c),
        ["p2p.network_token: expected a network token (a string made by `kairos generate-token`), found a number (line 3, column 18)"]
    );
}

#[test]
fn a_missing_token_is_reported_at_the_block_or_the_file() {
    let c = run("#cloud-config\np2p:\n  role: worker\n");
    assert!(
        errors(&c)[0].starts_with("p2p: missing network_token"),
        "{:?}",
        errors(&c)
    );
    let c = run("#cloud-config\nusers: []\n");
    assert!(errors(&c)[0].starts_with("no `p2p:` block"), "{:?}", errors(&c));
    assert_eq!(c.diagnostics[0].span(), Some(Span::START));
    let c = run("#cloud-config\np2:\n  network_token: x\n");
    assert!(errors(&c)[0].starts_with("p2: no `p2p:` or `kairos:` block: did you mean `p2p`?"));
    let c = run("#cloud-config\nkairos:\n  network_token: \"\"\n");
    assert!(errors(&c)[0].contains("found an empty string"), "{:?}", errors(&c));
    // An empty file, or a comment only.
    assert!(!errors(&run("")).is_empty());
    assert!(!errors(&run("#cloud-config\n")).is_empty());
}

#[test]
fn the_environment_overrides_the_file_and_errors_name_the_variable() {
    let t = token();
    let c = run_env(
        "#cloud-config\np2p:\n  role: master\n  mesh: {listen_port: 4000}\n",
        &[
            ("KAIROS_TOKEN", &t),
            ("KAIROS_ROLE", "worker"),
            ("KAIROS_BOOTSTRAP", "203.0.113.9:1"),
        ],
    );
    let cfg = c.config.unwrap();
    assert_eq!(cfg.role, Role::Worker);
    assert_eq!(cfg.mesh.listen_port, 4000);
    assert_eq!(cfg.mesh.bootstrap_peers.len(), 1);
    assert_eq!(c.diagnostics.len(), 3, "one note per variable: {:?}", c.diagnostics);

    let c = run_env(
        &format!("#cloud-config\np2p:\n  network_token: {t}\n"),
        &[("KAIROS_LISTEN_PORT", "99999"), ("KAIROS_API", "nowhere")],
    );
    assert_eq!(
        errors(&c),
        [
            "KAIROS_LISTEN_PORT: expected a port number 0-65535, found \"99999\"",
            "KAIROS_API: expected IP:PORT (e.g. 127.0.0.1:8080) or unix:///path/to.sock, found \"nowhere\"",
        ]
    );
}

#[test]
fn unknown_keys_are_warnings_with_advice() {
    let c = run(&format!(
        "#cloud-config\nkairos:\n  network_token: {}\n  mesh: {{}}\n  rol: master\np2p:\n  listen_port: 1\n  ha: {{}}\n  \
         mesh:\n    bootstrap_peer: []\n    colour: blue\n  vpn: {{craete: true}}\n",
        token()
    ));
    assert_eq!(errors(&c), Vec::<String>::new());
    let w = warnings(&c);
    let expect = [
        "kairos.mesh: unknown key `mesh` (ignored); `mesh` belongs in the `p2p:` block",
        "kairos.rol: unknown key `rol` (ignored); did you mean `role`?",
        "p2p.listen_port: unknown key `listen_port` (ignored); did you mean `p2p.mesh.listen_port`?",
        "p2p.ha: unknown key `ha` (ignored); in the `p2p:` block HA is `auto.ha`",
        "p2p.mesh.bootstrap_peer: unknown key `bootstrap_peer` (ignored); did you mean `bootstrap_peers`?",
        "p2p.mesh.colour: unknown key `colour` (ignored) (line 11",
        "p2p.vpn.craete: unknown key `craete` (ignored); did you mean `create`?",
    ];
    for e in expect {
        assert!(w.iter().any(|w| w.starts_with(e)), "{e}\nnot in {w:#?}");
    }
    assert!(c.config.is_some(), "warnings do not make a config invalid");
}

#[test]
fn other_top_level_keys_are_ignored_silently() {
    let c = run(&format!(
        "#cloud-config\nhostname: x\nstages: {{boot: [{{name: a}}]}}\ninstall: {{device: /dev/sda}}\nvpn: {{DHCP: \"true\"}}\n\
         p2p:\n  network_token: {}\n",
        token()
    ));
    assert_eq!(c.diagnostics, []);
}

#[test]
fn yaml_level_problems() {
    let c = run("#cloud-config\np2p:\n  role: a\n   x: 1\n");
    assert_eq!(c.diagnostics.len(), 1);
    assert!(c.diagnostics[0].to_string().starts_with("invalid YAML: "));
    // Found by fuzz/host's config_yaml: at the end of a file without a
    // final line break, the parsers' positions were on the line after the
    // last (serde_yaml_ng's syntax error; yaml-rust2's mark of the root).
    let c = run("#cloud-config\np2p:\n  role: master\n1");
    assert_eq!(c.diagnostics.len(), 1);
    assert_eq!(c.diagnostics[0].span(), Some(Span { line: 4, column: 2 }));
    let c = run("!@cl");
    let e = errors(&c);
    assert!(e[0].ends_with("found a value tagged !@cl (line 1, column 5)"), "{e:?}");
    // Lines end at a lone CR too, as in YAML.
    let c = run("#cloud-config\rp2p:\r  role: a\r   x: 1\r");
    let e = c.diagnostics.iter().find(|d| d.is_error()).expect("a syntax error");
    assert_eq!(e.span(), Some(Span { line: 4, column: 5 }), "{e}");
    let c = run("#cloud-config\n- a\n- b\n");
    assert_eq!(
        errors(&c),
        ["expected a mapping of keys at the top level (a cloud-config), found a list (line 2, column 1)"]
    );
    let c = run("#cloud-config\np2p: [1]\nk3s: yes\n");
    let e = errors(&c);
    assert!(
        e[0].starts_with("p2p: expected a mapping of keys, found a list"),
        "{e:?}"
    );
    assert!(e[1].starts_with("k3s: expected a mapping"), "{e:?}");
    let c = run("p2p: {}\n");
    assert!(warnings(&c)[0].contains("does not start with `#cloud-config`"));
}

#[test]
fn byte_order_marks_crlf_tabs_and_tags_are_read_as_kairos_reads_them() {
    let t = token();
    let c = run(&format!(
        "\u{feff}#cloud-config\r\np2p:\r\n  network_token: {t}\r\n  network_id: !!str 123\r\n  role:\tmaster\r\n\
         stages: !custom {{a: 1}}\r\n"
    ));
    assert_eq!(c.diagnostics, []);
    let cfg = c.config.unwrap();
    assert_eq!(cfg.network_id, "123");
    assert_eq!(cfg.role, Role::Master);
    // Positions after a BOM and CRLF line ends are still right.
    let c = run("\u{feff}#cloud-config\r\np2p:\r\n  role:\tboss\r\n");
    assert!(
        errors(&c).iter().any(|e| e.ends_with("(line 3, column 9)")),
        "{:?}",
        errors(&c)
    );
}

#[test]
fn merge_keys_and_anchors_are_followed() {
    let t = token();
    let c = run(&format!(
        "#cloud-config\ncommon: &mesh\n  listen_port: 4000\n  mtu: 1300\np2p:\n  network_token: {t}\n  mesh:\n    <<: *mesh\n    mtu: 1320\n"
    ));
    assert_eq!(errors(&c), Vec::<String>::new());
    let cfg = c.config.unwrap();
    assert_eq!(cfg.mesh.listen_port, 4000);
    assert_eq!(cfg.mesh.mtu, 1320);
}

#[test]
fn type_mismatches_give_hints() {
    let c = run(&format!(
        "#cloud-config\np2p:\n  network_token: {}\n  network_id: 42\n  dns: maybe\n  mesh:\n    listen_port: \"51820\"\n    \
         bootstrap_peers: 203.0.113.7:51820\n    lan_beacons: off\n",
        token()
    ));
    let e = errors(&c);
    assert_eq!(e.len(), 4, "{e:#?}");
    assert!(e[0].starts_with("p2p.network_id: expected a network id (a string), found 42 (write it in quotes: \"42\")"));
    assert!(e[1].starts_with("p2p.dns: expected true or false, found \"maybe\""));
    assert!(
        e[2].starts_with("p2p.mesh.listen_port: expected a port number 0-65535, found \"51820\" (remove the quotes)")
    );
    assert!(e[3].starts_with("p2p.mesh.bootstrap_peers: expected a list, e.g. [\"203.0.113.7:51820\"]"));
}

#[test]
fn load_reads_a_file_and_reports_all_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, "#cloud-config\np2p:\n  role: x\n").unwrap();
    let e = load(&path, &EnvOverrides::none()).unwrap_err();
    let text = e.to_string();
    assert!(text.contains("is invalid (2 errors)"), "{text}");
    assert!(text.contains("c.yaml:3:9: error: p2p.role"), "{text}");
    let e = load(&dir.path().join("missing.yaml"), &EnvOverrides::none()).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }));
    std::fs::write(&path, format!("#cloud-config\np2p:\n  network_token: {}\n", token())).unwrap();
    let (cfg, warnings) = load(&path, &EnvOverrides::none()).unwrap();
    assert_eq!(cfg.network_id, "kairos");
    assert!(warnings.is_empty());
}

#[test]
fn mangled_configs_never_panic() {
    // A deterministic xorshift; each round damages a good config a little
    // (byte flips, YAML punctuation, cut short) and checks it.
    let good = format!(
        "#cloud-config\nkairos: &k\n  network_token: {}\n  ha: {{enable: true}}\np2p:\n  <<: *k\n  vpn: {{env: {{A: 1}}}}\n  \
         mesh:\n    bootstrap_peers: [\"203.0.113.7:51820\", *k]\n    ? [complex, key]\n    : 1\n    *k : x\n",
        token()
    );
    let punct = b":-[]{},&*!?|>'\"#%@` \n\t";
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..3000 {
        let mut bytes = good.clone().into_bytes();
        for _ in 0..(next() % 4 + 1) {
            let i = (next() as usize) % bytes.len();
            bytes[i] = if next() % 2 == 0 {
                punct[(next() as usize) % punct.len()]
            } else {
                next() as u8
            };
        }
        if next() % 5 == 0 {
            bytes.truncate((next() as usize) % bytes.len());
        }
        let source = Source::from_reader("fuzz", &bytes[..]).unwrap();
        let c = check(&source, &EnvOverrides::none());
        assert_eq!(c.config.is_some(), c.tally().errors == 0);
    }
}
