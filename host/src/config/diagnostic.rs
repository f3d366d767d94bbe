//! One problem found in a config: where it is (a line and column of the file,
//! or an environment variable), how bad it is, the YAML path it concerns and
//! what was expected. [`Diagnostic`]'s `Display` is the one-line form the
//! agent logs; [`Diagnostic::compiler_line`] is the `FILE:LINE:COLUMN:` form
//! `kairos validate` prints so editors can jump to it; [`Diagnostic::to_json`]
//! is the machine form.
//!
//! A diagnostic never holds a network token: messages about a token name the
//! failed check only.

use std::fmt;

use serde_json::json;

/// A place in the config file: 1-based line and column. The column counts
/// characters (not bytes), as editors do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span {
    /// The line, counting from 1.
    pub line: u32,
    /// The column in characters, counting from 1.
    pub column: u32,
}

impl Span {
    /// The first character of the file.
    pub const START: Span = Span { line: 1, column: 1 };

    /// The span of the character at `offset` bytes into `text` (clamped to
    /// the end of the text). Lines end at `\n`, `\r\n` or a lone `\r`, as
    /// in YAML (and so in the parsers' positions).
    pub fn at_byte(text: &str, offset: usize) -> Span {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let bytes = text.as_bytes();
        let (mut line, mut line_start) = (1, 0);
        for (i, &b) in bytes[..offset].iter().enumerate() {
            if b == b'\n' || (b == b'\r' && bytes.get(i + 1) != Some(&b'\n')) {
                line += 1;
                line_start = i + 1;
            }
        }
        Span {
            line: saturate(line),
            column: saturate(text[line_start..offset].chars().count() + 1),
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// How bad a problem is. Only errors make a config invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The agent refuses the config.
    Error,
    /// The agent runs, but the config is probably not what was meant.
    Warning,
    /// Information, e.g. that an environment variable overrides a key.
    Note,
}

impl Severity {
    /// The lowercase word printed before the message.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a problem comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file, at a position when one is known (a problem with the
    /// file as a whole, such as its size, has none).
    File(Option<Span>),
    /// An environment variable (its name).
    Env(&'static str),
}

/// One problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error, warning or note.
    pub severity: Severity,
    /// The file position or environment variable.
    pub origin: Origin,
    /// The YAML path concerned (`p2p.mesh.listen_port`, `p2p.mesh.bootstrap_peers[1]`),
    /// empty when the problem is not about one key.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Diagnostic {
    /// A problem at a place in the file.
    pub fn file(severity: Severity, span: Option<Span>, path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            origin: Origin::File(span),
            path: path.into(),
            message: message.into(),
        }
    }

    /// A problem with an environment variable.
    pub fn env(severity: Severity, var: &'static str, message: impl Into<String>) -> Self {
        Diagnostic {
            severity,
            origin: Origin::Env(var),
            path: String::new(),
            message: message.into(),
        }
    }

    /// Whether this is an error.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The position in the file, if any.
    pub fn span(&self) -> Option<Span> {
        match self.origin {
            Origin::File(span) => span,
            Origin::Env(_) => None,
        }
    }

    /// The subject printed before the message: the YAML path, else the
    /// environment variable.
    fn subject(&self) -> Option<&str> {
        match self.origin {
            Origin::Env(var) => Some(var),
            Origin::File(_) if self.path.is_empty() => None,
            Origin::File(_) => Some(&self.path),
        }
    }

    /// The compiler-style line `FILE:LINE:COLUMN: error: PATH: MESSAGE`.
    /// Without a position it is `FILE: error: ...`; for an environment
    /// variable, `<environment>: error: VAR: ...`.
    pub fn compiler_line(&self, file: &str) -> String {
        let place = match self.origin {
            Origin::File(Some(s)) => format!("{file}:{}:{}", s.line, s.column),
            Origin::File(None) => file.to_owned(),
            Origin::Env(_) => "<environment>".to_owned(),
        };
        match self.subject() {
            Some(subject) => format!("{place}: {}: {subject}: {}", self.severity, self.message),
            None => format!("{place}: {}: {}", self.severity, self.message),
        }
    }

    /// The machine-readable form (`kairos validate --json`).
    pub fn to_json(&self) -> serde_json::Value {
        let span = self.span();
        json!({
            "severity": self.severity.as_str(),
            "line": span.map(|s| s.line),
            "column": span.map(|s| s.column),
            "path": if self.path.is_empty() { None } else { Some(&self.path) },
            "variable": match self.origin { Origin::Env(var) => Some(var), Origin::File(_) => None },
            "message": self.message,
        })
    }
}

/// `PATH: MESSAGE (line L, column C)`, or `VAR: MESSAGE` for the environment.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(subject) = self.subject() {
            write!(f, "{subject}: ")?;
        }
        f.write_str(&self.message)?;
        if let Some(s) = self.span() {
            write!(f, " (line {}, column {})", s.line, s.column)?;
        }
        Ok(())
    }
}

/// Counts of errors and warnings, for summary lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Errors.
    pub errors: usize,
    /// Warnings.
    pub warnings: usize,
}

impl Tally {
    /// Counts the errors and warnings among `diagnostics`.
    pub fn of(diagnostics: &[Diagnostic]) -> Tally {
        let count = |s| diagnostics.iter().filter(|d| d.severity == s).count();
        Tally {
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
        }
    }
}

/// `3 errors, 1 warning`; `no problems` when both are zero.
impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
        match (self.errors, self.warnings) {
            (0, 0) => f.write_str("no problems"),
            (e, 0) => f.write_str(&plural(e, "error")),
            (0, w) => f.write_str(&plural(w, "warning")),
            (e, w) => write!(f, "{}, {}", plural(e, "error"), plural(w, "warning")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_count_lines_and_characters() {
        let text = "a: 1\nbé: x\n";
        assert_eq!(Span::at_byte(text, 0), Span::START);
        assert_eq!(Span::at_byte(text, 5), Span { line: 2, column: 1 });
        // 'x' is at byte 10 but character 5 of its line.
        assert_eq!(Span::at_byte(text, 10), Span { line: 2, column: 5 });
        // Inside a multi-byte character: the character's own column.
        assert_eq!(Span::at_byte(text, 7), Span { line: 2, column: 2 });
        assert_eq!(Span::at_byte(text, 999), Span { line: 3, column: 1 });
        // A lone CR ends a line as in YAML; CRLF is one line break.
        let text = "a\rb\r\nc";
        assert_eq!(Span::at_byte(text, 2), Span { line: 2, column: 1 });
        assert_eq!(Span::at_byte(text, 4), Span { line: 2, column: 3 });
        assert_eq!(Span::at_byte(text, 5), Span { line: 3, column: 1 });
    }

    #[test]
    fn formats() {
        let d = Diagnostic::file(
            Severity::Error,
            Some(Span { line: 7, column: 18 }),
            "p2p.mesh.listen_port",
            "expected a port number 0-65535, found \"abc\"",
        );
        assert_eq!(
            d.to_string(),
            "p2p.mesh.listen_port: expected a port number 0-65535, found \"abc\" (line 7, column 18)"
        );
        assert_eq!(
            d.compiler_line("node.yaml"),
            "node.yaml:7:18: error: p2p.mesh.listen_port: expected a port number 0-65535, found \"abc\""
        );
        let e = Diagnostic::env(Severity::Error, "KAIROS_LISTEN_PORT", "expected a port number");
        assert_eq!(e.to_string(), "KAIROS_LISTEN_PORT: expected a port number");
        assert_eq!(
            e.compiler_line("node.yaml"),
            "<environment>: error: KAIROS_LISTEN_PORT: expected a port number"
        );
        let w = Diagnostic::file(Severity::Warning, None, "", "file is large");
        assert_eq!(w.compiler_line("-"), "-: warning: file is large");
        assert_eq!(e.to_json()["variable"], "KAIROS_LISTEN_PORT");
        assert_eq!(d.to_json()["line"], 7);
        assert!(w.to_json()["path"].is_null());
    }

    #[test]
    fn tallies() {
        let e = Diagnostic::env(Severity::Error, "KAIROS_API", "x");
        let w = Diagnostic::env(Severity::Warning, "KAIROS_API", "x");
        let n = Diagnostic::env(Severity::Note, "KAIROS_API", "x");
        assert_eq!(Tally::of(&[]).to_string(), "no problems");
        assert_eq!(Tally::of(std::slice::from_ref(&e)).to_string(), "1 error");
        assert_eq!(Tally::of(&[w.clone(), w.clone(), n]).to_string(), "2 warnings");
        assert_eq!(Tally::of(&[e.clone(), e, w]).to_string(), "2 errors, 1 warning");
    }
}
