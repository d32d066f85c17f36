#!/bin/bash
# addnodes, run in the NameNode after members joined. For DataNodes (DB_ROLE=datanode): a
# member that was decommissioned earlier and comes back under the same name is taken off the
# exclude file, so HDFS puts it back in service. Other roles: nothing to do.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
[ "${DB_ROLE:-}" = datanode ] || exit 0
exclude="$HADOOP_CONF_DIR/dfs.exclude"
IFS=, read -r -a added <<< "${DB_NODES:-}"
changed=0
for n in "${added[@]}"; do
  if grep -qxF "$n" "$exclude"; then
    grep -vxF "$n" "$exclude" > "$exclude.tmp" || true
    mv -f "$exclude.tmp" "$exclude"
    changed=1
    echo "$n back in service"
  fi
done
[ "$changed" = 0 ] || hdfs dfsadmin -refreshNodes
