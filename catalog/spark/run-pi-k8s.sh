#!/bin/bash
# Compute pi with Spark on Kubernetes from this member: the driver runs here (client mode, as a
# notebook's SparkSession does), the executors are pods that Spark's Kubernetes scheduler
# starts from the image with this member's ServiceAccount ({{ instance }}-spark) and removes
# at the end. Prints "Pi is roughly 3.14...".
# Usage: bash {{ mount }}/run-pi-k8s.sh [PARTITIONS]
set -euo pipefail
exec spark-submit \
  --master "k8s://https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT" \
  --deploy-mode client \
  --driver-memory 512m \
  --name pi-from-jupyter \
  --conf spark.kubernetes.namespace={{ namespace }} \
  --conf spark.kubernetes.container.image={{ app.image }} \
  --conf spark.kubernetes.driver.pod.name="$POD_NAME" \
  --conf spark.driver.host="$POD_IP" \
  --conf spark.driver.bindAddress=0.0.0.0 \
  --conf spark.executor.instances=2 \
  --conf spark.executor.memory=512m \
  --conf spark.kubernetes.executor.request.cores=100m \
  {{ mount }}/pi.py "${1:-10}"
