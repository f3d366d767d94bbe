//! From a config's text and the environment to an [`AgentConfig`] and the
//! list of every problem: the scan (syntax, bombs, duplicates, positions),
//! the serde_yaml_ng parse, the top level of the cloud-config (which blocks
//! are there), the two blocks, the merge (`p2p:` wins over `kairos:` key by
//! key), the environment overrides, and the required network token.
//!
//! Top-level keys other than `kairos`, `p2p`, `k3s` and `k3s-agent` belong
//! to the rest of the cloud-config (users, stages, install, ...) and are
//! ignored silently.

use serde_yaml_ng::Value;

use super::agent::{AgentConfig, OpaqueYaml};
use super::blocks::{read_block, Block};
use super::diagnostic::{Diagnostic, Origin, Severity, Span};
use super::env::EnvOverrides;
use super::read::Reader;
use super::scan::{scan, PositionIndex};
use super::settings::{merge, Settings};
use super::suggest::closest;
use super::values::describe;

/// First lines Kairos recognises as a config file.
const HEADERS: [&str; 3] = ["#cloud-config", "#kairos-config", "#node-config"];

/// Resolves `text` with `env` applied on top. The config is `None` when any
/// diagnostic is an error. Diagnostics are sorted: problems with the whole
/// file first, then by position, then the environment's.
pub fn resolve(text: &str, env: &EnvOverrides) -> (Option<AgentConfig>, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    // A byte order mark is no column of its own for editors; yaml-rust2
    // would read it as text.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let first_line = text.lines().next().unwrap_or("");
    if !HEADERS.iter().any(|h| first_line.trim_end() == *h) {
        diagnostics.push(Diagnostic::file(
            Severity::Warning,
            Some(Span::START),
            "",
            "the file does not start with `#cloud-config`: Kairos skips such files (this agent reads it anyway)",
        ));
    }
    let config = match scan(text) {
        Ok(index) => resolve_document(text, &index, env, &mut diagnostics),
        Err(errors) => {
            diagnostics.extend(errors);
            None
        }
    };
    diagnostics.sort_by_key(|d| match d.origin {
        Origin::File(None) => (0, None),
        Origin::File(Some(s)) => (1, Some(s)),
        Origin::Env(_) => (2, None),
    });
    let config = config.filter(|_| !diagnostics.iter().any(Diagnostic::is_error));
    (config, diagnostics)
}

fn resolve_document(
    text: &str,
    index: &PositionIndex,
    env: &EnvOverrides,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<AgentConfig> {
    let mut root: Value = match serde_yaml_ng::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            // From the byte offset: libyaml's own line count also breaks
            // lines at U+0085, U+2028 and U+2029 (YAML 1.1), and puts the end
            // of a file without a final line break on the line after the last.
            let span = e.location().map(|l| Span::at_byte(text, l.index()));
            diagnostics.push(Diagnostic::file(
                Severity::Error,
                span,
                "",
                format!("invalid YAML: {e}"),
            ));
            return None;
        }
    };
    if let Err(e) = root.apply_merge() {
        diagnostics.push(Diagnostic::file(
            Severity::Error,
            None,
            "",
            format!("invalid YAML merge key (`<<`): {e}"),
        ));
        return None;
    }
    let mut r = Reader::new(index);
    let empty = serde_yaml_ng::Mapping::new();
    let top = match &root {
        Value::Mapping(m) => m,
        Value::Null => &empty,
        other => {
            r.error(
                "",
                format!(
                    "expected a mapping of keys at the top level (a cloud-config), found {}",
                    describe(other)
                ),
            );
            diagnostics.append(&mut r.diagnostics);
            return None;
        }
    };

    let legacy = top
        .get("kairos")
        .map(|v| read_block(&mut r, Block::Legacy, "kairos", v));
    let p2p = top.get("p2p").map(|v| read_block(&mut r, Block::P2p, "p2p", v));
    let k3s = opaque(&mut r, top, "k3s");
    let k3s_agent = opaque(&mut r, top, "k3s-agent");

    let file = match (p2p, legacy) {
        (Some(p2p), Some(legacy)) => {
            let (merged, both) = merge(p2p, legacy);
            let detail = if both.is_empty() {
                String::new()
            } else {
                format!(" (set in both: {})", both.join(", "))
            };
            r.at_key(
                Severity::Warning,
                "kairos",
                format!("both the legacy `kairos:` block and `p2p:` are present: `p2p` wins key by key{detail}"),
            );
            merged
        }
        (Some(one), None) | (None, Some(one)) => one,
        (None, None) => Settings::default(),
    };
    let mut diags = std::mem::take(&mut r.diagnostics);
    let from_env = env.read(&mut diags);
    let (settings, _) = merge(from_env, file);

    // A block that is not a mapping has its own error already.
    let malformed = ["p2p", "kairos"].iter().any(|b| {
        top.get(b)
            .is_some_and(|v| !matches!(v, Value::Mapping(_) | Value::Null))
    });
    if settings.network_token.is_none() && !settings.token_seen && !malformed {
        diags.push(missing_token(index, top));
    }
    diagnostics.append(&mut diags);
    if diagnostics.iter().any(Diagnostic::is_error) {
        return None;
    }
    settings.finish(k3s, k3s_agent)
}

/// The error for a config without a network token, at the block that
/// should hold it; when neither block is there, with a did-you-mean for a
/// top-level key that looks like one.
fn missing_token(index: &PositionIndex, top: &serde_yaml_ng::Mapping) -> Diagnostic {
    const HOW: &str = "the agent needs a network token: set `network_token` (make one with \
                       `kairos generate-token`) or the KAIROS_TOKEN environment variable";
    for block in ["p2p", "kairos"] {
        if top.contains_key(block) {
            return Diagnostic::file(
                Severity::Error,
                index.key(block),
                block,
                format!("missing network_token: {HOW}"),
            );
        }
    }
    let typo = top
        .keys()
        .filter_map(Value::as_str)
        .find_map(|k| closest(k, &["p2p", "kairos"]).map(|c| (k, c)));
    match typo {
        Some((k, c)) => Diagnostic::file(
            Severity::Error,
            index.key(k),
            k,
            format!("no `p2p:` or `kairos:` block: did you mean `{c}`? ({HOW})"),
        ),
        None => Diagnostic::file(
            Severity::Error,
            Some(Span::START),
            "",
            format!("no `p2p:` block (or legacy `kairos:` block) with a network token: {HOW}"),
        ),
    }
}

/// A `k3s:`-like block kept as written; it must be a mapping.
fn opaque(r: &mut Reader, top: &serde_yaml_ng::Mapping, key: &str) -> Option<OpaqueYaml> {
    let v = top.get(key)?;
    match v {
        Value::Mapping(_) => Some(OpaqueYaml(v.clone())),
        Value::Null => None,
        _ => {
            r.error(
                key,
                format!("expected a mapping (args, env, ...), found {}", describe(v)),
            );
            None
        }
    }
}
