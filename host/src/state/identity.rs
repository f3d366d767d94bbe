//! The node's identity on disk: `state_dir/identity.key`, mode 0600, the
//! 64 bytes of [`Identity::to_bytes`] in a checksummed frame. Missing means
//! first boot: a new identity is generated and persisted. Present but
//! truncated or damaged is an error that says what to do; it is never
//! replaced silently, because a new identity is a new node id.
//!
//! Secret bytes are zeroized after use. This module never logs or prints keys.

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kairos_core::identity::{Identity, IDENTITY_LEN};
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use super::atomic;
use super::error::StateError;
use super::frame::{self, FrameError, Kind, HEADER_LEN};

/// The identity file's name in the state dir.
pub const IDENTITY_FILE: &str = "identity.key";

/// What [`load_or_create`] found.
pub struct LoadedIdentity {
    /// The node's keys.
    pub identity: Identity,
    /// Whether it was generated now (first boot).
    pub created: bool,
    /// The file's permission bits when they were looser than 0600 (they
    /// have been tightened; the keys may have been readable by others).
    pub loosened_mode: Option<u32>,
}

/// Loads the identity in `dir`, or generates one with `rng` and persists it
/// when there is none.
pub fn load_or_create(dir: &Path, rng: &mut (impl RngCore + CryptoRng)) -> Result<LoadedIdentity, StateError> {
    let path = dir.join(IDENTITY_FILE);
    let mut file = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let identity = Identity::generate(rng);
            let framed = Zeroizing::new(frame::encode(Kind::Identity, &identity.to_bytes()[..]));
            atomic::write(dir, IDENTITY_FILE, &framed, 0o600).map_err(StateError::io("write", &path))?;
            return Ok(LoadedIdentity {
                identity,
                created: true,
                loosened_mode: None,
            });
        }
        Err(e) => return Err(StateError::io("read", &path)(e)),
    };
    let mode = file
        .metadata()
        .map_err(StateError::io("read", &path))?
        .permissions()
        .mode()
        & 0o777;
    let loosened_mode = (mode & 0o077 != 0).then_some(mode);
    if loosened_mode.is_some() {
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).map_err(StateError::io("chmod", &path))?;
    }
    // A bit more than a frame can be, so trailing bytes are still seen.
    let mut bytes = Zeroizing::new(Vec::with_capacity(HEADER_LEN + IDENTITY_LEN + 1));
    (&mut file)
        .take((HEADER_LEN + IDENTITY_LEN + 1) as u64)
        .read_to_end(&mut bytes)
        .map_err(StateError::io("read", &path))?;
    let problem = |problem| StateError::Identity {
        path: path.clone(),
        problem,
    };
    let payload = frame::decode(Kind::Identity, &bytes).map_err(problem)?;
    let keys: &[u8; IDENTITY_LEN] = payload.try_into().map_err(|_| {
        problem(FrameError::UnexpectedLength {
            found: payload.len(),
            expected: IDENTITY_LEN,
        })
    })?;
    Ok(LoadedIdentity {
        identity: Identity::from_bytes(keys),
        created: false,
        loosened_mode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn first_boot_creates_then_loads_the_same_identity() {
        let d = dir();
        let first = load_or_create(d.path(), &mut OsRng).unwrap();
        assert!(first.created);
        let path = d.path().join(IDENTITY_FILE);
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&path).unwrap().len(), (HEADER_LEN + IDENTITY_LEN) as u64);
        let again = load_or_create(d.path(), &mut OsRng).unwrap();
        assert!(!again.created);
        assert_eq!(again.identity.node_id(), first.identity.node_id());
        assert_eq!(*again.identity.to_bytes(), *first.identity.to_bytes());
    }

    #[test]
    fn a_damaged_identity_is_an_error_and_is_left_alone() {
        let d = dir();
        load_or_create(d.path(), &mut OsRng).unwrap();
        let path = d.path().join(IDENTITY_FILE);
        let mut bytes = fs::read(&path).unwrap();
        bytes[HEADER_LEN + 10] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let err = load_or_create(d.path(), &mut OsRng).err().unwrap();
        assert!(matches!(
            err,
            StateError::Identity {
                problem: FrameError::ChecksumMismatch,
                ..
            }
        ));
        let text = err.to_string();
        assert!(
            text.contains("identity.key is unusable: checksum does not match"),
            "{text}"
        );
        assert!(text.contains("restore it from a backup, or delete it"), "{text}");
        assert_eq!(fs::read(&path).unwrap(), bytes, "never replaced");
    }

    #[test]
    fn a_truncated_identity_is_an_error() {
        let d = dir();
        load_or_create(d.path(), &mut OsRng).unwrap();
        let path = d.path().join(IDENTITY_FILE);
        let bytes = fs::read(&path).unwrap();
        for keep in [0, 10, HEADER_LEN, HEADER_LEN + 63] {
            fs::write(&path, &bytes[..keep]).unwrap();
            let err = load_or_create(d.path(), &mut OsRng).err().unwrap();
            assert!(
                matches!(
                    err,
                    StateError::Identity {
                        problem: FrameError::Truncated { .. },
                        ..
                    }
                ),
                "{keep}: {err}"
            );
            assert!(err.to_string().contains("truncated"));
        }
        // The raw 64 bytes without a frame (e.g. written by hand) are refused too.
        fs::write(&path, [7u8; IDENTITY_LEN]).unwrap();
        let err = load_or_create(d.path(), &mut OsRng).err().unwrap();
        assert!(err.to_string().contains("not a kairos-mesh state file"), "{err}");
    }

    #[test]
    fn loose_permissions_are_tightened_and_reported() {
        let d = dir();
        load_or_create(d.path(), &mut OsRng).unwrap();
        let path = d.path().join(IDENTITY_FILE);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let loaded = load_or_create(d.path(), &mut OsRng).unwrap();
        assert_eq!(loaded.loosened_mode, Some(0o644));
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
