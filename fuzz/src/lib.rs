//! The fuzz targets of `kairos-core`, as plain functions.
//!
//! Each target in `fuzz_targets/` is one line calling `<target>::run`. The
//! logic lives here so that the corpus generator (`gen_corpus.rs`) builds
//! seeds with the very code the fuzzer runs (the handshake seeds depend on the
//! responder's deterministic RNG), and so that `cargo test` can replay the
//! committed corpora and regressions without libFuzzer.
//!
//! Every `run` returns a small [`Stats`] of how deep the input got; the
//! generator uses it to check that a seed reaches what it was made for.

pub mod check;
pub mod dns_query;
pub mod fixture;
pub mod input;

pub mod handshake_responder;
pub mod ledger_messages;
pub mod node_datagrams;
pub mod offload;
pub mod role_record;
pub mod token_decode;
pub mod transport_decrypt;
pub mod wire_parsers;

/// How far an input got. Only counts; never affects what a target checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams (or texts) handed to the code under test.
    pub fed: u32,
    /// Inputs the code under test accepted (a token decoded, a packet parsed,
    /// a datagram that returned `Ok`).
    pub accepted: u32,
    /// Handshake replies produced (responses and cookie replies).
    pub replies: u32,
    /// Handshakes completed (`TunnelEvent::Established`).
    pub established: u32,
    /// Transport messages authenticated and delivered (IP, control,
    /// keepalive, or an unknown payload kind after authentication).
    pub delivered: u32,
}

/// Replays the committed corpora and regressions through the targets'
/// code, without libFuzzer: `cargo +nightly test` in `fuzz/`.
#[cfg(test)]
mod replay {
    use std::path::Path;

    fn each_input(dir: &str, target: &str, run: fn(&[u8]) -> crate::Stats) -> usize {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
        let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
        let mut n = 0;
        for e in entries {
            let path = e.expect("a directory entry").path();
            if path.is_file() && path.extension().is_none_or(|x| x != "md") {
                run(&std::fs::read(&path).expect("read an input"));
                n += 1;
            }
        }
        n
    }

    fn replay(target: &str, run: fn(&[u8]) -> crate::Stats) {
        let seeds = each_input("corpus", target, run);
        assert!(
            seeds > 0,
            "no seeds for {target}: run `cargo +nightly run --example gen-corpus`"
        );
        each_input("regressions", target, run);
    }

    #[test]
    fn token_decode() {
        replay("token_decode", crate::token_decode::run);
    }

    #[test]
    fn wire_parsers() {
        replay("wire_parsers", crate::wire_parsers::run);
    }

    #[test]
    fn handshake_responder() {
        replay("handshake_responder", crate::handshake_responder::run);
    }

    #[test]
    fn transport_decrypt() {
        replay("transport_decrypt", crate::transport_decrypt::run);
    }

    #[test]
    fn ledger_messages() {
        replay("ledger_messages", crate::ledger_messages::run);
    }

    #[test]
    fn role_record() {
        replay("role_record", crate::role_record::run);
    }

    #[test]
    fn dns_query() {
        replay("dns_query", crate::dns_query::run);
    }

    #[test]
    fn node_datagrams() {
        replay("node_datagrams", crate::node_datagrams::run);
    }

    #[test]
    fn offload() {
        replay("offload", crate::offload::run);
    }
}
