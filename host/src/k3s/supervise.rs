//! k3s as a supervised child of the agent (when systemd is not PID 1, and
//! always under a test `KAIROS_ROOT`): started from a [`Launch`],
//! restarted when it exits with an exponential backoff of 1 s up to 60 s
//! (back to 1 s after a minute of running), its stdout and stderr forwarded
//! to the log as lines prefixed `k3s:`.
//!
//! [`Supervisor`] owns the child. A new launch ([`Supervisor::start`]) stops
//! the running child (SIGTERM, then SIGKILL after [`STOP_GRACE`]) and starts
//! the new one; [`Supervisor::update`] only changes what the next restart
//! runs. Dropping the supervisor (or aborting the task that holds it) sends
//! the child SIGTERM. The child's PID is kept in a file, so an agent that
//! was killed with SIGKILL stops the k3s it left behind when it comes back
//! ([`stop_leftover`]).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::process::{kill_process, Pid, Signal};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

use super::files;
use super::launch::Launch;

/// The first restart delay.
pub const MIN_BACKOFF: Duration = Duration::from_secs(1);
/// The longest restart delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A child that ran this long restarts after [`MIN_BACKOFF`] again.
pub const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// How long a child has to exit after SIGTERM before it gets SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(20);

/// The next restart delay after `current`: doubled, at most [`MAX_BACKOFF`].
pub fn next_backoff(current: Duration) -> Duration {
    (current * 2).clamp(MIN_BACKOFF, MAX_BACKOFF)
}

/// What the supervising task is told to run: a generation (a new one
/// replaces the child) and the launch.
type Order = Option<(u64, Launch)>;

/// The supervised k3s child. See the module docs.
pub struct Supervisor {
    order: watch::Sender<Order>,
    generation: u64,
    pid: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl Supervisor {
    /// A supervisor with nothing running. `pid_file` records the child's PID.
    pub fn new(pid_file: PathBuf) -> Supervisor {
        let (order, rx) = watch::channel(None);
        let pid = Arc::new(AtomicU32::new(0));
        let task = tokio::spawn(supervise(rx, pid.clone(), pid_file));
        Supervisor {
            order,
            generation: 0,
            pid,
            task,
        }
    }

    /// Stops what runs, if anything, and runs `launch`.
    pub fn start(&mut self, launch: Launch) {
        self.generation += 1;
        let generation = self.generation;
        self.order.send_replace(Some((generation, launch)));
    }

    /// Runs `launch` from the next restart on, without restarting now.
    pub fn update(&mut self, launch: Launch) {
        let generation = self.generation;
        self.order.send_modify(|o| {
            if o.is_some() {
                *o = Some((generation, launch));
            }
        });
    }

    /// Stops the child (SIGTERM, SIGKILL after [`STOP_GRACE`]) and waits
    /// until it is gone.
    pub async fn stop(&mut self) {
        self.generation += 1;
        self.order.send_replace(None);
        let deadline = Instant::now() + STOP_GRACE + Duration::from_secs(5);
        while self.pid.load(Ordering::SeqCst) != 0 && Instant::now() < deadline {
            sleep(Duration::from_millis(50)).await;
        }
    }

    /// The running child's PID, if any.
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::SeqCst)).filter(|p| *p != 0)
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(pid) = self.pid() {
            // Drop cannot wait: k3s shuts down on SIGTERM by itself.
            terminate_pid(pid, Signal::TERM);
        }
    }
}

fn terminate_pid(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process(pid, signal);
    }
}

/// The supervising task: runs the ordered launch, restarts it with backoff.
async fn supervise(mut orders: watch::Receiver<Order>, pid: Arc<AtomicU32>, pid_file: PathBuf) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let Some((generation, launch)) = orders.borrow_and_update().clone() else {
            if orders.changed().await.is_err() {
                return;
            }
            backoff = MIN_BACKOFF;
            continue;
        };
        let started = Instant::now();
        match spawn(&launch) {
            Err(e) => tracing::warn!(program = %launch.program.display(), "k3s could not start: {e}"),
            Ok(mut child) => {
                let id = child.id().unwrap_or(0);
                pid.store(id, Ordering::SeqCst);
                if let Err(e) = files::replace(&pid_file, format!("{id}\n").as_bytes(), 0o644) {
                    tracing::debug!("{e}");
                }
                tracing::info!(pid = id, subcommand = launch.subcommand(), "k3s started");
                let outcome = run_until_exit_or_replaced(&mut child, &mut orders, generation).await;
                pid.store(0, Ordering::SeqCst);
                let _ = std::fs::remove_file(&pid_file);
                match outcome {
                    Outcome::Exited(status) => tracing::warn!(%status, "k3s exited"),
                    Outcome::Replaced => {
                        backoff = MIN_BACKOFF;
                        continue;
                    }
                    Outcome::Closed => return,
                }
            }
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = MIN_BACKOFF;
        }
        tracing::info!(after_s = backoff.as_secs(), "k3s restarts");
        // Wait out the backoff, unless a new launch comes first.
        let deadline = Instant::now() + backoff;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                r = orders.changed() => {
                    if r.is_err() {
                        return;
                    }
                    if orders.borrow().as_ref().map(|(g, _)| *g) != Some(generation) {
                        break;
                    }
                }
            }
        }
        backoff = next_backoff(backoff);
    }
}

enum Outcome {
    Exited(ExitStatus),
    Replaced,
    Closed,
}

/// Waits for the child to exit, or for a new generation (then stops it).
async fn run_until_exit_or_replaced(
    child: &mut Child,
    orders: &mut watch::Receiver<Order>,
    generation: u64,
) -> Outcome {
    loop {
        tokio::select! {
            status = child.wait() => {
                return match status {
                    Ok(s) => Outcome::Exited(s),
                    Err(e) => {
                        tracing::warn!("cannot wait for the k3s child: {e}");
                        stop_child(child).await;
                        Outcome::Replaced
                    }
                };
            }
            r = orders.changed() => {
                let replaced = r.is_err() || orders.borrow().as_ref().map(|(g, _)| *g) != Some(generation);
                if replaced {
                    stop_child(child).await;
                    return if r.is_err() { Outcome::Closed } else { Outcome::Replaced };
                }
                // Same generation: only the next restart's launch changed.
            }
        }
    }
}

/// SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn stop_child(child: &mut Child) {
    if let Some(id) = child.id() {
        terminate_pid(id, Signal::TERM);
        if let Ok(Ok(status)) = timeout(STOP_GRACE, child.wait()).await {
            tracing::info!(%status, "k3s stopped");
            return;
        }
        tracing::warn!(pid = id, "k3s did not stop after SIGTERM: killing it");
    }
    let _ = child.kill().await;
}

fn spawn(launch: &Launch) -> std::io::Result<Child> {
    let mut child = Command::new(&launch.program)
        .args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(forward(out));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(forward(err));
    }
    Ok(child)
}

/// The longest piece of a line logged at once; longer lines are split.
const MAX_LINE: u64 = 16 * 1024;

/// Forwards each line of k3s's output to the log, prefixed `k3s:`. It
/// reads until the pipe closes whatever comes (bytes that are not UTF-8,
/// endless lines): a pipe left unread would block k3s.
async fn forward(stream: impl AsyncRead + Unpin) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match (&mut reader).take(MAX_LINE).read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buf);
                // Target `k3s`: `RUST_LOG=info,k3s=warn` quiets k3s but not the agent.
                tracing::info!(target: "k3s", "k3s: {}", line.trim_end());
            }
        }
    }
}

/// Stops a k3s child left by an agent that was killed (its PID in
/// `pid_file`, still running `program`), and removes the file.
pub async fn stop_leftover(pid_file: &Path, program: &Path) {
    let Ok(Some(text)) = files::read_optional(pid_file) else {
        return;
    };
    let _ = std::fs::remove_file(pid_file);
    let Some(pid) = std::str::from_utf8(&text)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
    else {
        return;
    };
    if !runs(pid, program) {
        return;
    }
    tracing::warn!(pid, "stopping the k3s a previous agent left running");
    terminate_pid(pid, Signal::TERM);
    let deadline = Instant::now() + STOP_GRACE;
    while runs(pid, program) {
        if Instant::now() >= deadline {
            terminate_pid(pid, Signal::KILL);
            return;
        }
        sleep(Duration::from_millis(100)).await;
    }
}

/// Whether process `pid` runs `program` (one of its arguments names it: a
/// script's interpreter comes first). Zombies do not count.
fn runs(pid: u32, program: &Path) -> bool {
    let Some(name) = program.file_name() else {
        return false;
    };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    if stat
        .rsplit(')')
        .next()
        .map(str::trim_start)
        .is_some_and(|s| s.starts_with('Z'))
    {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    cmdline
        .split(|b| *b == 0)
        .any(|arg| Path::new(std::ffi::OsStr::from_bytes(arg)).file_name() == Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let mut b = MIN_BACKOFF;
        let mut seen = vec![b.as_secs()];
        for _ in 0..8 {
            b = next_backoff(b);
            seen.push(b.as_secs());
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    fn script(dir: &Path, body: &str) -> Launch {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("k3s");
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"start $*\" >> \"{}/starts\"\n{body}\n", dir.display()),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Launch {
            program: path,
            args: vec!["agent".into()],
            env: vec![],
        }
    }

    async fn wait_lines(path: &Path, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let lines: Vec<String> = std::fs::read_to_string(path)
                .map(|s| s.lines().map(String::from).collect())
                .unwrap_or_default();
            if lines.len() >= n {
                return lines;
            }
            assert!(
                Instant::now() < deadline,
                "{n} lines expected in {}, saw {lines:?}",
                path.display()
            );
            sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_child_that_exits_is_restarted_with_the_latest_launch() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Supervisor::new(dir.path().join("k3s.pid"));
        let mut l = script(dir.path(), "echo oops >&2; exit 1");
        s.start(l.clone());
        let starts = wait_lines(&dir.path().join("starts"), 1).await;
        assert_eq!(starts, ["start agent"]);
        // What the next restart runs may change without a restart now.
        l.args.push("--second".into());
        s.update(l);
        let started = Instant::now();
        let starts = wait_lines(&dir.path().join("starts"), 2).await;
        assert_eq!(starts[1], "start agent --second");
        assert!(started.elapsed() >= Duration::from_millis(500), "after the backoff");
        s.stop().await;
        assert_eq!(s.pid(), None);
    }

    #[tokio::test]
    async fn a_new_launch_replaces_the_child_and_drop_terminates_it() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("k3s.pid");
        let mut s = Supervisor::new(pid_file.clone());
        let l = script(dir.path(), "exec sleep 3600");
        s.start(l.clone());
        wait_lines(&dir.path().join("starts"), 1).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.pid().is_none() || !pid_file.exists() {
            assert!(Instant::now() < deadline);
            sleep(Duration::from_millis(20)).await;
        }
        let first = s.pid().unwrap();
        s.start(l.clone());
        wait_lines(&dir.path().join("starts"), 2).await;
        assert!(!runs(first, Path::new("sleep")), "the first child was stopped");
        while s.pid().is_none_or(|p| p == first) {
            assert!(Instant::now() < deadline);
            sleep(Duration::from_millis(20)).await;
        }
        let second = s.pid().unwrap();
        assert!(runs(second, Path::new("sleep")));
        drop(s);
        let deadline = Instant::now() + Duration::from_secs(10);
        while runs(second, Path::new("sleep")) {
            assert!(Instant::now() < deadline, "SIGTERM on drop");
            sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn output_is_read_to_the_end_whatever_it_is() {
        let bytes: Vec<u8> = [&b"one\n"[..], &[0xff, 0xfe, b'\n'], &vec![b'x'; 100_000], b"\nlast"].concat();
        let (mut w, r) = tokio::io::duplex(1024);
        let reader = tokio::spawn(forward(r));
        tokio::io::AsyncWriteExt::write_all(&mut w, &bytes).await.unwrap();
        drop(w);
        timeout(Duration::from_secs(5), reader).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_leftover_child_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new("sleep").arg("3600").spawn().unwrap();
        // Until the child has exec'd, its command line is this test's.
        let exec_deadline = Instant::now() + Duration::from_secs(10);
        while !runs(child.id(), Path::new("/bin/sleep")) && Instant::now() < exec_deadline {
            sleep(Duration::from_millis(10)).await;
        }
        let pid_file = dir.path().join("k3s.pid");
        std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
        // Another program under that PID is left alone.
        stop_leftover(&pid_file, Path::new("/usr/local/bin/k3s")).await;
        assert!(child.try_wait().unwrap().is_none());
        std::fs::write(&pid_file, format!("{}\n", child.id())).unwrap();
        stop_leftover(&pid_file, Path::new("/bin/sleep")).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            sleep(Duration::from_millis(20)).await;
        };
        assert!(
            status.is_some_and(|s| s.code().is_none()),
            "killed by a signal: {status:?}"
        );
        assert!(!pid_file.exists());
    }
}
