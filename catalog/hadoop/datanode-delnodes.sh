#!/bin/bash
# delnodes for DataNodes. In the leaving member (DB_SELF=1): refuse (exit 1, which stops the
# scale-down) while HDFS has under-replicated or missing blocks, since losing this node's
# copies could then lose data; the NameNode re-replicates once it is gone. Others: nothing.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
[ "${DB_SELF:-0}" = 1 ] || exit 0
report=$(hdfs dfsadmin -report)
under=$(printf '%s\n' "$report" | sed -n 's/^Under replicated blocks: *\([0-9]*\).*/\1/p' | head -n1)
missing=$(printf '%s\n' "$report" | sed -n 's/^Missing blocks: *\([0-9]*\).*/\1/p' | head -n1)
if [ "${under:-0}" != 0 ] || [ "${missing:-0}" != 0 ]; then
  echo "HDFS has ${under:-?} under-replicated and ${missing:-?} missing blocks: not removing $POD_NAME now" >&2
  exit 1
fi
echo "HDFS fully replicated: $POD_NAME may leave"
