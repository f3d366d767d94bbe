//! Crash-safe file replacement: write a temporary file in the same
//! directory, fsync it, rename it over the target, fsync the directory. A
//! crash at any point leaves either the old file or the new one, never a
//! mix; at worst a stray temporary file, which [`remove_stale`] deletes.
//!
//! The write is split in two ([`stage`], then [`Staged::commit`]) so tests
//! can stop between them, as a crash would. This module knows nothing of
//! what the files hold.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Temporary files start with this, so leftovers can be found and removed.
pub const TEMP_PREFIX: &str = ".tmp-";

/// A temporary file written and synced, not yet in place.
#[derive(Debug)]
pub struct Staged {
    temp: PathBuf,
    target: PathBuf,
    dir: PathBuf,
}

/// Writes `bytes` to a new temporary file beside `dir/name` with `mode`,
/// and syncs it to disk.
pub fn stage(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<Staged> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let temp = dir.join(format!("{TEMP_PREFIX}{name}.{}.{seq}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    Ok(Staged {
        temp,
        target: dir.join(name),
        dir: dir.to_path_buf(),
    })
}

impl Staged {
    /// Renames the temporary file over the target and syncs the directory,
    /// so the rename itself survives a power loss.
    pub fn commit(self) -> io::Result<()> {
        if let Err(e) = fs::rename(&self.temp, &self.target) {
            let _ = fs::remove_file(&self.temp);
            return Err(e);
        }
        sync_dir(&self.dir)
    }
}

/// Replaces `dir/name` with `bytes` (mode `mode` for a new file), crash safe.
pub fn write(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> io::Result<()> {
    stage(dir, name, bytes, mode)?.commit()
}

/// Syncs a directory's entries (creations, renames, removals) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes temporary files a crash left in `dir` and returns their names,
/// sorted. Only call this while holding the directory's lock (no write is
/// in flight).
pub fn remove_stale(dir: &Path) -> io::Result<Vec<String>> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
            removed.push(name);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    removed.sort();
    Ok(removed)
}

/// The file a temporary file of [`stage`] was to replace
/// (`.tmp-NAME.PID.SEQ` -> `NAME`), if it has that form.
pub fn target_of(temp: &str) -> Option<&str> {
    let rest = temp.strip_prefix(TEMP_PREFIX)?;
    let (rest, seq) = rest.rsplit_once('.')?;
    let (name, pid) = rest.rsplit_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(seq) && digits(pid) && !name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "f", b"one", 0o600).unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"one");
        write(dir.path(), "f", b"two", 0o600).unwrap();
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"two");
        let mode = fs::metadata(dir.path().join("f")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary file left");
    }

    #[test]
    fn a_crash_before_the_rename_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "f", b"old", 0o600).unwrap();
        let staged = stage(dir.path(), "f", b"new, half done", 0o600).unwrap();
        // The process dies here: the rename never happens.
        std::mem::forget(staged);
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"old");
        let removed = remove_stale(dir.path()).unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(target_of(&removed[0]), Some("f"));
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"old");
    }

    #[test]
    fn a_leftover_names_the_file_it_was_to_replace() {
        assert_eq!(
            target_of(".tmp-ledger-snapshot.state.4242.7"),
            Some("ledger-snapshot.state")
        );
        assert_eq!(target_of(".tmp-identity.key.1.0"), Some("identity.key"));
        for other in [".tmp-x", ".tmp-.1.2", ".tmp-x.1.", ".tmp-x.a.2", "x.state.1.2"] {
            assert_eq!(target_of(other), None, "{other}");
        }
    }

    #[test]
    fn a_failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-such-dir");
        assert!(write(&missing, "f", b"x", 0o600).is_err());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
