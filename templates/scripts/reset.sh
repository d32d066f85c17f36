# director-boot reset: remove everything init installed on this host. Rendered from the role
# files (units, files, paths). Every step tolerates what is already gone, so it can be re-run.
set +e
# Containers first, while containerd still answers: kill and delete every CRI task.
if command -v ctr >/dev/null 2>&1 && [ -S /run/containerd/containerd.sock ]; then
  for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks kill -s SIGKILL "$t" >/dev/null 2>&1; done
  sleep 1
  for t in $(ctr -n k8s.io tasks ls -q 2>/dev/null); do ctr -n k8s.io tasks delete -f "$t" >/dev/null 2>&1; done
  for c in $(ctr -n k8s.io containers ls -q 2>/dev/null); do ctr -n k8s.io containers delete "$c" >/dev/null 2>&1; done
fi
{% for u in units %}
if systemctl cat {{ u | sh }} >/dev/null 2>&1; then systemctl disable --now {{ u | sh }} >/dev/null 2>&1; echo "stopped {{ u }}"; fi
{%- endfor %}
# What roles undo themselves (network devices, iptables chains, firewalld settings).
{% for c in commands %}
( {{ c }} ) || echo "warning: reset step failed: {{ c | replace(from='"', to="'") }}"
{%- endfor %}
# Mounts left by kubelet (volumes), containerd and CNI network namespaces, deepest first.
for m in $(findmnt -rno TARGET | grep -E '^(/var/lib/kubelet/|/run/containerd/|/run/netns/|/var/run/netns/)' | sort -r); do
  umount -l "$m" 2>/dev/null && echo "unmounted $m"
done
{% for f in files %}
if [ -e {{ f | sh }} ] || [ -L {{ f | sh }} ]; then rm -f {{ f | sh }}; echo "removed {{ f }}"; fi
{%- endfor %}
# Data directories: a mount point (a bind-mounted disk) is emptied, anything else removed.
{% for p in paths %}
if mountpoint -q {{ p | sh }} 2>/dev/null; then
  find {{ p | sh }} -mindepth 1 -maxdepth 1 -exec rm -rf {} + && echo "emptied {{ p }}"
elif [ -e {{ p | sh }} ]; then rm -rf {{ p | sh }}; echo "removed {{ p }}"; fi
{%- endfor %}
systemctl daemon-reload 2>/dev/null
# Network devices the overlay, the CNI bridge and kube-proxy created.
{% for l in links %}
if ip link show {{ l | sh }} >/dev/null 2>&1; then ip link del {{ l | sh }} && echo "deleted link {{ l }}"; fi
{%- endfor %}
# iptables: drop director-boot's and kube-proxy's chains and every rule that jumps to them.
if command -v iptables-save >/dev/null 2>&1; then
  for t in filter nat mangle; do
    if iptables-save -t "$t" 2>/dev/null | grep -qE 'DIRECTOR-BOOT|KUBE-'; then
      iptables-save -t "$t" | grep -vE 'DIRECTOR-BOOT|KUBE-' | iptables-restore -T "$t" && echo "cleaned iptables $t"
    fi
  done
fi
# nftables tables of the NetworkPolicy add-on: it deletes them on a clean stop, but reset killed it.
if command -v nft >/dev/null 2>&1; then
  nft list tables 2>/dev/null | while read -r _ fam name; do
    case "$name" in kube-network-policies*) nft delete table "$fam" "$name" && echo "deleted nft table $fam $name" ;; esac
  done
fi
exit 0
