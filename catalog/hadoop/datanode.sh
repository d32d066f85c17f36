#!/bin/bash
# HDFS DataNode of {{ instance }}: registers with the NameNode at {{ roles.namenode.fqdns[0] }}.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
wait_for "$namenode" {{ roles.namenode.ports.rpc }} NameNode
exec hdfs datanode
