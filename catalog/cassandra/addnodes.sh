#!/bin/bash
# addnodes: members joined (DB_NODES); this member no longer owns some of its token ranges,
# so drop that data (what the Cassandra docs say to do after adding nodes).
set -euo pipefail
echo "members added: ${DB_NODES:-}; running nodetool cleanup"
nodetool cleanup
