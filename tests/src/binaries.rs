//! Where the binaries the tests run live: `kairos` (the binary under test)
//! and `e2e-net` (this crate's network helper).
//!
//! Cargo puts every binary of a target dir in `<target>/<profile>/`, and
//! test executables in `<target>/<profile>/deps/`; the target dir may be
//! anywhere (`CARGO_TARGET_DIR`). So a binary is looked up next to the
//! running executable (or one level up from `deps/`), after an explicit
//! override: `KAIROS_BIN` for `kairos`, `E2E_NET_BIN` for the helper.

use std::path::PathBuf;

use crate::error::{HarnessError, Result};

/// The override variable for the `kairos` binary.
pub const KAIROS_BIN_VAR: &str = "KAIROS_BIN";

/// The override variable for the `k3s-standin` binary.
pub const K3S_STANDIN_BIN_VAR: &str = "K3S_STANDIN_BIN";

/// The override variable for the `e2e-net` helper.
pub const E2E_NET_BIN_VAR: &str = "E2E_NET_BIN";

/// The override variable for the `impair` relay.
pub const IMPAIR_BIN_VAR: &str = "IMPAIR_BIN";

/// Finds the binary `name`: `$override_var` if set, else next to the
/// running executable, else in its parent directory (from `deps/`).
pub fn locate(name: &str, override_var: &str) -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(override_var).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(HarnessError::Check(format!(
                "{override_var}={} is not a file",
                path.display()
            )))
        };
    }
    let exe = std::env::current_exe().map_err(|e| HarnessError::io("finding the test executable", e))?;
    let mut searched = Vec::new();
    let mut dir = exe.parent();
    for _ in 0..2 {
        let Some(d) = dir else { break };
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
        searched.push(candidate.display().to_string());
        dir = d.parent();
    }
    Err(HarnessError::Check(format!(
        "cannot find the `{name}` binary (looked at {}); build it (`cargo build -p {}`) or set {override_var}",
        searched.join(", "),
        if name == "kairos" { "kairos" } else { "kairos-tests" },
    )))
}

/// The `kairos` binary.
pub fn kairos() -> Result<PathBuf> {
    locate("kairos", KAIROS_BIN_VAR)
}

/// The `e2e-net` helper.
pub fn e2e_net() -> Result<PathBuf> {
    locate("e2e-net", E2E_NET_BIN_VAR)
}

/// The `impair` relay (`tests/src/bin/impair.rs`).
pub fn impair() -> Result<PathBuf> {
    locate("impair", IMPAIR_BIN_VAR)
}

/// The `k3s-standin` binary (what the agent's k3s bootstrap runs in the tests).
pub fn k3s_standin() -> Result<PathBuf> {
    locate("k3s-standin", K3S_STANDIN_BIN_VAR)
}
