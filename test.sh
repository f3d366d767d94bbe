#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/integration/end-to-end tests,
# the no_std link check and a fuzz smoke run. `.ci/run` calls exactly this.
# Installs what it needs (cargo-fuzz) on first use. Runs as a normal user or
# as root; tests that need root say so loudly when they cannot run.
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
step() { printf '\n==> %s\n' "$*"; }

step "toolchain"
cargo --version
rustup component list --installed 2>/dev/null | grep -E 'clippy|rustfmt' || true
if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "error: the nightly toolchain is needed for the fuzz smoke run (rustup toolchain install nightly)" >&2
  exit 1
fi

step "cargo fmt --check"
cargo fmt --all -- --check
cargo fmt --manifest-path nostd-check/Cargo.toml -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo fmt --manifest-path fuzz/host/Cargo.toml -- --check

step "cargo clippy (workspace, all targets, -D warnings)"
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --manifest-path nostd-check/Cargo.toml -- -D warnings
# The fake API driver and kairos::fuzzing (the host fuzz targets' facade).
cargo clippy -p kairos --all-targets --features fuzzing --locked -- -D warnings

step "tests"
cargo test --workspace --locked
# The core on its own, without the host's features (RustCrypto provider only).
cargo test -p kairos-core --locked

step "end-to-end tests (network namespaces)"
# Real agents in network namespaces (docs/testing.md). Needs root, /dev/net/tun,
# iproute2, nftables, ping, unshare, chromium and kubectl; installs the missing
# tools when root. Not root:
# every end-to-end test prints SKIPPED (with CI=true it fails instead).
if [ "$(id -u)" -eq 0 ]; then
  need_apt=()
  command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
  command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
  command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
  command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
  # The operator tests: the dashboard in headless Chromium, the kubeconfig
  # checked by kubectl (any kubectl on PATH will do).
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
  command -v curl >/dev/null 2>&1 || need_apt+=(curl)
  command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "installing ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
  fi
else
  echo "*** not root: the end-to-end tests will print SKIPPED ***"
fi
cargo build -p kairos --locked
# One test at a time: agents share the machine's cores, and the printed
# [bench] times stay comparable.
KAIROS_E2E=1 KAIROS_E2E_REQUIRE_AGENT=1 cargo test -p kairos-tests --locked --no-fail-fast -- --test-threads=1

step "no_std link check"
cargo build --manifest-path nostd-check/Cargo.toml --release

step "fuzz smoke (${FUZZ_SECONDS}s per target)"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
# fuzz/ (kairos-core, no_std) and fuzz/host/ (the config reader and the API)
# are separate cargo-fuzz projects, each with its own workspace and lock file.
# `--fuzz-dir .` always: without it, cargo-fuzz in fuzz/host/ finds fuzz/.
for dir in fuzz fuzz/host; do
  (
    cd "$dir"
    # cargo fuzz has no --locked: fail here if Cargo.lock is out of date.
    cargo +nightly fetch --locked
    cargo +nightly fuzz build --fuzz-dir .
    scratch="$(mktemp -d)"
    trap 'rm -rf "$scratch"' EXIT
    for target in $(cargo +nightly fuzz list --fuzz-dir .); do
      echo "--- fuzz $dir $target"
      mkdir -p "$scratch/$target" "corpus/$target"
      # New inputs go to the scratch dir; the committed corpus is only read.
      # An input that takes 10 s is a hang (the host's config reader must
      # refuse alias bombs and huge files quickly).
      cargo +nightly fuzz run --fuzz-dir . "$target" "$scratch/$target" "corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -print_final_stats=1 2>&1 | tail -n 12
    done
  )
done

step "all checks passed"
