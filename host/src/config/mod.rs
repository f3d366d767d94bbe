//! The agent's configuration: a Kairos cloud-config file (the legacy
//! `kairos:` block and/or the current `p2p:` block, with this project's
//! `p2p.mesh` settings) plus `KAIROS_*` environment overrides, resolved into
//! one [`AgentConfig`] with every default filled in; and validation that
//! reports every problem at once, each with its line and column.
//!
//! How a file is read, in order:
//! 1. [`Source`]: at most 1 MiB, UTF-8 ([`source`]).
//! 2. The scan: a yaml-rust2 event walk that checks the syntax, caps the
//!    expanded size (alias bombs) and nesting, finds duplicate keys and
//!    indexes the position of every key and value ([`scan`]).
//! 3. serde_yaml_ng parses the text into a `Value`, bounded thanks to 2.
//! 4. The blocks are read with a [`Reader`](read::Reader) that records a
//!    diagnostic for each bad value and goes on ([`blocks`]), then merged,
//!    the environment applied ([`env`]) and defaults filled ([`settings`]).
//!
//! This module owns parsing and checking only. It never opens sockets,
//! touches the state dir or prints: callers decide how to show
//! [`Diagnostic`]s. It never puts the network token in a message or in
//! `Debug` output. Keys and defaults are documented in `docs/config.md`.

pub mod agent;
mod blocks;
pub mod diagnostic;
pub mod env;
mod read;
mod resolve;
pub mod scan;
pub(crate) mod settings;
pub mod source;
mod suggest;
pub mod values;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

pub use agent::AgentConfig;
pub use diagnostic::{Diagnostic, Tally};
pub use env::EnvOverrides;
pub use source::Source;

/// The outcome of checking a config.
#[derive(Debug)]
pub struct Checked {
    /// The resolved config; `None` when any diagnostic is an error.
    pub config: Option<AgentConfig>,
    /// Every problem found, sorted by position (environment last).
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    /// Counts of errors and warnings.
    pub fn tally(&self) -> Tally {
        Tally::of(&self.diagnostics)
    }
}

/// Checks a config file's contents with `env` applied.
pub fn check(source: &Source, env: &EnvOverrides) -> Checked {
    match source.text() {
        Ok(text) => {
            let (config, diagnostics) = resolve::resolve(text, env);
            Checked { config, diagnostics }
        }
        Err(d) => Checked {
            config: None,
            diagnostics: vec![d],
        },
    }
}

/// Why [`load`] gave no config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read (missing, no permission, a directory).
    #[error("cannot read the config {}: {source}", path.display())]
    Read {
        /// The path given.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The file was read and has errors.
    #[error("{}", Invalid(.file, .diagnostics))]
    Invalid {
        /// The file's name as shown in messages.
        file: String,
        /// Every problem (warnings included).
        diagnostics: Vec<Diagnostic>,
    },
}

/// `FILE has N errors:` and one compiler-style line per error.
struct Invalid<'a>(&'a str, &'a [Diagnostic]);

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors: Vec<_> = self.1.iter().filter(|d| d.is_error()).collect();
        write!(f, "the config {} is invalid ({}):", self.0, Tally::of(self.1))?;
        for d in errors {
            write!(f, "\n  {}", d.compiler_line(self.0))?;
        }
        Ok(())
    }
}

/// Reads and resolves the config at `path` (`-` for stdin) with `env`
/// applied: what `kairos agent` runs with. On success, the config and the
/// warnings and notes to log.
pub fn load(path: &Path, env: &EnvOverrides) -> Result<(AgentConfig, Vec<Diagnostic>), ConfigError> {
    let source = Source::read(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let checked = check(&source, env);
    match checked.config {
        Some(config) => Ok((config, checked.diagnostics)),
        None => Err(ConfigError::Invalid {
            file: source.name,
            diagnostics: checked.diagnostics,
        }),
    }
}

#[cfg(test)]
mod tests;
