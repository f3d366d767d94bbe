//! The harness's error type: what went wrong while building a topology,
//! running a command in a namespace, or waiting for a condition.
//!
//! Every variant carries enough context (the command line, its stderr, what
//! was awaited and the last observation) to read the failure from the test
//! output alone, without rerunning it.

use std::time::Duration;

/// Why a harness operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A program could not be started at all (missing, not executable).
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A command ran and exited unsuccessfully.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status, as text.
        status: String,
        /// The end of what it printed on stderr.
        stderr: String,
    },
    /// A command did not finish within its time limit and was killed.
    #[error("`{command}` did not finish within {limit:?} (killed)")]
    CommandTimeout {
        /// The command line.
        command: String,
        /// Its time limit.
        limit: Duration,
    },
    /// A condition did not become true before the deadline.
    #[error("timed out after {after:?} waiting for {what}; last observation: {last}")]
    Timeout {
        /// What was awaited, in words.
        what: String,
        /// How long the harness waited.
        after: Duration,
        /// The last thing the probe saw (an error, a value).
        last: String,
    },
    /// A file or directory operation of the harness itself failed.
    #[error("{context}: {source}")]
    Io {
        /// What the harness was doing.
        context: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// An answer (API JSON, helper output) did not have the expected shape.
    #[error("unexpected answer from {from}: {reason}")]
    Unexpected {
        /// Who answered.
        from: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The behaviour under test was wrong (a check of the test, not of the harness).
    #[error("check failed: {0}")]
    Check(String),
}

impl HarnessError {
    /// An [`HarnessError::Io`] with its context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        HarnessError::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`HarnessError::Unexpected`] answer.
    pub fn unexpected(from: impl Into<String>, reason: impl Into<String>) -> Self {
        HarnessError::Unexpected {
            from: from.into(),
            reason: reason.into(),
        }
    }
}

/// The harness's result type.
pub type Result<T, E = HarnessError> = std::result::Result<T, E>;
