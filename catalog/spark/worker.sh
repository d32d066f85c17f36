#!/bin/bash
# Spark worker of {{ instance }}: registers with the master through its cluster DNS name.
set -euo pipefail
{%- set mem = role.memory_mib | default(value=1536) %}
{%- if mem > 1024 %}{% set executor_mem = mem - 512 %}{% else %}{% set executor_mem = 512 %}{% endif %}
export SPARK_WORKER_CORES={{ role.cpu | default(value=1) }}
export SPARK_WORKER_MEMORY={{ executor_mem }}m
export SPARK_WORKER_WEBUI_PORT={{ role.ports.ui }}
export SPARK_WORKER_DIR=/var/lib/spark/work
# Executors and the master reach this worker by its pod IP (the FQDN is advertised in the UI).
export SPARK_LOCAL_IP="$POD_IP"
export SPARK_PUBLIC_DNS="$DB_FQDN"
unset SPARK_WORKER_PORT
master={{ roles.master.fqdns[0] }}
# The master's DNS name exists as soon as its pod does; wait for it to answer.
for i in $(seq 1 120); do
  if (exec 3<>"/dev/tcp/$master/{{ roles.master.ports.spark }}") 2>/dev/null; then break; fi
  echo "waiting for the Spark master at $master:{{ roles.master.ports.spark }} ($i)"
  sleep 2
done
exec spark-class org.apache.spark.deploy.worker.Worker \
  "spark://$master:{{ roles.master.ports.spark }}" --webui-port {{ role.ports.ui }}
