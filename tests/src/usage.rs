//! What a running process uses, read from `/proc` without disturbing it:
//! CPU time (`/proc/PID/stat`), resident memory (`/proc/PID/status`) and
//! the bytes on the wire of its network namespace (`/proc/PID/net/dev`,
//! which shows the interfaces of the namespace the process runs in).
//!
//! [`Usage`] is one reading; [`Rates`] is what two readings of the same
//! process say about the time between them. The idle benchmark
//! (`idle-bench`) samples every agent with these.

use std::time::{Duration, Instant};

use crate::error::{HarnessError, Result};

/// Traffic counters of one interface, as `/proc/net/dev` gives them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
}

/// One reading of a process.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// When it was read.
    pub at: Instant,
    /// User plus system CPU time of all its threads, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set (`VmRSS`), KiB.
    pub rss_kib: u64,
    /// Anonymous resident memory (`RssAnon`), KiB.
    pub rss_anon_kib: u64,
    /// File-backed resident memory (`RssFile`), KiB.
    pub rss_file_kib: u64,
    /// Threads.
    pub threads: u64,
    /// The counters of the watched interface of its namespace.
    pub link: LinkCounters,
}

/// Clock ticks per second of `/proc/PID/stat` times (`USER_HZ`).
pub fn ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

impl Usage {
    /// Reads process `pid` and the counters of `interface` in its namespace.
    pub fn read(pid: u32, interface: &str) -> Result<Usage> {
        let at = Instant::now();
        let stat = read_proc(pid, "stat")?;
        let status = read_proc(pid, "status")?;
        let dev = read_proc(pid, "net/dev")?;
        let cpu_ticks =
            parse_cpu_ticks(&stat).ok_or_else(|| HarnessError::unexpected(format!("/proc/{pid}/stat"), &stat))?;
        let field = |name: &str| parse_status_kib(&status, name).unwrap_or(0);
        let link = parse_net_dev(&dev, interface).ok_or_else(|| {
            HarnessError::unexpected(format!("/proc/{pid}/net/dev"), format!("no {interface} in\n{dev}"))
        })?;
        Ok(Usage {
            at,
            cpu_ticks,
            rss_kib: field("VmRSS"),
            rss_anon_kib: field("RssAnon"),
            rss_file_kib: field("RssFile"),
            threads: field("Threads"),
            link,
        })
    }

    /// What happened between `earlier` and this reading.
    pub fn since(&self, earlier: &Usage, ticks_per_second: u64) -> Rates {
        let elapsed = self.at.saturating_duration_since(earlier.at);
        let secs = elapsed.as_secs_f64().max(1e-9);
        let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        let cpu_s = self.cpu_ticks.saturating_sub(earlier.cpu_ticks) as f64 / ticks_per_second as f64;
        Rates {
            elapsed,
            cpu_percent: 100.0 * cpu_s / secs,
            tx_bytes_s: per_s(self.link.tx_bytes, earlier.link.tx_bytes),
            rx_bytes_s: per_s(self.link.rx_bytes, earlier.link.rx_bytes),
            tx_packets_s: per_s(self.link.tx_packets, earlier.link.tx_packets),
            rx_packets_s: per_s(self.link.rx_packets, earlier.link.rx_packets),
        }
    }
}

/// Rates of one process between two readings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rates {
    /// Time between the readings.
    pub elapsed: Duration,
    /// CPU time as a percentage of one core.
    pub cpu_percent: f64,
    /// Bytes per second sent on the interface (link-layer frames).
    pub tx_bytes_s: f64,
    /// Bytes per second received on the interface.
    pub rx_bytes_s: f64,
    /// Frames per second sent.
    pub tx_packets_s: f64,
    /// Frames per second received.
    pub rx_packets_s: f64,
}

fn read_proc(pid: u32, file: &str) -> Result<String> {
    let path = format!("/proc/{pid}/{file}");
    std::fs::read_to_string(&path).map_err(|e| HarnessError::io(format!("reading {path}"), e))
}

/// `utime + stime` (fields 14 and 15) of a `/proc/PID/stat` line. The
/// command name (field 2) may hold spaces and parentheses, so fields are
/// counted from the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    // After the name: field 3 (state) is the first; utime is field 14.
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The number of a `/proc/PID/status` line such as `VmRSS:   1234 kB`.
pub fn parse_status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        (key == name).then(|| value.split_whitespace().next()?.parse().ok())?
    })
}

/// The counters of `interface` in a `/proc/net/dev` table.
pub fn parse_net_dev(dev: &str, interface: &str) -> Option<LinkCounters> {
    dev.lines().find_map(|line| {
        let (name, values) = line.split_once(':')?;
        if name.trim() != interface {
            return None;
        }
        let v: Vec<u64> = values.split_whitespace().filter_map(|n| n.parse().ok()).collect();
        (v.len() >= 10).then(|| LinkCounters {
            rx_bytes: v[0],
            rx_packets: v[1],
            tx_bytes: v[8],
            tx_packets: v[9],
        })
    })
}

/// The median of `values` (the mean of the middle two for an even count);
/// `NaN` when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_ticks_past_a_name_with_spaces() {
        let stat = "4242 (kairos (x) y) S 1 4242 4242 0 -1 4194560 1043 0 0 0 17 5 0 0 20 0 2 0 8112 1 2 3";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn reads_status_fields() {
        let status = "Name:\tkairos\nVmRSS:\t   11520 kB\nRssAnon:\t    4096 kB\nThreads:\t3\n";
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(11520));
        assert_eq!(parse_status_kib(status, "RssAnon"), Some(4096));
        assert_eq!(parse_status_kib(status, "Threads"), Some(3));
        assert_eq!(parse_status_kib(status, "VmHWM"), None);
    }

    #[test]
    fn reads_one_interface_of_net_dev() {
        let dev = "Inter-|   Receive                                                |  Transmit\n \
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
eth0:  123456     789    0    0    0     0          0        12    65432     321    0    0    0     0       0          0\n";
        assert_eq!(
            parse_net_dev(dev, "eth0"),
            Some(LinkCounters {
                rx_bytes: 123456,
                rx_packets: 789,
                tx_bytes: 65432,
                tx_packets: 321
            })
        );
        assert_eq!(parse_net_dev(dev, "eth1"), None);
    }

    #[test]
    fn rates_between_two_readings() {
        let at = Instant::now();
        let a = Usage {
            at,
            cpu_ticks: 100,
            rss_kib: 0,
            rss_anon_kib: 0,
            rss_file_kib: 0,
            threads: 1,
            link: LinkCounters::default(),
        };
        let b = Usage {
            at: at + Duration::from_secs(10),
            cpu_ticks: 110,
            link: LinkCounters {
                rx_bytes: 2000,
                rx_packets: 20,
                tx_bytes: 1000,
                tx_packets: 10,
            },
            ..a
        };
        let r = b.since(&a, 100);
        assert!((r.cpu_percent - 1.0).abs() < 1e-9, "{r:?}");
        assert!((r.tx_bytes_s - 100.0).abs() < 1e-9 && (r.rx_bytes_s - 200.0).abs() < 1e-9);
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
