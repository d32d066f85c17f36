#!/bin/bash
# YARN NodeManager of {{ instance }}: registers with the ResourceManager at
# {{ roles.resourcemanager.fqdns[0] }}; runs the MapReduce shuffle (port 13562).
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
# The NodeManager's own heap; the rest of the pod's memory goes to YARN containers.
export HADOOP_HEAPSIZE_MAX=${HADOOP_HEAPSIZE_MAX:-320m}
mkdir -p /var/lib/hadoop/yarn/local /var/lib/hadoop/yarn/logs
wait_for "$resourcemanager" {{ roles.resourcemanager.ports.tracker }} ResourceManager
exec yarn nodemanager
