//! [`StateWriter`]: writes state dir blobs on a thread of its own, so the
//! driver never waits for an fsync. When several versions of one blob
//! queue up, only the newest is written. [`StateWriter::finish`] waits
//! until everything handed over is on disk, or has failed once more (used
//! on shutdown).
//!
//! A write that fails (a full disk, an I/O error) never stops the agent and
//! never leaves a partial file in place of a good one (the state dir writes
//! a temporary file and renames it only once it is complete). The newest
//! version of each blob that could not be written stays pending in memory
//! and is written again with the next write, or after [`RETRY`] without
//! one. A failure episode is logged once (a warning naming the error), its
//! end once ("state saved again"); the attempts in between only count:
//! [`SaveStats`], shown in `/metrics`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::state::{StateDir, StateError};

/// How long unsaved blobs wait for the next attempt when nothing new is
/// written meanwhile.
pub const RETRY: Duration = Duration::from_secs(5);

/// Where blobs go: the state dir, or a stand-in that fails on demand in
/// tests (a fault wrapper, not a flag in the writer).
pub trait BlobStore: Send + Sync + 'static {
    /// Replaces blob `name` with `data`, whole or not at all.
    fn write_blob(&self, name: &str, data: &[u8]) -> Result<(), StateError>;
}

impl BlobStore for StateDir {
    fn write_blob(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        StateDir::write_blob(self, name, data)
    }
}

/// How saving goes, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SaveStats {
    /// Blob writes that failed since start.
    pub write_errors: u64,
    /// Blobs whose newest version is not on disk yet (waiting for a retry).
    pub unsaved: usize,
}

/// The counters the writer thread keeps and the driver reads.
#[derive(Debug, Default)]
struct Counters {
    write_errors: AtomicU64,
    unsaved: AtomicUsize,
}

/// See the module docs.
#[derive(Debug)]
pub struct StateWriter {
    tx: Option<mpsc::Sender<(&'static str, Vec<u8>)>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl StateWriter {
    /// Starts the writer thread for `dir`, retrying failed writes after [`RETRY`].
    pub fn start(dir: Arc<StateDir>) -> std::io::Result<StateWriter> {
        StateWriter::start_with(dir, RETRY)
    }

    /// Starts the writer thread for `store`, retrying failed writes after `retry`.
    pub fn start_with(store: Arc<impl BlobStore>, retry: Duration) -> std::io::Result<StateWriter> {
        let (tx, rx) = mpsc::channel::<(&'static str, Vec<u8>)>();
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let thread = std::thread::Builder::new()
            .name("kairos-state".into())
            .spawn(move || run(&*store, &rx, &shared, retry))?;
        Ok(StateWriter {
            tx: Some(tx),
            thread: Some(thread),
            counters,
        })
    }

    /// Queues `bytes` as the new content of blob `name`.
    pub fn write(&self, name: &'static str, bytes: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((name, bytes));
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> SaveStats {
        SaveStats {
            write_errors: self.counters.write_errors.load(Ordering::Relaxed),
            unsaved: self.counters.unsaved.load(Ordering::Relaxed),
        }
    }

    /// Waits until every queued blob is written, or has failed once more.
    pub fn finish(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The writer thread: waits for blobs (or the retry), writes the newest
/// version of each pending one, until the sender is dropped.
fn run(store: &impl BlobStore, rx: &mpsc::Receiver<(&'static str, Vec<u8>)>, counters: &Counters, retry: Duration) {
    let mut pending: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
    let mut health = SaveHealth::default();
    loop {
        let next = if pending.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(retry)
        };
        let open = match next {
            Ok((name, bytes)) => {
                pending.insert(name, bytes);
                true
            }
            Err(RecvTimeoutError::Timeout) => true,
            Err(RecvTimeoutError::Disconnected) => false,
        };
        while let Ok((name, bytes)) = rx.try_recv() {
            pending.insert(name, bytes);
        }
        pending.retain(|name, bytes| match store.write_blob(name, bytes) {
            Ok(()) => false,
            Err(e) => {
                counters.write_errors.fetch_add(1, Ordering::Relaxed);
                if health.failed() {
                    tracing::warn!(
                        error = %e,
                        retry_s = retry.as_secs(),
                        "cannot save state; the agent runs on with the newest state in memory and retries \
                         (the files on disk keep their previous version)"
                    );
                } else {
                    tracing::debug!(error = %e, "cannot save state (still)");
                }
                true
            }
        });
        counters.unsaved.store(pending.len(), Ordering::Relaxed);
        if pending.is_empty() {
            if let Some(failures) = health.saved() {
                tracing::info!(failed_writes = failures, "state saved again");
            }
        }
        if !open {
            if !pending.is_empty() {
                let files: Vec<&str> = pending.keys().copied().collect();
                tracing::warn!(
                    ?files,
                    "stopping with state not saved: the next start uses the previous version of these files"
                );
            }
            return;
        }
    }
}

/// Whether saving works: turns a run of failures into one report at its
/// start and one at its end.
#[derive(Debug, Default)]
struct SaveHealth {
    /// Failures in the current episode; 0 while saving works.
    failures: u64,
}

impl SaveHealth {
    /// A write failed; `true` if it starts an episode (report it).
    fn failed(&mut self) -> bool {
        self.failures += 1;
        self.failures == 1
    }

    /// Everything pending is saved; the episode's failure count if one ended.
    fn saved(&mut self) -> Option<u64> {
        let failures = std::mem::take(&mut self.failures);
        (failures > 0).then_some(failures)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::atomic::AtomicBool;
    use std::time::Instant;

    /// The state dir behind a switch that makes every write fail as a full
    /// disk does.
    struct FullDisk {
        dir: StateDir,
        full: AtomicBool,
        attempts: AtomicU64,
    }

    impl BlobStore for FullDisk {
        fn write_blob(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
            self.attempts.fetch_add(1, Ordering::Relaxed);
            if self.full.load(Ordering::Relaxed) {
                let path = self.dir.path().join(format!("{name}.state"));
                return Err(StateError::io("write", path)(io::Error::from_raw_os_error(
                    libc::ENOSPC,
                )));
            }
            self.dir.write_blob(name, data)
        }
    }

    fn full_disk(root: &std::path::Path) -> Arc<FullDisk> {
        Arc::new(FullDisk {
            dir: StateDir::open(root).unwrap(),
            full: AtomicBool::new(false),
            attempts: AtomicU64::new(0),
        })
    }

    /// Polls `f` until it holds (deadline 10 s).
    fn wait(what: &str, f: impl Fn() -> bool) {
        let start = Instant::now();
        while !f() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "timed out waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn everything_queued_is_on_disk_after_finish_newest_wins() {
        let root = tempfile::tempdir().unwrap();
        let dir = Arc::new(StateDir::open(root.path()).unwrap());
        let w = StateWriter::start(dir.clone()).unwrap();
        for i in 0..50u8 {
            w.write("ledger-snapshot", vec![i; 100]);
        }
        w.write("address-claim", vec![10, 1, 0, 7]);
        w.finish();
        assert_eq!(dir.read_blob("ledger-snapshot").unwrap().unwrap(), vec![49u8; 100]);
        assert_eq!(dir.read_blob("address-claim").unwrap().unwrap(), vec![10, 1, 0, 7]);
    }

    #[test]
    fn a_full_disk_keeps_the_old_files_counts_and_retries_until_saved() {
        let root = tempfile::tempdir().unwrap();
        let store = full_disk(root.path());
        store.dir.write_blob("ledger-snapshot", b"old").unwrap();
        let w = StateWriter::start_with(store.clone(), Duration::from_millis(20)).unwrap();
        store.full.store(true, Ordering::Relaxed);
        w.write("ledger-snapshot", b"new 1".to_vec());
        w.write("ledger-snapshot", b"new 2".to_vec());
        // Retried on the timer alone: several failures, one blob pending.
        wait("three failed attempts", || w.stats().write_errors >= 3);
        assert_eq!(w.stats().unsaved, 1);
        assert_eq!(store.dir.read_blob("ledger-snapshot").unwrap().unwrap(), b"old");
        // A newer version replaces the pending one; the disk frees up.
        w.write("ledger-snapshot", b"new 3".to_vec());
        store.full.store(false, Ordering::Relaxed);
        wait("the pending blob saved", || w.stats().unsaved == 0);
        assert_eq!(store.dir.read_blob("ledger-snapshot").unwrap().unwrap(), b"new 3");
        // Nothing pending: no more attempts.
        let attempts = store.attempts.load(Ordering::Relaxed);
        let errors = w.stats().write_errors;
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(store.attempts.load(Ordering::Relaxed), attempts, "idle once saved");
        w.finish();
        assert_eq!(store.attempts.load(Ordering::Relaxed), attempts);
        assert!(errors >= 3);
    }

    #[test]
    fn finish_on_a_full_disk_tries_once_more_and_returns() {
        let root = tempfile::tempdir().unwrap();
        let store = full_disk(root.path());
        store.full.store(true, Ordering::Relaxed);
        // A retry far away: finish must not wait for it.
        let w = StateWriter::start_with(store.clone(), Duration::from_secs(3600)).unwrap();
        w.write("address-claim", vec![10, 1, 0, 7]);
        wait("the first attempt", || w.stats().write_errors == 1);
        let started = Instant::now();
        w.finish();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(store.attempts.load(Ordering::Relaxed), 2, "one attempt more at stop");
        assert_eq!(store.dir.read_blob("address-claim").unwrap(), None);
    }

    #[test]
    fn a_failure_episode_is_reported_once_and_its_end_once() {
        let mut h = SaveHealth::default();
        assert_eq!(h.saved(), None, "nothing failed: nothing to report");
        assert!(h.failed(), "the first failure is reported");
        for _ in 0..100 {
            assert!(!h.failed(), "the rest are not");
        }
        assert_eq!(h.saved(), Some(101));
        assert_eq!(h.saved(), None);
        assert!(h.failed(), "a new episode is reported again");
    }
}
