//! Probes run inside a lab's namespaces: `ping`, HTTP GET and the other
//! `e2e-net` tools. Each is one bounded command; tests poll them with
//! [`crate::wait`].

use std::time::Duration;

use crate::binaries;
use crate::command::{describe, tail, Output};
use crate::error::{HarnessError, Result};
use crate::lab::{Lab, Namespace};

impl Lab {
    /// One `ping` (IPv4 or IPv6 by the address's form) from `from` to
    /// `addr`, waiting up to a second for the reply: whether it came back.
    pub fn ping(&self, from: &Namespace, addr: &str) -> Result<bool> {
        let family = if addr.contains(':') { "-6" } else { "-4" };
        let out = self.exec(
            from,
            "ping",
            &[family, "-n", "-q", "-c", "1", "-W", "1", addr],
            Duration::from_secs(5),
        )?;
        Ok(out.success())
    }

    /// Runs the `e2e-net` helper inside `ns` with `args` (killed after
    /// `limit`), whatever its exit status.
    pub fn net_tool(&self, ns: &Namespace, args: &[&str], limit: Duration) -> Result<Output> {
        let tool = binaries::e2e_net()?;
        self.exec(ns, tool.to_str().unwrap_or_default(), args, limit)
    }

    /// [`Lab::net_tool`] that must succeed; returns its stdout.
    pub fn net_tool_ok(&self, ns: &Namespace, args: &[&str], limit: Duration) -> Result<String> {
        let out = self.net_tool(ns, args, limit)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(HarnessError::Command {
                command: describe("e2e-net", args),
                status: out.status.to_string(),
                stderr: tail(&out.stderr, 10),
            })
        }
    }

    /// The connection tracking table of `ns` (`/proc/net/nf_conntrack`),
    /// to show what a NAT router did.
    pub fn conntrack(&self, ns: &Namespace) -> Result<String> {
        self.exec_ok(ns, "cat", &["/proc/net/nf_conntrack"], Duration::from_secs(5))
    }

    /// `GET path` from `addr` (`IP:PORT`) inside `ns`; the body of a 2xx
    /// answer.
    pub fn http_get(&self, ns: &Namespace, addr: &str, path: &str) -> Result<String> {
        self.net_tool_ok(ns, &["http-get", addr, path], Duration::from_secs(10))
    }
}

/// What one end of a TCP transfer reported.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferEnd {
    /// Bytes sent or received.
    pub bytes: u64,
    /// SHA-256 of those bytes, hex.
    pub sha256: String,
    /// Seconds from connection to the end.
    pub secs: f64,
}

impl TransferEnd {
    /// Parses the `bytes=N sha256=HEX secs=F ...` line `e2e-net` prints.
    pub fn parse(text: &str) -> Result<TransferEnd> {
        let line = text
            .lines()
            .rev()
            .find(|l| l.starts_with("bytes="))
            .ok_or_else(|| HarnessError::unexpected("e2e-net", format!("no report line in {:?}", tail(text, 5))))?;
        let field = |key: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        let bad = || HarnessError::unexpected("e2e-net", format!("bad report line {line:?}"));
        Ok(TransferEnd {
            bytes: field("bytes").and_then(|v| v.parse().ok()).ok_or_else(bad)?,
            sha256: field("sha256").ok_or_else(bad)?.to_owned(),
            secs: field("secs").and_then(|v| v.parse().ok()).ok_or_else(bad)?,
        })
    }
}

/// Both ends of a TCP transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct Transfer {
    /// What the sender sent.
    pub sent: TransferEnd,
    /// What the receiver got.
    pub received: TransferEnd,
}

impl Transfer {
    /// Whether every byte arrived intact.
    pub fn intact(&self) -> bool {
        self.sent.bytes == self.received.bytes && self.sent.sha256 == self.received.sha256
    }

    /// Throughput seen by the receiver, in Mbit/s.
    pub fn mbit_s(&self) -> f64 {
        self.received.bytes as f64 * 8.0 / self.received.secs.max(1e-6) / 1e6
    }
}

impl Lab {
    /// Sends `bytes` pseudo-random bytes over TCP from `from` to `to_addr`
    /// (an address of the namespace `to`), port `port`, within `limit`;
    /// returns what both ends counted and hashed.
    pub fn tcp_transfer(
        &mut self,
        from: &Namespace,
        to: &Namespace,
        to_addr: &str,
        port: u16,
        bytes: u64,
        limit: Duration,
    ) -> Result<Transfer> {
        let (bind, target) = if to_addr.contains(':') {
            (format!("[::]:{port}"), format!("[{to_addr}]:{port}"))
        } else {
            (format!("0.0.0.0:{port}"), format!("{to_addr}:{port}"))
        };
        let secs = limit.as_secs().max(1).to_string();
        let tool = binaries::e2e_net()?;
        let sink = self.spawn(
            to,
            &format!("tcp-sink-{}-{port}", to.short()),
            &tool,
            &["tcp-sink", &bind, &secs],
            &[],
        )?;
        let sent = self.net_tool_ok(
            from,
            &["tcp-source", &target, &bytes.to_string(), &secs],
            limit + limit / 2,
        )?;
        let status = self.wait_exit(sink, limit)?;
        let log = self.log(sink);
        if !status.success() {
            return Err(HarnessError::Command {
                command: "e2e-net tcp-sink".into(),
                status: status.to_string(),
                stderr: tail(&log, 10),
            });
        }
        Ok(Transfer {
            sent: TransferEnd::parse(&sent)?,
            received: TransferEnd::parse(&log)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_transfer_reports() {
        let end = TransferEnd::parse("listening\nbytes=52428800 sha256=ab12 secs=0.512 mbit_s=819.2\n").unwrap();
        assert_eq!(
            end,
            TransferEnd {
                bytes: 52_428_800,
                sha256: "ab12".into(),
                secs: 0.512
            }
        );
        assert!(TransferEnd::parse("connection refused").is_err());
    }
}
