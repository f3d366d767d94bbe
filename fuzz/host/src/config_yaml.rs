//! `config_yaml`: the input is a config file's bytes, read the way `kairos
//! validate --no-env` and `kairos agent` read one (`Source::from_reader`,
//! then `config::check` without environment overrides: the scan with its
//! alias-bomb, size and depth limits, serde_yaml_ng, both blocks, the
//! merge, the defaults).
//!
//! Checks, beyond "never panics" (and "never hangs": the campaign and CI
//! runs use libFuzzer's `-timeout`):
//!
//! - a config comes back exactly when no diagnostic is an error, and an
//!   input without a config has at least one error (the operator is always
//!   told why);
//! - every diagnostic has a message; its one-line, compiler-style and JSON
//!   forms carry it; a position is a real place in the file (1-based line
//!   and column, the column in characters, within the line or just past
//!   its end); diagnostics are sorted (whole-file problems, then by
//!   position);
//! - checking is deterministic: the same bytes give the same diagnostics
//!   and config; a leading byte order mark changes nothing;
//! - the resolved config re-validates: each text value written back the
//!   way `kairos validate` shows it (`Display`) goes through its parser
//!   (the same parsers read the environment and the bridge's flags) to the
//!   same value;
//! - `Debug` of the config never shows the token, the values of
//!   `p2p.vpn.env`, the HA datastore URL or the k3s blocks' values: it is
//!   the same after they are replaced.

use kairos::config::agent::OpaqueYaml;
use kairos::config::diagnostic::{Origin, Span};
use kairos::config::values;
use kairos::fuzzing::{check, AgentConfig, Checked, EnvOverrides, Source, MAX_FILE_SIZE};

/// The file name diagnostics are shown with.
const FILE: &str = "node.yaml";

/// What an input came to (for the seed checks).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// A config was resolved.
    pub valid: bool,
    /// Error diagnostics.
    pub errors: usize,
    /// Warning diagnostics.
    pub warnings: usize,
}

/// Runs the target on one input.
pub fn run(data: &[u8]) -> Outcome {
    let source = read(data);
    let checked = check(&source, &EnvOverrides::none());
    let text = source.text().ok();
    check_diagnostics(text, &checked);
    if let Some(config) = &checked.config {
        check_config(config);
    }

    let again = check(&source, &EnvOverrides::none());
    assert_same("checked twice", &checked, &again);
    if let Some(text) = text.filter(|t| !t.starts_with('\u{feff}') && t.len() + 3 <= MAX_FILE_SIZE) {
        let with_bom = read(format!("\u{feff}{text}").as_bytes());
        assert_same(
            "with a byte order mark",
            &checked,
            &check(&with_bom, &EnvOverrides::none()),
        );
    }

    let tally = checked.tally();
    Outcome {
        valid: checked.config.is_some(),
        errors: tally.errors,
        warnings: tally.warnings,
    }
}

fn read(data: &[u8]) -> Source {
    Source::from_reader(FILE, data).expect("reading memory cannot fail")
}

fn check_diagnostics(text: Option<&str>, checked: &Checked) {
    let errors = checked.diagnostics.iter().filter(|d| d.is_error()).count();
    assert_eq!(
        checked.config.is_some(),
        errors == 0,
        "a config exactly when there is no error: {:#?}",
        checked.diagnostics
    );
    let mut last = None;
    for d in &checked.diagnostics {
        assert!(!d.message.trim().is_empty(), "a diagnostic without a message: {d:?}");
        assert!(d.to_string().contains(&d.message), "{d:?}");
        let line = d.compiler_line(FILE);
        assert!(line.starts_with(FILE) && line.ends_with(&d.message), "{line}");
        let json = d.to_json();
        assert_eq!(json["message"], d.message.as_str(), "{json}");
        assert!(
            matches!(json["severity"].as_str(), Some("error" | "warning" | "note")),
            "{json}"
        );
        let key = match d.origin {
            Origin::File(None) => (0, None),
            Origin::File(Some(s)) => (1, Some(s)),
            Origin::Env(_) => panic!("an environment diagnostic without overrides: {d:?}"),
        };
        assert!(
            last.is_none_or(|l| l <= key),
            "diagnostics out of order: {:#?}",
            checked.diagnostics
        );
        last = Some(key);
        if let (Some(span), Some(text)) = (d.span(), text) {
            check_span(text, span, &d.to_string());
        }
    }
}

/// A span is a place an editor can jump to: a line of the file (or the
/// empty line after a final line break) and a column within it or just
/// past its last character. Lines end at `\n`, `\r\n` or a lone `\r`, as
/// in YAML.
fn check_span(text: &str, span: Span, what: &str) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    assert!(span.line >= 1 && span.column >= 1, "{what}: {span:?}");
    let pieces: Vec<&str> = text.split('\n').collect();
    let last = pieces.len() - 1;
    let lines: Vec<&str> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| if i < last { p.strip_suffix('\r').unwrap_or(p) } else { p })
        .flat_map(|p| p.split('\r'))
        .collect();
    let Some(line) = lines.get(span.line as usize - 1) else {
        panic!("{what}: line {} of a file of {} lines", span.line, lines.len());
    };
    let chars = line.chars().count();
    assert!(
        span.column as usize <= chars + 1,
        "{what}: column {} of a line of {chars} characters: {line:?}",
        span.column
    );
}

/// The resolved config's text values go through their parsers unchanged,
/// and `Debug` shows no secret.
fn check_config(c: &AgentConfig) {
    let same = |what: &str, again: Result<String, String>, value: &str| {
        assert_eq!(again.as_deref(), Ok(value), "{what} does not re-validate");
    };
    same("network_id", values::network_id(&c.network_id), &c.network_id);
    same("interface", values::interface(&c.mesh.interface), &c.mesh.interface);
    assert_eq!(values::role(&c.role.to_string()), Ok(c.role));
    assert_eq!(values::log_level(&c.log_level.to_string()), Ok(c.log_level));
    assert_eq!(values::overlay(&c.mesh.address.to_string()), Ok(c.mesh.address));
    assert_eq!(values::api(&c.mesh.api.to_string()), Ok(c.mesh.api.clone()));
    let dir = c.mesh.state_dir.to_str().expect("read from UTF-8 text");
    assert_eq!(values::state_dir(dir).as_ref(), Ok(&c.mesh.state_dir));
    for e in &c.mesh.bootstrap_peers {
        assert_eq!(values::endpoint(&e.to_string()).as_ref(), Ok(e), "bootstrap peer {e}");
    }
    assert!(c.minimum_nodes >= 1, "{c:?}");

    let shown = format!("{c:?}");
    assert!(!shown.contains(&c.network_token.to_string()), "Debug shows the token");
    let mut other = c.clone();
    for v in other.vpn.env.values_mut() {
        *v = "x".into();
    }
    if let Some(db) = &mut other.auto.ha.external_db {
        *db = "x".into();
    }
    for block in [&mut other.k3s, &mut other.k3s_agent].into_iter().flatten() {
        blank(block);
    }
    assert_eq!(shown, format!("{other:?}"), "Debug shows a secret value");
}

/// Replaces every value of a k3s block (top-level keys stay).
fn blank(block: &mut OpaqueYaml) {
    if let serde_yaml_ng::Value::Mapping(m) = &mut block.0 {
        for v in m.values_mut() {
            *v = serde_yaml_ng::Value::Null;
        }
    }
}

/// Two checks of the same file agree (the config compared by `Debug`,
/// token and k3s blocks, as `AgentConfig` has no `PartialEq`).
fn assert_same(what: &str, a: &Checked, b: &Checked) {
    assert_eq!(a.diagnostics, b.diagnostics, "{what}: other diagnostics");
    match (&a.config, &b.config) {
        (None, None) => {}
        (Some(x), Some(y)) => {
            assert_eq!(format!("{x:?}"), format!("{y:?}"), "{what}: another config");
            assert!(x.network_token == y.network_token, "{what}: another token");
            assert!(x.k3s == y.k3s && x.k3s_agent == y.k3s_agent, "{what}: other k3s blocks");
            assert!(x.vpn == y.vpn && x.auto == y.auto, "{what}: other secrets");
        }
        _ => panic!("{what}: a config once only"),
    }
}
