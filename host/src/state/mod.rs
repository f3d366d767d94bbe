//! The agent's state on disk, in one directory (`p2p.mesh.state_dir`,
//! default `/var/lib/kairos-mesh`):
//!
//! | file | holds | mode |
//! |---|---|---|
//! | `lock` | the PID of the agent holding the directory's `flock` | 0600 |
//! | `identity.key` | the node's keys (64 bytes, framed) | 0600 |
//! | `NAME.state` | an opaque blob (address claim, ledger snapshot, role record), framed | 0600 |
//!
//! [`StateDir::open`] creates the directory with mode 0700, takes the lock
//! (a second agent gets [`StateError::Locked`]) and removes temporary files
//! a crash left ([`StateDir::leftovers`] names them). Every write is crash
//! safe ([`atomic`]): temporary file, fsync, rename, fsync of the
//! directory; a write that fails (a full disk) leaves the previous file as
//! it was. Every file is framed ([`frame`]: magic, version, length, BLAKE2s
//! checksum), so a torn or damaged file is reported, never taken for data.
//! A damaged blob is moved aside ([`StateDir::set_aside_blob`]:
//! `NAME.state.damaged-<unix time>`), never deleted.
//!
//! This module stores bytes; it never interprets blobs, and it never
//! replaces an identity that exists but cannot be read.

mod atomic;
mod error;
mod frame;
mod identity;
mod lock;

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand_core::{CryptoRng, RngCore};

pub use error::StateError;
pub use identity::LoadedIdentity;

use frame::Kind;
use lock::StateLock;

/// Blob names the agent uses.
pub mod blobs {
    /// This node's claimed overlay address.
    pub const ADDRESS_CLAIM: &str = "address-claim";
    /// A snapshot of the replicated ledger.
    pub const LEDGER_SNAPSHOT: &str = "ledger-snapshot";
    /// This node's role record (the election's durable state).
    pub const ROLE_RECORD: &str = "role-record";
}

/// Extension of blob files.
const BLOB_EXT: &str = "state";
/// What a blob moved aside gets after its name: `NAME.state.damaged-<unix time>`.
const DAMAGED_SUFFIX: &str = ".damaged-";
/// Longest blob name.
const MAX_NAME: usize = 64;

/// An open, locked state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    /// Temporary files of interrupted writes removed at open.
    leftovers: Vec<String>,
    _lock: StateLock,
}

impl StateDir {
    /// Creates `path` if needed (mode 0700, parents as the umask says),
    /// makes sure it is 0700, takes its lock and removes leftovers of
    /// interrupted writes.
    pub fn open(path: &Path) -> Result<StateDir, StateError> {
        let create_err = |source| StateError::CreateDir {
            path: path.to_path_buf(),
            source,
        };
        let existed = path.exists();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .map_err(create_err)?;
        let meta = fs::metadata(path).map_err(create_err)?;
        if !meta.is_dir() {
            return Err(create_err(io::Error::other("it exists and is not a directory")));
        }
        if meta.permissions().mode() & 0o777 != 0o700 {
            fs::set_permissions(path, fs::Permissions::from_mode(0o700)).map_err(create_err)?;
        }
        if !existed {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                atomic::sync_dir(parent).map_err(create_err)?;
            }
        }
        let lock = StateLock::acquire(path)?;
        let leftovers = atomic::remove_stale(path).map_err(StateError::io("clean up", path))?;
        Ok(StateDir {
            path: path.to_path_buf(),
            leftovers,
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary files of interrupted writes (a crash, a SIGKILL, a
    /// power cut mid-write) that [`open`](Self::open) removed, with the
    /// file each was to replace: that file is the previous version, whole.
    pub fn leftovers(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.leftovers.iter().map(|t| (t.as_str(), atomic::target_of(t)))
    }

    /// Whether any blob file is present (state of an earlier run).
    pub fn has_blobs(&self) -> Result<bool, StateError> {
        let io = StateError::io("read", &self.path);
        for entry in fs::read_dir(&self.path).map_err(io)? {
            let name = entry.map_err(StateError::io("read", &self.path))?.file_name();
            if Path::new(&name).extension().is_some_and(|e| e == BLOB_EXT) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The node's identity: loaded, or generated with `rng` and persisted
    /// on first boot. A damaged identity file is an error, never replaced.
    pub fn load_or_create_identity(&self, rng: &mut (impl RngCore + CryptoRng)) -> Result<LoadedIdentity, StateError> {
        identity::load_or_create(&self.path, rng)
    }

    /// Stores `data` as the blob `name`, replacing it crash safely.
    pub fn write_blob(&self, name: &str, data: &[u8]) -> Result<(), StateError> {
        let file = blob_file(name)?;
        if data.len() > frame::MAX_PAYLOAD {
            return Err(StateError::io("write", self.path.join(&file))(io::Error::other(
                format!("a state blob holds at most {} MiB", frame::MAX_PAYLOAD >> 20),
            )));
        }
        let framed = frame::encode(Kind::Blob, data);
        atomic::write(&self.path, &file, &framed, 0o600).map_err(StateError::io("write", self.path.join(&file)))
    }

    /// The blob `name`, or `None` if it was never written. A damaged blob is
    /// [`StateError::Blob`]; move it aside with
    /// [`set_aside_blob`](Self::set_aside_blob) if the data can be rebuilt.
    pub fn read_blob(&self, name: &str) -> Result<Option<Vec<u8>>, StateError> {
        let path = self.path.join(blob_file(name)?);
        let mut bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StateError::io("read", &path)(e)),
        };
        let len = frame::decode(Kind::Blob, &bytes)
            .map_err(|problem| StateError::Blob {
                path: path.clone(),
                problem,
            })?
            .len();
        bytes.drain(..frame::HEADER_LEN);
        debug_assert_eq!(bytes.len(), len);
        Ok(Some(bytes))
    }

    /// Moves the blob `name` aside, to `NAME.state.damaged-<unix time>`
    /// (`-2`, `-3`, ... after it if that exists), so the agent starts
    /// without it and the bytes stay for an operator to look at. Returns the
    /// new file name, `None` if there was no blob.
    pub fn set_aside_blob(&self, name: &str) -> Result<Option<String>, StateError> {
        let file = blob_file(name)?;
        let from = self.path.join(&file);
        if !from.exists() {
            return Ok(None);
        }
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let base = format!("{file}{DAMAGED_SUFFIX}{secs}");
        // We hold the lock: nothing else creates files here meanwhile.
        let aside = (1..)
            .map(|n| if n == 1 { base.clone() } else { format!("{base}-{n}") })
            .find(|f| !self.path.join(f).exists())
            .expect("some suffix is free");
        let to = self.path.join(&aside);
        fs::rename(&from, &to).map_err(StateError::io("move aside", &from))?;
        atomic::sync_dir(&self.path).map_err(StateError::io("sync", &self.path))?;
        Ok(Some(aside))
    }
}

/// The file name of blob `name`: lowercase letters, digits and inner '-'.
fn blob_file(name: &str) -> Result<String, StateError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(format!("{name}.{BLOB_EXT}"))
    } else {
        Err(StateError::BadName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame::FrameError;
    use identity::IDENTITY_FILE;
    use lock::LOCK_FILE;
    use rand_core::OsRng;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn creates_the_directory_0700_with_missing_parents() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("var/lib/kairos-mesh");
        let dir = StateDir::open(&path).unwrap();
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(LOCK_FILE)), 0o600);
        assert_eq!(dir.path(), path);
    }

    #[test]
    fn tightens_an_existing_directory() {
        let root = tempfile::tempdir().unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let _dir = StateDir::open(root.path()).unwrap();
        assert_eq!(mode(root.path()), 0o700);
    }

    #[test]
    fn refuses_a_file_where_the_directory_should_be() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("state");
        fs::write(&path, b"x").unwrap();
        let err = StateDir::open(&path).unwrap_err();
        assert!(matches!(err, StateError::CreateDir { .. }), "{err}");
    }

    #[test]
    fn two_agents_never_share_a_directory() {
        let root = tempfile::tempdir().unwrap();
        let first = StateDir::open(root.path()).unwrap();
        let err = StateDir::open(root.path()).unwrap_err();
        assert!(matches!(err, StateError::Locked { pid: Some(_), .. }), "{err}");
        drop(first);
        StateDir::open(root.path()).unwrap();
    }

    #[test]
    fn blobs_round_trip() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        assert_eq!(dir.read_blob(blobs::ADDRESS_CLAIM).unwrap(), None);
        dir.write_blob(blobs::ADDRESS_CLAIM, b"10.1.0.7").unwrap();
        assert_eq!(dir.read_blob(blobs::ADDRESS_CLAIM).unwrap().unwrap(), b"10.1.0.7");
        dir.write_blob(blobs::ADDRESS_CLAIM, b"").unwrap();
        assert_eq!(dir.read_blob(blobs::ADDRESS_CLAIM).unwrap().unwrap(), b"");
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        dir.write_blob(blobs::LEDGER_SNAPSHOT, &big).unwrap();
        assert_eq!(dir.read_blob(blobs::LEDGER_SNAPSHOT).unwrap().unwrap(), big);
        assert_eq!(mode(&root.path().join("ledger-snapshot.state")), 0o600);
    }

    #[test]
    fn damaged_and_truncated_blobs_are_reported() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        dir.write_blob("claim", b"10.1.0.7").unwrap();
        let path = root.path().join("claim.state");
        let good = fs::read(&path).unwrap();

        let mut flipped = good.clone();
        *flipped.last_mut().unwrap() ^= 4;
        fs::write(&path, &flipped).unwrap();
        let err = dir.read_blob("claim").unwrap_err();
        assert!(
            matches!(
                err,
                StateError::Blob {
                    problem: FrameError::ChecksumMismatch,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains("claim.state is unusable: checksum does not match"));

        fs::write(&path, &good[..good.len() - 3]).unwrap();
        let err = dir.read_blob("claim").unwrap_err();
        assert!(
            matches!(
                err,
                StateError::Blob {
                    problem: FrameError::Truncated { .. },
                    ..
                }
            ),
            "{err}"
        );

        // The caller moves it aside and goes on; the bytes are kept.
        let aside = dir.set_aside_blob("claim").unwrap().unwrap();
        assert!(aside.starts_with("claim.state.damaged-"), "{aside}");
        assert_eq!(fs::read(root.path().join(&aside)).unwrap(), &good[..good.len() - 3]);
        assert_eq!(dir.read_blob("claim").unwrap(), None);
        assert_eq!(dir.set_aside_blob("claim").unwrap(), None, "nothing left to move");
    }

    #[test]
    fn setting_aside_never_overwrites_an_earlier_damaged_copy() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        let mut names = Vec::new();
        for i in 0..3u8 {
            fs::write(root.path().join("role-record.state"), [i; 5]).unwrap();
            assert!(matches!(
                dir.read_blob(blobs::ROLE_RECORD),
                Err(StateError::Blob {
                    problem: FrameError::NotAStateFile,
                    ..
                })
            ));
            names.push(dir.set_aside_blob(blobs::ROLE_RECORD).unwrap().unwrap());
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(fs::read(root.path().join(name)).unwrap(), [i as u8; 5], "{name}");
        }
        // The copies are not blobs: a later start does not read them as state.
        assert!(!dir.has_blobs().unwrap());
        assert_eq!(dir.read_blob(blobs::ROLE_RECORD).unwrap(), None);
    }

    #[test]
    fn a_crash_mid_write_keeps_the_old_blob_and_the_leftover_is_cleaned() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        dir.write_blob("claim", b"old").unwrap();
        // Crash between the temporary write and the rename.
        let staged = atomic::stage(root.path(), "claim.state", &frame::encode(Kind::Blob, b"new"), 0o600).unwrap();
        drop(staged);
        assert_eq!(dir.read_blob("claim").unwrap().unwrap(), b"old");
        drop(dir);
        // The next start removes the leftover and still reads the old content.
        let dir = StateDir::open(root.path()).unwrap();
        let names: Vec<String> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(atomic::TEMP_PREFIX)), "{names:?}");
        assert_eq!(dir.read_blob("claim").unwrap().unwrap(), b"old");
        // It says what it removed and which file keeps its previous version.
        let leftovers: Vec<_> = dir.leftovers().collect();
        assert_eq!(leftovers.len(), 1);
        assert_eq!(leftovers[0].1, Some("claim.state"));
        drop(dir);
        let dir = StateDir::open(root.path()).unwrap();
        assert_eq!(dir.leftovers().count(), 0, "only what this open removed");
        assert!(dir.has_blobs().unwrap());
    }

    #[test]
    fn identity_through_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        let a = dir.load_or_create_identity(&mut OsRng).unwrap();
        let b = dir.load_or_create_identity(&mut OsRng).unwrap();
        assert!(a.created && !b.created);
        assert_eq!(a.identity.node_id(), b.identity.node_id());
        assert_eq!(mode(&root.path().join(IDENTITY_FILE)), 0o600);
    }

    #[test]
    fn blob_names_are_checked() {
        assert_eq!(blob_file("address-claim").unwrap(), "address-claim.state");
        for bad in ["", "../x", "a/b", "Upper", "-x", ".tmp-x", &"x".repeat(65)] {
            assert!(matches!(blob_file(bad), Err(StateError::BadName(_))), "{bad}");
        }
    }
}
