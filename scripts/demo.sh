#!/usr/bin/env bash
# The main job on a local lab of real machines: lab up, init, netcheck, deploy-app.
# Needs root (network namespaces, nspawn). Stops at the first step that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/lab-bridge.sh
nodes="${NODES:-3}"
# CONTROL_PLANES=3 NODES=5 gives an HA control plane behind the lab's endpoint address.
control_planes="${CONTROL_PLANES:-1}"
scripts/install-deps.sh
# Real Kubernetes binaries and images (cold: about 17 min on 2 cores; then cached).
scripts/build-mirror.sh
cargo build --release
db=target/release/director-boot
inventory=$("$db" --json lab up --nodes "$nodes" --control-planes "$control_planes" | sed -n 's/.*"inventory":"\([^"]*\)".*/\1/p')
echo "lab inventory: $inventory"
# Every step below talks to lab addresses: only while the lab bridge carries them.
lab() { require_lab_bridge; "$@"; }
lab "$db" facts "$inventory"
lab "$db" init "$inventory"
kubectl="${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}/mirror/bin/kubectl"
lab "$kubectl" --kubeconfig "$(dirname "$(dirname "$inventory")")/clusters/lab/admin.conf" get nodes -o wide
lab "$db" netcheck "$inventory" --html "$(dirname "$inventory")/netcheck.html"
# The Spark image: built locally (no registry), side-loaded into every node's containerd.
scripts/build-app-images.sh spark
lab "$db" images load "$inventory" "${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}/app-images/spark.tar"
lab "$db" deploy-app spark
lab "$db" apps status spark
