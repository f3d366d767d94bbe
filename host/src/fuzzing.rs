//! What the fuzz targets of `fuzz/host/` reach, in one place: the config
//! reader an operator's file goes through ([`check`] on a [`Source`], as
//! `kairos validate` and `kairos agent` run it), the HTTP API's
//! [`router`] with the [fake driver](fake_driver_on) of the router tests,
//! and the userspace bridge's SOCKS5 parsers ([`parse_greeting`],
//! [`parse_request`], [`resolve`] through the mesh's [`Names`]).
//!
//! Built with the `fuzzing` feature only. It adds no behaviour: every item
//! is a re-export, so the targets test the code the agent runs.

pub use crate::agent::api::fake::{fake_driver_on, FakeLedger, ME};
pub use crate::agent::api::{router, ApiOptions};
pub use crate::agent::dns::{Host, Names};
pub use crate::agent::status::show_value;
pub use crate::agent::userspace::socks::{parse_greeting, parse_request, reply, resolve, Refusal, ReplyCode, Target};
pub use crate::config::scan::{MAX_DEPTH, MAX_EXPANDED_BYTES, MAX_NODES};
pub use crate::config::source::MAX_FILE_SIZE;
pub use crate::config::{check, AgentConfig, Checked, Diagnostic, EnvOverrides, Source};
pub use kairos_core::ledger::buckets::is_owner_only;
pub use kairos_core::ledger::{MAX_BUCKET_LEN, MAX_KEY_LEN, MAX_VALUE_LEN};
