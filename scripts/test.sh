#!/usr/bin/env bash
# The project's test command (README.md and .ci/run call this): formatting, lints, unit tests,
# and the lab/integration tests against real OpenSSH servers and nspawn machines (needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
export DIRECTOR_BOOT_CACHE_DIR="${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}"
# Build outputs live in the cache too, so a later run (CI on a fresh clone) starts warm.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$DIRECTOR_BOOT_CACHE_DIR/cargo-target}"

# --long: also the long scenarios CI leaves out (several HA failovers, the measurements that
# compare configurations); run them by hand and report what they measured.
if [ "${1:-}" = "--long" ]; then
  export DIRECTOR_BOOT_LONG_TESTS=1 HA_FAILOVER_ROUNDS="${HA_FAILOVER_ROUNDS:-3}"
fi

scripts/install-deps.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The Vagrantfile for RHEL-family VMs must stay valid (no provider needed to check it).
vagrant validate --ignore-provider
# Real Kubernetes binaries and images for the cluster lab test (cached: seconds when warm).
# The upgrade target's kube binaries (a second Kubernetes build: about 11-20 min cold on 2
# cores) only for --long, where tests/day2_upgrade_lab.rs needs them; without them it skips.
if [ "${DIRECTOR_BOOT_LONG_TESTS:-}" = 1 ]; then
  scripts/build-mirror.sh
else
  scripts/build-mirror.sh --no-upgrade-targets
fi
scripts/verify-mirror.sh
# The Spark image (Debian + OpenJDK + pyspark/Jupyter from PyPI) for the apps lab test (cached).
scripts/build-app-images.sh spark
# The Cassandra image (the same Debian layer + Cassandra's jars by mvn from Maven Central) for
# tests/apps_cassandra_lab.rs (cached).
scripts/build-app-images.sh cassandra
# Every test target; the lab tests in two lanes, each its own lab slot (two labs side by side),
# one test at a time inside a lane (scripts/lib/test-lanes.sh).
source scripts/lib/test-lanes.sh
run_test_lanes
