//! [`SystemUser`]: an unprivileged account for the tests that check what
//! runs without root (`kairos bridge --userspace`). The account is made
//! with `useradd --system --no-create-home` when it does not exist and
//! removed (`userdel`) when the guard drops, only if this guard made it; an
//! account that was already there is used and left alone.

use std::path::Path;

use crate::command::{self, DEFAULT_LIMIT};
use crate::error::{HarnessError, Result};
use crate::preflight::note;

/// See the module docs.
#[derive(Debug)]
pub struct SystemUser {
    name: String,
    uid: u32,
    gid: u32,
    created: bool,
}

impl SystemUser {
    /// The account `name`, made if absent (needs root).
    pub fn ensure(name: &str) -> Result<SystemUser> {
        let created = if command::run("id", &["-u", name], DEFAULT_LIMIT)?.success() {
            false
        } else {
            command::run_ok(
                "useradd",
                &["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                DEFAULT_LIMIT,
            )?;
            true
        };
        let id = |flag: &str| -> Result<u32> {
            let out = command::run_ok("id", &[flag, name], DEFAULT_LIMIT)?;
            out.trim()
                .parse()
                .map_err(|_| HarnessError::unexpected(format!("id {flag} {name}"), format!("{out:?}")))
        };
        let user = SystemUser {
            name: name.to_owned(),
            uid: id("-u")?,
            gid: id("-g")?,
            created,
        };
        if user.uid == 0 {
            return Err(HarnessError::Check(format!(
                "{name} has uid 0: not an unprivileged user"
            )));
        }
        Ok(user)
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its user id.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Its group id.
    pub fn gid(&self) -> u32 {
        self.gid
    }

    /// The `setpriv` arguments that run a program as this user with no
    /// supplementary groups and no capabilities (put before the program).
    pub fn setpriv_args(&self) -> Vec<String> {
        vec![
            format!("--reuid={}", self.uid),
            format!("--regid={}", self.gid),
            "--clear-groups".to_owned(),
            "--inh-caps=-all".to_owned(),
            "--".to_owned(),
        ]
    }

    /// Gives `path` (a directory the test made) to this user.
    pub fn chown(&self, path: &Path) -> Result<()> {
        let owner = format!("{}:{}", self.uid, self.gid);
        command::run_ok("chown", &[owner.as_str(), &path.to_string_lossy()], DEFAULT_LIMIT).map(drop)
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        if self.created {
            if let Err(e) = command::run_ok("userdel", &[self.name.as_str()], DEFAULT_LIMIT) {
                note(&format!(
                    "CLEANUP FAILED: cannot remove the test user {}: {e}",
                    self.name
                ));
            }
        }
    }
}
