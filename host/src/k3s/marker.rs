//! The deployed marker: the role k3s was deployed in on this machine,
//! kept in one small file (`$KAIROS_ROOT/var/lib/kairos-mesh/k3s-deployed`)
//! so that after a reboot the node starts k3s in the same role at once and
//! an HA primary never runs `--cluster-init` twice.
//!
//! The file holds one line, the role as Kairos names it (`master`,
//! `master/clusterinit`, `master/ha`, `worker`). The election's own record
//! (in the state dir) is what makes the role sticky for the mesh; this
//! marker is k3s's side of it, next to k3s's data on the same machine.

use std::path::Path;

use kairos_core::election::Role;
use kairos_core::ledger::buckets::{ROLE_MASTER, ROLE_MASTER_CLUSTERINIT, ROLE_MASTER_HA, ROLE_WORKER};

use super::files::{self, FileError};

/// The marker's text for `role`, followed by a newline.
pub fn encode(role: Role, ha: bool) -> String {
    format!("{}\n", role.kairos_value(ha))
}

/// The role in a marker's text; `None` for anything else (the marker is
/// then ignored, as if the node never deployed).
pub fn decode(text: &[u8]) -> Option<Role> {
    match std::str::from_utf8(text).ok()?.trim() {
        ROLE_MASTER | ROLE_MASTER_HA => Some(Role::Master { cluster_init: false }),
        ROLE_MASTER_CLUSTERINIT => Some(Role::Master { cluster_init: true }),
        ROLE_WORKER => Some(Role::Worker),
        _ => None,
    }
}

/// The role recorded at `path`, if any. A damaged marker is logged and ignored.
pub fn load(path: &Path) -> Result<Option<Role>, FileError> {
    let Some(bytes) = files::read_optional(path)? else {
        return Ok(None);
    };
    let role = decode(&bytes);
    if role.is_none() {
        tracing::warn!(path = %path.display(), "k3s deployed marker not understood: ignored");
    }
    Ok(role)
}

/// Records `role` at `path`.
pub fn store(path: &Path, role: Role, ha: bool) -> Result<(), FileError> {
    files::replace(path, encode(role, ha).as_bytes(), 0o644)
}

/// Forgets the role deployed (k3s was stopped because the role changed).
pub fn remove(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(FileError {
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for (role, ha, text) in [
            (Role::Master { cluster_init: false }, false, "master\n"),
            (Role::Master { cluster_init: true }, true, "master/clusterinit\n"),
            (Role::Master { cluster_init: false }, true, "master/ha\n"),
            (Role::Worker, false, "worker\n"),
        ] {
            assert_eq!(encode(role, ha), text);
            assert_eq!(decode(text.as_bytes()), Some(role));
        }
        assert_eq!(decode(b"worker"), Some(Role::Worker));
        assert_eq!(decode(b"boss\n"), None);
        assert_eq!(decode(&[0xff]), None);
    }

    #[test]
    fn load_and_store() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/lib/kairos-mesh/k3s-deployed");
        assert_eq!(load(&path).unwrap(), None);
        store(&path, Role::Master { cluster_init: true }, true).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Role::Master { cluster_init: true }));
        std::fs::write(&path, "garbage").unwrap();
        assert_eq!(load(&path).unwrap(), None);
        remove(&path).unwrap();
        remove(&path).unwrap();
        assert!(!path.exists());
    }
}
