//! [`Restore`]: what the agent reads back from its state dir at start (the
//! ledger snapshot, the role record, the address claim) and what it
//! repaired on the way.
//!
//! A blob that cannot be used (torn, flipped bits, truncated, written by
//! another version) is moved aside as `NAME.state.damaged-<unix time>`,
//! never deleted; the agent starts without it and logs one warning that
//! says what was wrong, where the file went and what that means for the
//! node. A temporary file an interrupted write left (a crash, a SIGKILL
//! mid-write) was removed when the directory was opened; it is reported
//! too. The repairs are kept for `GET /api/summary` (`state_repairs`).
//!
//! The identity is not handled here: a damaged `identity.key` stops the
//! start ([`crate::state::StateError::Identity`]), because replacing it
//! would make this machine a new node.

use std::fmt;
use std::net::IpAddr;

use kairos_core::ledger::buckets::ADDRESSES;
use kairos_core::ledger::Ed25519Verifier;
use kairos_core::time::Instant;
use serde::Serialize;

use super::mesh::{self, AgentLedger};
use super::snapshot;
use super::AgentError;
use crate::config::agent::AgentConfig;
use crate::state::{blobs, StateDir, StateError};

/// One repair done at start, as the log and `GET /api/summary` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateRepair {
    /// What was found.
    pub kind: RepairKind,
    /// The state file concerned (`address-claim.state`).
    pub file: String,
    /// What was wrong with it.
    pub problem: String,
    /// Where the unusable file was moved (in the state dir), for `damaged`.
    pub moved_to: Option<String>,
    /// What it means for the node.
    pub effect: String,
}

/// What a [`StateRepair`] was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RepairKind {
    /// The file could not be used; it was moved aside.
    Damaged,
    /// A write of the file was interrupted; its unfinished copy was removed
    /// and the file keeps its previous version.
    InterruptedWrite,
}

impl fmt::Display for StateRepair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.file, self.problem)?;
        if let Some(to) = &self.moved_to {
            write!(f, "; moved it to {to}")?;
        }
        write!(f, "; {}", self.effect)
    }
}

/// A blob the agent restores: its name and what losing it means.
struct Blob {
    name: &'static str,
    effect: &'static str,
}

const LEDGER: Blob = Blob {
    name: blobs::LEDGER_SNAPSHOT,
    effect: "the node starts with an empty ledger replica and the mesh sends the entries again",
};
const ROLE_RECORD: Blob = Blob {
    name: blobs::ROLE_RECORD,
    effect: "the election decides this node's role afresh (its earlier role is not sticky this time)",
};
const ADDRESS_CLAIM: Blob = Blob {
    name: blobs::ADDRESS_CLAIM,
    effect: "the node keeps the address its ledger snapshot holds; without one it claims an address again",
};

/// Reads the blobs back and collects the repairs. See the module docs.
pub struct Restore<'a> {
    dir: &'a StateDir,
    repairs: Vec<StateRepair>,
}

impl<'a> Restore<'a> {
    /// Starts with the leftovers of interrupted writes that opening `dir`
    /// removed (each logged).
    pub fn new(dir: &'a StateDir) -> Restore<'a> {
        let repairs = dir
            .leftovers()
            .map(|(temp, target)| {
                let file = target.unwrap_or(temp).to_owned();
                let effect = format!("removed the unfinished copy {temp}; {file} keeps its previous version");
                StateRepair {
                    kind: RepairKind::InterruptedWrite,
                    file,
                    problem: "was being written when the agent stopped (a crash, SIGKILL or power cut)".into(),
                    moved_to: None,
                    effect,
                }
            })
            .collect::<Vec<_>>();
        for r in &repairs {
            tracing::info!("state repaired: {r}");
        }
        Restore { dir, repairs }
    }

    /// The repairs done.
    pub fn finish(self) -> Vec<StateRepair> {
        self.repairs
    }

    /// The payload of `blob`, `None` when there is none or it was unusable
    /// (then moved aside and reported).
    fn read(&mut self, blob: &Blob) -> Result<Option<Vec<u8>>, AgentError> {
        match self.dir.read_blob(blob.name) {
            Ok(b) => Ok(b),
            Err(StateError::Blob { problem, .. }) => {
                self.set_aside(blob, &problem)?;
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Moves `blob` aside because of `problem`, and reports it.
    fn set_aside(&mut self, blob: &Blob, problem: &dyn fmt::Display) -> Result<(), AgentError> {
        let Some(moved_to) = self.dir.set_aside_blob(blob.name)? else {
            return Ok(());
        };
        let repair = StateRepair {
            kind: RepairKind::Damaged,
            file: format!("{}.state", blob.name),
            problem: format!("was unusable ({problem})"),
            moved_to: Some(moved_to),
            effect: blob.effect.to_owned(),
        };
        tracing::warn!(state_dir = %self.dir.path().display(), "state repaired: {repair}");
        self.repairs.push(repair);
        Ok(())
    }

    /// Applies the ledger snapshot, if any, to `ledger`.
    pub fn ledger(&mut self, ledger: &mut AgentLedger, now: Instant) -> Result<(), AgentError> {
        let Some(bytes) = self.read(&LEDGER)? else {
            return Ok(());
        };
        match snapshot::restore_ledger(ledger, &mut Ed25519Verifier, now, &bytes) {
            Ok(r) => {
                tracing::info!(entries = r.applied, refused = r.refused, "ledger restored");
                Ok(())
            }
            Err(e) => self.set_aside(&LEDGER, &e),
        }
    }

    /// Hands the role record, if any, back to `node`.
    pub fn role_record(&mut self, node: &mut mesh::MeshNode) -> Result<(), AgentError> {
        let Some(bytes) = self.read(&ROLE_RECORD)? else {
            return Ok(());
        };
        match node.restore_role_record(&bytes) {
            Ok(()) => Ok(()),
            Err(e) => self.set_aside(&ROLE_RECORD, &e),
        }
    }

    /// Claims the saved address again when the ledger snapshot did not
    /// carry the claim (lost or damaged), so the node keeps its address.
    pub fn claim(&mut self, node: &mut mesh::MeshNode, config: &AgentConfig, now: Instant) -> Result<(), AgentError> {
        let Some(bytes) = self.read(&ADDRESS_CLAIM)? else {
            return Ok(());
        };
        let Some(addr) = snapshot::decode_claim(&bytes) else {
            let problem = format!("holds {} bytes, not an IPv4 address", bytes.len());
            return self.set_aside(&ADDRESS_CLAIM, &problem);
        };
        if !config.mesh.address.contains(addr) {
            tracing::info!(previous = %addr, overlay = %config.mesh.address, "the overlay range changed; claiming a new address");
            return Ok(());
        }
        let key = node.node_id().to_string();
        if node.ledger().get(ADDRESSES.as_bytes(), key.as_bytes()).is_some() {
            return Ok(()); // the restored ledger holds the claim
        }
        match node.ledger_put(now, ADDRESSES.as_bytes(), key.as_bytes(), &addr.octets(), 0) {
            Ok(()) => tracing::info!(ipv4 = %IpAddr::V4(addr), "claiming the saved address again (no ledger snapshot)"),
            Err(e) => tracing::warn!(error = %e, "cannot claim the saved address again"),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::status::tests::with_node;
    use std::fs;

    fn ledger() -> Box<AgentLedger> {
        super::super::new_ledger().unwrap()
    }

    /// Replaces the file of `name` in `dir` with `how` of its bytes; returns them.
    fn damage(dir: &std::path::Path, name: &str, how: fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
        let path = dir.join(format!("{name}.state"));
        let bytes = how(&fs::read(&path).unwrap());
        fs::write(&path, &bytes).unwrap();
        bytes
    }

    fn flip(b: &[u8]) -> Vec<u8> {
        let mut b = b.to_vec();
        let last = b.len() - 1;
        b[last] ^= 0x10;
        b
    }

    fn truncate(b: &[u8]) -> Vec<u8> {
        b[..b.len() / 2].to_vec()
    }

    fn empty(_: &[u8]) -> Vec<u8> {
        Vec::new()
    }

    #[test]
    fn a_damaged_ledger_snapshot_is_moved_aside_and_reported() {
        let root = tempfile::tempdir().unwrap();
        for (i, how) in [flip as fn(&[u8]) -> Vec<u8>, truncate, empty].into_iter().enumerate() {
            {
                let dir = StateDir::open(root.path()).unwrap();
                dir.write_blob(blobs::LEDGER_SNAPSHOT, &snapshot::encode_ledger(&*ledger()))
                    .unwrap();
            }
            let bytes = damage(root.path(), blobs::LEDGER_SNAPSHOT, how);
            let dir = StateDir::open(root.path()).unwrap();
            let mut restore = Restore::new(&dir);
            restore.ledger(&mut ledger(), Instant::ZERO).unwrap();
            let repairs = restore.finish();
            assert_eq!(repairs.len(), 1, "{i}: {repairs:?}");
            let r = &repairs[0];
            assert_eq!(r.kind, RepairKind::Damaged);
            assert_eq!(r.file, "ledger-snapshot.state");
            let moved = r.moved_to.as_deref().unwrap();
            assert_eq!(fs::read(root.path().join(moved)).unwrap(), bytes, "{i}: never deleted");
            assert_eq!(dir.read_blob(blobs::LEDGER_SNAPSHOT).unwrap(), None);
            let line = r.to_string();
            assert!(line.contains("ledger-snapshot.state was unusable ("), "{line}");
            assert!(line.contains(&format!("moved it to {moved}")), "{line}");
            assert!(line.contains("the mesh sends the entries again"), "{line}");
        }
    }

    #[test]
    fn a_snapshot_in_an_unknown_format_is_moved_aside_too() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        dir.write_blob(blobs::LEDGER_SNAPSHOT, b"not a snapshot").unwrap();
        let mut restore = Restore::new(&dir);
        restore.ledger(&mut ledger(), Instant::ZERO).unwrap();
        let repairs = restore.finish();
        assert_eq!(repairs.len(), 1);
        assert!(repairs[0].problem.contains("unknown format"), "{:?}", repairs[0]);
        assert!(root.path().join(repairs[0].moved_to.as_deref().unwrap()).exists());
    }

    #[test]
    fn nothing_to_repair_reports_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        let mut restore = Restore::new(&dir);
        restore.ledger(&mut ledger(), Instant::ZERO).unwrap();
        assert!(restore.finish().is_empty());
        dir.write_blob(blobs::LEDGER_SNAPSHOT, &snapshot::encode_ledger(&*ledger()))
            .unwrap();
        let mut restore = Restore::new(&dir);
        restore.ledger(&mut ledger(), Instant::ZERO).unwrap();
        assert!(restore.finish().is_empty());
        assert!(
            dir.read_blob(blobs::LEDGER_SNAPSHOT).unwrap().is_some(),
            "a sound blob stays"
        );
    }

    #[test]
    fn leftovers_of_interrupted_writes_are_reported() {
        let root = tempfile::tempdir().unwrap();
        drop(StateDir::open(root.path()).unwrap());
        fs::write(root.path().join(".tmp-address-claim.state.77.3"), b"half").unwrap();
        let dir = StateDir::open(root.path()).unwrap();
        let repairs = Restore::new(&dir).finish();
        assert_eq!(repairs.len(), 1);
        let r = &repairs[0];
        assert_eq!(r.kind, RepairKind::InterruptedWrite);
        assert_eq!(r.file, "address-claim.state");
        assert_eq!(r.moved_to, None);
        assert!(r.to_string().contains(
            "removed the unfinished copy .tmp-address-claim.state.77.3; address-claim.state keeps its previous version"
        ));
    }

    #[test]
    fn a_damaged_address_claim_is_moved_aside_and_a_sound_one_claimed_again() {
        let config = crate::agent::mesh::tests::config("");
        with_node(move |node, now| {
            let root = tempfile::tempdir().unwrap();
            let dir = StateDir::open(root.path()).unwrap();
            let key = node.node_id().to_string();
            let claimed = |node: &mesh::MeshNode| node.ledger().get(ADDRESSES.as_bytes(), key.as_bytes()).is_some();

            // A sound frame around something that is no address.
            dir.write_blob(blobs::ADDRESS_CLAIM, b"10.1.0").unwrap();
            let mut restore = Restore::new(&dir);
            restore.claim(node, &config, now).unwrap();
            let repairs = restore.finish();
            assert_eq!(repairs.len(), 1);
            assert!(
                repairs[0].problem.contains("holds 6 bytes, not an IPv4 address"),
                "{:?}",
                repairs[0]
            );
            assert!(repairs[0].effect.contains("claims an address again"));
            assert!(!claimed(node));

            // Flipped bits.
            let addr = std::net::Ipv4Addr::new(10, 1, 0, 9);
            dir.write_blob(blobs::ADDRESS_CLAIM, &snapshot::encode_claim(addr))
                .unwrap();
            damage(root.path(), blobs::ADDRESS_CLAIM, flip);
            let mut restore = Restore::new(&dir);
            restore.claim(node, &config, now).unwrap();
            let repairs = restore.finish();
            assert!(
                repairs[0].problem.contains("checksum does not match"),
                "{:?}",
                repairs[0]
            );
            assert!(!claimed(node));

            // A sound claim is claimed again, nothing repaired.
            dir.write_blob(blobs::ADDRESS_CLAIM, &snapshot::encode_claim(addr))
                .unwrap();
            let mut restore = Restore::new(&dir);
            restore.claim(node, &config, now).unwrap();
            assert!(restore.finish().is_empty());
            assert!(claimed(node));
            let aside = fs::read_dir(root.path())
                .unwrap()
                .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".damaged-"))
                .count();
            assert_eq!(aside, 2, "both damaged copies are kept");
        });
    }

    #[test]
    fn a_damaged_role_record_is_moved_aside() {
        with_node(|node, _| {
            let root = tempfile::tempdir().unwrap();
            let dir = StateDir::open(root.path()).unwrap();
            dir.write_blob(blobs::ROLE_RECORD, b"record").unwrap();
            damage(root.path(), blobs::ROLE_RECORD, truncate);
            let mut restore = Restore::new(&dir);
            restore.role_record(node).unwrap();
            let repairs = restore.finish();
            assert_eq!(repairs.len(), 1);
            assert_eq!(repairs[0].file, "role-record.state");
            assert!(repairs[0].problem.contains("truncated"), "{:?}", repairs[0]);
            assert!(repairs[0].effect.contains("election"));
        });
    }

    #[test]
    fn the_repair_serializes_for_the_api() {
        let r = StateRepair {
            kind: RepairKind::InterruptedWrite,
            file: "x.state".into(),
            problem: "p".into(),
            moved_to: None,
            effect: "e".into(),
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"kind": "interrupted_write", "file": "x.state", "problem": "p", "moved_to": null, "effect": "e"})
        );
    }
}
