#!/usr/bin/env bash
# netcheck's probe against iperf3 on the same lab paths, side by side in one run, and the
# overlay's efficiency (overlay TCP / underlay TCP, single stream) under settings worth trying:
#   default    underlay MTU 1500, overlay 1450, veth GRO off (the lab's defaults)
#   gro        GRO on the nodes' underlay interfaces (UDP-tunnel GRO on receive)
#   jumbo      underlay MTU 9000, overlay 8950 (set at runtime on the lab's links)
#   jumbo+gro  both
#   gro-fwd    MTU 1500, GRO plus rx-udp-gro-forwarding on the underlay interfaces
# Paths: node1 -> node2 host to host (underlay), and between two network namespaces on the
# nodes' pod bridges (overlay) -- the same kind of path netcheck measures in netns mode.
# Each cell is the median of ROUNDS alternating runs of the two tools (receiver figures).
# iperf3 is copied into the lab nodes by this script only.
# Usage: sudo [CONFIGS="default jumbo"] scripts/bench-netcheck.sh [DURATION_SECS] [ROUNDS]
# Uses its own lab (a temp state dir; `lab down` on exit) -- one lab per machine.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/lab-bridge.sh
duration="${1:-5}"
rounds="${2:-3}"
[ "$(id -u)" = 0 ] || { echo "bench-netcheck.sh: needs root" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench-netcheck.sh: needs jq" >&2; exit 1; }
[ -x /usr/bin/iperf3 ] || { echo "bench-netcheck.sh: needs iperf3 on this host" >&2; exit 1; }

cargo build --release -q
target="${CARGO_TARGET_DIR:-target}"
[[ "$target" = /* ]] || target="$PWD/$target"
db="$target/release/director-boot"
state=$(mktemp -d)
export DIRECTOR_BOOT_STATE_DIR="$state"
cleanup() {
  "$db" lab down >/dev/null 2>&1 || true
  rm -rf "$state"
}
trap cleanup EXIT INT TERM

"$db" lab up --nodes 2 >/dev/null
inv="$state/lab/inventory.yaml"
require_lab_bridge
"$db" init "$inv" >/dev/null
key="$state/lab/id_ed25519"
kh="$state/lab/known_hosts"
n1=10.213.0.11
n2=10.213.0.12
on() { require_lab_bridge; ssh -i "$key" -o UserKnownHostsFile="$kh" -o BatchMode=yes "root@$1" "$2"; }
put() { require_lab_bridge; scp -q -i "$key" -o UserKnownHostsFile="$kh" -o BatchMode=yes "$2" "root@$1:$3"; }

# iperf3 and the probe on both nodes; a bench namespace on each pod bridge.
for n in $n1 $n2; do
  put $n /usr/bin/iperf3 /usr/local/bin/iperf3
  for lib in libiperf.so.0 libsctp.so.1; do
    put $n "$(readlink -f /lib/x86_64-linux-gnu/$lib)" /usr/local/lib/$lib
  done
  on $n "ldconfig"
  put $n "$db" /usr/local/bin/db-probe
done
ns_setup() { # NODE NET_PREFIX (10.244.N)
  on "$1" "ip netns add dbbench && ip link add dbbench-h type veth peer name eth0 netns dbbench &&
    ip link set dbbench-h master dbbr0 up && ip -n dbbench link set lo up &&
    ip -n dbbench addr add $2.253/24 dev eth0 && ip -n dbbench link set eth0 up &&
    ip -n dbbench route add default via $2.1"
}
ns_setup $n1 10.244.0
ns_setup $n2 10.244.1
on $n2 "ip netns exec dbbench sh -c 'nohup iperf3 -s -p 15201 >/dev/null 2>&1 & nohup db-probe probe server --port 15299 --idle-exit 900 >/dev/null 2>&1 &';
  nohup iperf3 -s -p 15202 -B $n2 >/dev/null 2>&1 & nohup db-probe probe server --bind $n2 --port 15298 --idle-exit 900 >/dev/null 2>&1 &"
sleep 1

set_mtu() { # UNDERLAY OVERLAY
  ip link set dblab0 mtu "$1"
  for l in $(ip -o link show master dblab0 | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link set "$l" mtu "$1"; done
  for n in $n1 $n2; do
    on $n "ip link set eth0 mtu $1 && ip link set dbvx0 mtu $2 && ip link set dbbench-h mtu $2 &&
      ip -n dbbench link set eth0 mtu $2 && for v in \$(ip -o link show master dbbr0 | awk -F': ' '{print \$2}' | cut -d@ -f1); do ip link set \$v mtu $2; done; ip link set dbbr0 mtu $2"
  done
}
set_gro() { for n in $n1 $n2; do on $n "ethtool -K eth0 gro $1 >/dev/null 2>&1 || true"; done; }
set_gro_fwd() { for n in $n1 $n2; do on $n "ethtool -K eth0 rx-udp-gro-forwarding $1 >/dev/null 2>&1 || true"; done; }

iperf() { # NETNS_PREFIX SERVER PORT -> bits/s at the receiver
  on $n1 "$1 iperf3 -c $2 -p $3 -t $duration -J" | jq '.end.sum_received.bits_per_second'
}
probe() { # NETNS_PREFIX SERVER PORT
  on $n1 "$1 db-probe --json probe client $2 --port $3 --tests tcp --duration $duration" |
    jq '.tcp.bits_per_second'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }

printf '%-10s %12s %12s %6s %12s %12s %6s %10s %10s\n' config "under iperf3" "under probe" ratio \
  "over iperf3" "over probe" ratio "eff iperf3" "eff probe"
for config in ${CONFIGS:-default gro jumbo jumbo+gro gro-fwd}; do
  case $config in
    default) set_mtu 1500 1450; set_gro off ;;
    gro) set_gro on ;;
    jumbo) set_mtu 9000 8950; set_gro off ;;
    jumbo+gro) set_gro on ;;
    gro-fwd) set_mtu 1500 1450; set_gro on; set_gro_fwd on ;;
  esac
  ui=() up=() oi=() op=()
  for _ in $(seq "$rounds"); do
    ui+=("$(iperf "" $n2 15202)")
    up+=("$(probe "" $n2 15298)")
    oi+=("$(iperf "ip netns exec dbbench" 10.244.1.253 15201)")
    op+=("$(probe "ip netns exec dbbench" 10.244.1.253 15299)")
  done
  m_ui=$(printf '%s\n' "${ui[@]}" | median)
  m_up=$(printf '%s\n' "${up[@]}" | median)
  m_oi=$(printf '%s\n' "${oi[@]}" | median)
  m_op=$(printf '%s\n' "${op[@]}" | median)
  awk -v c="$config" -v ui="$m_ui" -v up="$m_up" -v oi="$m_oi" -v op="$m_op" 'BEGIN {
    printf "%-10s %9.2f Gb %9.2f Gb %6.3f %9.2f Gb %9.2f Gb %6.3f %10.3f %10.3f\n",
      c, ui/1e9, up/1e9, up/ui, oi/1e9, op/1e9, op/oi, oi/ui, op/up }'
done
set_mtu 1500 1450
set_gro off
set_gro_fwd off
echo
echo "netcheck itself on the same lab (netns mode, single stream, ${duration} s):"
"$db" netcheck "$inv" --mode netns --duration "$duration" --streams 1 --min-efficiency 0 2>/dev/null | sed -n '/^TCP, 1 stream/,/^$/p'
