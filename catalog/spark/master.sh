#!/bin/bash
# Spark master of {{ instance }}. Binds every interface: the pod's own FQDN is in /etc/hosts,
# but binding 0.0.0.0 also serves clients that reach it through the member Service.
set -euo pipefail
export SPARK_MASTER_HOST=0.0.0.0
# Spark reads SPARK_MASTER_PORT/SPARK_MASTER_WEBUI_PORT; pin them so nothing injected wins.
export SPARK_MASTER_PORT={{ role.ports.spark }}
export SPARK_MASTER_WEBUI_PORT={{ role.ports.ui }}
export SPARK_PUBLIC_DNS="$DB_FQDN"
exec spark-class org.apache.spark.deploy.master.Master \
  --host 0.0.0.0 --port {{ role.ports.spark }} --webui-port {{ role.ports.ui }}
