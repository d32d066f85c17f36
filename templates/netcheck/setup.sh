#!/bin/sh
# director-boot netcheck on {{ node.name }}: `up` puts a network namespace on the pod bridge
# (like a pod: a veth on {{ node.pod_bridge }}, {{ netcheck.address }}, the overlay MTU) and starts the
# probe servers as transient systemd units (with a second namespace, the peer, for the
# same-node pair) that stop themselves after {{ netcheck.max_secs }} s
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
UNIT_PEER=director-boot-netcheck-peer
NS_PEER="${NS}p"
VETH_PEER="${VETH}p"
PEER_ADDR={{ netcheck.peer_address | default(value="") }}
FIREWALLD_MARK=/run/director-boot-netcheck.firewalld

down() {
	systemctl stop "$UNIT_OVERLAY" "$UNIT_UNDERLAY" "$UNIT_PEER" >/dev/null 2>&1 || true
	systemctl reset-failed "$UNIT_OVERLAY" "$UNIT_UNDERLAY" "$UNIT_PEER" >/dev/null 2>&1 || true
	! ip link show "$VETH" >/dev/null 2>&1 || ip link del "$VETH"
	! ip netns list | grep -qw "$NS" || ip netns del "$NS"
	! ip link show "$VETH_PEER" >/dev/null 2>&1 || ip link del "$VETH_PEER"
	! ip netns list | grep -qw "$NS_PEER" || ip netns del "$NS_PEER"
	[ -z "$PEER_ADDR" ] || ip neigh del "$PEER_ADDR" dev "$BRIDGE" 2>/dev/null || true
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
	if [ -n "$PEER_ADDR" ]; then
		ip netns add "$NS_PEER"
		ip link add "$VETH_PEER" mtu "$MTU" type veth peer name eth0 mtu "$MTU" netns "$NS_PEER"
		ip link set "$VETH_PEER" master "$BRIDGE" up
		ip -n "$NS_PEER" link set lo up
		ip -n "$NS_PEER" addr add "$PEER_ADDR/{{ node.pod_prefix_len }}" dev eth0
		ip -n "$NS_PEER" link set eth0 up
		ip -n "$NS_PEER" route add default via "$GW"
	fi
{%- endif %}
	if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
		firewall-cmd --add-port="$UNDERLAY_PORT/tcp" --add-port="$UNDERLAY_PORT/udp" >/dev/null
		touch "$FIREWALLD_MARK"
	fi
{%- if netcheck.namespace_mode %}
	systemd-run --quiet --unit="$UNIT_OVERLAY" --collect -p RuntimeMaxSec={{ netcheck.max_secs }} \
		ip netns exec "$NS" "$BIN" probe server --port "$OVERLAY_PORT" --idle-exit {{ netcheck.max_secs }}
	if [ -n "$PEER_ADDR" ]; then
		systemd-run --quiet --unit="$UNIT_PEER" --collect -p RuntimeMaxSec={{ netcheck.max_secs }} \
			ip netns exec "$NS_PEER" "$BIN" probe server --port "$OVERLAY_PORT" --idle-exit {{ netcheck.max_secs }}
	fi
{%- endif %}
	systemd-run --quiet --unit="$UNIT_UNDERLAY" --collect -p RuntimeMaxSec={{ netcheck.max_secs }} \
		"$BIN" probe server --bind "$UNDERLAY_ADDR" --port "$UNDERLAY_PORT" --idle-exit {{ netcheck.max_secs }}
	i=0
	until {% if netcheck.namespace_mode %}listening "$OVERLAY_PORT" "$NS" && { [ -z "$PEER_ADDR" ] || listening "$OVERLAY_PORT" "$NS_PEER"; } && {% endif %}listening "$UNDERLAY_PORT"; do
		i=$((i + 1))
		if [ "$i" -gt 50 ]; then
			echo "probe servers did not start listening within 10 s:" >&2
			systemctl status --no-pager "$UNIT_OVERLAY" "$UNIT_UNDERLAY" "$UNIT_PEER" >&2 || true
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
