#!/bin/sh
# Written by director-boot (role overlay) for {{ node.name }}; rewritten on every apply.
#
# `up` (the default) makes this host's part of the pod network match the lists below and is
# idempotent: a static VXLAN mesh in the flannel-vxlan style, with one route, one neighbour entry
# and one FDB entry per peer (no learning, no flooding), plus masquerade and forwarding rules for
# the pod CIDR in director-boot's own iptables chains. Entries on the VXLAN device for peers no
# longer listed are removed. `down` removes the device and the chains (used by reset).
set -eu

DEV=dbvx0
VNI={{ cluster.overlay_vni }}
PORT={{ cluster.overlay_port }}
UNDERLAY={{ node.underlay_interface }}
LOCAL={{ node.address }}
MAC={{ node.vtep_mac }}
VTEP={{ node.vtep_address }}
MTU={{ node.overlay_mtu }}
POD_CIDR={{ cluster.pod_cidr }}
# The bridge local pods attach to (CNI's bridge plugin reuses it); its address is the host's own
# address on the overlay, so pods reach host services at it and the host reaches pods from it.
BRIDGE={{ node.pod_bridge }}
GATEWAY={{ node.pod_gateway }}/{{ node.pod_prefix_len }}
NAT_CHAIN=DIRECTOR-BOOT-POSTROUTING
FWD_CHAIN=DIRECTOR-BOOT-FORWARD

# One line per peer: name, pod subnet, VTEP address, VTEP MAC, node address.
PEERS='
{%- for p in node.peers %}
{{ p.name }} {{ p.pod_subnet }} {{ p.vtep_address }} {{ p.vtep_mac }} {{ p.address }}
{%- endfor %}
'
KEEP_SUBNETS='{% for p in node.peers %} {{ p.pod_subnet }}{% endfor %} '
KEEP_VTEPS='{% for p in node.peers %} {{ p.vtep_address }}{% endfor %} '
KEEP_MACS='{% for p in node.peers %} {{ p.vtep_mac }}{% endfor %} '

# The device's fixed parameters; it is recreated when they change.
STAMP="director-boot vni=$VNI port=$PORT dev=$UNDERLAY local=$LOCAL mac=$MAC vtep=$VTEP"

listed() { # listed WORD LIST: whether WORD is one of the space-separated LIST
	case "$2" in *" $1 "*) return 0 ;; *) return 1 ;; esac
}

up() {
	sysctl -qw net.ipv4.ip_forward=1

	if [ -e "/sys/class/net/$DEV" ] && [ "$(cat "/sys/class/net/$DEV/ifalias" 2>/dev/null)" != "$STAMP" ]; then
		ip link del "$DEV"
	fi
	if [ ! -e "/sys/class/net/$DEV" ]; then
		ip link add "$DEV" address "$MAC" type vxlan id "$VNI" local "$LOCAL" dev "$UNDERLAY" \
			dstport "$PORT" nolearning
		ip link set "$DEV" alias "$STAMP"
	fi
	ip link set "$DEV" mtu "$MTU"
	ip addr replace "$VTEP/32" dev "$DEV"
	ip link set "$DEV" up

	if [ ! -e "/sys/class/net/$BRIDGE" ]; then
		ip link add "$BRIDGE" type bridge
		ip link set "$BRIDGE" mtu "$MTU"
	fi
	ip addr replace "$GATEWAY" dev "$BRIDGE"
	ip link set "$BRIDGE" up

	printf '%s\n' "$PEERS" | while read -r name subnet vtep mac addr; do
		[ -n "$name" ] || continue
		ip route replace "$subnet" via "$vtep" dev "$DEV" onlink
		ip neigh replace "$vtep" lladdr "$mac" dev "$DEV" nud permanent
		bridge fdb replace "$mac" dev "$DEV" dst "$addr" self permanent
	done

	# Remove what belongs to peers no longer listed.
	ip -4 route show dev "$DEV" | while read -r dst _; do
		listed "$dst" "$KEEP_SUBNETS" || ip route del "$dst" dev "$DEV"
	done
	ip -4 neigh show dev "$DEV" nud permanent | while read -r ip _; do
		listed "$ip" "$KEEP_VTEPS" || ip neigh del "$ip" dev "$DEV"
	done
	# Only remote entries (with a dst); a MAC may be listed once per dst, hence the tolerance.
	bridge fdb show dev "$DEV" | while read -r mac rest; do
		case "$rest" in *"dst "*) ;; *) continue ;; esac
		listed "$mac" "$KEEP_MACS" || bridge fdb del "$mac" dev "$DEV" self 2>/dev/null || true
	done

	# Pod traffic leaving the pod CIDR leaves with the node's address.
	iptables -w -t nat -N "$NAT_CHAIN" 2>/dev/null || true
	iptables -w -t nat -F "$NAT_CHAIN"
	iptables -w -t nat -A "$NAT_CHAIN" -s "$POD_CIDR" -d "$POD_CIDR" -j RETURN
	iptables -w -t nat -A "$NAT_CHAIN" -s "$POD_CIDR" -d 224.0.0.0/4 -j RETURN
	iptables -w -t nat -A "$NAT_CHAIN" -s "$POD_CIDR" ! -d "$POD_CIDR" -j MASQUERADE --random-fully
	iptables -w -t nat -C POSTROUTING -m comment --comment director-boot -j "$NAT_CHAIN" 2>/dev/null ||
		iptables -w -t nat -A POSTROUTING -m comment --comment director-boot -j "$NAT_CHAIN"

	# Forward pod traffic even where the FORWARD policy is DROP.
	iptables -w -N "$FWD_CHAIN" 2>/dev/null || true
	iptables -w -F "$FWD_CHAIN"
	iptables -w -A "$FWD_CHAIN" -s "$POD_CIDR" -j ACCEPT
	iptables -w -A "$FWD_CHAIN" -d "$POD_CIDR" -j ACCEPT
	iptables -w -C FORWARD -m comment --comment director-boot -j "$FWD_CHAIN" 2>/dev/null ||
		iptables -w -I FORWARD 1 -m comment --comment director-boot -j "$FWD_CHAIN"
}

down() {
	while iptables -w -t nat -D POSTROUTING -m comment --comment director-boot -j "$NAT_CHAIN" 2>/dev/null; do :; done
	iptables -w -t nat -F "$NAT_CHAIN" 2>/dev/null || true
	iptables -w -t nat -X "$NAT_CHAIN" 2>/dev/null || true
	while iptables -w -D FORWARD -m comment --comment director-boot -j "$FWD_CHAIN" 2>/dev/null; do :; done
	iptables -w -F "$FWD_CHAIN" 2>/dev/null || true
	iptables -w -X "$FWD_CHAIN" 2>/dev/null || true
	if [ -e "/sys/class/net/$DEV" ]; then
		ip link del "$DEV"
	fi
	if [ -e "/sys/class/net/$BRIDGE" ]; then
		ip link del "$BRIDGE"
	fi
}

case "${1:-up}" in
up) up ;;
down) down ;;
*)
	echo "usage: $0 [up|down]" >&2
	exit 2
	;;
esac
