#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the main job: builds `kairos`,
# generates a network token, and starts a local mesh of three `kairos agent`s,
# each in its own network namespace on one virtual LAN, prints their status,
# and removes everything again (the code the end-to-end tests run; see
# docs/testing.md). Needs root (or sudo) for the namespaces; without them it
# runs the loopback demo instead. Safe to run again; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
# For the namespace mesh: ip netns, ping (waits until nodes reach each other), nft.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v nft >/dev/null 2>&1 || need_apt+=(nftables)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  echo "==> installing ${need_apt[*]}"
  $sudo_cmd apt-get update -qq
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi
if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "==> installing the Rust toolchain (rustup)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi

echo "==> building kairos and the demo-mesh runner (release)"
cargo build --release --locked -p kairos
cargo build --release --locked -p kairos-tests --bins   # demo-mesh and its e2e-net probe
target_dir="${CARGO_TARGET_DIR:-target}"
kairos="$target_dir/release/kairos"

echo "==> kairos generate-token"
token="$("$kairos" generate-token)"
echo "$token"
echo "==> kairos token inspect"
"$kairos" token inspect "$token"

as_root=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root="sudo"
fi
if { [ "$(id -u)" -eq 0 ] || [ -n "$as_root" ]; } && [ -e /dev/net/tun ]; then
  echo "==> a local mesh: three kairos agents in network namespaces on one virtual LAN"
  $as_root env KAIROS_BIN="$kairos" KAIROS_TOKEN="$token" "$target_dir/release/demo-mesh" --nodes 3
else
  echo "==> no root or no /dev/net/tun: the namespace mesh needs both; running the loopback demo instead"
  echo "==> kairos demo (peers on loopback, beacons off)"
  KAIROS_TOKEN="$token" "$kairos" demo
fi
