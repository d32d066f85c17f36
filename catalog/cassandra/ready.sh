#!/bin/bash
# Readiness of a Cassandra member: CQL answers on this pod, and the ring shows this node Up
# and Normal (`UN`: not joining, leaving or moving). The cheap check first: nodetool is a JVM.
set -euo pipefail
(exec 3<>/dev/tcp/127.0.0.1/{{ roles.seed.ports.cql }}) 2>/dev/null || {
  echo "CQL is not up yet"
  exit 1
}
nodetool status | grep -qE "^UN +${POD_IP//./\\.} " || {
  echo "not UN in the ring yet"
  exit 1
}
