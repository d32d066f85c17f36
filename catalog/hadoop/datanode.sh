#!/bin/bash
# HDFS DataNode of {{ instance }}: registers with the NameNode at {{ roles.namenode.fqdns[0] }}.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
export HADOOP_HEAPSIZE_MAX=${HADOOP_HEAPSIZE_MAX:-$(( {% if roles.datanode.memory_mib %}{{ roles.datanode.memory_mib }}{% else %}1024{% endif %} / 2 ))m}
wait_for "$namenode" {{ roles.namenode.ports.rpc }} NameNode
exec hdfs datanode
