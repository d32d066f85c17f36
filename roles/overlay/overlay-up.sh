#!/bin/sh
# Written by director-boot (role overlay) for {{ node.name }}; rewritten on every apply.
#
# `up` (the default) makes this host's part of the pod network match the lists below and is
# idempotent. Each peer's pod subnet is reached by the pair's backend:
#   direct  a plain route via the peer's host address (the hosts share an L2 segment);
#   vxlan   a static VXLAN mesh in the flannel-vxlan style: one route, one neighbour entry and
#           one FDB entry per peer (no learning, no flooding);
#   auto    direct when `ip route get PEER` shows no gateway (same segment), vxlan otherwise,
#           decided here for each peer on every run.
# The VXLAN device, its neighbour and FDB entries exist for every peer whatever the backend, so
# a peer that sends VXLAN is always understood and a fallback is one route away. Masquerade and
# forwarding rules for the pod CIDR live in director-boot's own iptables chains. Entries for
# peers no longer listed are removed. What was decided per peer goes to $DECIDED (read by
# `director-boot overlay status`).
#
# With encryption (`network.overlay.encrypt`), every peer's pod subnet is routed through the
# WireGuard device instead (backend `wireguard`): the kernel module where the host has one,
# else wireguard-go (director-wireguard.service), configured by director-wg from $WG_CONF, and
# no VXLAN device exists. Pod packets to another host never leave in clear: the whole pod CIDR
# has an unreachable route under the peers' routes (taken when the device is gone), and the
# $CLEAR_CHAIN chain drops, in FORWARD and OUTPUT, pod-CIDR packets that would leave by any
# device but the WireGuard device, the pod bridge or loopback.
#
# `repair` (the director-overlay-repair timer) does the same and records every difference it
# had to fix (a route, neighbour or FDB entry removed or changed by something else, a missing
# device or rule) in $REPAIRS, one line each. `down` removes the device and the chains (reset).
set -eu

DEV=dbvx0
VNI={{ cluster.overlay_vni }}
PORT={{ cluster.overlay_port }}
UNDERLAY={{ node.underlay_interface }}
LOCAL={{ node.address }}
MAC={{ node.vtep_mac }}
VTEP={{ node.vtep_address }}
MTU={{ node.overlay_mtu }}
# The most a VXLAN device on this underlay can carry; with every peer direct the pods' MTU may
# be the underlay's, and the (fallback) VXLAN device keeps to its own limit.
VXLAN_MAX={{ node.underlay_mtu - 50 }}
POD_CIDR={{ cluster.pod_cidr }}
ENCRYPT={% if cluster.overlay_encrypt %}1{% else %}0{% endif %}
WG={{ cluster.wireguard_device }}
WG_CONF=/etc/director-boot/wireguard/{{ cluster.wireguard_device }}.json
WG_TOOL=/usr/local/bin/director-wg
WG_APPLIED=/run/director-boot/wireguard-applied
# The bridge local pods attach to (CNI's bridge plugin reuses it); its address is the host's own
# address on the overlay, so pods reach host services at it and the host reaches pods from it.
BRIDGE={{ node.pod_bridge }}
GATEWAY_IP={{ node.pod_gateway }}
GATEWAY=$GATEWAY_IP/{{ node.pod_prefix_len }}
NAT_CHAIN=DIRECTOR-BOOT-POSTROUTING
FWD_CHAIN=DIRECTOR-BOOT-FORWARD
CLEAR_CHAIN=DIRECTOR-BOOT-NO-CLEAR
# Routes this script lays carry this protocol number, so its stale ones are found on any device.
PROTO=213
# The encrypted overlay's unreachable route for the whole pod CIDR (kept apart from PROTO's).
GUARD_PROTO=214
DECIDED=/run/director-boot/overlay-backends
REPAIRS=/var/lib/director-boot/overlay-repairs.log
MODE="${1:-up}"
IMPL=""

# One line per peer: name, pod subnet, VTEP address, VTEP MAC, node address, backend.
PEERS='
{%- for p in node.peers %}
{{ p.name }} {{ p.pod_subnet }} {{ p.vtep_address }} {{ p.vtep_mac }} {{ p.address }} {{ p.backend }}
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

# fixed WHAT BEFORE AFTER: in repair mode, record that WHAT was BEFORE and is AFTER now.
fixed() {
	[ "$MODE" = repair ] || return 0
	[ "$2" != "$3" ] || return 0
	line="$(date -u +%Y-%m-%dT%H:%M:%SZ) $1: was '${2:-missing}', now '${3:-gone}'"
	echo "repaired: $line" >&2
	mkdir -p "${REPAIRS%/*}"
	echo "$line" >>"$REPAIRS"
	if [ "$(wc -l <"$REPAIRS")" -gt 400 ]; then
		tail -n 200 "$REPAIRS" >"$REPAIRS.tmp" && mv "$REPAIRS.tmp" "$REPAIRS"
	fi
}

# The underlay device of a route to ADDR that needs no gateway; nothing when it needs one.
on_link_dev() {
	r="$(ip -4 -o route get "$1" 2>/dev/null || true)"
	case "$r" in "" | *" via "*) return 0 ;; esac
	# shellcheck disable=SC2086 # split the route into words on purpose
	set -- $r
	while [ $# -gt 1 ]; do
		[ "$1" = dev ] && { echo "$2"; return 0; }
		shift
	done
}

rules() { # the contents of director-boot's chains, for iptables-restore --noflush (atomic)
	cat <<-EOF
	*filter
	:$CLEAR_CHAIN - [0:0]
	EOF
	if [ "$ENCRYPT" = 1 ]; then
		cat <<-EOF
		-A $CLEAR_CHAIN -d $POD_CIDR -o $WG -j RETURN
		-A $CLEAR_CHAIN -d $POD_CIDR -o $BRIDGE -j RETURN
		-A $CLEAR_CHAIN -d $POD_CIDR -o lo -j RETURN
		-A $CLEAR_CHAIN -d $POD_CIDR -j DROP
		EOF
	fi
	cat <<-EOF
	COMMIT
	*nat
	:$NAT_CHAIN - [0:0]
	-A $NAT_CHAIN -s $POD_CIDR -d $POD_CIDR -j RETURN
	-A $NAT_CHAIN -s $POD_CIDR -d 224.0.0.0/4 -j RETURN
	-A $NAT_CHAIN -s $POD_CIDR ! -d $POD_CIDR -j MASQUERADE --random-fully
	COMMIT
	*filter
	:$FWD_CHAIN - [0:0]
	-A $FWD_CHAIN -j $CLEAR_CHAIN
	-A $FWD_CHAIN -s $POD_CIDR -j ACCEPT
	-A $FWD_CHAIN -d $POD_CIDR -j ACCEPT
	COMMIT
	EOF
}

# The WireGuard device: the kernel's where it has the module, else wireguard-go's (started
# through its unit, which creates the device). Prints `kernel` or `userspace`.
wg_device() {
	if [ ! -e "/sys/class/net/$WG" ]; then
		if ip link add "$WG" type wireguard 2>/dev/null; then
			fixed "device $WG" "" "created (kernel WireGuard)"
		else
			systemctl start director-wireguard.service
			i=0
			while [ ! -S "/var/run/wireguard/$WG.sock" ] || [ ! -e "/sys/class/net/$WG" ]; do
				i=$((i + 1))
				if [ "$i" -gt 100 ]; then
					echo "$WG: wireguard-go did not create the device within 10 s (journalctl -u director-wireguard)" >&2
					return 1
				fi
				sleep 0.1
			done
			fixed "device $WG" "" "created (wireguard-go)"
		fi
	fi
	if [ -S "/var/run/wireguard/$WG.sock" ]; then echo userspace; else echo kernel; fi
}

# Encrypted: the WireGuard device configured with every peer, and no VXLAN device at all (a
# cluster switched to encryption loses it).
encrypted_device() {
	if [ -e "/sys/class/net/$DEV" ]; then
		ip link del "$DEV"
	fi
	IMPL="$(wg_device)"
	ip link set "$WG" mtu "$MTU"
	# The host's own overlay address on the device too (flannel's WireGuard backend does the
	# same): what MASQUERADE picks for traffic it sends into the tunnel (kube-proxy's NodePort
	# and external traffic to a pod on another host), which the peer only accepts from this
	# host's pod subnet. The route's `src` alone covers only the host's own connections.
	ip addr replace "$GATEWAY_IP/32" dev "$WG"
	ip link set "$WG" up
	# What director-wg changed, one line each (nothing when the device was already right).
	# Drift only when the peer list is the one applied last: a repair run that meets a new
	# list (written by director-boot a moment ago) is applying a change, not repairing one.
	sum="$(sha256sum <"$WG_CONF" | cut -d' ' -f1)"
	last="$(cat "$WG_APPLIED" 2>/dev/null || true)"
	changes="$("$WG_TOOL" apply "$WG" "$WG_CONF")"
	if [ "$sum" = "$last" ]; then
		printf '%s\n' "$changes" | while read -r line; do
			[ -z "$line" ] || fixed "wireguard $line" "drift" "fixed"
		done
	fi
	echo "$sum" >"$WG_APPLIED"
	ip route replace unreachable "$POD_CIDR" proto "$GUARD_PROTO" metric 4000
}

# Unencrypted: the VXLAN device (recreated when its fixed parameters change), and no WireGuard.
vxlan_device() {
	if [ -e "/sys/class/net/$DEV" ] && [ "$(cat "/sys/class/net/$DEV/ifalias" 2>/dev/null)" != "$STAMP" ]; then
		fixed "device $DEV" "$(cat "/sys/class/net/$DEV/ifalias" 2>/dev/null)" "$STAMP"
		ip link del "$DEV"
	fi
	if [ ! -e "/sys/class/net/$DEV" ]; then
		fixed "device $DEV" "" "created"
		ip link add "$DEV" address "$MAC" type vxlan id "$VNI" local "$LOCAL" dev "$UNDERLAY" \
			dstport "$PORT" nolearning
		ip link set "$DEV" alias "$STAMP"
	fi
	vx_mtu=$MTU
	[ "$vx_mtu" -le "$VXLAN_MAX" ] || vx_mtu=$VXLAN_MAX
	ip link set "$DEV" mtu "$vx_mtu"
	ip addr replace "$VTEP/32" dev "$DEV"
	ip link set "$DEV" up
	ip route del "$POD_CIDR" proto "$GUARD_PROTO" 2>/dev/null || true
	if [ -e "/sys/class/net/$WG" ]; then
		systemctl stop director-wireguard.service 2>/dev/null || true
		ip link del "$WG" 2>/dev/null || true
	fi
}

up() {
	sysctl -qw net.ipv4.ip_forward=1
	# Direct peers' pods arrive on the underlay with pod source addresses; with a mixed
	# cluster (or a peer that decided differently) the way back may be another device, which
	# strict reverse-path filtering would drop. Loose mode still drops unroutable sources.
	echo 2 >"/proc/sys/net/ipv4/conf/$UNDERLAY/rp_filter"

	if [ "$ENCRYPT" = 1 ]; then
		encrypted_device
	else
		vxlan_device
	fi

	if [ ! -e "/sys/class/net/$BRIDGE" ]; then
		fixed "bridge $BRIDGE" "" "created"
		ip link add "$BRIDGE" type bridge
		ip link set "$BRIDGE" mtu "$MTU"
	fi
	ip addr replace "$GATEWAY" dev "$BRIDGE"
	ip link set "$BRIDGE" up

	mkdir -p "${DECIDED%/*}"
	printf '%s\n' "$PEERS" | while read -r name subnet vtep mac addr backend; do
		[ -n "$name" ] || continue
		if [ "$ENCRYPT" = 1 ]; then
			before="$(ip -4 route show "$subnet" proto "$PROTO")"
			ip route replace "$subnet" dev "$WG" proto "$PROTO" src "$GATEWAY_IP"
			echo "$name wireguard $WG $addr $IMPL"
			fixed "$name route $subnet" "$before" "$(ip -4 route show "$subnet" proto "$PROTO")"
			continue
		fi
		dev=""
		case "$backend" in
		direct) dev="$(on_link_dev "$addr")" ;;
		auto) dev="$(on_link_dev "$addr")" ;;
		esac
		if [ "$backend" = direct ] && [ -z "$dev" ]; then
			echo "$name: backend direct, but $addr is not on this host's segment (ip route get $addr shows a gateway): using VXLAN to it" >&2
		fi
		before="$(ip -4 route show "$subnet" proto "$PROTO")"
		if [ -n "$dev" ]; then
			ip route replace "$subnet" via "$addr" dev "$dev" proto "$PROTO"
			echo "$name direct $dev $addr"
		else
			ip route replace "$subnet" via "$vtep" dev "$DEV" onlink proto "$PROTO"
			echo "$name vxlan $DEV $addr"
		fi
		fixed "$name route $subnet" "$before" "$(ip -4 route show "$subnet" proto "$PROTO")"
		before="$(ip -4 neigh show "$vtep" dev "$DEV" nud permanent)"
		ip neigh replace "$vtep" lladdr "$mac" dev "$DEV" nud permanent
		fixed "$name neighbour $vtep" "$before" "$(ip -4 neigh show "$vtep" dev "$DEV" nud permanent)"
		before="$(bridge fdb show dev "$DEV" | grep "^$mac dst $addr " || true)"
		bridge fdb replace "$mac" dev "$DEV" dst "$addr" self permanent
		fixed "$name fdb $mac" "$before" "$(bridge fdb show dev "$DEV" | grep "^$mac dst $addr " || true)"
	done >"$DECIDED.tmp"
	mv "$DECIDED.tmp" "$DECIDED"

	# Remove what belongs to peers no longer listed (routes of earlier versions had no proto).
	{
		ip -4 route show proto "$PROTO"
		[ ! -e "/sys/class/net/$DEV" ] || ip -4 route show dev "$DEV"
	} | while read -r dst _; do
		listed "$dst" "$KEEP_SUBNETS" || ip route del "$dst" 2>/dev/null || true
	done
	if [ -e "/sys/class/net/$DEV" ]; then
		ip -4 neigh show dev "$DEV" nud permanent | while read -r ip _; do
			listed "$ip" "$KEEP_VTEPS" || ip neigh del "$ip" dev "$DEV"
		done
		# Only remote entries (with a dst); a MAC may be listed once per dst, hence the tolerance.
		bridge fdb show dev "$DEV" | while read -r mac rest; do
			case "$rest" in *"dst "*) ;; *) continue ;; esac
			listed "$mac" "$KEEP_MACS" || bridge fdb del "$mac" dev "$DEV" self 2>/dev/null || true
		done
	fi

	# Pod traffic leaving the pod CIDR leaves with the node's address; pod traffic is forwarded
	# even where the FORWARD policy is DROP. Both chains are replaced in one transaction.
	rules | iptables-restore -w --noflush
	if ! iptables -w -t nat -C POSTROUTING -m comment --comment director-boot -j "$NAT_CHAIN" 2>/dev/null; then
		fixed "iptables nat POSTROUTING jump to $NAT_CHAIN" "" "added"
		iptables -w -t nat -A POSTROUTING -m comment --comment director-boot -j "$NAT_CHAIN"
	fi
	if ! iptables -w -C FORWARD -m comment --comment director-boot -j "$FWD_CHAIN" 2>/dev/null; then
		fixed "iptables FORWARD jump to $FWD_CHAIN" "" "added"
		iptables -w -I FORWARD 1 -m comment --comment director-boot -j "$FWD_CHAIN"
	fi
	if ! iptables -w -C OUTPUT -m comment --comment director-boot -j "$CLEAR_CHAIN" 2>/dev/null; then
		fixed "iptables OUTPUT jump to $CLEAR_CHAIN" "" "added"
		iptables -w -I OUTPUT 1 -m comment --comment director-boot -j "$CLEAR_CHAIN"
	fi
}

down() {
	while iptables -w -t nat -D POSTROUTING -m comment --comment director-boot -j "$NAT_CHAIN" 2>/dev/null; do :; done
	iptables -w -t nat -F "$NAT_CHAIN" 2>/dev/null || true
	iptables -w -t nat -X "$NAT_CHAIN" 2>/dev/null || true
	while iptables -w -D FORWARD -m comment --comment director-boot -j "$FWD_CHAIN" 2>/dev/null; do :; done
	iptables -w -F "$FWD_CHAIN" 2>/dev/null || true
	iptables -w -X "$FWD_CHAIN" 2>/dev/null || true
	while iptables -w -D OUTPUT -m comment --comment director-boot -j "$CLEAR_CHAIN" 2>/dev/null; do :; done
	iptables -w -F "$CLEAR_CHAIN" 2>/dev/null || true
	iptables -w -X "$CLEAR_CHAIN" 2>/dev/null || true
	ip route del "$POD_CIDR" proto "$GUARD_PROTO" 2>/dev/null || true
	systemctl stop director-wireguard.service 2>/dev/null || true
	if [ -e "/sys/class/net/$WG" ]; then
		ip link del "$WG"
	fi
	ip -4 route show proto "$PROTO" | while read -r dst _; do
		ip route del "$dst" 2>/dev/null || true
	done
	if [ -e "/sys/class/net/$DEV" ]; then
		ip link del "$DEV"
	fi
	if [ -e "/sys/class/net/$BRIDGE" ]; then
		ip link del "$BRIDGE"
	fi
	rm -f "$DECIDED" "$WG_APPLIED"
}

# The unit and the repair timer never run this at the same time.
mkdir -p /run/director-boot
exec 9>/run/director-boot/overlay.lock
flock 9

case "$MODE" in
up | repair) up ;;
down) down ;;
*)
	echo "usage: $0 [up|repair|down]" >&2
	exit 2
	;;
esac
