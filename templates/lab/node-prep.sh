#!/bin/sh
# director-boot lab: node preparation, run once at boot before anything else.
# Only lab nodes (systemd-nspawn machines) need this; real hosts never run it.
set -u

# kubelet reads /dev/kmsg; nspawn does not create it.
[ -e /dev/kmsg ] || mknod -m 0600 /dev/kmsg c 1 11

# nspawn mounts the cgroup v1 controllers read-only and "remount,rw" fails (busy), so mount
# each controller afresh read-write. The node's cgroup namespace keeps it inside its own subtree.
for ctrl in cpu cpuacct cpuset memory devices freezer blkio pids; do
    dir=/sys/fs/cgroup/$ctrl
    [ -d "$dir" ] || continue
    # Skip a symlink such as cpu -> cpu,cpuacct: its target is handled under its own name.
    [ -L "$dir" ] && continue
    if mountpoint -q "$dir"; then
        umount "$dir" || { echo "node-prep: cannot unmount $dir" >&2; continue; }
    fi
    mount -t cgroup -o rw,nosuid,nodev,noexec,"$ctrl" cgroup "$dir" \
        || echo "node-prep: cannot mount the $ctrl controller read-write" >&2
done

# kubelet writes these global sysctls; /proc/sys is read-only in the node and the host's
# values must stay untouched, so each is shadowed by a small file holding the expected value.
mkdir -p /run/lab-sysctl
shadow() {
    printf '%s\n' "$2" > "/run/lab-sysctl/$(echo "$1" | tr / _)"
    mount --bind "/run/lab-sysctl/$(echo "$1" | tr / _)" "/proc/sys/$1" \
        || echo "node-prep: cannot shadow /proc/sys/$1" >&2
}
shadow vm/overcommit_memory 1
shadow kernel/panic 10
shadow kernel/panic_on_oops 1
exit 0
