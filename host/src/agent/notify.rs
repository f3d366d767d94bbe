//! systemd readiness (`sd_notify`): when `NOTIFY_SOCKET` is set (a unit
//! with `Type=notify`), the agent says `READY=1` once the interface and
//! the API are up, and `STOPPING=1` when it starts to stop. Without the
//! variable this does nothing. Failures are logged at debug: systemd
//! reports a unit that never got ready on its own.

use std::io;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` (e.g. `READY=1`) to systemd, if it asked for it.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(e) = send(&path.to_string_lossy(), state) {
        tracing::debug!(error = %e, "cannot notify systemd");
    }
}

fn send(path: &str, state: &str) -> io::Result<()> {
    let addr = socket_addr(path)?;
    let socket = UnixDatagram::unbound()?;
    socket.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

/// A path, or `@name` for an abstract socket.
fn socket_addr(path: &str) -> io::Result<SocketAddr> {
    match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_the_state_to_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let listener = UnixDatagram::bind(&path).unwrap();
        send(path.to_str().unwrap(), "READY=1").unwrap();
        let mut buf = [0u8; 32];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }

    #[test]
    fn abstract_names_are_understood() {
        let addr = socket_addr("@kairos-test-notify").unwrap();
        use std::os::linux::net::SocketAddrExt;
        assert_eq!(addr.as_abstract_name(), Some(&b"kairos-test-notify"[..]));
    }
}
