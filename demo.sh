#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs the main job: builds `kairos`,
# generates a network token, and runs a local demo mesh on loopback.
# Safe to run again; installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v curl >/dev/null 2>&1 || need_apt+=(curl ca-certificates)
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

echo "==> building kairos (release)"
cargo build --release --locked -p kairos
kairos=target/release/kairos

echo "==> kairos generate-token"
token="$("$kairos" generate-token)"
echo "$token"
echo "==> kairos token inspect"
"$kairos" token inspect "$token"
echo "==> kairos demo (peers on loopback, beacons off)"
KAIROS_TOKEN="$token" "$kairos" demo
