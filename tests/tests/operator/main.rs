//! End-to-end tests of the operator side (issue 5): `kairos bridge` in its
//! own namespace joins a three-node mesh on the LAN, and everything an
//! operator touches is checked through it: reachability, the HTTP API
//! routes, ledger writes across nodes, `kairos get-kubeconfig`, the DNS
//! resolver, the dashboard in headless Chromium, refusals of bad requests,
//! and a clean leave on Ctrl-C.
//!
//! Needs root and `KAIROS_E2E=1` like the agent tests; the dashboard check
//! needs Debian's `chromium` and the kubeconfig check `kubectl`
//! (`kubernetes-client`): without them those parts print a loud SKIPPED
//! line, and under CI they fail. The rootless bridge test (issue 9) runs
//! `kairos bridge --userspace` as an unprivileged account it makes, and
//! fetches pages with `curl`.

mod bridge;
mod userspace_bridge;

use std::time::Duration;

use kairos_tests::preflight::note;

/// The deadline of every wait for the mesh (generous: timing goals are benchmarks).
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A tool a part of the test needs is missing: fail under CI (which
/// installs it), skip that part loudly elsewhere.
pub fn missing_tool(tool: &str, part: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {tool} is missing: test.sh installs it");
    }
    note(&format!("SKIPPED {part}: {tool} is not installed"));
}
