//! A config with an error is refused before anything is touched.

use std::time::Duration;

use kairos_tests::agent::{lab_with_agent, NodeConfig};
use kairos_tests::preflight::note;
use kairos_tests::{HarnessError, Result};

/// A valid config with one line changed, and where the error is.
struct BadConfig {
    what: &'static str,
    /// The line of the valid config that starts with this key (after
    /// indentation) is replaced by `line_text` when that has the same key,
    /// else `line_text` goes after it.
    key: &'static str,
    line_text: &'static str,
    /// The column of the error on that line.
    column: usize,
}

const CASES: &[BadConfig] = &[
    BadConfig {
        what: "a port that is not a number",
        key: "listen_port:",
        line_text: "    listen_port: abc",
        column: 18,
    },
    BadConfig {
        what: "an unknown role",
        key: "network_token:",
        line_text: "  role: boss",
        column: 9,
    },
];

#[test]
fn a_config_with_an_error_is_refused_with_line_and_column_before_anything_is_touched() -> Result<()> {
    let test = "bad_config";
    let Some((mut lab, kairos)) = lab_with_agent(test) else {
        return Ok(());
    };
    let token = kairos.generate_token()?;
    let ns = lab.host("a")?;
    for (n, case) in CASES.iter().enumerate() {
        let dir = lab.dir().join(format!("case{n}"));
        let state_dir = dir.join("state");
        let mut config = NodeConfig::new(&token);
        config.interface = "ktbad0".into();
        let valid = config.to_yaml(&state_dir);
        // The bad line replaces the key's line, or (for a new key) goes after it.
        let mut lines: Vec<String> = Vec::new();
        let mut line = 0;
        for l in valid.lines() {
            if l.trim_start().starts_with(case.key) {
                if case.line_text.trim_start().starts_with(case.key) {
                    lines.push(case.line_text.into());
                } else {
                    lines.push(l.into());
                    lines.push(case.line_text.into());
                }
                line = lines.len();
            } else {
                lines.push(l.into());
            }
        }
        std::fs::create_dir_all(&dir).map_err(|e| HarnessError::io("case dir", e))?;
        let path = dir.join("bad.yaml");
        std::fs::write(&path, lines.join("\n") + "\n").map_err(|e| HarnessError::io("bad.yaml", e))?;

        let out = lab.exec(
            &ns,
            kairos.path().to_str().unwrap_or_default(),
            &["agent", "--config", path.to_str().unwrap_or_default()],
            Duration::from_secs(20),
        )?;
        let text = format!("{}{}", out.stdout, out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{}: exit status 2 expected; output:\n{text}",
            case.what
        );
        let colon = format!(":{line}:{}", case.column);
        let words = format!("line {line}, column {}", case.column);
        assert!(
            text.contains(&colon) || text.contains(&words),
            "{}: the message must say {colon} or {words:?}:\n{text}",
            case.what
        );
        assert!(
            lab.ip(&ns, &["link", "show", "ktbad0"]).is_err(),
            "{}: the interface was created",
            case.what
        );
        assert!(!state_dir.exists(), "{}: the state dir was created", case.what);
        assert!(!text.contains(&token), "{}: the token was printed", case.what);
        note(&format!(
            "{test}: {}: refused with exit 2: {}",
            case.what,
            text.lines()
                .find(|l| l.contains(&colon) || l.contains(&words))
                .unwrap_or_default()
                .trim()
        ));
    }
    lab.finish();
    Ok(())
}
