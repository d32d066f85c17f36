#!/usr/bin/env bash
# Host packages director-boot's lab, tests and benchmarks need on a fresh Debian 12 machine.
# Idempotent: installs only what is missing.
set -euo pipefail

packages=(
  debootstrap systemd-container openssh-server openssh-client iproute2 iptables
  iperf3 containerd runc containernetworking-plugins etcd-server etcd-client
  busybox-static hyperfine python3-venv vagrant
  umoci jq binutils  # scripts/build-app-images.sh (OCI images, metadata, strip/ldd)
  maven              # scripts/build-app-images.sh cassandra, hadoop: Maven resolves the jars (images/*/pom.xml)
  gcc libc6-dev pkg-config libseccomp-dev  # scripts/build-mirror.sh: static runc with seccomp
  chromium           # the netcheck HTML report, rendered headless in the overlay lab test
  tcpdump            # tests/overlay_encrypt_lab.rs: what crosses the lab bridge with encryption on
  haproxy keepalived # the HA roles' rendered configs are checked with the real tools (never run here)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The host's own containerd and etcd must not run: tests start their own by PID.
for unit in containerd etcd haproxy keepalived; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
    systemctl stop "$unit" || true
  fi
done
command -v cargo >/dev/null || { echo "install-deps: cargo (rustup) is required" >&2; exit 1; }
