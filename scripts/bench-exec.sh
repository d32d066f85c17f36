#!/usr/bin/env bash
# Side-by-side benchmark: 10 ad-hoc commands on every host of an inventory, run by
# `director-boot exec` and by Ansible (ansible-core from PyPI, same hosts, -f 20), in one run
# with hyperfine. Prints both timings and the ratio. Usage:
#   scripts/bench-exec.sh INVENTORY [RUNS]
# Typically on a 20-node lab: director-boot lab up --nodes 20, then this with its inventory.
set -euo pipefail
cd "$(dirname "$0")/.."
inventory="${1:?usage: bench-exec.sh INVENTORY [RUNS]}"
runs="${2:-3}"
cache="${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}"
venv="$cache/bench/ansible-venv"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -x "$venv/bin/ansible" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'ansible-core==2.19.*'
fi
command -v hyperfine >/dev/null || scripts/install-deps.sh
cargo build --release -q
db="$PWD/target/release/director-boot"

# The same hosts, user, key and pinned host keys as an Ansible inventory.
"$venv/bin/python" - "$inventory" "$work/hosts.ini" "$work/known_hosts_path" <<'PY'
import os, sys, yaml
src, out, khp = sys.argv[1:4]
inv = yaml.safe_load(open(src))
base = os.path.dirname(os.path.abspath(src))
d = inv.get("defaults", {}) or {}
def path(p):
    p = os.path.expanduser(p)
    return p if os.path.isabs(p) else os.path.join(base, p)
with open(out, "w") as f:
    f.write("[all]\n")
    for h in inv["hosts"]:
        user = h.get("user", d.get("user", "root"))
        port = h.get("port", d.get("port", 22))
        key = h.get("identity_file", d.get("identity_file"))
        line = f"{h['name']} ansible_host={h['address']} ansible_port={port} ansible_user={user}"
        if key:
            line += f" ansible_ssh_private_key_file={path(key)}"
        f.write(line + "\n")
kh = (inv.get("ssh") or {}).get("known_hosts")
open(khp, "w").write(path(kh) if kh else "")
PY
known_hosts=$(cat "$work/known_hosts_path")
hosts=$(grep -c ansible_host "$work/hosts.ini")

commands=(hostname uptime "uname -r" "cat /etc/os-release" "df -h /" "free -m"
  "ip -br addr" "ls /etc" "id" "date")
{
  echo "set -e"
  for c in "${commands[@]}"; do
    echo "$db exec $inventory --concurrency 20 -- $c >/dev/null 2>&1"
  done
} > "$work/director-boot.sh"
{
  echo "set -e"
  for c in "${commands[@]}"; do
    echo "$db exec $inventory --concurrency 20 --persist 30 -- $c >/dev/null 2>&1"
  done
} > "$work/director-boot-persist.sh"
{
  echo "set -e"
  echo "export ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_SSH_ARGS='-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$known_hosts'"
  echo "export ANSIBLE_PYTHON_INTERPRETER=auto_silent"
  for c in "${commands[@]}"; do
    echo "$venv/bin/ansible all -i $work/hosts.ini -f 20 -m raw -a '$c' >/dev/null"
  done
} > "$work/ansible.sh"

echo "benchmark: 10 commands on $hosts hosts, $runs runs each"
hyperfine --warmup 1 --runs "$runs" --export-json "$work/result.json" \
  -n director-boot "bash $work/director-boot.sh" \
  -n director-boot-persist "bash $work/director-boot-persist.sh" \
  -n ansible "bash $work/ansible.sh"
python3 - "$work/result.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
a = r["ansible"]["mean"]
for name in ("director-boot", "director-boot-persist"):
    d = r[name]["mean"]
    print(f"{name}: {d:.2f} s   ansible: {a:.2f} s   ratio (ansible / {name}): {a/d:.1f}x")
PY
