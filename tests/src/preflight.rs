//! Whether this machine can run the end-to-end tests, and what a test does
//! when it cannot.
//!
//! The tests need root, `ip netns` (iproute2), `/dev/net/tun`, `nft`
//! (nftables) and `ping` (iputils-ping). They also run only when
//! `KAIROS_E2E=1` (set by `test.sh` in its end-to-end step), so that
//! `cargo test --workspace` does not run them a second time.
//!
//! - Not enabled: the test prints a loud `SKIPPED` line and passes.
//! - Enabled but something is missing: with `CI=true` the test panics and
//!   names what is missing (CI must never pass by skipping); otherwise it
//!   prints `SKIPPED` with the missing pieces and passes.
//!
//! Messages go straight to the process's stderr, not through `eprintln!`,
//! so libtest's output capture does not hide them.

use std::io::Write;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use crate::command;

/// The variable that enables the end-to-end tests.
pub const ENABLE_VAR: &str = "KAIROS_E2E";

/// Writes one line to the real stderr (past libtest's capture).
pub fn note(line: &str) {
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Whether the tests run under CI (`CI=true`), where skipping for missing
/// prerequisites is a failure.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the end-to-end tests are enabled (`KAIROS_E2E=1`).
pub fn enabled() -> bool {
    std::env::var(ENABLE_VAR).is_ok_and(|v| v == "1" || v == "true")
}

/// Every missing prerequisite, in words (empty when all are present).
/// Checked once per process.
pub fn missing() -> &'static [String] {
    static MISSING: OnceLock<Vec<String>> = OnceLock::new();
    MISSING.get_or_init(|| {
        let mut missing = Vec::new();
        if !rustix::process::geteuid().is_root() {
            missing.push("root (run as root; CI does)".to_owned());
        }
        if !Path::new("/dev/net/tun").exists() {
            missing.push("/dev/net/tun (load the tun module, or give the container the device)".to_owned());
        }
        let works = |program: &str, args: &[&str]| {
            command::run(program, args, Duration::from_secs(10)).is_ok_and(|o| o.success())
        };
        if !works("ip", &["netns", "list"]) {
            missing.push("`ip netns` (apt-get install iproute2; needs root)".to_owned());
        }
        if !works("nft", &["--version"]) {
            missing.push("`nft` (apt-get install nftables)".to_owned());
        }
        if !works("ping", &["-V"]) {
            missing.push("`ping` (apt-get install iputils-ping)".to_owned());
        }
        missing
    })
}

/// Decides whether the test `test` runs: `true` to go on; `false` after
/// printing a loud `SKIPPED` line. Panics under CI when the tests are
/// enabled but a prerequisite is missing.
pub fn should_run(test: &str) -> bool {
    if !enabled() {
        skip(
            test,
            &format!("end-to-end tests are off; set {ENABLE_VAR}=1 to run them (test.sh does)"),
        );
        return false;
    }
    let missing = missing();
    if missing.is_empty() {
        return true;
    }
    let what = missing.join("; ");
    if in_ci() {
        panic!("{test}: CI=true and {ENABLE_VAR}=1 but the end-to-end prerequisites are missing: {what}");
    }
    skip(test, &format!("missing {what}"));
    false
}

/// Prints the loud skip line.
pub fn skip(test: &str, why: &str) {
    note(&format!("\n*** SKIPPED {test}: {why} ***\n"));
}
