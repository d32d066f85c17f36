#!/bin/sh
# director-boot netcheck on {{ node.name }}: `up` puts a network namespace on the pod bridge
# (like a pod: a veth on {{ node.pod_bridge }}, {{ netcheck.address }}, the overlay MTU) and starts the
# probe servers as transient systemd units that stop themselves after {{ netcheck.max_secs }} s
# even when netcheck is interrupted; `down` removes all of it. Both are idempotent.
set -eu
NS={{ netcheck.namespace }}
VETH={{ netcheck.veth }}
BIN={{ netcheck.binary }}
BRIDGE={{ node.pod_bridge }}
GW={{ node.pod_gateway }}
ADDR={{ netcheck.address }}/{{ node.pod_prefix_len }}
MTU={{ node.overlay_mtu }}
OVERLAY_PORT={{ netcheck.overlay_port }}
UNDERLAY_ADDR={{ node.address }}
UNDERLAY_PORT={{ netcheck.underlay_port }}
UNIT_OVERLAY=director-boot-netcheck-overlay
UNIT_UNDERLAY=director-boot-netcheck-underlay
FIREWALLD_MARK=/run/director-boot-netcheck.firewalld

down() {
	systemctl stop "$UNIT_OVERLAY" "$UNIT_UNDERLAY" >/dev/null 2>&1 || true
	systemctl reset-failed "$UNIT_OVERLAY" "$UNIT_UNDERLAY" >/dev/null 2>&1 || true
	! ip link show "$VETH" >/dev/null 2>&1 || ip link del "$VETH"
	! ip netns list | grep -qw "$NS" || ip netns del "$NS"
	# The host's neighbour entry for the namespace's address would outlive it and point the
	# next run's first packets at a MAC that no longer exists.
	ip neigh del "${ADDR%/*}" dev "$BRIDGE" 2>/dev/null || true
	if [ -f "$FIREWALLD_MARK" ]; then
		firewall-cmd --remove-port="$UNDERLAY_PORT/tcp" --remove-port="$UNDERLAY_PORT/udp" >/dev/null 2>&1 || true
		rm -f "$FIREWALLD_MARK"
	fi
}

listening() { # listening PORT [NETNS]
	if [ -n "${2:-}" ]; then
		ip netns exec "$2" cat /proc/net/tcp
	else
		cat /proc/net/tcp
	fi | awk -v p="$(printf ':%04X' "$1")" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }'
}

up() {
	down
	if [ ! -e "/sys/class/net/$BRIDGE" ]; then
		ip link add "$BRIDGE" type bridge
		ip link set "$BRIDGE" mtu "$MTU"
		ip addr replace "$GW/{{ node.pod_prefix_len }}" dev "$BRIDGE"
		ip link set "$BRIDGE" up
	fi
{%- if netcheck.namespace_mode %}
	ip netns add "$NS"
	ip link add "$VETH" mtu "$MTU" type veth peer name eth0 mtu "$MTU" netns "$NS"
	ip link set "$VETH" master "$BRIDGE" up
	ip -n "$NS" link set lo up
	ip -n "$NS" addr add "$ADDR" dev eth0
	ip -n "$NS" link set eth0 up
	ip -n "$NS" route add default via "$GW"
{%- endif %}
	if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
		firewall-cmd --add-port="$UNDERLAY_PORT/tcp" --add-port="$UNDERLAY_PORT/udp" >/dev/null
		touch "$FIREWALLD_MARK"
	fi
{%- if netcheck.namespace_mode %}
	systemd-run --quiet --unit="$UNIT_OVERLAY" --collect -p RuntimeMaxSec={{ netcheck.max_secs }} \
		ip netns exec "$NS" "$BIN" probe server --port "$OVERLAY_PORT" --idle-exit {{ netcheck.max_secs }}
{%- endif %}
	systemd-run --quiet --unit="$UNIT_UNDERLAY" --collect -p RuntimeMaxSec={{ netcheck.max_secs }} \
		"$BIN" probe server --bind "$UNDERLAY_ADDR" --port "$UNDERLAY_PORT" --idle-exit {{ netcheck.max_secs }}
	i=0
	until {% if netcheck.namespace_mode %}listening "$OVERLAY_PORT" "$NS" && {% endif %}listening "$UNDERLAY_PORT"; do
		i=$((i + 1))
		if [ "$i" -gt 50 ]; then
			echo "probe servers did not start listening within 10 s:" >&2
			systemctl status --no-pager "$UNIT_OVERLAY" "$UNIT_UNDERLAY" >&2 || true
			exit 1
		fi
		sleep 0.2
	done
}

case "${1:-up}" in
up) up ;;
down) down ;;
*) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
