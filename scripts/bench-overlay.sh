#!/usr/bin/env bash
# The overlay's backends side by side on one lab, in one run: `direct` (plain routes), `vxlan`
# and WireGuard (`encrypt: true`; wireguard-go where the kernel has no module, as here). For
# each, netcheck (netns mode: namespaces on the pod bridges, the pods' data path without a
# cluster) measures every ordered pair of a 3-node lab against the host-to-host underlay, and
# the medians over the pairs are printed: single-stream and multi-stream efficiency (overlay
# TCP / underlay TCP), and the figures netcheck reports per pair where present (CPU seconds
# per Gbit on sender and receiver). Published figures to compare with are in
# ../shared/research/real-hosts-apps-day2.md section 4 (best single-stream 0.82; WireGuard
# 0.25-0.29).
# Usage: sudo [DIRECTOR_BOOT_BIN=path] scripts/bench-overlay.sh [DURATION_SECS] [STREAMS]
# Uses its own lab (a temp state dir, lab slot ${DIRECTOR_BOOT_LAB_SLOT:-0}; `lab down` on exit).
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-3}"
streams="${2:-4}"
[ "$(id -u)" = 0 ] || { echo "bench-overlay.sh: needs root" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench-overlay.sh: needs jq" >&2; exit 1; }

# DIRECTOR_BOOT_BIN: an already built binary (skips the release build).
if [ -n "${DIRECTOR_BOOT_BIN:-}" ]; then
  db=$DIRECTOR_BOOT_BIN
else
  cargo build --release -q
  target="${CARGO_TARGET_DIR:-target}"
  [[ "$target" = /* ]] || target="$PWD/$target"
  db="$target/release/director-boot"
fi
state=$(mktemp -d)
export DIRECTOR_BOOT_STATE_DIR="$state"
cleanup() {
  "$db" lab down >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

"$db" lab up --nodes 3 >/dev/null
inv=$(ls "$state"/lab*/inventory.yaml)
base=$(cat "$inv")

median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) print "—"; else if (NR % 2) printf "%.3g\n", a[(NR+1)/2]; else printf "%.3g\n", (a[NR/2]+a[NR/2+1])/2}'; }

printf '%-10s %6s %8s %8s %12s %12s %10s\n' BACKEND PAIRS SINGLE MULTI "CPU/Gbit tx" "CPU/Gbit rx" "TCP Gbit/s"
for backend in direct vxlan wireguard; do
  case $backend in
    direct) overlay='    backend: direct' ;;
    vxlan) overlay='    backend: vxlan' ;;
    wireguard) overlay='    encrypt: true' ;;
  esac
  # The lab pins VXLAN's MTU; each backend gets director-boot's own (auto) instead.
  printf '%s\n' "$base" | sed "s/^    mtu: 1450\$/$overlay/" >"$inv"
  "$db" overlay up "$inv" >/dev/null
  out=$("$db" --json netcheck "$inv" --mode netns --duration "$duration" --streams "$streams" \
    --min-efficiency 0 --max-udp-loss 1 --skip same-node,services,bidir,crr || true)
  pairs=$(jq '.pairs | length' <<<"$out")
  single=$(jq -r '.pairs[] | .efficiency // empty' <<<"$out" | median)
  multi=$(jq -r '.pairs[] | .multi_efficiency // empty' <<<"$out" | median)
  cpu_tx=$(jq -r '.pairs[] | .overlay.tcp_sender_cpu_s_per_gbit // empty' <<<"$out" | median)
  cpu_rx=$(jq -r '.pairs[] | .overlay.tcp_receiver_cpu_s_per_gbit // empty' <<<"$out" | median)
  gbit=$(jq -r '.pairs[] | .overlay.tcp_bps // empty | . / 1e9' <<<"$out" | median)
  printf '%-10s %6s %8s %8s %12s %12s %10s\n' "$backend" "$pairs" "$single" "$multi" "$cpu_tx" "$cpu_rx" "$gbit"
done
