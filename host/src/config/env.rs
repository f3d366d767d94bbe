//! Environment overrides: `KAIROS_TOKEN`, `KAIROS_NETWORK_ID`, `KAIROS_ROLE`,
//! `KAIROS_LISTEN_PORT`, `KAIROS_BOOTSTRAP` (a comma list),
//! `KAIROS_STATE_DIR`, `KAIROS_API` and `KAIROS_INTERFACE`. They apply after
//! the file and are checked with the same parsers as the file's values; a
//! problem names the variable. A variable that is unset or empty changes
//! nothing.
//!
//! This module reads the process environment only in
//! [`EnvOverrides::from_process`]; everything else works on a snapshot, so
//! tests never touch the real environment. It never prints the token.

use std::ffi::OsString;
use std::fmt;

use super::diagnostic::{Diagnostic, Severity};
use super::settings::Settings;
use super::values::{self, quote};

/// The network token.
pub const TOKEN: &str = "KAIROS_TOKEN";
/// The network id.
pub const NETWORK_ID: &str = "KAIROS_NETWORK_ID";
/// The role.
pub const ROLE: &str = "KAIROS_ROLE";
/// The mesh UDP port.
pub const LISTEN_PORT: &str = "KAIROS_LISTEN_PORT";
/// Bootstrap peers, comma separated.
pub const BOOTSTRAP: &str = "KAIROS_BOOTSTRAP";
/// The state directory.
pub const STATE_DIR: &str = "KAIROS_STATE_DIR";
/// The API address.
pub const API: &str = "KAIROS_API";
/// The interface name.
pub const INTERFACE: &str = "KAIROS_INTERFACE";

/// Every variable and the key it overrides, in the order they are applied.
pub const VARIABLES: [(&str, &str); 8] = [
    (TOKEN, "p2p.network_token"),
    (NETWORK_ID, "p2p.network_id"),
    (ROLE, "p2p.role"),
    (LISTEN_PORT, "p2p.mesh.listen_port"),
    (BOOTSTRAP, "p2p.mesh.bootstrap_peers"),
    (STATE_DIR, "p2p.mesh.state_dir"),
    (API, "p2p.mesh.api"),
    (INTERFACE, "p2p.mesh.interface"),
];

/// A snapshot of the override variables.
#[derive(Clone, Default)]
pub struct EnvOverrides {
    /// Set, non-empty variables; `None` for a value that is not Unicode.
    vars: Vec<(&'static str, Option<String>)>,
}

/// Names only: the values may hold the token.
impl fmt::Debug for EnvOverrides {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.vars.iter().map(|(name, _)| name)).finish()
    }
}

impl EnvOverrides {
    /// No overrides.
    pub fn none() -> Self {
        EnvOverrides::default()
    }

    /// The overrides set in this process's environment.
    pub fn from_process() -> Self {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// Overrides from `(name, value)` pairs; names other than those in
    /// [`VARIABLES`] are ignored.
    #[cfg(test)]
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Self {
        Self::from_lookup(|name| {
            pairs
                .iter()
                .rev()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Self {
        let vars = VARIABLES
            .iter()
            .filter_map(|(name, _)| {
                let value = lookup(name)?;
                match value.into_string() {
                    Ok(s) if s.trim().is_empty() => None,
                    Ok(s) => Some((*name, Some(s))),
                    Err(_) => Some((*name, None)),
                }
            })
            .collect();
        EnvOverrides { vars }
    }

    /// The settings the variables make, with a note for each applied
    /// variable and an error for each refused one.
    pub fn read(&self, diagnostics: &mut Vec<Diagnostic>) -> Settings {
        let mut s = Settings::default();
        for (name, value) in &self.vars {
            let key = VARIABLES.iter().find(|(n, _)| n == name).map_or("", |(_, k)| *k);
            let Some(value) = value else {
                diagnostics.push(Diagnostic::env(
                    Severity::Error,
                    name,
                    "expected UTF-8 text, found bytes that are not",
                ));
                continue;
            };
            let applied = apply(&mut s, name, value);
            match applied {
                Ok(warning) => {
                    diagnostics.push(Diagnostic::env(Severity::Note, name, format!("overrides {key}")));
                    if let Some(w) = warning {
                        diagnostics.push(Diagnostic::env(Severity::Warning, name, w));
                    }
                }
                Err(e) => diagnostics.push(Diagnostic::env(Severity::Error, name, e)),
            }
        }
        s
    }
}

/// Sets the field of `name` from `value`. `Ok` may carry a warning.
fn apply(s: &mut Settings, name: &str, value: &str) -> Result<Option<String>, String> {
    // "expected ..., found VALUE", except for the token, which is never shown.
    let found = |e: String| format!("{e}, found {}", quote(value));
    match name {
        TOKEN => {
            s.token_seen = true;
            s.network_token = Some(values::token(value)?);
        }
        NETWORK_ID => s.network_id = Some(values::network_id(value.trim()).map_err(found)?),
        ROLE => s.role = Some(values::role(value).map_err(found)?),
        LISTEN_PORT => s.listen_port = Some(values::port(value).map_err(found)?),
        BOOTSTRAP => {
            let mut peers = Vec::new();
            for (i, part) in value.split(',').map(str::trim).enumerate() {
                if part.is_empty() {
                    continue;
                }
                let e = values::endpoint(part).map_err(|e| format!("item {}: {e}, found {}", i + 1, quote(part)))?;
                if !peers.contains(&e) {
                    peers.push(e);
                }
            }
            s.bootstrap_peers = Some(peers);
        }
        STATE_DIR => {
            let dir = values::state_dir(value).map_err(found)?;
            let warning = values::lint_state_dir(&dir);
            s.state_dir = Some(dir);
            return Ok(warning);
        }
        API => {
            let api = values::api(value).map_err(found)?;
            let warning = values::lint_api(&api);
            s.api = Some(api);
            return Ok(warning);
        }
        INTERFACE => s.interface = Some(values::interface(value.trim()).map_err(found)?),
        _ => {}
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::token::NetworkToken;
    use rand_core::OsRng;

    #[test]
    fn applies_and_notes_each_variable() {
        let token = NetworkToken::generate(&mut OsRng).to_string();
        let env = EnvOverrides::from_pairs(&[
            (TOKEN, &token),
            (LISTEN_PORT, "4000"),
            (
                BOOTSTRAP,
                "203.0.113.7:51820, seed.example.com:51820,,203.0.113.7:51820",
            ),
            (ROLE, "worker"),
            (API, "unix:///run/k.sock"),
            ("KAIROS_OTHER", "x"),
            (INTERFACE, ""),
        ]);
        let mut d = Vec::new();
        let s = env.read(&mut d);
        assert!(s.network_token.is_some() && s.token_seen);
        assert_eq!(s.listen_port, Some(4000));
        assert_eq!(s.bootstrap_peers.as_ref().map(Vec::len), Some(2), "duplicates dropped");
        assert_eq!(s.interface, None, "empty means unset");
        assert!(d.iter().all(|d| d.severity == Severity::Note), "{d:?}");
        assert_eq!(d.len(), 5);
        assert_eq!(d[0].to_string(), "KAIROS_TOKEN: overrides p2p.network_token");
        assert!(!format!("{env:?}").contains(&token));
    }

    #[test]
    fn errors_name_the_variable_and_never_the_token() {
        let env = EnvOverrides::from_pairs(&[
            (TOKEN, "kairos_notatoken"),
            (LISTEN_PORT, "abc"),
            (BOOTSTRAP, "203.0.113.7:51820,nope"),
            (STATE_DIR, "relative/dir"),
        ]);
        let mut d = Vec::new();
        env.read(&mut d);
        let text: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert!(text[0].starts_with("KAIROS_TOKEN: invalid network token: "), "{text:?}");
        assert!(!text[0].contains("notatoken"));
        assert_eq!(
            text[1],
            "KAIROS_LISTEN_PORT: expected a port number 0-65535, found \"abc\""
        );
        assert!(
            text[2].starts_with("KAIROS_BOOTSTRAP: item 2: expected HOST:PORT"),
            "{text:?}"
        );
        assert!(d[3].severity == Severity::Note && d[4].severity == Severity::Warning);
        assert_eq!(d.iter().filter(|d| d.is_error()).count(), 3);
    }
}
