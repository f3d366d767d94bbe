//! The fuzz targets of the `kairos` host, as plain functions: the config
//! reader ([`config_yaml`]), the HTTP API ([`api_requests`]) and the
//! rootless bridge's SOCKS5 parsers ([`socks_requests`]). They reach
//! the host through `kairos::fuzzing` (the `fuzzing` feature).
//!
//! Each target in `fuzz_targets/` is one line calling `<target>::run`, so
//! that the corpus generator (`gen_corpus.rs`) checks seeds with the code the
//! fuzzer runs and `cargo test` here replays the committed corpora and
//! regressions without libFuzzer.
//!
//! These targets live apart from `fuzz/` (the core's): the host builds
//! `kairos-core` with `std` and `ring`, and in one cargo workspace that
//! would switch them on for the core targets too.

pub mod api_requests;
pub mod config_yaml;
pub mod input;
pub mod socks_requests;

/// Replays the committed corpora and regressions: `cargo +nightly test` in
/// `fuzz/host/`.
#[cfg(test)]
mod replay {
    use std::path::Path;

    fn each_input(dir: &str, target: &str, run: &dyn Fn(&[u8])) -> usize {
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

    fn replay(target: &str, run: &dyn Fn(&[u8])) {
        let seeds = each_input("corpus", target, run);
        assert!(seeds > 0, "no seeds for {target}");
        each_input("regressions", target, run);
    }

    #[test]
    fn config_yaml() {
        replay("config_yaml", &|d| {
            crate::config_yaml::run(d);
        });
    }

    #[test]
    fn api_requests() {
        replay("api_requests", &|d| {
            crate::api_requests::run(d);
        });
    }

    #[test]
    fn socks_requests() {
        replay("socks_requests", &|d| {
            crate::socks_requests::run(d);
        });
    }
}
