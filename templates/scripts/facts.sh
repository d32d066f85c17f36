# director-boot facts probe: prints KEY=value lines, nothing else. $1 is a peer address
# whose route tells which interface and address this host uses to reach the others.
peer="$1"
echo "now=$(date +%s.%N)"
echo "kernel=$(uname -r)"
echo "arch=$(uname -m)"
# Decompressors for uploads (zstd preferred, gzip the fallback).
command -v zstd >/dev/null 2>&1 && echo "zstd=1"
command -v gzip >/dev/null 2>&1 && echo "gzip=1"
# firewalld running: ports must be opened whatever the OS family.
echo "firewalld=$(systemctl is-active firewalld 2>/dev/null)"
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)"
echo "mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
echo "init=$(cat /proc/1/comm 2>/dev/null)"
echo "hostname=$(hostname 2>/dev/null || cat /etc/hostname)"
echo "machine_id=$(cat /etc/machine-id 2>/dev/null)"
route=$(ip -o route get "$peer" 2>/dev/null | head -n 1)
dev=$(printf '%s\n' "$route" | sed -n 's/.* dev \([^ ]*\).*/\1/p')
src=$(printf '%s\n' "$route" | sed -n 's/.* src \([^ ]*\).*/\1/p')
echo "iface=$dev"
echo "address=$src"
[ -n "$dev" ] && echo "mtu=$(cat /sys/class/net/$dev/mtu 2>/dev/null)"
sed 's/^/os_/' /etc/os-release 2>/dev/null
