# director-boot netcheck: the network facts a diagnosis needs, as KEY=value lines (multi-line
# values as KEY.N=line). Read-only; run with sudo. $1 = VXLAN device, $2 = overlay UDP port,
# $3 = underlay interface, $4 = pod bridge.
dev="$1"; port="$2"; under="$3"; br="$4"
sys() { cat "/proc/sys/$1" 2>/dev/null || echo missing; }
echo "kernel=$(uname -r)"
# How this host reaches each peer's pods (written by the overlay script): `node2:direct ...`.
echo "paths=$(awk '{printf "%s:%s ", $1, $2}' /run/director-boot/overlay-backends 2>/dev/null)"
echo "ip_forward=$(sys net/ipv4/ip_forward)"
echo "rp_filter_all=$(sys net/ipv4/conf/all/rp_filter)"
echo "rp_filter_underlay=$(sys net/ipv4/conf/$under/rp_filter)"
echo "rp_filter_vxlan=$(sys net/ipv4/conf/$dev/rp_filter)"
echo "rp_filter_bridge=$(sys net/ipv4/conf/$br/rp_filter)"
# br_netfilter is judged by its sysctl, which exists whether the feature is built in or a loaded
# module; /sys/module/br_netfilter is only informative (a built-in without parameters has none).
if [ -d /sys/module/br_netfilter ]; then echo "br_netfilter_module=1"; else echo "br_netfilter_module=0"; fi
echo "bridge_nf_call_iptables=$(sys net/bridge/bridge-nf-call-iptables)"
echo "underlay_mtu=$(cat /sys/class/net/$under/mtu 2>/dev/null || echo missing)"
echo "vxlan_mtu=$(cat /sys/class/net/$dev/mtu 2>/dev/null || echo missing)"
echo "bridge_mtu=$(cat /sys/class/net/$br/mtu 2>/dev/null || echo missing)"
echo "vxlan_state=$(cat /sys/class/net/$dev/operstate 2>/dev/null || echo missing)"
echo "vxlan_rx_packets=$(cat /sys/class/net/$dev/statistics/rx_packets 2>/dev/null || echo 0)"
echo "vxlan_tx_packets=$(cat /sys/class/net/$dev/statistics/tx_packets 2>/dev/null || echo 0)"
echo "vxlan_port=$(ip -d link show dev "$dev" 2>/dev/null | sed -n 's/.*dstport \([0-9]*\).*/\1/p')"
echo "udp_in_errors=$(awk '/^Udp:/ {n++} /^Udp:/ && n==2 {print $6}' /proc/net/snmp)"
echo "forward_policy=$(iptables -w -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')"
echo "input_policy=$(iptables -w -S INPUT 2>/dev/null | sed -n 's/^-P INPUT //p')"
if iptables -w -S FORWARD 2>/dev/null | grep -q -- '-j DIRECTOR-BOOT-FORWARD'; then echo "db_forward_rule=1"; else echo "db_forward_rule=0"; fi
if command -v firewall-cmd >/dev/null 2>&1 && firewall-cmd --state >/dev/null 2>&1; then
	echo "firewalld=running"
	echo "firewalld_ports=$(firewall-cmd --list-ports 2>/dev/null) $(firewall-cmd --info-service=director-boot 2>/dev/null | sed -n 's/^ *ports: //p')"
else
	echo "firewalld=absent"
fi
# Rules that mention the overlay port (any table), with their packet counters.
n=0
iptables-save -c 2>/dev/null | grep -E -- "--dport $port( |$)|--dports [^ ]*$port" | while read -r line; do
	n=$((n + 1)); echo "rule.$n=$line"
done
