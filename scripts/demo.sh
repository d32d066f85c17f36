#!/usr/bin/env bash
# The main job on a local lab of real machines: lab up, init, netcheck, deploy-app.
# Needs root (network namespaces, nspawn). Stops at the first step that fails or is not built.
set -euo pipefail
cd "$(dirname "$0")/.."
nodes="${NODES:-3}"
scripts/install-deps.sh
cargo build --release
db=target/release/director-boot
inventory=$("$db" --json lab up --nodes "$nodes" | sed -n 's/.*"inventory":"\([^"]*\)".*/\1/p')
echo "lab inventory: $inventory"
"$db" facts "$inventory"
"$db" init "$inventory"
"$db" netcheck "$inventory"
"$db" deploy-app spark
