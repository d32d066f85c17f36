#!/bin/bash
# HDFS NameNode of {{ instance }}: formats its (persistent) name directory once, then runs.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
# Half the pod's memory for the heap (HADOOP_HEAPSIZE_MAX in the role's env overrides).
export HADOOP_HEAPSIZE_MAX=${HADOOP_HEAPSIZE_MAX:-$(( {% if roles.namenode.memory_mib %}{{ roles.namenode.memory_mib }}{% else %}1024{% endif %} / 2 ))m}
if [ ! -f /var/lib/hadoop/name/current/VERSION ]; then
  hdfs namenode -format -nonInteractive -clusterId {{ instance | sh }}
fi
exec hdfs namenode
