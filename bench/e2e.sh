#!/usr/bin/env bash
# bench/e2e.sh: the data-path benchmark of issue 7.
#
# Two network namespaces joined by one veth pair; a single-stream TCP iperf3
# run under BBR and under CUBIC, and ping RTT, over the raw veth, over this
# project (`kairos agent` in each namespace), over wireguard-go (configured
# with wireguard-tools), over nebula and over boringtun-cli, in the same run,
# several rounds interleaved across the tunnels, medians. Prints a markdown
# table with the ratio of kairos to each peer. See `bench/e2e.sh --help` and
# bench/README.md.
#
# All traffic stays inside the two namespaces (and their loopbacks): links,
# addresses and daemons live in them, nothing is routed anywhere else. The
# machine's own namespace only gets the two named namespaces
# (/run/netns/kbench-<pid>-{a,b}), which the script deletes again.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: sudo bench/e2e.sh [--help]

The data-path benchmark of issue 7. Builds `kairos` (release), installs what
is missing (iperf3, wireguard-go, wireguard-tools, nebula, iproute2, iputils-ping,
curl, jq with apt-get; boringtun-cli with `cargo install` under
<target dir>/bench-tools), then:

  - creates two network namespaces kbench-<pid>-a and kbench-<pid>-b joined by
    one veth pair (underlay 10.213.0.1/24 and 10.213.0.2/24);
  - sets up each tunnel between them once:
      veth          the raw veth (10.213.0.0/24), no tunnel
      kairos        `kairos agent` in each namespace (LAN beacons + bootstrap
                    peer on the underlay; overlay 10.213.1.0/24)
      wireguard-go  wireguard-go + wg (10.213.2.0/24, UDP 51821)
      nebula        nebula, CA and certs by nebula-cert, node a is the
                    lighthouse (10.213.3.0/24, UDP 4242)
      boringtun     boringtun-cli + wg (10.213.4.0/24, UDP 51822)
  - per round, for each tunnel (the order rotates each round): iperf3 single
    stream TCP from a to b for DURATION seconds with `-C bbr`, then with
    `-C cubic`, then PINGS pings at 0.05 s intervals;
  - prints a markdown table of the medians over the rounds: TCP Gbit/s (BBR,
    CUBIC), median RTT, RTT over the raw veth, the ratio of kairos to each
    tunnel, and the tunnel daemons' CPU time (utime + stime of both ends
    from /proc/PID/stat) per GB carried during the iperf3 runs;
  - removes everything it created (also on error, Ctrl-C or SIGTERM).

Needs root (namespaces, TUN devices). Environment:

  ROUNDS=3         rounds (each: every tunnel, BBR + CUBIC + ping)
  DURATION=5       seconds per iperf3 run
  PINGS=20         pings per round per tunnel
  ONLY="..."       a subset of: veth kairos wireguard-go nebula boringtun
                   (space or comma separated; default all)
  KAIROS_BIN=PATH  use this kairos binary instead of building one
  BORINGTUN_BIN=PATH  use this boringtun-cli instead of `cargo install`
  NO_INSTALL=1     install nothing (tunnels whose tools are missing are skipped)
  KEEP=1           keep the work directory (configs, logs, iperf3 JSON)
  OUT=FILE         also write the markdown report to FILE
  CARGO_TARGET_DIR where cargo builds (default: <repo>/target)

Every load is bounded: iperf3 runs under `timeout`, pings by count and
deadline, every wait for a tunnel by a deadline.
EOF
}

case "${1:-}" in
  -h | --help) usage; exit 0 ;;
  "") ;;
  *) echo "bench/e2e.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
esac

if [ "$(id -u)" -ne 0 ]; then
  cat >&2 <<'EOF'

  ************************************************************************
  ***  bench/e2e.sh NEEDS ROOT: it creates network namespaces, veth     ***
  ***  links and TUN devices. Run it as root, e.g. sudo bench/e2e.sh    ***
  ************************************************************************

EOF
  exit 1
fi

repo="$(cd "$(dirname "$0")/.." && pwd)"
ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
PINGS="${PINGS:-20}"
ALL_TUNNELS="veth kairos wireguard-go nebula boringtun"
ONLY="${ONLY:-$ALL_TUNNELS}"
for v in ROUNDS DURATION PINGS; do
  case "${!v}" in
    '' | *[!0-9]*) echo "bench/e2e.sh: $v must be a positive integer, got '${!v}'" >&2; exit 2 ;;
  esac
  if [ "${!v}" -lt 1 ] || [ "${!v}" -gt 1000 ]; then
    echo "bench/e2e.sh: $v must be 1..1000, got '${!v}'" >&2; exit 2
  fi
done
tunnels=()
for t in ${ONLY//,/ }; do
  case " $ALL_TUNNELS " in
    *" $t "*) tunnels+=("$t") ;;
    *) echo "bench/e2e.sh: unknown tunnel '$t' in ONLY (known: $ALL_TUNNELS)" >&2; exit 2 ;;
  esac
done
[ ${#tunnels[@]} -gt 0 ] || { echo "bench/e2e.sh: ONLY selects no tunnel" >&2; exit 2; }

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf '*** %s\n' "$*" >&2; }

# ---------------------------------------------------------------- install
if [ "${NO_INSTALL:-0}" != 1 ]; then
  need=()
  command -v ip >/dev/null 2>&1 || need+=(iproute2)
  command -v ping >/dev/null 2>&1 || need+=(iputils-ping)
  command -v iperf3 >/dev/null 2>&1 || need+=(iperf3)
  command -v curl >/dev/null 2>&1 || need+=(curl)
  command -v jq >/dev/null 2>&1 || need+=(jq)
  command -v wg >/dev/null 2>&1 || need+=(wireguard-tools)
  command -v wireguard-go >/dev/null 2>&1 || need+=(wireguard-go)
  command -v nebula >/dev/null 2>&1 || need+=(nebula)
  command -v nebula-cert >/dev/null 2>&1 || need+=(nebula)
  command -v timeout >/dev/null 2>&1 || need+=(coreutils)
  command -v unshare >/dev/null 2>&1 || need+=(util-linux)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
  fi
fi
for tool in ip ping iperf3 curl jq timeout unshare; do
  command -v "$tool" >/dev/null 2>&1 || { echo "bench/e2e.sh: '$tool' is missing" >&2; exit 1; }
done
[ -e /dev/net/tun ] || { echo "bench/e2e.sh: /dev/net/tun is missing" >&2; exit 1; }

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
want() { case " ${tunnels[*]} " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
drop() { # drop TUNNEL WHY: leave a tunnel out of the run
  local t=$1 keep=()
  shift
  warn "$t is left out: $*"
  skipped+=("$t: $*")
  for x in "${tunnels[@]}"; do [ "$x" = "$t" ] || keep+=("$x"); done
  tunnels=("${keep[@]}")
}
skipped=()

if want kairos; then
  if [ -n "${KAIROS_BIN:-}" ]; then
    kairos="$KAIROS_BIN"
  else
    log "building kairos (cargo build --release --locked -p kairos)"
    (cd "$repo" && CARGO_TARGET_DIR="$target_dir" cargo build --release --locked -p kairos >&2)
    kairos="$target_dir/release/kairos"
  fi
  [ -x "$kairos" ] || { echo "bench/e2e.sh: no kairos binary at $kairos" >&2; exit 1; }
fi
if want boringtun; then
  boringtun="${BORINGTUN_BIN:-$target_dir/bench-tools/bin/boringtun-cli}"
  if [ ! -x "$boringtun" ] && [ "${NO_INSTALL:-0}" != 1 ] && [ -z "${BORINGTUN_BIN:-}" ]; then
    log "installing boringtun-cli (cargo install boringtun-cli --locked --root $target_dir/bench-tools)"
    CARGO_TARGET_DIR="$target_dir/bench-tools/build" \
      cargo install boringtun-cli --locked --root "$target_dir/bench-tools" >&2 ||
      warn "cargo install boringtun-cli failed"
  fi
  [ -x "$boringtun" ] || drop boringtun "no boringtun-cli binary at $boringtun"
fi
if want wireguard-go; then
  command -v wireguard-go >/dev/null 2>&1 || drop wireguard-go "wireguard-go is not installed"
fi
if want wireguard-go || want boringtun; then
  if ! command -v wg >/dev/null 2>&1; then
    if want wireguard-go; then drop wireguard-go "wg (wireguard-tools) is not installed"; fi
    if want boringtun; then drop boringtun "wg (wireguard-tools) is not installed"; fi
  fi
fi
if want nebula; then
  { command -v nebula >/dev/null 2>&1 && command -v nebula-cert >/dev/null 2>&1; } ||
    drop nebula "nebula / nebula-cert are not installed"
fi

# Congestion control: BBR is a module on most kernels.
ccs=(bbr cubic)
if ! grep -qw bbr /proc/sys/net/ipv4/tcp_available_congestion_control; then
  modprobe tcp_bbr 2>/dev/null || true
fi
if grep -qw bbr /proc/sys/net/ipv4/tcp_available_congestion_control; then
  bbr_note="BBR available (tcp_available_congestion_control: $(cat /proc/sys/net/ipv4/tcp_available_congestion_control))"
else
  bbr_note="BBR NOT available on this kernel (no tcp_bbr module): the BBR column is empty"
  warn "$bbr_note"
  ccs=(cubic)
fi

# ---------------------------------------------------------------- the lab
id=$$
NS_A="kbench-$id-a"
NS_B="kbench-$id-b"
UNDER_A=10.213.0.1
UNDER_B=10.213.0.2
work="$(mktemp -d /tmp/kbench.XXXXXX)"
pids=()         # every background process this script started
made_ns=()      # namespaces this script created
wg_socks=()     # WireGuard UAPI sockets of this run (a shared directory)

stop_pid() { # stop_pid PID: SIGTERM, SIGKILL after 3 s
  local pid=$1 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  : "$i"
}

cleanup() {
  local rc=$? pid ns s
  trap - EXIT INT TERM
  set +e
  for pid in "${pids[@]}"; do stop_pid "$pid"; done
  for ns in "${made_ns[@]}"; do
    # whatever still runs inside our own namespaces was started by this run
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
    ip netns del "$ns" 2>/dev/null
  done
  for s in "${wg_socks[@]}"; do rm -f "$s"; done
  if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
    echo "bench/e2e.sh: work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Namespaces left by an earlier run that was SIGKILLed (its pid is gone).
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^kbench-[0-9]+-[ab]$' || true); do
  owner=${ns#kbench-}
  owner=${owner%-*}
  if ! kill -0 "$owner" 2>/dev/null; then
    log "removing $ns, left by an earlier run (pid $owner is gone)"
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  fi
done

in_a() { ip netns exec "$NS_A" "$@"; }
in_b() { ip netns exec "$NS_B" "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

log "namespaces $NS_A, $NS_B joined by veth (underlay $UNDER_A, $UNDER_B)"
ip netns add "$NS_A"; made_ns+=("$NS_A")
ip netns add "$NS_B"; made_ns+=("$NS_B")
# The pair is created inside a and its peer moved straight into b: no link
# ever appears in the machine's own namespace.
ip -n "$NS_A" link add kb0 type veth peer name kb1 netns "$NS_B"
ip -n "$NS_A" addr add "$UNDER_A/24" dev kb0
ip -n "$NS_B" addr add "$UNDER_B/24" dev kb1
for ns in "$NS_A" "$NS_B"; do
  ip -n "$ns" link set lo up
done
ip -n "$NS_A" link set kb0 up
ip -n "$NS_B" link set kb1 up

# start NAME NS CMD...: runs CMD in the background inside NS, log in
# $work/NAME.log; sets $started to its PID (`ip netns exec` execs the command).
start() {
  local name=$1 ns=$2
  shift 2
  ip netns exec "$ns" "$@" >"$work/$name.log" 2>&1 &
  started=$!
  pids+=("$started")
}

# wait_ping NS ADDR SECONDS: until one ping from NS to ADDR comes back.
wait_ping() {
  local ns=$1 addr=$2 limit=$3 t0=$SECONDS
  while [ $((SECONDS - t0)) -lt "$limit" ]; do
    in_ns "$ns" ping -n -q -c 1 -W 1 "$addr" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

declare -A peer_addr   # tunnel -> the address of b on that tunnel
declare -A daemons     # tunnel -> "PID_a PID_b" of its daemons
declare -A mtu         # tunnel -> MTU of its interface

tail_log() { [ -f "$work/$1.log" ] && tail -n 15 "$work/$1.log" | sed "s/^/    [$1] /" >&2; return 0; }

setup_veth() {
  peer_addr[veth]=$UNDER_B
  mtu[veth]=$(ip -n "$NS_A" -o link show kb0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
}

setup_kairos() {
  local token side ns other api_addr a_pid b_pid addr_b t0
  token="$("$kairos" generate-token | head -n 1)"
  for side in a b; do
    if [ $side = a ]; then other=$UNDER_B; else other=$UNDER_A; fi
    mkdir -p "$work/kairos-$side"
    # A minimal cloud-config: mesh only (no k3s block), no DNS, the API on
    # the namespace's own loopback, LAN beacons on (they stay on the veth:
    # it is the only link in the namespace) plus the other end as bootstrap
    # peer, so discovery does not depend on multicast timing.
    cat >"$work/kairos-$side/config.yaml" <<EOF
#cloud-config
p2p:
  network_token: "$token"
  network_id: "bench"
  mesh:
    listen_port: 51820
    interface: "kbk0"
    address: 10.213.1.0/24
    state_dir: "$work/kairos-$side/state"
    api: "127.0.0.1:8080"
    lan_beacons: true
    bootstrap_peers: ["$other:51820"]
EOF
  done
  # Each agent in a UTS namespace of its own with its own host name (as
  # separate machines would be); unshare and sh exec, so the PID is kairos's.
  # shellcheck disable=SC2016 # expanded by that sh
  local set_host='echo "$0" > /proc/sys/kernel/hostname && exec "$@"'
  start kairos-a "$NS_A" env RUST_LOG=info unshare --uts sh -c "$set_host" \
    kbench-a "$kairos" agent --config "$work/kairos-a/config.yaml"
  a_pid=$started
  start kairos-b "$NS_B" env RUST_LOG=info unshare --uts sh -c "$set_host" \
    kbench-b "$kairos" agent --config "$work/kairos-b/config.yaml"
  b_pid=$started
  daemons[kairos]="$a_pid $b_pid"
  # b's overlay address from its API, then a ping over the overlay.
  addr_b=""
  t0=$SECONDS
  while [ $((SECONDS - t0)) -lt 60 ]; do
    if ! kill -0 "$a_pid" 2>/dev/null || ! kill -0 "$b_pid" 2>/dev/null; then
      warn "a kairos agent exited"
      return 1
    fi
    addr_b="$(in_b curl -s --noproxy '*' -m 2 http://127.0.0.1:8080/api/summary 2>/dev/null | jq -r '.ipv4 // empty' 2>/dev/null || true)"
    [ -n "$addr_b" ] && break
    sleep 0.2
  done
  [ -n "$addr_b" ] || { warn "kairos b got no overlay address in 60 s"; return 1; }
  peer_addr[kairos]=${addr_b%/*}
  api_addr=$(in_a curl -s --noproxy '*' -m 2 http://127.0.0.1:8080/api/summary | jq -r '.ipv4 // empty')
  log "kairos: a is ${api_addr:-?}, b is $addr_b"
  mtu[kairos]=$(ip -n "$NS_A" -o link show kbk0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
  wait_ping "$NS_A" "${peer_addr[kairos]}" 60 || { warn "no ping over kairos in 60 s"; return 1; }
}

# setup_wg TUNNEL PORT NET: a WireGuard tunnel by a userspace implementation
# (wireguard-go or boringtun-cli), configured with `wg` through its UAPI
# socket in /var/run/wireguard (shared by all namespaces: the interface names
# carry this run's pid).
setup_wg() {
  local tunnel=$1 port=$2 net=$3 tag side ns dev key_a key_b pub_a pub_b pid pids_t=""
  case $tunnel in wireguard-go) tag=g ;; *) tag=t ;; esac
  key_a=$(wg genkey); key_b=$(wg genkey)
  pub_a=$(printf '%s' "$key_a" | wg pubkey); pub_b=$(printf '%s' "$key_b" | wg pubkey)
  for side in a b; do
    dev="kb$tag$id$side"
    if [ $side = a ]; then ns=$NS_A; else ns=$NS_B; fi
    wg_socks+=("/var/run/wireguard/$dev.sock")
    if [ "$tunnel" = wireguard-go ]; then
      start "$tunnel-$side" "$ns" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go -f "$dev"
    else
      start "$tunnel-$side" "$ns" "$boringtun" --foreground --disable-drop-privileges --verbosity error "$dev"
    fi
    pid=$started
    pids_t="$pids_t $pid"
    local t0=$SECONDS
    until [ -S "/var/run/wireguard/$dev.sock" ]; do
      kill -0 "$pid" 2>/dev/null || { warn "$tunnel $side exited"; tail_log "$tunnel-$side"; return 1; }
      [ $((SECONDS - t0)) -lt 20 ] || { warn "$tunnel $side: no UAPI socket in 20 s"; tail_log "$tunnel-$side"; return 1; }
      sleep 0.1
    done
    if [ $side = a ]; then
      printf '[Interface]\nPrivateKey = %s\nListenPort = %s\n\n[Peer]\nPublicKey = %s\nAllowedIPs = %s.2/32\nEndpoint = %s:%s\n' \
        "$key_a" "$port" "$pub_b" "$net" "$UNDER_B" "$port" >"$work/$tunnel-a.conf"
      in_ns "$ns" wg setconf "$dev" "$work/$tunnel-a.conf"
      in_ns "$ns" ip addr add "$net.1/24" dev "$dev"
    else
      printf '[Interface]\nPrivateKey = %s\nListenPort = %s\n\n[Peer]\nPublicKey = %s\nAllowedIPs = %s.1/32\nEndpoint = %s:%s\n' \
        "$key_b" "$port" "$pub_a" "$net" "$UNDER_A" "$port" >"$work/$tunnel-b.conf"
      in_ns "$ns" wg setconf "$dev" "$work/$tunnel-b.conf"
      in_ns "$ns" ip addr add "$net.2/24" dev "$dev"
    fi
    # wg-quick's MTU for a 1500-byte IPv4 underlay (boringtun-cli would
    # leave 1500, and its datagrams would then be fragmented on the veth).
    in_ns "$ns" ip link set "$dev" mtu 1420 up
  done
  daemons[$tunnel]="${pids_t# }"
  peer_addr[$tunnel]="$net.2"
  mtu[$tunnel]=$(ip -n "$NS_A" -o link show "kb${tag}${id}a" | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
  wait_ping "$NS_A" "$net.2" 30 || { warn "no ping over $tunnel in 30 s"; return 1; }
}

setup_nebula() {
  local d="$work/nebula" side ns ip under lh pid pids_t=""
  mkdir -p "$d"
  nebula-cert ca -name "kbench-$id" -out-crt "$d/ca.crt" -out-key "$d/ca.key" >/dev/null
  for side in a b; do
    if [ $side = a ]; then ip=10.213.3.1; else ip=10.213.3.2; fi
    nebula-cert sign -ca-crt "$d/ca.crt" -ca-key "$d/ca.key" -name "kbench-$side" -ip "$ip/24" \
      -out-crt "$d/$side.crt" -out-key "$d/$side.key" >/dev/null
  done
  for side in a b; do
    if [ $side = a ]; then ns=$NS_A under=$UNDER_A lh=true; else ns=$NS_B under=$UNDER_B lh=false; fi
    {
      printf 'pki:\n  ca: %s\n  cert: %s\n  key: %s\n' "$d/ca.crt" "$d/$side.crt" "$d/$side.key"
      printf 'static_host_map:\n  "10.213.3.1": ["%s:4242"]\n' "$UNDER_A"
      printf 'lighthouse:\n  am_lighthouse: %s\n  interval: 60\n' "$lh"
      if [ $lh = true ]; then printf '  hosts: []\n'; else printf '  hosts: ["10.213.3.1"]\n'; fi
      printf 'listen:\n  host: %s\n  port: 4242\n' "$under"
      printf 'punchy:\n  punch: false\nrelay:\n  am_relay: false\n  use_relays: false\n'
      printf 'tun:\n  disabled: false\n  dev: kbneb0\n  mtu: 1300\n'
      printf 'logging:\n  level: warning\n'
      printf 'firewall:\n  outbound:\n    - port: any\n      proto: any\n      host: any\n'
      printf '  inbound:\n    - port: any\n      proto: any\n      host: any\n'
    } >"$d/$side.yml"
    start "nebula-$side" "$ns" nebula -config "$d/$side.yml"
    pid=$started
    pids_t="$pids_t $pid"
  done
  daemons[nebula]="${pids_t# }"
  peer_addr[nebula]=10.213.3.2
  local t0=$SECONDS
  until ip -n "$NS_A" link show kbneb0 >/dev/null 2>&1 && ip -n "$NS_B" link show kbneb0 >/dev/null 2>&1; do
    [ $((SECONDS - t0)) -lt 20 ] || { warn "nebula: no interface in 20 s"; tail_log nebula-a; tail_log nebula-b; return 1; }
    sleep 0.1
  done
  mtu[nebula]=$(ip -n "$NS_A" -o link show kbneb0 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
  wait_ping "$NS_A" 10.213.3.2 30 || { warn "no ping over nebula in 30 s"; tail_log nebula-a; tail_log nebula-b; return 1; }
}

for t in "${tunnels[@]}"; do
  log "setting up $t"
  case $t in
    veth) setup_veth ;;
    kairos) setup_kairos || { tail_log kairos-a; tail_log kairos-b; drop kairos "did not come up (see the log above)"; } ;;
    wireguard-go) setup_wg wireguard-go 51821 10.213.2 || drop wireguard-go "did not come up (see the log above)" ;;
    nebula) setup_nebula || drop nebula "did not come up (see the log above)" ;;
    boringtun) setup_wg boringtun 51822 10.213.4 || drop boringtun "did not come up (see the log above)" ;;
  esac
done
[ ${#tunnels[@]} -gt 0 ] || { warn "no tunnel came up"; exit 1; }

# One iperf3 server in b serves every tunnel (one test at a time).
start iperf3-server "$NS_B" iperf3 -s -p 5201
iperf_pid=$started
t0=$SECONDS
until in_b bash -c 'exec 3<>/dev/tcp/127.0.0.1/5201' 2>/dev/null; do
  kill -0 "$iperf_pid" 2>/dev/null || { tail_log iperf3-server; exit 1; }
  [ $((SECONDS - t0)) -lt 10 ] || { warn "iperf3 server did not listen in 10 s"; exit 1; }
  sleep 0.1
done

# ---------------------------------------------------------------- rounds
clk_tck=$(getconf CLK_TCK)
cpu_ticks() { # utime + stime of PID (all its threads), in clock ticks
  awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0
}
res="$work/results"
mkdir -p "$res"

run_iperf() { # run_iperf TUNNEL CC ROUND
  local t=$1 cc=$2 r=$3 json="$work/iperf-$1-$2-$3.json" before=() after=() p i gbps bytes
  for p in ${daemons[$t]:-}; do before+=("$(cpu_ticks "$p")"); done
  if ! in_a timeout $((DURATION + 20)) iperf3 -c "${peer_addr[$t]}" -p 5201 -t "$DURATION" -C "$cc" -J \
    --connect-timeout 3000 >"$json" 2>"$json.err"; then
    warn "round $r: iperf3 over $t ($cc) failed: $(jq -r '.error // empty' "$json" 2>/dev/null) $(head -c 300 "$json.err")"
    return 0
  fi
  for p in ${daemons[$t]:-}; do after+=("$(cpu_ticks "$p")"); done
  gbps=$(jq -r '.end.sum_received.bits_per_second / 1e9' "$json")
  bytes=$(jq -r '.end.sum_received.bytes' "$json")
  echo "$gbps" >>"$res/$t.$cc"
  jq -r '.end.sum_sent.retransmits // empty' "$json" >>"$res/$t.$cc.retr"
  if [ ${#before[@]} -gt 0 ]; then
    for i in "${!before[@]}"; do
      echo "$bytes $((after[i] - before[i]))" >>"$res/$t.cpu$i"
    done
  fi
  printf '    round %s %-12s %-5s %6.2f Gbit/s\n' "$r" "$t" "$cc" "$gbps" >&2
}

run_ping() { # run_ping TUNNEL ROUND
  local t=$1 r=$2 out
  out=$(in_a ping -n -c "$PINGS" -i 0.05 -w $((PINGS / 10 + 10)) "${peer_addr[$t]}" 2>&1 || true)
  printf '%s\n' "$out" | sed -n 's/.*time=\([0-9.]*\) ms.*/\1/p' >>"$res/$t.rtt"
}

median() { # median of the numbers in FILE (one a line); empty if none
  [ -s "$1" ] || return 0
  sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR % 2) printf "%.4f", v[(NR + 1) / 2]; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

n=${#tunnels[@]}
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for r in $(seq "$ROUNDS"); do
  log "round $r of $ROUNDS"
  for k in $(seq 0 $((n - 1))); do
    t=${tunnels[$(((k + r - 1) % n))]}
    for cc in "${ccs[@]}"; do run_iperf "$t" "$cc" "$r"; done
    run_ping "$t" "$r"
  done
done

# ---------------------------------------------------------------- report
fmt() { if [ -n "$1" ]; then printf "%.${2:-2}f" "$1"; else printf 'n/a'; fi; }
ratio() { # ratio NUM DEN -> "N.NNx" or n/a
  if [ -n "$1" ] && [ -n "$2" ] && awk -v d="$2" 'BEGIN { exit !(d > 0) }'; then
    awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2fx", a / b }'
  else
    printf 'n/a'
  fi
}
quantile() { # quantile FILE Q: the Q-quantile (0..1, nearest rank) of the numbers in FILE
  [ -s "$1" ] || { printf 'n/a'; return; }
  sort -g "$1" | awk -v q="$2" '{ v[NR] = $1 } END { i = int(q * NR + 0.5); if (i < 1) i = 1; if (i > NR) i = NR; printf "%.3f", v[i] }'
}
cpu_per_gb() { # cpu_per_gb TUNNEL INDEX -> CPU seconds per GB carried
  local f="$res/$1.cpu$2"
  [ -s "$f" ] || { printf 'n/a'; return; }
  awk -v hz="$clk_tck" '{ b += $1; c += $2 } END { if (b > 0) printf "%.2f", (c / hz) / (b / 1e9); else printf "n/a" }' "$f"
}

declare -A med_bbr med_cubic med_rtt med_retr
for t in "${tunnels[@]}"; do
  med_bbr[$t]=$(median "$res/$t.bbr")
  med_cubic[$t]=$(median "$res/$t.cubic")
  med_rtt[$t]=$(median "$res/$t.rtt")
  med_retr[$t]="$(fmt "$(median "$res/$t.bbr.retr")" 0) / $(fmt "$(median "$res/$t.cubic.retr")" 0)"
done
veth_rtt=${med_rtt[veth]:-}

report() {
  local t kb kc
  kb=${med_bbr[kairos]:-}
  kc=${med_cubic[kairos]:-}
  echo "### bench/e2e.sh, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo
  echo "- command: \`sudo ROUNDS=$ROUNDS DURATION=$DURATION bench/e2e.sh\`$( [ "$ONLY" = "$ALL_TUNNELS" ] || printf ' (ONLY="%s")' "$ONLY")"
  echo "- machine: $(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), nproc $(nproc), kernel $(uname -r)"
  if want kairos; then
    local how="release build of this checkout"
    [ -z "${KAIROS_BIN:-}" ] || how="binary $KAIROS_BIN (KAIROS_BIN)"
    echo "- kairos: commit $(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo '?')$(cd "$repo" && git diff --quiet HEAD -- core host 2>/dev/null || echo ' (core/host modified)'), $("$kairos" --version 2>/dev/null), $how"
  fi
  echo "- peers: $(iperf3 --version 2>/dev/null | head -n 1 | awk '{print $1, $2}')$(want wireguard-go && printf ', wireguard-go %s' "$(wireguard-go --version 2>/dev/null | head -n 1 | awk '{print $NF}')")$(want nebula && printf ', nebula %s' "$(nebula -version 2>/dev/null | awk '{print $NF}')")$(want boringtun && printf ', %s' "$("$boringtun" --version 2>/dev/null)")"
  echo "- $bbr_note"
  echo "- load average (1, 5, 15 min) before the rounds: $load_start, after: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- single-stream TCP, iperf3 -t $DURATION, a -> b; RTT: $PINGS pings at 0.05 s per round; medians over $ROUNDS rounds (RTT: over all pings)"
  echo
  echo "| tunnel | MTU | TCP Gbit/s BBR | TCP Gbit/s CUBIC | RTT ms | RTT over veth ms | kairos / this, BBR | kairos / this, CUBIC | daemon CPU s/GB (a, b) | TCP retransmits per run (BBR / CUBIC) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for t in "${tunnels[@]}"; do
    local over="n/a" cpu="-"
    if [ -n "${med_rtt[$t]}" ] && [ -n "$veth_rtt" ]; then
      over=$(awk -v a="${med_rtt[$t]}" -v b="$veth_rtt" 'BEGIN { printf "%+.3f", a - b }')
    fi
    if [ -n "${daemons[$t]:-}" ]; then cpu="$(cpu_per_gb "$t" 0), $(cpu_per_gb "$t" 1)"; fi
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "${mtu[$t]:-?}" \
      "$(fmt "${med_bbr[$t]}")" "$(fmt "${med_cubic[$t]}")" "$(fmt "${med_rtt[$t]}" 3)" "$over" \
      "$(ratio "$kb" "${med_bbr[$t]}")" "$(ratio "$kc" "${med_cubic[$t]}")" "$cpu" "${med_retr[$t]}"
  done
  echo
  if [ -n "${daemons[kairos]:-}" ] && [ -s "$res/kairos.cpu0" ]; then
    echo "kairos agent CPU time (utime + stime, /proc/PID/stat) per GB carried during the iperf3 runs:" \
      "sender side (a) $(cpu_per_gb kairos 0) s/GB, receiver side (b) $(cpu_per_gb kairos 1) s/GB."
    echo
  fi
  # Round trips here often fall into two modes (a woken thread on the
  # same vCPU or on the other): the quartiles show it where the median
  # alone hides it.
  echo "RTT quantiles over all pings (ms): p25 / p50 / p75 / p90"
  echo
  for t in "${tunnels[@]}"; do
    [ -s "$res/$t.rtt" ] && printf -- '- %s: %s / %s / %s / %s (%s pings)\n' "$t" \
      "$(quantile "$res/$t.rtt" 0.25)" "$(quantile "$res/$t.rtt" 0.5)" "$(quantile "$res/$t.rtt" 0.75)" \
      "$(quantile "$res/$t.rtt" 0.9)" "$(wc -l <"$res/$t.rtt")"
  done
  echo
  echo "Rounds (Gbit/s, in the order run):"
  echo
  for t in "${tunnels[@]}"; do
    for cc in "${ccs[@]}"; do
      [ -s "$res/$t.$cc" ] && printf -- '- %s %s: %s\n' "$t" "$cc" "$(awk '{ printf "%s%.2f", (NR > 1 ? ", " : ""), $1 }' "$res/$t.$cc")"
    done
  done
  for s in "${skipped[@]}"; do printf -- '- left out: %s\n' "$s"; done
  return 0
}

echo
if [ -n "${OUT:-}" ]; then report | tee "$OUT"; else report; fi
log "tearing down"
