#!/usr/bin/env bash
# Benchmark init side by side: BASE (default: the merge base with main; on main itself name
# one, e.g. BASE=83ba9b9) and this checkout, built the same way (PROFILE, default release as
# users build it, or dev; a target dir per side; each binary is copied aside), each measured on a fresh lab:
#   3-node init from bare, the no-op re-run, 10-node init from bare,
#   bytes sent over SSH (iptables byte counter on OUTPUT to dblab0 tcp/22, the same for both;
#   this branch also reports its own count, bytes_sent).
# The lab is machine-wide: run it under the lab lock, e.g.
#   flock /tmp/director-boot-lab.lock scripts/bench-init.sh
# Needs root (lab, iptables), the artifact mirror (scripts/build-mirror.sh) and ~2.5 GB RAM.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export DIRECTOR_BOOT_CACHE_DIR="${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}"
MIRROR="${MIRROR:-$DIRECTOR_BOOT_CACHE_DIR/mirror}"
BASE="${BASE:-$(git merge-base HEAD main)}"
WORK="${BENCH_DIR:-/tmp/director-boot-bench}"
TARGET="${CARGO_TARGET_DIR:-$DIRECTOR_BOOT_CACHE_DIR/cargo-target}"
BIG="${BIG_NODES:-10}"
PROFILE="${PROFILE:-release}"
case $PROFILE in
release) BUILD=(--release) OUT=release ;;
dev) BUILD=() OUT=debug ;;
*) echo "PROFILE is release or dev" >&2; exit 2 ;;
esac
if [ "$(git rev-parse "$BASE")" = "$(git rev-parse HEAD)" ]; then
	echo "BASE is this checkout ($(git rev-parse --short HEAD)): name another commit, BASE=..." >&2
	exit 2
fi
mkdir -p "$WORK"
say() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

[ -f "$MIRROR/manifest.json" ] || { echo "no mirror at $MIRROR: run scripts/build-mirror.sh" >&2; exit 1; }

# --- build both the same way ---------------------------------------------------------------
OLD_SRC="$WORK/base-src"
if [ ! -d "$OLD_SRC" ]; then
	git worktree add --detach "$OLD_SRC" "$BASE" >/dev/null
fi
git -C "$OLD_SRC" checkout --quiet --detach "$BASE"
say "building ($PROFILE) base $(git rev-parse --short "$BASE") and this checkout $(git rev-parse --short HEAD)"
OLD_BIN="$WORK/director-boot-base"
NEW_BIN="$WORK/director-boot-branch"
# Each side has its own target dir: cargo judges freshness by file times, not by which
# checkout built the binary, so one shared dir hands the second build the first one's binary.
(cd "$OLD_SRC" && CARGO_TARGET_DIR="$TARGET-base" cargo build --quiet "${BUILD[@]}" --bin director-boot)
cp "$TARGET-base/$OUT/director-boot" "$OLD_BIN"
(cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --quiet "${BUILD[@]}" --bin director-boot)
cp "$TARGET/$OUT/director-boot" "$NEW_BIN"

# --- helpers -------------------------------------------------------------------------------
RULE=(OUTPUT -o dblab0 -p tcp --dport 22 -m comment --comment director-boot-bench)
STATE=""
BIN=""
cleanup() {
	iptables -D "${RULE[@]}" 2>/dev/null || true
	if [ -n "$BIN" ] && [ -n "$STATE" ]; then
		DIRECTOR_BOOT_STATE_DIR="$STATE" "$BIN" lab down >/dev/null 2>&1 || true
	fi
}
trap cleanup EXIT

counter_reset() {
	iptables -D "${RULE[@]}" 2>/dev/null || true
	iptables -I "${RULE[@]}"
}
counter_bytes() {
	iptables -nvxL OUTPUT | awk '/director-boot-bench/ {print $2; exit}'
}

# fresh_lab BIN STATE N: a new lab of N nodes (anything left from before is taken down).
fresh_lab() {
	DIRECTOR_BOOT_STATE_DIR="$2" "$1" lab down >/dev/null 2>&1 || true
	rm -rf "$2"
	DIRECTOR_BOOT_STATE_DIR="$2" "$1" lab up --nodes "$3" >/dev/null
	ip link show dblab0 up >/dev/null
}

# timed_init BIN STATE -> "seconds ssh_bytes own_bytes"
timed_init() {
	ip link show dblab0 up >/dev/null
	counter_reset
	local t0 t1 out
	t0=$(date +%s.%N)
	out=$(DIRECTOR_BOOT_STATE_DIR="$2" "$1" --json init "$2/lab/inventory.yaml" --artifacts "$MIRROR")
	t1=$(date +%s.%N)
	printf '%s\n' "$out" >"$2/init-$(date +%s%N).json"
	if ! printf '%s' "$out" | grep -q '"ok":true'; then
		echo "init failed: $out" >&2
		exit 1
	fi
	local own
	own=$(printf '%s' "$out" | sed -n 's/.*"bytes_sent":\([0-9]*\).*/\1/p')
	echo "$(echo "$t1 - $t0" | bc) $(counter_bytes) ${own:--}"
}

declare -A R
run_variant() { # run_variant NAME BIN
	local name=$1 bin=$2 state="$WORK/state-$1"
	BIN=$bin
	STATE=$state
	if [ "$name" = branch ]; then
		# Cold compression cache: the first init pays for compressing, as a new user's would.
		rm -rf "$DIRECTOR_BOOT_CACHE_DIR/wire"
	fi
	say "$name: fresh 3-node lab"
	fresh_lab "$bin" "$state" 3
	read -r R[$name.s3] R[$name.b3] R[$name.o3] <<<"$(timed_init "$bin" "$state")"
	say "$name: 3-node init ${R[$name.s3]} s, ${R[$name.b3]} bytes on tcp/22"
	read -r R[$name.noop] _ _ <<<"$(timed_init "$bin" "$state")"
	say "$name: no-op re-run ${R[$name.noop]} s"
	say "$name: fresh $BIG-node lab"
	fresh_lab "$bin" "$state" "$BIG"
	read -r R[$name.s10] R[$name.b10] R[$name.o10] <<<"$(timed_init "$bin" "$state")"
	say "$name: $BIG-node init ${R[$name.s10]} s, ${R[$name.b10]} bytes on tcp/22"
	DIRECTOR_BOOT_STATE_DIR="$state" "$bin" lab down >/dev/null
	BIN=""
}

run_variant base "$OLD_BIN"
run_variant branch "$NEW_BIN"

ratio() { echo "scale=2; $1 / $2" | bc; }
mb() { echo "scale=1; $1 / 1000000" | bc; }
printf '\n%-28s %12s %12s %8s\n' "" "base" "branch" "ratio"
printf '%-28s %12.1f %12.1f %8s\n' "3-node init (s)" "${R[base.s3]}" "${R[branch.s3]}" "$(ratio "${R[branch.s3]}" "${R[base.s3]}")"
printf '%-28s %12.1f %12.1f %8s\n' "$BIG-node init (s)" "${R[base.s10]}" "${R[branch.s10]}" "$(ratio "${R[branch.s10]}" "${R[base.s10]}")"
printf '%-28s %12s %12s %8s\n' "$BIG-node / 3-node" "$(ratio "${R[base.s10]}" "${R[base.s3]}")" "$(ratio "${R[branch.s10]}" "${R[branch.s3]}")" ""
printf '%-28s %12.1f %12.1f %8s\n' "no-op re-run, 3 nodes (s)" "${R[base.noop]}" "${R[branch.noop]}" "$(ratio "${R[branch.noop]}" "${R[base.noop]}")"
printf '%-28s %12s %12s %8s\n' "MB on tcp/22, 3 nodes" "$(mb "${R[base.b3]}")" "$(mb "${R[branch.b3]}")" "$(ratio "${R[branch.b3]}" "${R[base.b3]}")"
printf '%-28s %12s %12s %8s\n' "MB on tcp/22, $BIG nodes" "$(mb "${R[base.b10]}")" "$(mb "${R[branch.b10]}")" "$(ratio "${R[branch.b10]}" "${R[base.b10]}")"
printf '%-28s %12s %12s\n' "bytes_sent (own count)" "${R[base.o10]}" "${R[branch.o10]}"
