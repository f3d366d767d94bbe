//! Preflight: what the agent needs from the machine before it touches
//! anything (the state dir, sockets, interfaces), checked up front so a
//! missing privilege or kernel module is one clear message instead of a
//! half-started agent.
//!
//! The checks read only: the process's effective capabilities
//! (`/proc/self/status`) and whether `/dev/net/tun` can be opened. Deciding
//! from those facts is a pure function, so the messages are unit tested.

use std::fs::OpenOptions;
use std::io;
use std::path::Path;

/// Bit of `CAP_NET_ADMIN` in the capability sets (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
/// The TUN clone device.
pub const TUN_DEVICE: &str = "/dev/net/tun";

/// What the machine offers, as read by [`Facts::gather`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// The effective user id is 0.
    pub root: bool,
    /// `CAP_NET_ADMIN` is in the effective set (`None`: unknown).
    pub net_admin: Option<bool>,
    /// Opening `/dev/net/tun` read-write: `Ok`, or the error kind and text.
    pub tun: Result<(), (io::ErrorKind, String)>,
}

impl Facts {
    /// Reads the facts of this process. `need_tun`: whether the TUN device
    /// will be used (`p2p.vpn.create`); if not, it is not opened.
    pub fn gather(need_tun: bool) -> Facts {
        let root = rustix::process::geteuid().is_root();
        let net_admin = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| effective_caps(&s))
            .map(|caps| caps & (1 << CAP_NET_ADMIN) != 0);
        let tun = if need_tun {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(Path::new(TUN_DEVICE))
                .map(drop)
                .map_err(|e| (e.kind(), e.to_string()))
        } else {
            Ok(())
        };
        Facts { root, net_admin, tun }
    }
}

/// The `CapEff:` mask of a `/proc/PID/status` text.
fn effective_caps(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()
}

/// What is missing; the message says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PreflightError {
    /// Neither root nor `CAP_NET_ADMIN`.
    #[error(
        "kairos agent needs to create and configure a network interface: run it as root \
         (sudo kairos agent ...), or give it CAP_NET_ADMIN (systemd: AmbientCapabilities=CAP_NET_ADMIN; \
         a container: --cap-add NET_ADMIN --device /dev/net/tun); set p2p.vpn.create: false to run \
         the mesh without an interface"
    )]
    NoNetAdmin,
    /// `/dev/net/tun` is missing.
    #[error(
        "{TUN_DEVICE} does not exist: load the TUN driver (modprobe tun), or in a container pass the \
         device (--device /dev/net/tun)"
    )]
    NoTunDevice,
    /// `/dev/net/tun` exists but cannot be opened.
    #[error(
        "cannot open {TUN_DEVICE}: {0}. The agent needs read-write access to it (run as root, or in a \
         container pass --device /dev/net/tun and allow it in the device cgroup)"
    )]
    TunUnusable(String),
}

/// Decides from `facts` whether the agent can run; `need_tun` as in
/// [`Facts::gather`]. Without an interface nothing privileged is needed.
pub fn check(facts: &Facts, need_tun: bool) -> Result<(), PreflightError> {
    if !need_tun {
        return Ok(());
    }
    if !facts.root && facts.net_admin != Some(true) {
        return Err(PreflightError::NoNetAdmin);
    }
    match &facts.tun {
        Ok(()) => Ok(()),
        Err((io::ErrorKind::NotFound, _)) => Err(PreflightError::NoTunDevice),
        Err((_, text)) => Err(PreflightError::TunUnusable(text.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(root: bool, net_admin: Option<bool>) -> Facts {
        Facts {
            root,
            net_admin,
            tun: Ok(()),
        }
    }

    #[test]
    fn root_or_net_admin_is_enough() {
        assert_eq!(check(&facts(true, Some(false)), true), Ok(()));
        assert_eq!(check(&facts(false, Some(true)), true), Ok(()));
    }

    #[test]
    fn an_unprivileged_user_is_told_what_to_do() {
        let err = check(&facts(false, Some(false)), true).unwrap_err();
        assert_eq!(err, PreflightError::NoNetAdmin);
        let text = err.to_string();
        assert!(text.contains("run it as root"), "{text}");
        assert!(text.contains("CAP_NET_ADMIN"), "{text}");
        assert!(text.contains("p2p.vpn.create: false"), "{text}");
        // Unknown capabilities and no root: refused too.
        assert_eq!(check(&facts(false, None), true), Err(PreflightError::NoNetAdmin));
    }

    #[test]
    fn a_missing_or_locked_tun_device_is_named() {
        let mut f = facts(true, Some(true));
        f.tun = Err((io::ErrorKind::NotFound, "No such file or directory".into()));
        let err = check(&f, true).unwrap_err();
        assert_eq!(err, PreflightError::NoTunDevice);
        assert!(err.to_string().contains("modprobe tun"));
        f.tun = Err((io::ErrorKind::PermissionDenied, "Operation not permitted".into()));
        let err = check(&f, true).unwrap_err();
        assert!(err
            .to_string()
            .contains("cannot open /dev/net/tun: Operation not permitted"));
    }

    #[test]
    fn without_an_interface_nothing_is_needed() {
        let mut f = facts(false, Some(false));
        f.tun = Err((io::ErrorKind::NotFound, String::new()));
        assert_eq!(check(&f, false), Ok(()));
    }

    #[test]
    fn reads_the_effective_capabilities() {
        let status = "Name:\tkairos\nCapInh:\t0000000000000000\nCapEff:\t0000000000001000\n";
        assert_eq!(effective_caps(status), Some(1 << CAP_NET_ADMIN));
        assert_eq!(effective_caps("Name: x\n"), None);
    }
}
