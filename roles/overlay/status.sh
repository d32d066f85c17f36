# director-boot overlay status: raw state of this host's part of the overlay, in sections that
# src/commands/overlay.rs compares with what the inventory says. Read-only.
dev="$1"; br="$2"; wg="$3"
if [ -n "$wg" ]; then dev="$wg"; fi
echo "== link"; ip -d -o link show dev "$dev" 2>/dev/null
echo "== wireguard"; [ -z "$wg" ] || /usr/local/bin/director-wg show "$wg" 2>/dev/null
echo "== now"; date +%s
echo "== routes"; ip -4 route show proto 213 2>/dev/null
echo "== neigh"; ip -4 neigh show dev "$dev" nud permanent 2>/dev/null
echo "== fdb"; bridge fdb show dev "$dev" 2>/dev/null | grep ' dst '
echo "== bridge"; ip -4 -o addr show dev "$br" 2>/dev/null
echo "== sysctl"; cat /proc/sys/net/ipv4/ip_forward
echo "== unit"; systemctl is-enabled director-overlay 2>/dev/null || true
echo "== decided"; cat /run/director-boot/overlay-backends 2>/dev/null
echo "== timer"; systemctl is-active director-overlay-repair.timer 2>/dev/null || true
echo "== repairs"; tail -n 20 /var/lib/director-boot/overlay-repairs.log 2>/dev/null
