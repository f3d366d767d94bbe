//! [`Lab`]: one test's network namespaces and processes, and the guard that
//! always removes them.
//!
//! A lab names everything it creates `kt<pid>-<seq>-<name>` (the test
//! process's pid and a per-process lab counter), so parallel tests and
//! parallel runs never clash, and a later run can tell which namespaces a
//! crashed run left behind: [`Lab::new`] first sweeps every `kt<pid>-*`
//! namespace whose pid no longer exists.
//!
//! Dropping a lab (at the end of the test, on an early `return`, or while a
//! panic unwinds) stops its processes by PID (SIGTERM, then SIGKILL after a
//! grace period), kills whatever else still runs inside its namespaces, and
//! deletes the namespaces, which removes every veth, bridge and TUN device
//! inside them. A lab that was not [`Lab::finish`]ed counts as failed: its
//! log directory is kept and the tail of every process log is printed.
//!
//! The lab touches the host's own namespace only to create and delete named
//! namespaces (`/run/netns/kt...`); links and addresses live inside them.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{kill_process, test_kill_process, Pid, Signal};

use crate::command::{self, describe, tail, Output, DEFAULT_LIMIT};
use crate::error::{HarnessError, Result};
use crate::preflight::{self, note};

/// The first letters of every namespace a lab creates.
pub const PREFIX: &str = "kt";

/// How long stopped processes get between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(3);

/// How many log lines of each process a failed test prints.
const LOG_TAIL_LINES: usize = 40;

/// A network namespace of a lab, by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    name: String,
    short: String,
}

impl Namespace {
    /// The full name (`kt<pid>-<seq>-<short>`), as `ip netns` knows it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name the test gave it.
    pub fn short(&self) -> &str {
        &self.short
    }
}

impl std::fmt::Display for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// A process a lab started, as a handle into the lab.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId(usize);

/// One process a lab started and its log.
#[derive(Debug)]
struct Process {
    label: String,
    namespace: String,
    child: Child,
    log: PathBuf,
    status: Option<ExitStatus>,
}

impl Process {
    fn pid(&self) -> Option<Pid> {
        Pid::from_raw(self.child.id() as i32)
    }

    /// Reaps the process if it has exited.
    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.status = Some(status);
            }
        }
        self.status
    }
}

/// One test's namespaces and processes; cleans them up when dropped.
#[derive(Debug)]
pub struct Lab {
    test: String,
    prefix: String,
    dir: PathBuf,
    namespaces: Vec<Namespace>,
    processes: Vec<Process>,
    /// Counter for names of links plugged into switches.
    pub(crate) links: usize,
    /// HTTP APIs to show when the test fails: (label, namespace, address, paths).
    pub(crate) apis: Vec<(String, Namespace, String, &'static [&'static str])>,
    finished: bool,
}

impl Lab {
    /// Checks the prerequisites (see [`crate::preflight`]) and makes a lab
    /// for `test`; `None` (after a loud SKIPPED line) when the test should
    /// not run here. Panics when the lab cannot be made.
    pub fn start(test: &str) -> Option<Lab> {
        if !preflight::should_run(test) {
            return None;
        }
        Some(Lab::new(test).unwrap_or_else(|e| panic!("{test}: cannot set up the lab: {e}")))
    }

    /// Makes a lab for `test` without checking the prerequisites: sweeps
    /// stale namespaces of crashed runs and creates the log directory.
    pub fn new(test: &str) -> Result<Lab> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(sweep_stale);
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("{PREFIX}{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join("kairos-e2e").join(format!("{prefix}-{test}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| HarnessError::io(format!("clearing {}", dir.display()), e))?;
        }
        fs::create_dir_all(&dir).map_err(|e| HarnessError::io(format!("creating {}", dir.display()), e))?;
        Ok(Lab {
            test: test.to_owned(),
            prefix,
            dir,
            namespaces: Vec::new(),
            processes: Vec::new(),
            links: 0,
            apis: Vec::new(),
            finished: false,
        })
    }

    /// The test's name.
    pub fn test(&self) -> &str {
        &self.test
    }

    /// The lab's scratch directory (logs, configs, state dirs). Kept when
    /// the test fails; removed when it passes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The namespaces made so far, in creation order.
    pub fn namespaces(&self) -> &[Namespace] {
        &self.namespaces
    }

    /// Creates the namespace `short` (loopback up).
    pub fn namespace(&mut self, short: &str) -> Result<Namespace> {
        let name = format!("{}-{short}", self.prefix);
        command::run_ok("ip", &["netns", "add", &name], DEFAULT_LIMIT)?;
        let ns = Namespace {
            name,
            short: short.to_owned(),
        };
        self.namespaces.push(ns.clone());
        self.ip(&ns, &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Runs `ip -n NS args...` and returns its stdout.
    pub fn ip(&self, ns: &Namespace, args: &[&str]) -> Result<String> {
        let mut full = vec!["-n", ns.name()];
        full.extend_from_slice(args);
        command::run_ok("ip", &full, DEFAULT_LIMIT)
    }

    /// Runs `program args...` inside `ns` to completion (killed after
    /// `limit`), whatever its exit status.
    pub fn exec(&self, ns: &Namespace, program: &str, args: &[&str], limit: Duration) -> Result<Output> {
        let mut full = vec!["netns", "exec", ns.name(), program];
        full.extend_from_slice(args);
        command::run("ip", &full, limit)
    }

    /// [`Lab::exec`] of a command that must succeed; returns its stdout.
    pub fn exec_ok(&self, ns: &Namespace, program: &str, args: &[&str], limit: Duration) -> Result<String> {
        let mut full = vec!["netns", "exec", ns.name(), program];
        full.extend_from_slice(args);
        command::run_ok("ip", &full, limit)
    }

    /// Starts `program args...` inside `ns` in the background, with
    /// stdout and stderr going to `<lab dir>/<label>.log` (appended, so a
    /// restarted process keeps one log). `ip netns exec` execs the program,
    /// so the child's PID is the program's.
    pub fn spawn(
        &mut self,
        ns: &Namespace,
        label: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<ProcessId> {
        let log = self.dir.join(format!("{label}.log"));
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .map_err(|e| HarnessError::io(format!("opening {}", log.display()), e))?;
        let mut full: Vec<&str> = vec!["netns", "exec", ns.name(), program.to_str().unwrap_or_default()];
        full.extend_from_slice(args);
        let line = describe("ip", &full);
        let _ = writeln!(file, "### {line}");
        let stderr = file
            .try_clone()
            .map_err(|e| HarnessError::io("duplicating a log file", e))?;
        let mut command = Command::new("ip");
        command::scrub_env(&mut command);
        let child = command
            .args(&full)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(stderr)
            .spawn()
            .map_err(|source| HarnessError::Spawn { command: line, source })?;
        self.processes.push(Process {
            label: label.to_owned(),
            namespace: ns.name().to_owned(),
            child,
            log,
            status: None,
        });
        Ok(ProcessId(self.processes.len() - 1))
    }

    /// The PID of a started process.
    pub fn pid(&self, id: ProcessId) -> u32 {
        self.processes[id.0].child.id()
    }

    /// The log file of a started process.
    pub fn log_path(&self, id: ProcessId) -> &Path {
        &self.processes[id.0].log
    }

    /// The log of a started process so far.
    pub fn log(&self, id: ProcessId) -> String {
        fs::read(&self.processes[id.0].log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status of a started process, if it has exited (reaps it).
    pub fn exit_status(&mut self, id: ProcessId) -> Option<ExitStatus> {
        self.processes[id.0].poll()
    }

    /// Waits up to `deadline` for a started process to exit.
    pub fn wait_exit(&mut self, id: ProcessId, deadline: Duration) -> Result<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.processes[id.0].poll() {
                return Ok(status);
            }
            if started.elapsed() >= deadline {
                return Err(HarnessError::Timeout {
                    what: format!("{} to exit", self.processes[id.0].label),
                    after: deadline,
                    last: "still running".into(),
                });
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` to a started process (by PID; nothing if it exited).
    pub fn signal(&mut self, id: ProcessId, signal: Signal) -> Result<()> {
        let process = &mut self.processes[id.0];
        if process.poll().is_some() {
            return Ok(());
        }
        match process.pid() {
            Some(pid) => kill_process(pid, signal)
                .map_err(|e| HarnessError::io(format!("signalling {} ({pid:?})", process.label), e.into())),
            None => Ok(()),
        }
    }

    /// SIGKILLs a started process and reaps it.
    pub fn kill(&mut self, id: ProcessId) -> Result<ExitStatus> {
        self.signal(id, Signal::KILL)?;
        self.wait_exit(id, DEFAULT_LIMIT)
    }

    /// Stops a started process: SIGTERM, then SIGKILL after `grace`.
    /// Returns its exit status and whether it left within the grace period.
    pub fn stop(&mut self, id: ProcessId, grace: Duration) -> Result<(ExitStatus, bool)> {
        self.signal(id, Signal::TERM)?;
        match self.wait_exit(id, grace) {
            Ok(status) => Ok((status, true)),
            Err(_) => Ok((self.kill(id)?, false)),
        }
    }

    /// Marks the test as passed: dropping the lab then removes its
    /// directory instead of keeping it and printing the logs.
    pub fn finish(mut self) {
        self.finished = true;
    }

    /// Prints where the logs are and the tail of each, then what each
    /// registered API answers now.
    pub fn dump_logs(&self) {
        note(&format!("--- {}: logs in {}", self.test, self.dir.display()));
        for (label, ns, addr, paths) in &self.apis {
            for path in *paths {
                let answer = self.http_get(ns, addr, path).unwrap_or_else(|e| format!("({e})"));
                note(&format!("--- {label} GET {path}: {}", answer.trim()));
            }
        }
        for process in &self.processes {
            let text = fs::read(&process.log)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default();
            note(&format!(
                "--- {} (in {}, exit {:?}): {} ---\n{}",
                process.label,
                process.namespace,
                process.status,
                process.log.display(),
                tail(&text, LOG_TAIL_LINES)
            ));
        }
    }

    fn cleanup(&mut self) {
        // Processes: SIGTERM all, give them the grace period together, then SIGKILL.
        for process in &mut self.processes {
            if process.poll().is_none() {
                if let Some(pid) = process.pid() {
                    let _ = kill_process(pid, Signal::TERM);
                }
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        while Instant::now() < deadline && self.processes.iter_mut().any(|p| p.poll().is_none()) {
            thread::sleep(Duration::from_millis(20));
        }
        for process in &mut self.processes {
            if process.poll().is_none() {
                note(&format!(
                    "{}: {} ignored SIGTERM for {STOP_GRACE:?}; SIGKILL",
                    self.test, process.label
                ));
                let _ = process.child.kill();
                if let Ok(status) = process.child.wait() {
                    process.status = Some(status);
                }
            }
        }
        // Namespaces, newest first; anything still running inside is ours.
        for ns in self.namespaces.iter().rev() {
            kill_inside(ns.name());
            if let Err(e) = command::run_ok("ip", &["netns", "del", ns.name()], DEFAULT_LIMIT) {
                note(&format!(
                    "{}: CLEANUP FAILED: cannot delete namespace {}: {e}",
                    self.test,
                    ns.name()
                ));
            }
        }
        self.namespaces.clear();
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let failed = !self.finished || thread::panicking();
        if failed {
            self.dump_logs();
        }
        self.cleanup();
        if failed {
            note(&format!(
                "--- {}: kept {} for inspection",
                self.test,
                self.dir.display()
            ));
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// SIGKILLs every process still inside the namespace `name` (by PID, as
/// `ip netns pids` lists them). Only lab namespaces are passed here.
fn kill_inside(name: &str) {
    let Ok(pids) = command::run_ok("ip", &["netns", "pids", name], DEFAULT_LIMIT) else {
        return;
    };
    for pid in pids
        .split_whitespace()
        .filter_map(|p| p.parse::<i32>().ok())
        .filter_map(Pid::from_raw)
    {
        let _ = kill_process(pid, Signal::KILL);
    }
}

/// The pid in a lab namespace's name (`kt<pid>-...`), if it is one.
pub fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (digits, _) = rest.split_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Deletes lab namespaces whose test process is gone (a crashed or killed
/// run), after killing what still runs inside them.
pub fn sweep_stale() {
    let Ok(list) = command::run_ok("ip", &["netns", "list"], DEFAULT_LIMIT) else {
        return;
    };
    for name in list.lines().filter_map(|line| line.split_whitespace().next()) {
        let Some(owner) = owner_pid(name) else { continue };
        let alive = owner == std::process::id()
            || Pid::from_raw(owner as i32).is_some_and(|pid| test_kill_process(pid).is_ok());
        if alive {
            continue;
        }
        note(&format!(
            "sweeping stale namespace {name} (its test process {owner} is gone)"
        ));
        kill_inside(name);
        let _ = command::run_ok("ip", &["netns", "del", name], DEFAULT_LIMIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_reads_lab_names_only() {
        assert_eq!(owner_pid("kt1234-0-a"), Some(1234));
        assert_eq!(owner_pid("kt1234-12-switch"), Some(1234));
        assert_eq!(owner_pid("ktx-0-a"), None);
        assert_eq!(owner_pid("kt-0-a"), None);
        assert_eq!(owner_pid("kt1234"), None);
        assert_eq!(owner_pid("other"), None);
    }
}
