#!/bin/bash
# Compute pi on the Spark cluster from this member (client mode): prints "Pi is roughly 3.14...".
# Usage: bash /etc/director-boot/run-pi.sh [PARTITIONS]
set -euo pipefail
exec spark-submit \
  --master "$SPARK_MASTER_URL" \
  --conf spark.driver.host="$POD_IP" \
  --conf spark.driver.bindAddress=0.0.0.0 \
  --conf spark.executor.memory=512m \
  {{ mount }}/pi.py "${1:-10}"
