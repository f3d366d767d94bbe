//! Port forwards of a userspace bridge (`--forward
//! 127.0.0.1:6443=10.1.0.7:6443`): every connection accepted on the local
//! address is a TCP connection to the overlay address, spliced by the
//! stack. A connection the overlay side refuses or does not answer is
//! reset, so the client sees the failure at once instead of a silent
//! close.
//!
//! This module owns the `LISTEN=TARGET` syntax ([`ForwardSpec`]) and the
//! accept loop ([`serve`]).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use tokio::net::TcpListener;

use super::stack::StackHandle;

/// One `--forward LISTEN=TARGET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardSpec {
    /// The local address accepted on.
    pub listen: SocketAddr,
    /// The overlay address each connection goes to.
    pub target: SocketAddr,
}

impl FromStr for ForwardSpec {
    type Err = String;

    /// `LISTEN=TARGET`, each `IP:PORT` (`[v6]:PORT` for IPv6); `LISTEN`
    /// may be a bare port, on 127.0.0.1.
    fn from_str(s: &str) -> Result<ForwardSpec, String> {
        const EXPECTED: &str = "expected LISTEN=OVERLAY_IP:PORT, e.g. 127.0.0.1:6443=10.1.0.7:6443";
        let (listen, target) = s.trim().split_once('=').ok_or_else(|| format!("{s:?}: {EXPECTED}"))?;
        let listen = match listen.parse::<u16>() {
            Ok(port) => SocketAddr::from(([127, 0, 0, 1], port)),
            Err(_) => listen
                .parse::<SocketAddr>()
                .map_err(|_| format!("{listen:?} is not an IP:PORT to listen on; {EXPECTED}"))?,
        };
        let target = target
            .parse::<SocketAddr>()
            .map_err(|_| format!("{target:?} is not an overlay IP:PORT; {EXPECTED}"))?;
        if listen.port() == 0 {
            return Err(format!("{s:?}: the local port must not be 0"));
        }
        if target.port() == 0 || target.ip().is_unspecified() {
            return Err(format!("{s:?}: the target needs an address and a port"));
        }
        Ok(ForwardSpec { listen, target })
    }
}

impl fmt::Display for ForwardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.listen, self.target)
    }
}

/// Forwards the connections accepted on `listener` to `target` until the
/// task is aborted.
pub async fn serve(listener: TcpListener, target: SocketAddr, stack: StackHandle) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let stack = stack.clone();
                tokio::spawn(async move {
                    match stack.open(target).await {
                        Ok(opened) => stack.attach(opened, stream, Vec::new()).await,
                        Err(e) => {
                            tracing::info!(%peer, %target, error = %e, "forwarded connection failed; reset");
                            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "forward listener cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let spec: ForwardSpec = "127.0.0.1:6443=10.1.0.7:6443".parse().unwrap();
        assert_eq!(spec.listen, "127.0.0.1:6443".parse().unwrap());
        assert_eq!(spec.target, "10.1.0.7:6443".parse().unwrap());
        assert_eq!(spec.to_string(), "127.0.0.1:6443=10.1.0.7:6443");
        let bare: ForwardSpec = "8080=10.1.0.7:80".parse().unwrap();
        assert_eq!(bare.listen, "127.0.0.1:8080".parse().unwrap());
        let v6: ForwardSpec = "[::1]:8443=[fd00::7]:443".parse().unwrap();
        assert_eq!(v6.target, "[fd00::7]:443".parse().unwrap());
        for bad in [
            "",
            "127.0.0.1:6443",
            "127.0.0.1:6443=",
            "127.0.0.1:6443=10.1.0.7",
            "127.0.0.1:6443=master:6443",
            "localhost:6443=10.1.0.7:6443",
            "127.0.0.1:0=10.1.0.7:6443",
            "127.0.0.1:6443=10.1.0.7:0",
            "127.0.0.1:6443=0.0.0.0:6443",
        ] {
            assert!(bad.parse::<ForwardSpec>().is_err(), "{bad:?}");
        }
    }
}
