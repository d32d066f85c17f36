#!/bin/bash
# addnodes: members were added (DB_NODES); this member no longer owns some of its data, so
# drop it (what the Cassandra docs say to do after adding nodes).
set -euo pipefail
. {{ mount }}/cassandra-env.sh
echo "members added: ${DB_NODES:-}; running nodetool cleanup"
nodetool cleanup
