#!/bin/bash
# HDFS NameNode of {{ instance }}: formats its (persistent) name directory once, then runs.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
if [ ! -f /var/lib/hadoop/name/current/VERSION ]; then
  hdfs namenode -format -nonInteractive -clusterId {{ instance | sh }}
fi
exec hdfs namenode
