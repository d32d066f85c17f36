#!/bin/sh
# director-boot lab (runs on the host): move this process into the node's own cgroups, then
# become systemd-nspawn in a new session so the node outlives the CLI's process group.
# Usage: launch-node.sh CGROUP_DIR... -- NSPAWN_ARGS...
set -eu
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    echo $$ > "$1/cgroup.procs"
    shift
done
shift
exec setsid systemd-nspawn "$@"
