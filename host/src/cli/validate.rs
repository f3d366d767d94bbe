//! `kairos validate FILE`: checks a cloud-config as the agent would read it
//! and prints every problem, one per line, compiler style
//! (`FILE:LINE:COLUMN: error: PATH: MESSAGE`), then a summary line; or one
//! JSON object with `--json`. All output goes to stdout: it is the result.
//!
//! It only reads: it never touches the state dir or the network.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use super::CliError;
use crate::config::{self, Checked, EnvOverrides, Source, Tally};

/// The `--help` text of the command.
pub const LONG_ABOUT: &str = "Check a cloud-config file the way `kairos agent` reads it, and print \
every problem at once, one per line:

  FILE:LINE:COLUMN: error: p2p.mesh.listen_port: expected a port number 0-65535, found \"abc\"
  FILE:LINE:COLUMN: warning: p2p.mesh.lsiten_port: unknown key `lsiten_port` (ignored); did you mean `listen_port`?

then a summary line. Editors and CI annotators jump to the lines. Lines are counted from 1, \
columns in characters from 1.

Errors stop the agent: bad YAML, a missing or invalid network token, values of the wrong type or \
out of range (ports, CIDR ranges, addresses, roles, MTU, ...). Warnings do not: unknown keys \
(with a did-you-mean), settings that work but are probably not what was meant. Keys outside the \
`kairos:` and `p2p:` blocks (users, stages, install, ...) belong to the rest of the cloud-config \
and are not checked. See docs/config.md for every key and default.

The KAIROS_* environment overrides (KAIROS_TOKEN, KAIROS_NETWORK_ID, KAIROS_ROLE, \
KAIROS_LISTEN_PORT, KAIROS_BOOTSTRAP, KAIROS_STATE_DIR, KAIROS_API, KAIROS_INTERFACE) are applied \
as the agent applies them, and noted; --no-env checks the file alone.

The network token is never printed, not even when it is wrong: the message names the failed check.

Exit status: 0 if the config has no errors (warnings allowed), 2 if it has errors, 1 if the file \
cannot be read (missing, no permission).";

/// Arguments of `kairos validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The cloud-config file to check, or `-` to read stdin.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,

    /// Print one JSON object (`valid`, `errors`, `warnings`, `diagnostics`) instead of text.
    #[arg(long)]
    pub json: bool,

    /// Ignore the KAIROS_* environment overrides: check the file alone.
    #[arg(long)]
    pub no_env: bool,
}

/// Runs `kairos validate`.
pub fn run(args: ValidateArgs) -> Result<(), CliError> {
    // Unreadable: exit 1 (an I/O failure, as for `token inspect --token-file`).
    let source = Source::read(&args.file)
        .map_err(|e| CliError::Other(anyhow::Error::new(e).context(format!("cannot read {}", args.file.display()))))?;
    let env = if args.no_env {
        EnvOverrides::none()
    } else {
        EnvOverrides::from_process()
    };
    let checked = config::check(&source, &env);
    let mut out = io::stdout().lock();
    if args.json {
        writeln!(out, "{:#}", report_json(&source.name, &checked))
    } else {
        write_text(&source.name, &checked, &mut out)
    }
    .and_then(|()| out.flush())
    .map_err(CliError::Output)?;
    let tally = checked.tally();
    if tally.errors > 0 {
        // Invalid: exit 2 (bad operator input); the problems are on stdout.
        Err(CliError::Usage(format!("{} is invalid: {tally}", source.name)))
    } else {
        Ok(())
    }
}

/// The text report: one line per problem, then `FILE: ok` or `FILE: N errors, M warnings`.
fn write_text(file: &str, checked: &Checked, out: &mut impl Write) -> io::Result<()> {
    for d in &checked.diagnostics {
        writeln!(out, "{}", d.compiler_line(file))?;
    }
    writeln!(out, "{}", summary(file, checked.tally()))
}

fn summary(file: &str, tally: Tally) -> String {
    match (tally.errors, tally.warnings) {
        (0, 0) => format!("{file}: ok"),
        (0, _) => format!("{file}: ok, {tally}"),
        _ => format!("{file}: {tally}"),
    }
}

/// The `--json` report.
fn report_json(file: &str, checked: &Checked) -> serde_json::Value {
    let tally = checked.tally();
    json!({
        "file": file,
        "valid": tally.errors == 0,
        "errors": tally.errors,
        "warnings": tally.warnings,
        "diagnostics": checked.diagnostics.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(text: &str) -> Checked {
        config::check(&Source::from_text("node.yaml", text), &EnvOverrides::none())
    }

    #[test]
    fn text_report_ends_with_a_summary() {
        let c = checked("#cloud-config\np2p:\n  mesh:\n    mtu: 100\n");
        let mut out = Vec::new();
        write_text("node.yaml", &c, &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert!(
            lines[0].starts_with("node.yaml:2:1: error: p2p: missing network_token"),
            "{out}"
        );
        assert!(
            lines[1].starts_with("node.yaml:4:10: error: p2p.mesh.mtu: expected an MTU"),
            "{out}"
        );
        assert_eq!(lines[2], "node.yaml: 2 errors");
    }

    #[test]
    fn summaries() {
        assert_eq!(summary("f", Tally::default()), "f: ok");
        let w = Tally { errors: 0, warnings: 2 };
        assert_eq!(summary("f", w), "f: ok, 2 warnings");
        let e = Tally { errors: 1, warnings: 1 };
        assert_eq!(summary("f", e), "f: 1 error, 1 warning");
    }

    #[test]
    fn json_report() {
        let j = report_json("node.yaml", &checked("p2p: {mesh: {mtu: 100}}\n"));
        assert_eq!(j["valid"], false);
        assert_eq!(j["errors"], 2);
        assert_eq!(j["warnings"], 1, "no #cloud-config header");
        assert_eq!(j["diagnostics"][0]["severity"], "warning");
        assert_eq!(j["diagnostics"][0]["line"], 1);
    }
}
