//! [`StateLock`]: an exclusive `flock` on `state_dir/lock`, held for as long
//! as the agent runs, so two agents never share a state dir (they would
//! claim the same identity and overwrite each other's files). The holder
//! writes its PID into the file, so the loser can name it.
//!
//! `flock` locks belong to the open file: the kernel drops the lock when the
//! holder exits or crashes, so a stale lock file never blocks a restart.
//! The file itself is never deleted (deleting it would let a third process
//! lock a new file while the second still holds the old one).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{flock, FlockOperation};
use rustix::io::Errno;

use super::error::StateError;

/// The lock file's name in the state dir.
pub const LOCK_FILE: &str = "lock";

/// A held lock; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateLock {
    /// Takes the lock of `dir`, without waiting.
    pub fn acquire(dir: &Path) -> Result<StateLock, StateError> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(StateError::io("open the lock file", &path))?;
        match flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(e) if e == Errno::WOULDBLOCK => {
                return Err(StateError::Locked {
                    dir: dir.to_path_buf(),
                    pid: holder_pid(&mut file),
                })
            }
            Err(e) => return Err(StateError::io("lock", &path)(e.into())),
        }
        // Ours now: record who holds it, for the next one who tries.
        let record = (|| {
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            writeln!(file, "{}", std::process::id())
        })();
        record.map_err(StateError::io("write", &path))?;
        Ok(StateLock { _file: file })
    }
}

/// The PID the holder wrote, if the file holds one.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid() {
        let dir = tempfile::tempdir().unwrap();
        let first = StateLock::acquire(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(LOCK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let err = StateLock::acquire(dir.path()).unwrap_err();
        match &err {
            StateError::Locked { pid, .. } => assert_eq!(*pid, Some(std::process::id())),
            other => panic!("{other:?}"),
        }
        let text = err.to_string();
        assert!(text.contains("in use by another kairos agent"), "{text}");
        assert!(text.contains(&format!("(PID {})", std::process::id())), "{text}");
        drop(first);
        StateLock::acquire(dir.path()).expect("free again once the holder is gone");
    }
}
