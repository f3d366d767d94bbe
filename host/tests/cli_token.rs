//! End-to-end tests of the token commands through the built `kairos` binary:
//! what an operator or a script sees on stdout, stderr and in the exit code.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// The example EdgeVPN token of KAIROS-COMPAT.md: padded standard base64 of its YAML.
const LEGACY_TOKEN: &str = "b3RwOgogIGRodDoKICAgIGludGVydmFsOiA5MDAwCiAgICBrZXk6IE5UczNRaERxOHYyU1dRdmJZeFl6R1VNS3NtR1VDeGhHcUk5QndJUnZQRFkKICAgIGxlbmd0aDogNDMKICBjcnlwdG86CiAgICBpbnRlcnZhbDogOTAwMAogICAga2V5OiBrR212VmtOMVE1QjBQcGRpUDhtSjhXUUFzS2hyUVV6ejNSd1FSaEd4UnIwCiAgICBsZW5ndGg6IDQzCnJvb206IDdqT21ZcEswUHRjNW02RlZxOWRuQmJuQTNWZ1pwNFhlNkJnWWJKMWhTWHQKcmVuZGV6dm91czogUm4zWVRNZTRBdlphN3ZnMnFMUjJnWlJMcFc4WlM1dzRqN1RpTWhQZFdibgptZG5zOiBiRDZzRTJQcEh3OGVMb2FKUUNJME5QQmlVamFGbnZNS1pPZ3doWFhiS3dOCm1heF9tZXNzYWdlX3NpemU6IDIwOTcxNTIwCg==";
/// Its network id, as pinned by the core's legacy known-answer test.
const LEGACY_NETWORK_ID: &str = "259210dc97c9824d3c207bcfebfd294f";

const CHECKSUM_ERROR: &str = "error: token checksum does not match (was it copied completely?)\n";

/// Runs `kairos ARGS` with KAIROS_TOKEN unset unless `env` sets it, feeding `stdin`.
fn kairos(args: &[&str], stdin: &str, env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kairos"));
    cmd.args(args)
        .env_remove("KAIROS_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(v) = env {
        cmd.env("KAIROS_TOKEN", v);
    }
    let mut child = cmd.spawn().expect("kairos binary runs");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

/// A fresh token with hints, exactly as `generate-token` printed it.
fn generate() -> String {
    let o = kairos(
        &[
            "generate-token",
            "--bootstrap",
            "203.0.113.7:51820",
            "--overlay",
            "10.1.0.0/24",
        ],
        "",
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "nothing but the token is printed");
    stdout(&o)
}

/// The `network id:` line of the text output.
fn network_id(inspect_out: &str) -> &str {
    inspect_out
        .lines()
        .find_map(|l| l.strip_prefix("network id:"))
        .unwrap()
        .trim()
}

#[test]
fn generate_prints_one_token_line() {
    let out = generate();
    assert!(out.ends_with('\n'));
    let token = out.trim_end_matches('\n');
    assert!(!token.contains(char::is_whitespace), "{out:?}");
    assert!(token.starts_with("kairos_"), "{token}");
    assert_ne!(generate(), out, "each run makes a new secret");
}

#[test]
fn inspect_shows_the_fields_but_not_the_secret() {
    let token = generate();
    let token = token.trim();
    let o = kairos(&["token", "inspect", token], "", None);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("version:    1\n"), "{text}");
    assert!(text.contains("bootstrap:  203.0.113.7:51820\n"), "{text}");
    assert!(text.contains("overlay:    10.1.0.0/24\n"), "{text}");
    let id = network_id(&text);
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    assert!(
        !text.contains(&token["kairos_".len()..][..12]),
        "the secret leaked: {text}"
    );
}

#[test]
fn inspect_json() {
    let token = generate();
    let o = kairos(&["token", "inspect", "--json", token.trim()], "", None);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stdout is one JSON value");
    assert_eq!(v["version"], "1");
    assert_eq!(v["legacy"], false);
    assert_eq!(v["bootstrap"], serde_json::json!(["203.0.113.7:51820"]));
    assert_eq!(v["overlay"], "10.1.0.0/24");
    assert_eq!(v["network_id"].as_str().unwrap().len(), 32);
}

#[test]
fn corrupted_token_exits_2_naming_the_checksum() {
    let token = generate();
    let token = token.trim();
    let i = token.len() / 2;
    let flipped = if &token[i..=i] == "A" { "B" } else { "A" };
    let bad = format!("{}{flipped}{}", &token[..i], &token[i + 1..]);
    let o = kairos(&["token", "inspect", &bad], "", None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), CHECKSUM_ERROR);
    assert_eq!(stdout(&o), "");

    let truncated = &token[..token.len() - 3];
    let o = kairos(&["token", "inspect", truncated], "", None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o), CHECKSUM_ERROR);
}

#[test]
fn every_token_source_gives_the_same_answer() {
    let token = generate();
    let by_arg = stdout(&kairos(&["token", "inspect", token.trim()], "", None));
    let by_stdin = kairos(&["token", "inspect", "-"], &token, None);
    assert!(by_stdin.status.success(), "{}", stderr(&by_stdin));
    assert_eq!(stdout(&by_stdin), by_arg);
    let by_env = kairos(&["token", "inspect"], "", Some(&token));
    assert_eq!(stdout(&by_env), by_arg);

    let file = std::env::temp_dir().join(format!("kairos-cli-token-{}", std::process::id()));
    std::fs::write(&file, format!("\n  {token}\n")).unwrap();
    let by_file = kairos(
        &["token", "inspect", "--token-file", file.to_str().unwrap()],
        "",
        Some("ignored"),
    );
    std::fs::remove_file(&file).unwrap();
    assert_eq!(stdout(&by_file), by_arg, "{}", stderr(&by_file));
}

#[test]
fn legacy_token_is_recognised() {
    let o = kairos(&["token", "inspect", LEGACY_TOKEN], "", None);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("version:    legacy EdgeVPN/Kairos\n"), "{text}");
    assert_eq!(network_id(&text), LEGACY_NETWORK_ID);
    for secret in ["kGmvVkN1Q5B0", "7jOmYpK0", "NTs3QhDq"] {
        assert!(!text.contains(secret));
    }
    let json = kairos(&["token", "inspect", "--json", LEGACY_TOKEN], "", None);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(
        (v["version"].as_str(), v["legacy"].as_bool()),
        (Some("legacy"), Some(true))
    );
}

#[test]
fn bad_input_errors_are_one_line_with_exit_2() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["token", "inspect", "not a token!"],
            "error: token is not valid base64",
        ),
        (&["token", "inspect", "kairos_AAAA"], "error: token is too short"),
        (&["token", "inspect"], "error: no token given"),
    ];
    for (args, want) in cases {
        let o = kairos(args, "", None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.starts_with(want) && err.lines().count() == 1, "{args:?}: {err:?}");
    }
    let o = kairos(&["generate-token", "--overlay", "10.1.0.0/99"], "", None);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "");
}

#[test]
fn help_explains_the_commands() {
    let top = stdout(&kairos(&["--help"], "", None));
    assert!(top.contains("generate-token") && top.contains("token"), "{top}");
    let inspect = stdout(&kairos(&["token", "inspect", "--help"], "", Some("kairos_SECRET")));
    assert!(
        inspect.contains("KAIROS_TOKEN") && inspect.contains("never printed"),
        "{inspect}"
    );
    assert!(
        !inspect.contains("kairos_SECRET"),
        "help must not echo the environment's token"
    );
    let gen = stdout(&kairos(&["generate-token", "--help"], "", None));
    assert!(gen.contains("--bootstrap") && gen.contains("--overlay"), "{gen}");
}
