#!/bin/bash
# delnodes, in the leaving member (DB_SELF=1): stream its token ranges to the rest of the ring
# (nodetool decommission; Cassandra refuses when too few nodes would stay for a keyspace's
# replication factor, and then nothing is removed), then flush and stop (drain).
# In the members that stay, afterwards: drop data they no longer own (nodetool cleanup).
# Idempotent: a retried scale finds the leaving member already decommissioned.
set -euo pipefail
if [ "${DB_SELF:-0}" = 1 ]; then
  mode=$(nodetool netstats | sed -n 's/^Mode: *//p')
  if [ "$mode" = DECOMMISSIONED ]; then
    echo "already decommissioned"
  else
    echo "leaving the ring (mode $mode): nodetool decommission"
    nodetool decommission
  fi
  nodetool drain || true
  # The volume is kept (apps scale --delete-data drops it): should this member come back,
  # node.sh starts it afresh instead of as the decommissioned node, which Cassandra refuses.
  touch /var/lib/cassandra/.decommissioned
else
  echo "members leaving: ${DB_NODES:-}; running nodetool cleanup"
  nodetool cleanup
fi
