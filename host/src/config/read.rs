//! [`Reader`]: typed access to the nodes of a parsed config that records a
//! [`Diagnostic`] (with the node's line and column from the
//! [`PositionIndex`]) for every value of the wrong type or out of range,
//! and goes on. This is what lets validation report every problem at once
//! instead of stopping at the first, as a serde derive would.
//!
//! It knows YAML types and positions, not what the keys mean.

use kairos_core::token::NetworkToken;
use serde_yaml_ng::{Mapping, Value};

use super::diagnostic::{Diagnostic, Severity};
use super::scan::{child, PositionIndex};
use super::suggest::closest;
use super::values::{self, describe, quote};

/// Reads values out of a document, collecting problems.
pub struct Reader<'a> {
    index: &'a PositionIndex,
    /// Everything found so far.
    pub diagnostics: Vec<Diagnostic>,
}

impl<'a> Reader<'a> {
    /// A reader of the document whose positions are `index`.
    pub fn new(index: &'a PositionIndex) -> Self {
        Reader {
            index,
            diagnostics: Vec::new(),
        }
    }

    /// Records a problem with the value at `path`.
    pub fn at_value(&mut self, severity: Severity, path: &str, message: impl Into<String>) {
        let span = self.index.value(path);
        self.diagnostics.push(Diagnostic::file(severity, span, path, message));
    }

    /// Records a problem with the key of `path`.
    pub fn at_key(&mut self, severity: Severity, path: &str, message: impl Into<String>) {
        let span = self.index.key(path);
        self.diagnostics.push(Diagnostic::file(severity, span, path, message));
    }

    /// An error at the value of `path`.
    pub fn error(&mut self, path: &str, message: impl Into<String>) {
        self.at_value(Severity::Error, path, message);
    }

    /// A warning at the value of `path`, if there is one.
    pub fn lint(&mut self, path: &str, warning: Option<String>) {
        if let Some(w) = warning {
            self.at_value(Severity::Warning, path, w);
        }
    }

    fn mismatch(&mut self, path: &str, expected: &str, found: &Value) {
        let hint = match found {
            Value::String(s) if s.trim().parse::<f64>().is_ok() => " (remove the quotes)",
            Value::String(s) if matches!(s.trim(), "true" | "false") => " (remove the quotes)",
            _ => "",
        };
        self.error(path, format!("{expected}, found {}{hint}", describe(found)));
    }

    /// A boolean. YAML 1.1's `yes`/`no`/`on`/`off` are accepted too, as
    /// Kairos's Go YAML decoder accepts them for boolean keys.
    pub fn bool(&mut self, path: &str, v: &Value) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) => match s.to_ascii_lowercase().as_str() {
                "yes" | "on" | "y" => Some(true),
                "no" | "off" | "n" => Some(false),
                _ => {
                    self.mismatch(path, "expected true or false", v);
                    None
                }
            },
            _ => {
                self.mismatch(path, "expected true or false", v);
                None
            }
        }
    }

    /// A whole number from `min` to `max`; `expected` says so in words.
    pub fn uint(&mut self, path: &str, v: &Value, min: u64, max: u64, expected: &str) -> Option<u64> {
        match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.mismatch(path, expected, v);
                None
            }
        }
    }

    /// A string. A number or boolean is refused with a hint to quote it.
    pub fn str<'v>(&mut self, path: &str, v: &'v Value, expected: &str) -> Option<&'v str> {
        match v {
            Value::String(s) => Some(s),
            Value::Number(_) | Value::Bool(_) => {
                let quoted = quote(&describe(v));
                self.error(
                    path,
                    format!("{expected}, found {} (write it in quotes: {quoted})", describe(v)),
                );
                None
            }
            _ => {
                self.mismatch(path, expected, v);
                None
            }
        }
    }

    /// A string read by `parse` (one of [`values`]' parsers); `expected`
    /// says what is expected when the value is not a string at all.
    pub fn parsed<T>(
        &mut self,
        path: &str,
        v: &Value,
        expected: &str,
        parse: fn(&str) -> Result<T, String>,
    ) -> Option<T> {
        let s = self.str(path, v, expected)?;
        match parse(s) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path, format!("{e}, found {}", quote(s)));
                None
            }
        }
    }

    /// A network token. Messages never show the value, only its kind and the
    /// failed check.
    pub fn token(&mut self, path: &str, v: &Value) -> Option<NetworkToken> {
        let kind = match v {
            Value::String(s) => {
                return match values::token(s) {
                    Ok(t) => Some(t),
                    Err(e) => {
                        self.error(path, e);
                        None
                    }
                }
            }
            Value::Null => "nothing (an empty value)",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::Sequence(_) => "a list",
            Value::Mapping(_) => "a mapping",
            Value::Tagged(_) => "a tagged value",
        };
        self.error(
            path,
            format!("expected a network token (a string made by `kairos generate-token`), found {kind}"),
        );
        None
    }

    /// A mapping. An empty value (`mesh:` with nothing under it) is an
    /// empty mapping; anything else is an error, and `None`.
    pub fn mapping<'v>(&mut self, path: &str, v: &'v Value) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            Value::Null => None,
            _ => {
                self.mismatch(path, "expected a mapping of keys", v);
                None
            }
        }
    }

    /// A list. An empty value is an empty list.
    pub fn list<'v>(&mut self, path: &str, v: &'v Value, example: &str) -> Option<&'v [Value]> {
        match v {
            Value::Sequence(s) => Some(s),
            Value::Null => Some(&[]),
            _ => {
                self.mismatch(path, &format!("expected a list, e.g. {example}"), v);
                None
            }
        }
    }

    /// The entries of a mapping at `base` with their paths. Keys that are
    /// not strings get a warning and are skipped.
    pub fn entries<'v>(&mut self, base: &str, m: &'v Mapping) -> Vec<(&'v str, String, &'v Value)> {
        let mut out = Vec::with_capacity(m.len());
        for (k, v) in m {
            match k.as_str() {
                Some(key) => out.push((key, child(base, key), v)),
                None => {
                    let path = child(base, "?");
                    self.at_key(
                        Severity::Warning,
                        &path,
                        format!("ignored: a key here must be a name, found {}", describe(k)),
                    );
                }
            }
        }
        out
    }

    /// Warns that `key` (at `path`) is not a key of its block, suggesting the
    /// closest of `known`, or `hint` when given.
    pub fn unknown_key(&mut self, path: &str, key: &str, known: &[&str], hint: Option<String>) {
        let advice = match hint {
            Some(h) => format!("; {h}"),
            None => match closest(key, known) {
                Some(k) => format!("; did you mean `{k}`?"),
                None => String::new(),
            },
        };
        self.at_key(
            Severity::Warning,
            path,
            format!("unknown key `{key}` (ignored){advice}"),
        );
    }
}
