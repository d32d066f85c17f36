#!/bin/bash
# delnodes, run in the NameNode when members leave. For DataNodes (DB_ROLE=datanode): refuse
# while HDFS has missing blocks, then decommission the leaving DataNodes (DB_NODES) through
# the NameNode's exclude file and wait until HDFS reports them Decommissioned, i.e. every
# block they held has its full replication on the DataNodes that stay. A failure (exit 1)
# stops the scale-down before any pod goes. Idempotent: a retried scale-down finds the nodes
# already excluded or decommissioned. Other roles: nothing to do.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
[ "${DB_ROLE:-}" = datanode ] || exit 0
[ -n "${DB_NODES:-}" ] || exit 0
IFS=, read -r -a leaving <<< "$DB_NODES"
nleaving=$(printf '%s\n' "${leaving[@]}" | grep -c .)
report() { hdfs dfsadmin -report "$@" 2>/dev/null; }
# field NAME < REPORT: the number after "NAME:" (lines may be indented).
field() { awk -v k="$1:" '{ sub(/^[ \t]+/, "") } index($0, k) == 1 { v = substr($0, length(k) + 1); sub(/^ +/, "", v); sub(/[^0-9].*$/, "", v); print v; exit }'; }

now=$(report)
missing=$(field 'Missing blocks' <<< "$now")
if [ "${missing:-0}" != 0 ]; then
  echo "HDFS has $missing missing blocks: not removing DataNodes now (hdfs fsck / -list-corruptfileblocks)" >&2
  exit 1
fi

# Live DataNodes that stay: a file whose replication is above that count could never be
# fully replicated again (and decommissioning would wait for it forever), so its
# replication is lowered to what HDFS can hold, and said so.
now=$(report -live)
live=$(sed -n 's/^Live datanodes (\([0-9]*\)).*/\1/p' <<< "$now")
stay=$(( ${live:-0} - $nleaving ))
if [ "$stay" -lt 1 ]; then
  echo "HDFS has ${live:-0} live DataNodes: removing $nleaving would leave none" >&2
  exit 1
fi
hdfs dfs -ls -R / 2>/dev/null | awk -v n="$stay" '$1 !~ /^d/ && $2 ~ /^[0-9]+$/ && $2 > n {print $NF}' |
  while IFS= read -r f; do
    echo "lowering the replication of $f to $stay (the DataNodes that stay)"
    hdfs dfs -setrep "$stay" "$f" >/dev/null
  done

exclude="$HADOOP_CONF_DIR/dfs.exclude"
for n in "${leaving[@]}"; do
  grep -qxF "$n" "$exclude" || echo "$n" >> "$exclude"
done
hdfs dfsadmin -refreshNodes
echo "decommissioning ${leaving[*]}"

# dfsadmin -report prints per node "Hostname: <fqdn>" then "Decommission Status : <state>".
state_of() {  # state_of FQDN < REPORT
  awk -v h="$1" '/^Hostname: /{cur=$2} /^Decommission Status : /{ if (cur==h) { sub(/^Decommission Status : /,""); print; exit } }'
}
deadline=$(( $(date +%s) + ${DB_DECOMMISSION_TIMEOUT:-1800} ))
while :; do
  now=$(report)
  pending=""
  for n in "${leaving[@]}"; do
    s=$(state_of "$n" <<< "$now")
    [ "$s" = Decommissioned ] || pending="$pending $n (${s:-not registered})"
  done
  [ -z "$pending" ] && break
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "decommissioning did not finish:$pending" >&2
    exit 1
  fi
  echo "waiting:$pending; under-replicated blocks: $(field 'Under replicated blocks' <<< "$now")"
  sleep 5
done
now=$(report)
under=$(field 'Under replicated blocks' <<< "$now")
missing=$(field 'Missing blocks' <<< "$now")
echo "decommissioned ${leaving[*]}; under-replicated blocks: ${under:-?}, missing: ${missing:-?}"
