#!/usr/bin/env bash
# Side-by-side: `director-boot probe` vs iperf3 on the same paths and durations, in one run.
#   Paths: loopback (inside a private netns), veth between two netns (MTU 1500), and a second
#   veth pair shaped to 1 Gbit/s with tbf (link-bound, like a real NIC: CPU noise drops out).
#   Tests: TCP 1 stream, TCP N streams, UDP at full speed (iperf3 -b 0), same datagram size.
# Each pair alternates the two tools ROUNDS times; the table shows medians (receiver-side
# figures for both) and the ratio probe/iperf3. Clients are pinned to CPU 0 and servers to
# CPU 1 (when there are 2+ CPUs) so both tools get the same CPUs. Needs root and iperf3.
# Multi-stream: probe's default (--data-threads one) matches iperf3 <= 3.15's single thread.
# Usage: sudo scripts/bench-probe.sh [DURATION_SECS] [ROUNDS]
#   env: STREAMS (4), UDP_SIZE (1472), PATHS ("loopback veth"), TESTS ("tcp tcp-multi udp"),
#        CARGO_TARGET_DIR.
# Creates only dbprobe-* namespaces/links and removes them (and its servers) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-5}"
rounds="${2:-3}"
streams="${STREAMS:-4}"
udp_size="${UDP_SIZE:-1472}"
paths="${PATHS:-loopback veth veth-1g}"
tests="${TESTS:-tcp tcp-multi udp}"
ns_a=dbprobe-a
ns_b=dbprobe-b
ip_a=10.254.213.1
ip_b=10.254.213.2
ip_c=10.254.214.1
ip_d=10.254.214.2
iperf_port=15201
probe_port=15299
iperf3="${IPERF3:-/usr/bin/iperf3}"

[ "$(id -u)" = 0 ] || { echo "bench-probe.sh: needs root (network namespaces)" >&2; exit 1; }
[ -x "$iperf3" ] || { echo "bench-probe.sh: $iperf3 not found" >&2; exit 1; }
command -v jq >/dev/null || { echo "bench-probe.sh: needs jq" >&2; exit 1; }

cargo build --release -q
target="${CARGO_TARGET_DIR:-target}"
[[ "$target" = /* ]] || target="$PWD/$target"
db="$target/release/director-boot"

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  ip netns del "$ns_a" 2>/dev/null || true
  ip netns del "$ns_b" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Two namespaces joined by a veth pair; deleting a namespace deletes its veth end too.
ip netns add "$ns_a"
ip netns add "$ns_b"
ip link add dbprobe-va netns "$ns_a" type veth peer name dbprobe-vb netns "$ns_b"
ip -n "$ns_a" link set lo up
ip -n "$ns_b" link set lo up
ip -n "$ns_a" addr add "$ip_a/30" dev dbprobe-va
ip -n "$ns_b" addr add "$ip_b/30" dev dbprobe-vb
ip -n "$ns_a" link set dbprobe-va up
ip -n "$ns_b" link set dbprobe-vb up
# The shaped pair: 1 Gbit/s token bucket on the client's egress.
ip link add dbprobe-wa netns "$ns_a" type veth peer name dbprobe-wb netns "$ns_b"
ip -n "$ns_a" addr add "$ip_c/30" dev dbprobe-wa
ip -n "$ns_b" addr add "$ip_d/30" dev dbprobe-wb
ip -n "$ns_a" link set dbprobe-wa up
ip -n "$ns_b" link set dbprobe-wb up
ip netns exec "$ns_a" tc qdisc add dev dbprobe-wa root tbf rate 1gbit burst 256kb latency 20ms

if [ "$(nproc)" -ge 2 ]; then
  pin_client=(taskset -c 0)
  pin_server=(taskset -c 1)
else
  pin_client=()
  pin_server=()
fi

# Servers: loopback ones in ns_a (client in ns_a too), veth ones in ns_b. `ip netns exec` and
# taskset exec the command, so $! is the server's own PID.
start_servers() { # NS
  ip netns exec "$1" "${pin_server[@]}" "$iperf3" -s -p "$iperf_port" >/dev/null 2>&1 &
  pids+=($!)
  ip netns exec "$1" "${pin_server[@]}" "$db" probe server --port "$probe_port" --idle-exit 900 2>/dev/null &
  pids+=($!)
}
start_servers "$ns_a"
start_servers "$ns_b"
sleep 1

results="$work/results"
run_iperf() { # HOST TEST
  local host=$1 test=$2 args=() out
  case "$test" in
    tcp) args=() ;;
    tcp-multi) args=(-P "$streams") ;;
    udp) args=(-u -b 0 -l "$udp_size") ;;
  esac
  out=$(ip netns exec "$ns_a" "${pin_client[@]}" "$iperf3" -c "$host" -p "$iperf_port" -t "$duration" -J "${args[@]}")
  if [ "$test" = udp ]; then
    jq -r '.end.sum_received as $s | "\($s.bits_per_second) loss=\($s.lost_percent)% jitter=\($s.jitter_ms)ms"' <<<"$out"
  else
    jq -r '"\(.end.sum_received.bits_per_second) retr=\(.end.sum_sent.retransmits)"' <<<"$out"
  fi
}
run_probe() { # HOST TEST
  local host=$1 test=$2 out
  out=$(ip netns exec "$ns_a" "${pin_client[@]}" "$db" --json probe client "$host" --port "$probe_port" \
    --tests "$test" --duration "$duration" --streams "$streams" --udp-size "$udp_size")
  case "$test" in
    tcp) jq -r '"\(.tcp.bits_per_second) retr=\(.tcp.retransmits)"' <<<"$out" ;;
    tcp-multi) jq -r '"\(.tcp_multi.bits_per_second) retr=\(.tcp_multi.retransmits)"' <<<"$out" ;;
    udp) jq -r '.udp | "\(.bits_per_second) loss=\(.loss_fraction * 100)% jitter=\(.jitter_ms)ms"' <<<"$out" ;;
  esac
}

echo "director-boot probe vs iperf3 ($("$iperf3" --version | head -1 | cut -d' ' -f1-2)):" \
  "${duration}s per test, $rounds rounds, $streams streams, UDP ${udp_size}-byte datagrams" >&2
for path in $paths; do
  case "$path" in
    loopback) host=127.0.0.1 ;;
    veth) host=$ip_b ;;
    veth-1g) host=$ip_d ;;
    *) echo "unknown path $path" >&2; exit 1 ;;
  esac
  for test in $tests; do
    for r in $(seq "$rounds"); do
      # Alternate which tool goes first so drift in machine load hits both alike.
      if (( r % 2 )); then order="iperf3 probe"; else order="probe iperf3"; fi
      for tool in $order; do
        if [ "$tool" = iperf3 ]; then line=$(run_iperf "$host" "$test"); else line=$(run_probe "$host" "$test"); fi
        echo "$path $test $tool $line" | tee -a "$results" >&2
        sleep 1
      done
    done
  done
done

# Medians per (path, test, tool), their ratio, and the median of the per-round ratios (each
# round's two runs are back to back, so that one is the least affected by load drifting).
python3 - "$results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    path, test, tool, bps, *_ = line.split()
    rows.setdefault((path, test), []).append((tool, float(bps)))
print(f"{'PATH':9} {'TEST':10} {'IPERF3 Gbit/s':>14} {'PROBE Gbit/s':>13} {'RATIO':>6} {'PAIRED':>7}  "
      "RUNS iperf3 | probe (Gbit/s)")
for (path, test), runs in rows.items():
    by = {t: [v for tool, v in runs if tool == t] for t in ("iperf3", "probe")}
    med = {t: statistics.median(v) for t, v in by.items()}
    paired = statistics.median(p / i for i, p in zip(by["iperf3"], by["probe"]) if i > 0)
    ratio = med["probe"] / med["iperf3"] if med["iperf3"] else float("nan")
    fmt = lambda t: " ".join(f"{v / 1e9:.2f}" for v in by[t])
    print(f"{path:9} {test:10} {med['iperf3'] / 1e9:14.2f} {med['probe'] / 1e9:13.2f} {ratio:6.2f} "
          f"{paired:7.2f}  {fmt('iperf3')} | {fmt('probe')}")
PY
