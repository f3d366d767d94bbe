//! Running short-lived commands with a time limit and captured output.
//!
//! Every command the harness runs to completion (`ip`, `nft`, `ping`, the
//! `e2e-net` helper, `kairos generate-token`) goes through [`run`], which
//! kills the command if it outlives its limit, so a hung tool can never hang
//! a test. Long-running processes (agents, servers) are started by
//! [`crate::Lab::spawn`] instead, which logs to a file and cleans up.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// How long a harness command may run unless the caller says otherwise.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(30);

/// What a finished command left behind.
#[derive(Debug, Clone)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything it printed on stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything it printed on stderr (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// Whether it exited with status 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// The command line as one string, for messages.
pub fn describe<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S]) -> String {
    let mut line = program.as_ref().to_string_lossy().into_owned();
    for arg in args {
        line.push(' ');
        line.push_str(&arg.as_ref().to_string_lossy());
    }
    line
}

/// Runs `program args...` to completion (stdin closed) and returns its
/// output whatever its exit status; kills it after `limit`.
pub fn run<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S], limit: Duration) -> Result<Output> {
    run_with_env(program, args, &[], limit)
}

/// [`run`] with extra environment variables.
pub fn run_with_env<S: AsRef<OsStr>>(
    program: impl AsRef<OsStr>,
    args: &[S],
    env: &[(&str, &str)],
    limit: Duration,
) -> Result<Output> {
    let command = describe(&program, args);
    let mut command_builder = Command::new(program.as_ref());
    scrub_env(&mut command_builder);
    let mut child = command_builder
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| HarnessError::Spawn {
            command: command.clone(),
            source,
        })?;
    // Drain both pipes on their own threads so a chatty command never blocks
    // on a full pipe while we wait for it.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(HarnessError::CommandTimeout { command, limit });
            }
            Err(source) => return Err(HarnessError::io(format!("waiting for `{command}`"), source)),
        }
    };
    Ok(Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Removes every `KAIROS_*` variable of the test's environment from a
/// command's: they override agent settings (`KAIROS_API`, `KAIROS_TOKEN`,
/// ...), and a test states every setting of its agents itself.
pub fn scrub_env(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("KAIROS_") {
            command.env_remove(name);
        }
    }
}

/// Runs a command that must succeed and returns its stdout.
pub fn run_ok<S: AsRef<OsStr>>(program: impl AsRef<OsStr>, args: &[S], limit: Duration) -> Result<String> {
    let command = describe(&program, args);
    let output = run(program, args, limit)?;
    if output.success() {
        Ok(output.stdout)
    } else {
        Err(HarnessError::Command {
            command,
            status: output.status.to_string(),
            stderr: tail(&output.stderr, 20),
        })
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run("sh", &["-c", "echo out; echo err >&2; exit 3"], DEFAULT_LIMIT).unwrap();
        assert_eq!(out.stdout, "out\n");
        assert_eq!(out.stderr, "err\n");
        assert_eq!(out.status.code(), Some(3));
        assert!(run_ok("sh", &["-c", "exit 1"], DEFAULT_LIMIT).is_err());
    }

    #[test]
    fn kills_a_command_past_its_limit() {
        let started = Instant::now();
        let err = run("sleep", &["30"], Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, HarnessError::CommandTimeout { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }
}
