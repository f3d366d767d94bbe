//! The bootstrap's small file operations: crash-safe replacement of a file
//! it owns (temporary file, fsync, rename, fsync of the directory), and
//! reading a file k3s may not have written yet.
//!
//! The agent's state dir has its own writer (`crate::state`); this one
//! writes system paths under `KAIROS_ROOT` and creates their parent
//! directories. It knows nothing of what the files hold.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file operation that failed, and on which path.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} {}: {source}", path.display())]
pub struct FileError {
    /// What was being done (`write`, `read`).
    pub action: &'static str,
    /// The path.
    pub path: PathBuf,
    /// The I/O error.
    pub source: io::Error,
}

/// Replaces `path` with `bytes` (mode `mode`), creating its directory.
/// A crash leaves the old file or the new one, never a mix.
pub fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FileError> {
    let err = |source| FileError {
        action: "write",
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().ok_or_else(|| err(io::ErrorKind::InvalidInput.into()))?;
    fs::create_dir_all(dir).map_err(err)?;
    let name = path
        .file_name()
        .ok_or_else(|| err(io::ErrorKind::InvalidInput.into()))?;
    let temp = dir.join(format!(".tmp-{}.{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let _ = fs::remove_file(&temp);
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&temp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&temp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(err)
}

/// The contents of `path`, `None` if it does not exist (yet).
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, FileError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError {
            action: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replace_creates_directories_and_sets_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c.env");
        assert_eq!(read_optional(&path).unwrap(), None);
        replace(&path, b"one", 0o600).unwrap();
        replace(&path, b"two", 0o600).unwrap();
        assert_eq!(read_optional(&path).unwrap().as_deref(), Some(&b"two"[..]));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let left: Vec<_> = fs::read_dir(dir.path().join("a/b")).unwrap().collect();
        assert_eq!(left.len(), 1, "no temporary file left");
        let e = read_optional(dir.path()).unwrap_err();
        assert!(e.to_string().starts_with("cannot read"), "{e}");
    }
}
