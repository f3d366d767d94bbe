//! [`AgentError`]: why the agent could not start. Each message names what
//! failed and, where the operator can act, how.

use std::io;

use super::preflight::PreflightError;
use super::tun::TunError;
use crate::state::StateError;

/// The agent could not start (or stopped on a fatal error).
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The machine lacks a privilege or device.
    #[error(transparent)]
    Preflight(#[from] PreflightError),
    /// The state dir could not be opened, locked, read or written.
    #[error(transparent)]
    State(#[from] StateError),
    /// The mesh UDP socket could not be bound.
    #[error("cannot listen on UDP port {port}: {source} (set p2p.mesh.listen_port to a free port, or 0 for any)")]
    Udp {
        /// The configured port.
        port: u16,
        /// The I/O error.
        source: io::Error,
    },
    /// The API could not listen.
    #[error("cannot listen for the API on {addr}: {source} (set p2p.mesh.api to a free address)")]
    Api {
        /// The configured address.
        addr: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The API's access settings are refused (an exposed API without a
    /// token, an unreadable token file); the text says what to do.
    #[error("{0}")]
    ApiAccess(String),
    /// The interface could not be made or configured.
    #[error(transparent)]
    Tun(#[from] TunError),
    /// A listener of the userspace stack (SOCKS, a forward) could not be bound.
    #[error("{0} (pick another address with --socks or --forward)")]
    Userspace(#[from] super::userspace::BindError),
    /// An environment setting has a value the agent does not know.
    #[error("{name}={value:?} is not understood: expected {expected}")]
    Setting {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// Anything else the OS refused.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
}
