//! What the agent keeps of the mesh across restarts, as state dir blobs
//! (see [`crate::state::blobs`]):
//!
//! - `ledger-snapshot`: every record of the node's ledger replica (live
//!   entries and tombstones, not expired ones) in the same signed encoding
//!   the mesh sends, so a restore is [`Ledger::apply`] of each: nothing is
//!   trusted that a peer's message would not be trusted with. Layout:
//!   `"KLS1" | count u32 LE | count × (length u32 LE | entry encoding)`.
//! - `address-claim`: the node's overlay IPv4 address, 4 bytes, written
//!   when the core assigns one. The claim itself is a ledger entry; this
//!   copy lets a node whose snapshot was lost claim the same address again.
//!
//! The blobs are framed and checksummed by the state dir; this module only
//! encodes and decodes their payloads. It never writes files.

use std::net::Ipv4Addr;

use kairos_core::ledger::{Applied, EntryState, Ledger, SignatureVerifier, FRAGMENT_HEADER_LEN};
use kairos_core::time::Instant;

/// First bytes of a ledger snapshot.
const MAGIC: &[u8; 4] = b"KLS1";

/// Why a snapshot could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// Not a ledger snapshot of this format.
    #[error("not a ledger snapshot (unknown format)")]
    Format,
    /// The snapshot ends inside an entry.
    #[error("the ledger snapshot is truncated")]
    Truncated,
}

/// What restoring a snapshot did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Entries stored in the ledger.
    pub applied: usize,
    /// Entries refused (bad signature, ledger full, ...): a snapshot
    /// written by a healthy agent has none.
    pub refused: usize,
}

/// Encodes every record of `ledger` that can be sent (live entries and
/// tombstones).
pub fn encode_ledger<const E: usize, const A: usize>(ledger: &Ledger<E, A>) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + ledger.records() * 256);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[0; 4]);
    let mut count = 0u32;
    let mut msg = vec![0u8; kairos_core::ledger::MAX_MESSAGE_LEN];
    for entry in ledger.iter_all().filter(|e| e.state() != EntryState::Expired) {
        let Ok(encoder) = ledger.encoder(entry.entry_ref()) else {
            continue;
        };
        let len = encoder.encoded_len();
        let start = out.len();
        out.extend_from_slice(&(len as u32).to_le_bytes());
        let mut ok = true;
        if encoder.messages() == 1 {
            match encoder.emit(0, &mut msg) {
                Ok(n) => out.extend_from_slice(&msg[..n]),
                Err(_) => ok = false,
            }
        } else {
            // Fragments carry consecutive windows of the whole encoding.
            for i in 0..encoder.messages() {
                match encoder.emit(i, &mut msg) {
                    Ok(n) => out.extend_from_slice(&msg[FRAGMENT_HEADER_LEN..n]),
                    Err(_) => ok = false,
                }
            }
        }
        if !ok || out.len() - start - 4 != len {
            out.truncate(start);
            continue;
        }
        count += 1;
    }
    out[4..8].copy_from_slice(&count.to_le_bytes());
    out
}

/// Applies every entry of `snapshot` to `ledger` at `now`.
pub fn restore_ledger<const E: usize, const A: usize>(
    ledger: &mut Ledger<E, A>,
    verifier: &mut impl SignatureVerifier,
    now: Instant,
    snapshot: &[u8],
) -> Result<Restored, SnapshotError> {
    let entries = split(snapshot)?;
    let mut restored = Restored::default();
    for encoded in entries {
        match ledger.apply(now, verifier, encoded) {
            Ok(Applied::New(_) | Applied::Newer(_)) => restored.applied += 1,
            Ok(Applied::Older | Applied::Equal) => {}
            Err(_) => restored.refused += 1,
        }
    }
    Ok(restored)
}

/// The entry encodings of a snapshot, checked for framing before any is applied.
fn split(snapshot: &[u8]) -> Result<Vec<&[u8]>, SnapshotError> {
    if snapshot.len() < 8 || &snapshot[..4] != MAGIC {
        return Err(SnapshotError::Format);
    }
    let count = u32::from_le_bytes(snapshot[4..8].try_into().map_err(|_| SnapshotError::Format)?);
    let mut rest = &snapshot[8..];
    let mut entries = Vec::new();
    for _ in 0..count {
        let len_bytes: [u8; 4] = rest
            .get(..4)
            .ok_or(SnapshotError::Truncated)?
            .try_into()
            .map_err(|_| SnapshotError::Truncated)?;
        let len = u32::from_le_bytes(len_bytes) as usize;
        let entry = rest.get(4..4 + len).ok_or(SnapshotError::Truncated)?;
        entries.push(entry);
        rest = &rest[4 + len..];
    }
    if !rest.is_empty() {
        return Err(SnapshotError::Format);
    }
    Ok(entries)
}

/// The `address-claim` payload.
pub fn encode_claim(addr: Ipv4Addr) -> [u8; 4] {
    addr.octets()
}

/// Reads an `address-claim` payload.
pub fn decode_claim(bytes: &[u8]) -> Option<Ipv4Addr> {
    let b: [u8; 4] = bytes.try_into().ok()?;
    Some(Ipv4Addr::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kairos_core::identity::Identity;
    use kairos_core::ledger::Ed25519Verifier;
    use rand_core::OsRng;

    type Small = Ledger<64, 65536>;

    fn ledger_with_entries(id: &Identity) -> Box<Small> {
        let mut l: Box<Small> = Box::default();
        let now = Instant::from_micros(1_000_000);
        l.put(now, id, b"kairos", b"role", b"master", 0).unwrap();
        l.put(now, id, b"kairos", b"gone", b"x", 0).unwrap();
        l.delete(now, id, b"kairos", b"gone").unwrap();
        let big: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        l.put(now, id, b"kairos", b"master-kubeconfig", &big, 0).unwrap();
        l.put(now, id, b"kairos", b"liveness", b"1", 60).unwrap();
        while l.poll_change().is_some() {}
        l
    }

    #[test]
    fn a_snapshot_restores_entries_tombstones_and_large_values() {
        let id = Identity::generate(&mut OsRng);
        let original = ledger_with_entries(&id);
        let bytes = encode_ledger(&original);

        let mut restored: Box<Small> = Box::default();
        let r = restore_ledger(&mut restored, &mut Ed25519Verifier, Instant::from_micros(5), &bytes).unwrap();
        assert_eq!(r, Restored { applied: 4, refused: 0 });
        let live = |l: &Small| {
            l.iter()
                .map(|e| (e.bucket().to_vec(), e.key().to_vec(), e.value().to_vec(), e.clock()))
                .collect::<Vec<_>>()
        };
        assert_eq!(live(&restored), live(&original));
        assert_eq!(restored.len(), 3, "role, kubeconfig, liveness");
        let gone = restored.find(b"kairos", b"gone").expect("tombstone kept");
        assert_eq!(gone.state(), EntryState::Tombstone);
        assert_eq!(restored.clock(), original.clock(), "the Lamport clock comes back");
        // Restoring twice changes nothing.
        let again = restore_ledger(&mut restored, &mut Ed25519Verifier, Instant::from_micros(6), &bytes).unwrap();
        assert_eq!(again, Restored { applied: 0, refused: 0 });
    }

    #[test]
    fn an_empty_ledger_round_trips() {
        let empty: Box<Small> = Box::default();
        let bytes = encode_ledger(&empty);
        assert_eq!(bytes, b"KLS1\0\0\0\0");
        let mut l: Box<Small> = Box::default();
        let r = restore_ledger(&mut l, &mut Ed25519Verifier, Instant::ZERO, &bytes).unwrap();
        assert_eq!(r, Restored::default());
    }

    #[test]
    fn damaged_snapshots_are_refused_before_anything_is_applied() {
        let id = Identity::generate(&mut OsRng);
        let bytes = encode_ledger(&ledger_with_entries(&id));
        let mut l: Box<Small> = Box::default();
        let now = Instant::ZERO;
        assert_eq!(
            restore_ledger(&mut l, &mut Ed25519Verifier, now, &bytes[..bytes.len() - 1]),
            Err(SnapshotError::Truncated)
        );
        assert_eq!(
            restore_ledger(&mut l, &mut Ed25519Verifier, now, b"nope"),
            Err(SnapshotError::Format)
        );
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            restore_ledger(&mut l, &mut Ed25519Verifier, now, &trailing),
            Err(SnapshotError::Format)
        );
        assert!(l.is_empty());
    }

    #[test]
    fn a_forged_entry_is_refused_and_the_rest_restored() {
        let id = Identity::generate(&mut OsRng);
        let mut bytes = encode_ledger(&ledger_with_entries(&id));
        // Flip a byte in the last entry's value: its signature no longer verifies.
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        let mut l: Box<Small> = Box::default();
        let r = restore_ledger(&mut l, &mut Ed25519Verifier, Instant::ZERO, &bytes).unwrap();
        assert_eq!(r.refused, 1);
        assert_eq!(r.applied, 3);
    }

    #[test]
    fn claims_round_trip() {
        let a = Ipv4Addr::new(10, 1, 0, 7);
        assert_eq!(decode_claim(&encode_claim(a)), Some(a));
        assert_eq!(decode_claim(b"10.1.0"), None);
        assert_eq!(decode_claim(b""), None);
    }
}
