//! [`StateWriter`]: writes state dir blobs on a thread of its own, so the
//! driver never waits for an fsync. Blobs are written in the order they
//! were handed over; when several versions of one blob queue up, only the
//! newest is written. [`StateWriter::finish`] waits until everything handed
//! over is on disk (used on shutdown).

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::state::StateDir;

/// See the module docs.
#[derive(Debug)]
pub struct StateWriter {
    tx: Option<mpsc::Sender<(&'static str, Vec<u8>)>>,
    thread: Option<JoinHandle<()>>,
}

impl StateWriter {
    /// Starts the writer thread for `dir`.
    pub fn start(dir: Arc<StateDir>) -> std::io::Result<StateWriter> {
        let (tx, rx) = mpsc::channel::<(&'static str, Vec<u8>)>();
        let thread = std::thread::Builder::new().name("kairos-state".into()).spawn(move || {
            while let Ok(first) = rx.recv() {
                // Newest version of each blob queued so far.
                let mut batch: BTreeMap<&'static str, Vec<u8>> = BTreeMap::new();
                batch.insert(first.0, first.1);
                while let Ok((name, bytes)) = rx.try_recv() {
                    batch.insert(name, bytes);
                }
                for (name, bytes) in batch {
                    if let Err(e) = dir.write_blob(name, &bytes) {
                        tracing::warn!(error = %e, "cannot save state");
                    }
                }
            }
        })?;
        Ok(StateWriter {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Queues `bytes` as the new content of blob `name`.
    pub fn write(&self, name: &'static str, bytes: Vec<u8>) {
        if let Some(tx) = &self.tx {
            let _ = tx.send((name, bytes));
        }
    }

    /// Waits until every queued blob is written.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
