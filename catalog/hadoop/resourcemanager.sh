#!/bin/bash
# YARN ResourceManager of {{ instance }}.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
export HADOOP_HEAPSIZE_MAX=${HADOOP_HEAPSIZE_MAX:-$(( {% if roles.resourcemanager.memory_mib %}{{ roles.resourcemanager.memory_mib }}{% else %}1024{% endif %} / 2 ))m}
exec yarn resourcemanager
