//! [`StateError`]: why the state dir could not be opened, locked, read or
//! written. Each message names the path and, where the operator has to act
//! (a damaged identity, a second agent), says what to do.

use std::io;
use std::path::PathBuf;

use super::frame::FrameError;

/// A state dir operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory could not be created or given mode 0700.
    #[error("cannot create the state directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// Another process holds the directory's lock.
    #[error(
        "the state directory {} is in use by another kairos agent{}: two agents must never share \
         one (stop the other one, or give this one its own p2p.mesh.state_dir)",
        dir.display(),
        pid.map(|p| format!(" (PID {p})")).unwrap_or_default()
    )]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// The holder's process id, when its lock file says.
        pid: Option<u32>,
    },
    /// Reading, writing or removing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("read", "write", "lock", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The identity file exists but cannot be used. It is never replaced
    /// automatically: that would change the node's id.
    #[error(
        "the identity file {} is unusable: {problem}. It holds this node's keys (its node id) and is \
         never replaced automatically: restore it from a backup, or delete it to make this machine \
         join as a new node (members will see a new node id; the old one's entries expire)",
        path.display()
    )]
    Identity {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: FrameError,
    },
    /// A blob exists but is damaged; the caller decides whether to move it
    /// aside ([`StateDir::set_aside_blob`](super::StateDir::set_aside_blob)).
    #[error("the state file {} is unusable: {problem}", path.display())]
    Blob {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: FrameError,
    },
    /// A blob name that is not a plain lowercase name.
    #[error("invalid state blob name {0:?}: use lowercase letters, digits and '-'")]
    BadName(String),
}

impl StateError {
    /// An I/O error while doing `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> StateError {
        let path = path.into();
        move |source| StateError::Io { action, path, source }
    }
}
