#!/bin/bash
# delnodes: in the leaving member (DB_SELF=1), stream its token ranges to the rest of the ring
# and stop serving (nodetool decommission), then flush and stop accepting writes (drain).
# In the members that stay, nothing: the ring rebalances through the leaving node itself.
set -euo pipefail
. {{ mount }}/cassandra-env.sh
if [ "${DB_SELF:-0}" = 1 ]; then
  nodetool decommission
  nodetool drain || true
fi
