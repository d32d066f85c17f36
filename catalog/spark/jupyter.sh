#!/bin/bash
# Jupyter notebook of {{ instance }}; every SparkSession started in it is a client-mode driver
# on the Spark master, reachable by the executors at this pod's IP.
set -euo pipefail
export SPARK_CONF_DIR=/tmp/spark-conf
mkdir -p "$SPARK_CONF_DIR"
cat > "$SPARK_CONF_DIR/spark-defaults.conf" <<CONF
spark.master            $SPARK_MASTER_URL
spark.driver.host       $POD_IP
spark.driver.bindAddress 0.0.0.0
spark.executor.memory   512m
CONF
# The example notebook (Spark on Kubernetes from this kernel), put in place once: /notebooks is
# the member's volume, so a user's edits to it survive restarts and are never overwritten.
mkdir -p /notebooks/examples
if [ ! -e /notebooks/examples/pi-on-kubernetes.ipynb ]; then
  cp {{ mount }}/pi-on-kubernetes.ipynb /notebooks/examples/
fi
cd /notebooks
# JUPYTER_TOKEN (from the Secret {{ instance }}-jupyter-token) is the login token.
exec jupyter notebook --ip=0.0.0.0 --port={{ role.ports.notebook }} --no-browser --allow-root \
  --ServerApp.root_dir=/notebooks
