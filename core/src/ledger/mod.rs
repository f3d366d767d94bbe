//! The replicated ledger: a map `(bucket, key) -> bytes` that every member
//! of the mesh holds a replica of, and the messages that keep the replicas
//! in step.
//!
//! # Model
//!
//! - **Entries are signed.** Every write carries its origin's
//!   [`PublicIdentity`](crate::identity::PublicIdentity) and an Ed25519
//!   signature over the entry's signed hash (see [Signatures](self#signatures)),
//!   so an entry verifies on its own: no membership table is needed, and a
//!   relay cannot alter it.
//! - **Last writer wins** by [`Version`]: the Lamport clock, then the
//!   origin's [`NodeId`](crate::identity::NodeId), then the signed hash. A
//!   node's own writes use `clock = max(seen) + 1`; every verified entry
//!   stored raises the local clock to at least its clock. An entry more than
//!   [`MAX_CLOCK_JUMP`] ahead of the local clock is refused, so no single
//!   entry can use up the clock space.
//! - **Deletes are tombstones**: signed entries without a value that keep the
//!   key's version, so a late older write does not bring the key back. A
//!   tombstone is purged [`TOMBSTONE_GRACE`] (10 minutes) after this replica
//!   stored it; an older write arriving after that resurrects the key (the
//!   usual bound of tombstone schemes).
//! - **TTLs**: a write may carry a ttl in seconds. The ttl is what is signed;
//!   each replica expires the entry at *its own* receipt time plus the ttl,
//!   since clocks differ between nodes (a replica that received it later
//!   expires it later). An expired entry disappears from reads and from the
//!   digest; its version is kept for [`TOMBSTONE_GRACE`] so a replica that has
//!   not expired it yet cannot hand it back. Writing the key again refreshes
//!   it. An expired newer version does not retract an older version another
//!   replica still holds: write liveness keys with a ttl every time.
//! - **Owner-only buckets** ([`buckets::is_owner_only`]: `machines`,
//!   `addresses`, `owner/...`) accept only entries whose key is the origin's
//!   printable node id, on local writes and on received entries
//!   ([`LedgerError::NotOwner`]).
//! - **Limits**: bucket 1..=[`MAX_BUCKET_LEN`] bytes, key
//!   1..=[`MAX_KEY_LEN`] bytes, value up to [`MAX_VALUE_LEN`] (16 KiB, a
//!   kubeconfig fits); any bytes, UTF-8 by convention.
//!
//! # What the Node does with it
//!
//! The ledger never sends anything and never picks a peer. The Node:
//!
//! - writes with [`Ledger::put`] / [`Ledger::delete`] and reads with
//!   [`Ledger::get`], [`Ledger::iter`], [`Ledger::iter_bucket`];
//! - drains [`Ledger::poll_change`] after every call that changes the
//!   ledger: each [`Change`] is an event for the API and, for local writes
//!   (and, if it relays, for new remote ones), an entry to push at once:
//!   [`Ledger::encoder`] gives the one or more `LEDGER_DELTA` messages;
//! - decodes received payloads with [`Message::decode`]: an entry goes to
//!   [`Ledger::apply`], a fragment to a [`Reassembly`] and then to `apply`;
//! - calls [`Ledger::expire`] at [`Ledger::poll_timeout`] (every mutating
//!   call also expires what is due first);
//! - runs anti-entropy now and then with a peer (see
//!   [Anti-entropy](self#anti-entropy)).
//!
//! # Signatures
//!
//! The signed hash is `BLAKE2s("kairos ledger entry v1" || header || bucket
//! || key || value)`, `header` being bytes 1..82 of the entry's encoding
//! (flags, clock, ttl, origin keys, lengths; see [`wire`]). The origin signs
//! those 32 bytes, so [`SignatureVerifier::verify`] always gets a 32-byte
//! message. [`Ledger::apply`] checks the cheap things first (format, owner
//! rule, version order) and verifies only an entry that would change the
//! replica: a copy of what it already holds, or an older version, is
//! answered [`Applied::Equal`] or [`Applied::Older`] without a signature
//! check, since it changes nothing.
//!
//! # Anti-entropy
//!
//! Pushes can be lost; a periodic exchange with one peer repairs the rest.
//! `A` starts it, `B` answers, every message a control payload:
//!
//! 1. `A` sends its [`Digest`] (`LEDGER_DIGEST`, 518 bytes): for each of 64
//!    ranges of the id space, the XOR of 8 bytes of the signed hash of every
//!    live entry in it, kept up to date on every change.
//! 2. `B` computes `mask = B.digest().mismatch(&a)`. Empty: done. Otherwise
//!    `B` sends the pages of [`Ledger::write_summary`]: each of its records
//!    in the mismatched ranges as id prefix, clock, state and version tag
//!    (24 bytes; 48 per page, each page covering an interval of ids).
//! 3. For each page `A` walks [`Ledger::reconcile`]: [`Action::Send`] for
//!    each of its entries `B` lacks or holds older (`A` sends them as
//!    deltas), [`Action::Want`] for each id `B` holds newer (collected into
//!    one [`RequestRepr`] per page).
//! 4. `B` answers the request with [`Ledger::requested`].
//!
//! Tombstones are excluded from the digest and sent only to a replica that
//! holds an older version of the key (one that lacks the key has nothing to
//! delete), so replicas that purge them at different times do not hand
//! them back and forth; expired entries are never sent. The cost is the
//! digest plus the summaries of the differing ranges, not of the ledger:
//! measured in the tests, 15 differences among 500 entries took 21 messages,
//! 3.3 KB of digest, summaries and requests plus 2.4 KB of entries; two
//! replicas of about 40 keys with random divergent histories converged in
//! one exchange of 23 to 33 messages (1.0 to 1.3 KB of control traffic);
//! replicas in sync exchange one 519-byte digest.
//!
//! # Messages
//!
//! Every message is at most [`MAX_MESSAGE_LEN`] (1200) bytes, so it fits one
//! overlay datagram; an entry longer than that travels in fragments
//! (`fragment.rs`). Layouts are in [`wire`].
//!
//! # Memory
//!
//! `Ledger<ENTRIES, ARENA>` is one inline value, no heap: `ARENA` bytes for
//! buckets, keys and values (plus 4 bytes per record), and 246 bytes per
//! entry slot (a 232-byte record, a 2-byte index and its 8-byte id prefix,
//! the bucket length, 3 bytes of change queue), plus 592 bytes of digest
//! and counters. Measured (x86_64, tested):
//! `Ledger<64, 16384>` = 32 720 bytes, `Ledger<1024, 262144>` = 514 640
//! bytes. Construct a large one in place (a `static`, or inside the Node's
//! own boxed state): `new` is a `const fn`. The arena is
//! compacted when an allocation does not fit above its top;
//! [`LedgerError::Full`] means no free slot, or not enough bytes even after
//! compaction. When the table is full, the oldest expired record is evicted
//! to make room. A [`Reassembly<S, N>`] holds `N` entries in progress,
//! 16 760 bytes each.

mod arena;
pub mod batch;
pub mod buckets;
mod digest;
mod entry;
mod fragment;
mod replica;
mod store;
mod sync;
pub mod wire;

use core::fmt;

pub use digest::{Digest, RangeMask};
pub use entry::{signed_hash, Ed25519Verifier, Entry, EntryId, EntryRef, EntryState, SignatureVerifier, Version};
pub use fragment::{
    EntryEncoder, FragmentPacket, Reassembly, FRAGMENT_CHUNK, FRAGMENT_HEADER_LEN, MAX_FRAGMENTS, REASSEMBLY_TIMEOUT,
};
pub use replica::Ledger;
pub use sync::{Action, Reconcile, Requested, SummaryPage};
pub use wire::{DecodeError, Message, RequestRepr, MAX_ENTRY_LEN, RANGES};

use crate::time::Duration;

/// The longest bucket name.
pub const MAX_BUCKET_LEN: usize = 64;
/// The longest key.
pub const MAX_KEY_LEN: usize = 128;
/// The longest value.
pub const MAX_VALUE_LEN: usize = 16 * 1024;
/// The longest ledger message (payload of a control envelope).
pub const MAX_MESSAGE_LEN: usize = 1200;
/// The highest Lamport clock an entry may carry (2^62 - 1): entries above
/// are malformed, so a clock never overflows. Past it, local writes fail
/// with [`LedgerError::ClockExhausted`].
pub const MAX_CLOCK: u64 = (1 << 62) - 1;
/// The most a received entry's clock may exceed this replica's clock
/// (2^40: far more writes than a mesh makes in centuries). Without a bound,
/// one entry signed with a clock near [`MAX_CLOCK`] (a bug, or a hostile
/// member) would exhaust every replica's clock at once.
pub const MAX_CLOCK_JUMP: u64 = 1 << 40;
/// How long a tombstone or an expired entry is kept after this replica
/// stored (or expired) it.
pub const TOMBSTONE_GRACE: Duration = Duration::from_secs(10 * 60);
/// The ttl argument for an entry that never expires.
pub const NO_TTL: u32 = 0;

/// The longest entry encoding a small replica holds (see [`Scope`]).
pub const SMALL_ENTRY_LEN: usize = 2048;

/// The buckets a small replica holds (see [`Scope`]): the mesh's own
/// records, that is machine records, address claims, role records and
/// advertisements (`election::ROLES`, `election::ALIVE`).
pub const SMALL_BUCKETS: [&str; 4] = [buckets::MACHINES, buckets::ADDRESSES, "owner/roles", "owner/alive"];

/// Which entries an exchange with a peer covers. A small device's replica
/// (its reassembly buffer shorter than the longest entry, its ledger a few
/// records per member) holds only the mesh's own records
/// ([`SMALL_BUCKETS`]) whose encoding is at most [`SMALL_ENTRY_LEN`] bytes:
/// with it, pushes and anti-entropy carry and compare only those, so the
/// rest (a kubeconfig, every host's `owner/info`) neither travel to it in
/// vain nor fill its ledger and keep the two digests different for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every entry.
    All,
    /// The entries of [`SMALL_BUCKETS`] of at most [`SMALL_ENTRY_LEN`]
    /// encoded bytes.
    Small,
}

impl Scope {
    /// Whether an entry of `bucket`, `encoded_len` bytes long encoded, is
    /// in this scope.
    pub fn holds(self, bucket: &[u8], encoded_len: usize) -> bool {
        self == Scope::All || (encoded_len <= SMALL_ENTRY_LEN && SMALL_BUCKETS.iter().any(|b| b.as_bytes() == bucket))
    }
}

/// Why a ledger operation failed. The entry asked for was not stored and
/// the clock did not move (what was due to expire has expired, and on
/// [`LedgerError::Full`] an expired record may have been evicted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedgerError {
    /// The bucket is empty or longer than [`MAX_BUCKET_LEN`].
    BucketLength,
    /// The key is empty or longer than [`MAX_KEY_LEN`].
    KeyLength,
    /// The value is longer than [`MAX_VALUE_LEN`].
    ValueTooLong,
    /// An owner-only bucket, and the key is not the origin's node id.
    NotOwner,
    /// The signature does not verify with the origin's signing key.
    BadSignature,
    /// Two different (bucket, key) pairs with the same 128-bit id.
    IdCollision,
    /// No free slot, or the bytes do not fit even after compaction.
    Full,
    /// The local Lamport clock reached [`MAX_CLOCK`].
    ClockExhausted,
    /// A received entry's clock is more than [`MAX_CLOCK_JUMP`] ahead.
    ClockJump,
    /// The message is not a well-formed entry.
    Malformed(DecodeError),
    /// The [`EntryRef`] names a version that is no longer held.
    Stale,
    /// Expired entries are never sent.
    NotSendable,
    /// The output buffer is too short.
    BufferTooSmall,
    /// The message index is past the last message of the entry.
    NoSuchMessage,
}

impl fmt::Display for LedgerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerError::BucketLength => write!(f, "bucket must be 1 to {MAX_BUCKET_LEN} bytes"),
            LedgerError::KeyLength => write!(f, "key must be 1 to {MAX_KEY_LEN} bytes"),
            LedgerError::ValueTooLong => write!(f, "value longer than {MAX_VALUE_LEN} bytes"),
            LedgerError::NotOwner => f.write_str("owner-only bucket: the key must be the writer's node id"),
            LedgerError::BadSignature => f.write_str("entry signature does not verify"),
            LedgerError::IdCollision => f.write_str("entry id collision"),
            LedgerError::Full => f.write_str("ledger full"),
            LedgerError::ClockExhausted => f.write_str("Lamport clock exhausted"),
            LedgerError::ClockJump => f.write_str("entry clock too far ahead"),
            LedgerError::Malformed(e) => write!(f, "malformed entry: {e}"),
            LedgerError::Stale => f.write_str("entry version no longer held"),
            LedgerError::NotSendable => f.write_str("expired entries are not sent"),
            LedgerError::BufferTooSmall => f.write_str("output buffer too small"),
            LedgerError::NoSuchMessage => f.write_str("no such message for this entry"),
        }
    }
}

impl core::error::Error for LedgerError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            LedgerError::Malformed(e) => Some(e),
            _ => None,
        }
    }
}

impl From<DecodeError> for LedgerError {
    fn from(e: DecodeError) -> Self {
        LedgerError::Malformed(e)
    }
}

/// What [`Ledger::apply`] did with a well-formed entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The key was unknown here; the entry is stored.
    New(EntryRef),
    /// The entry beat the stored version and replaced it.
    Newer(EntryRef),
    /// The stored version is newer; nothing changed.
    Older,
    /// This exact version is already stored; nothing changed.
    Equal,
}

/// A change to report, from [`Ledger::poll_change`]. Several changes to one
/// key before the poll are reported once, as the latest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The record (look it up with [`Ledger::entry`]).
    pub entry: EntryRef,
    /// What the record holds now.
    pub state: EntryState,
    /// The change was a local write (push it to every peer).
    pub local: bool,
}
