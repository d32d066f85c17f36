#!/usr/bin/env bash
# Run the upstream Kubernetes conformance suite (e2e.test of the cluster's version, the test
# set kubeadm, k3s, k0s, RKE2 and kubespray clusters are certified with) against a cluster
# director-boot built, the way sonobuoy and hydrophone run it: the parallel-safe part with
# ginkgo's parallelism, then the [Serial] part alone. No registry: the suite's images are built
# here (scripts/build-conformance.sh) and side-loaded with `director-boot images load`.
#
#   scripts/conformance.sh INVENTORY [--focus REGEX] [--skip REGEX] [--procs N]
#                          [--kubeconfig FILE] [--report-dir DIR] [--timeout DURATION]
#                          [--no-load] [--part both|parallel|serial] [--no-default-skips]
#
#   --focus   which tests (default '\[Conformance\]'; the conformance tag is always required)
#   --skip    tests to leave out (on top of the built-in lab skips below, if any)
#   --procs   ginkgo processes for the parallel part (default 3)
#   --kubeconfig  default: $KUBECONFIG, else the admin kubeconfig init wrote for the
#             inventory's cluster (<state dir>/clusters/<name>/admin.conf)
#   --report-dir  JUnit XML and logs (default: <cache>/conformance/runs/<UTC time>)
#   --no-load don't side-load the images (they are already on the nodes)
#   --part    run only the parallel-safe part or only the [Serial] part (default both)
#   --no-default-skips  also run the tests below that cannot pass without a registry
#
# Skipped by default, by name (counted as skipped): tests that need what an air-gapped cluster
# and these locally built images cannot give, not something of director-boot's:
#   [sig-node] ImageVolume should succeed with pod and pull policy of Always: pullPolicy Always
#     makes the kubelet pull registry.k8s.io/e2e-test-images/kitten:1.8 from the registry
#     (none is reachable), and the test reads "Alpine Linux" from the image's /etc/os-release
#     (upstream's kitten is Alpine-based; no Alpine source is reachable here, ours is Debian).
#     Image volumes themselves work: a pod mounting the side-loaded kitten image with
#     pullPolicy IfNotPresent reads its files (scripts/README.md).
#
# Prints the name and first failure line of every failed test, the wall time, and last
#   conformance: N passed, N failed, N skipped
# Exit status 0 only when no test failed.
set -euo pipefail
shopt -s inherit_errexit

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly CACHE_DIR=${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}
readonly MIRROR=${DIRECTOR_BOOT_MIRROR_DIR:-$CACHE_DIR/mirror}
readonly OUT=$CACHE_DIR/conformance
readonly STATE_DIR=${DIRECTOR_BOOT_STATE_DIR:-$HOME/.local/state/director-boot}

log() { printf '[conformance %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 2; }

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

INVENTORY=
FOCUS='\[Conformance\]'
SKIP=
PROCS=3
KUBECONFIG_FILE=${KUBECONFIG:-}
REPORT_DIR=
TIMEOUT=6h
LOAD=1
PART=both
DEFAULT_SKIPS='\[sig-node\] ImageVolume .*should succeed with pod and pull policy of Always'

while (($#)); do
  case $1 in
    --focus) FOCUS=${2:?--focus needs a regex}; shift ;;
    --skip) SKIP=${2:?--skip needs a regex}; shift ;;
    --procs) PROCS=${2:?--procs needs a number}; shift ;;
    --kubeconfig) KUBECONFIG_FILE=${2:?--kubeconfig needs a file}; shift ;;
    --report-dir) REPORT_DIR=${2:?--report-dir needs a directory}; shift ;;
    --timeout) TIMEOUT=${2:?--timeout needs a duration like 6h}; shift ;;
    --no-load) LOAD=0 ;;
    --no-default-skips) DEFAULT_SKIPS= ;;
    --part) PART=${2:?--part needs both, parallel or serial}; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) usage >&2; exit 2 ;;
    *) [[ -z $INVENTORY ]] || die "one inventory only (got $INVENTORY and $1)"; INVENTORY=$1 ;;
  esac
  shift
done
[[ -n $INVENTORY ]] || { usage >&2; exit 2; }
[[ -f $INVENTORY ]] || die "no inventory at $INVENTORY"
[[ $PART =~ ^(both|parallel|serial)$ ]] || die "--part: both, parallel or serial, not $PART"
[[ $PROCS =~ ^[1-9][0-9]*$ ]] || die "--procs: a positive number, not $PROCS"

# The director-boot binary: $DIRECTOR_BOOT, else on PATH, else the cargo build's.
DB=${DIRECTOR_BOOT:-}
if [[ -z $DB ]]; then
  DB=$(command -v director-boot || true)
  [[ -n $DB ]] || DB=${CARGO_TARGET_DIR:-$REPO_ROOT/target}/debug/director-boot
fi
[[ -x $DB ]] || die "no director-boot binary (set DIRECTOR_BOOT or run cargo build)"
KUBECTL=$MIRROR/bin/kubectl
[[ -x $KUBECTL ]] || KUBECTL=$(command -v kubectl || true)
[[ -x $KUBECTL ]] || die "no kubectl (the mirror's bin/kubectl or one on PATH)"

if [[ -z $KUBECONFIG_FILE ]]; then
  cluster=$(sed -n '/^cluster:/,/^[^ #]/ s/^  name: *\([a-z0-9-]*\).*/\1/p' "$INVENTORY" | head -n 1)
  [[ -n $cluster ]] || die "no cluster name in $INVENTORY; give --kubeconfig"
  KUBECONFIG_FILE=$STATE_DIR/clusters/$cluster/admin.conf
fi
[[ -s $KUBECONFIG_FILE ]] || die "no kubeconfig at $KUBECONFIG_FILE (run init first, or give --kubeconfig)"

# The suite and images: built once, then reused (seconds when current).
"$REPO_ROOT/scripts/build-conformance.sh"
E2E=$OUT/bin/e2e.test
GINKGO=$OUT/bin/ginkgo

REPORT_DIR=${REPORT_DIR:-$OUT/runs/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$REPORT_DIR"
log "reports: $REPORT_DIR"
START=$SECONDS

if ((LOAD)); then
  log "side-loading $(wc -l <"$OUT/images/refs.txt") images into the nodes"
  "$DB" images load "$INVENTORY" "$OUT/images/conformance-images.tar"
fi

# The conformance tag is always part of the focus.
[[ $FOCUS == *'[Conformance\]'* ]] || FOCUS="($FOCUS).*\\[Conformance\\]|\\[Conformance\\].*($FOCUS)"

E2E_ARGS=(--kubeconfig="$KUBECONFIG_FILE" --provider=skeleton --kubectl-path="$KUBECTL"
  --report-dir="$REPORT_DIR" --e2e-output-dir="$REPORT_DIR" --disable-log-dump
  --dump-logs-on-failure=false)

# What ginkgo skips: the caller's --skip and the default skips.
RUN_SKIP=$SKIP
[[ -z $DEFAULT_SKIPS ]] || RUN_SKIP=${RUN_SKIP:+$RUN_SKIP|}$DEFAULT_SKIPS

rc=0
# [Serial] is a ginkgo label of the suite: the parallel part leaves those specs out, the serial
# part runs only them (the same focus for both).
reports=()
if [[ $PART != serial ]]; then
  reports+=("$REPORT_DIR/junit_parallel.xml")
  log "parallel part ($PROCS processes): focus $FOCUS, not [Serial]"
  "$GINKGO" --procs="$PROCS" --timeout="$TIMEOUT" --no-color --silence-skips --poll-progress-after=10m \
    --focus="$FOCUS" ${RUN_SKIP:+--skip="$RUN_SKIP"} --label-filter='!Serial' \
    --output-dir="$REPORT_DIR" --junit-report=junit_parallel.xml \
    "$E2E" -- "${E2E_ARGS[@]}" >"$REPORT_DIR/parallel.log" 2>&1 || rc=1
fi
if [[ $PART != parallel ]]; then
  reports+=("$REPORT_DIR/junit_serial.xml")
  log "serial part: focus $FOCUS, [Serial]"
  "$GINKGO" --timeout="$TIMEOUT" --no-color --silence-skips --poll-progress-after=10m \
    --focus="$FOCUS" ${RUN_SKIP:+--skip="$RUN_SKIP"} --label-filter='Serial' \
    --output-dir="$REPORT_DIR" --junit-report=junit_serial.xml \
    "$E2E" -- "${E2E_ARGS[@]}" >"$REPORT_DIR/serial.log" 2>&1 || rc=1
fi
wall=$((SECONDS - START))

python3 "$REPO_ROOT/scripts/lib/junit-summary.py" --wall "$wall" --focus "$FOCUS" --skip "$SKIP" \
  "${reports[@]}" || rc=1
exit "$rc"
