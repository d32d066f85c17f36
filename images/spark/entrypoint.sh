#!/bin/bash
# ENTRYPOINT of localhost/director-boot/spark (images/spark/README.md). Spark's Kubernetes
# scheduler starts driver and executor pods from this image giving only arguments; the first
# one says what the pod is:
#   driver ARGS...   spark-submit --deploy-mode client ARGS..., bound to $SPARK_DRIVER_BIND_ADDRESS
#                    (the pod's IP; Spark sets it, and --properties-file, --class, the app)
#   executor         an executor JVM (KubernetesExecutorBackend) from the SPARK_EXECUTOR_*,
#                    SPARK_DRIVER_URL, SPARK_APPLICATION_ID, ... environment Spark sets, with
#                    SPARK_JAVA_OPT_0, _1, ... as JVM options in that order
#   anything else    run as given (no arguments: bash)
# Everything runs under tini (reaps the JVM's and Python's children). The catalog's own pods
# (master, worker, jupyter) give a `command`, which replaces this entrypoint.
set -euo pipefail

# Pods that run as a uid the image does not know (runAsUser) still need a passwd entry: the
# JVM's user lookup (Hadoop's UserGroupInformation) fails without one.
uid=$(id -u)
if ! getent passwd "$uid" >/dev/null && [ -w /etc/passwd ]; then
  printf '%s:x:%s:%s:%s:%s:/bin/false\n' "$uid" "$uid" "$(id -g)" \
    "${SPARK_USER_NAME:-anonymous uid}" "$SPARK_HOME" >>/etc/passwd
fi

# Spark's own conf dir (Spark mounts spark.properties at $SPARK_CONF_DIR in its pods), the
# Hadoop configuration if any, Spark's jars, then what the user adds.
classpath=${SPARK_CONF_DIR:-$SPARK_HOME/conf}
if [ -n "${HADOOP_CONF_DIR:-}" ]; then classpath+=":$HADOOP_CONF_DIR"; fi
classpath+=":$SPARK_HOME/jars/*"
if [ -n "${SPARK_EXTRA_CLASSPATH:-}" ]; then classpath+=":$SPARK_EXTRA_CLASSPATH"; fi
if [ -n "${SPARK_DIST_CLASSPATH:-}" ]; then classpath+=":$SPARK_DIST_CLASSPATH"; fi

case "${1:-}" in
  driver)
    shift
    set -- "$SPARK_HOME/bin/spark-submit" \
      --conf "spark.driver.bindAddress=$SPARK_DRIVER_BIND_ADDRESS" \
      --deploy-mode client "$@"
    ;;
  executor)
    shift
    java_opts=()
    while IFS= read -r name; do
      java_opts+=("${!name}")
    done < <(compgen -e | grep '^SPARK_JAVA_OPT_[0-9]*$' | sort -t_ -k4 -n)
    set -- "$JAVA_HOME/bin/java" "${java_opts[@]}" \
      "-Xms$SPARK_EXECUTOR_MEMORY" "-Xmx$SPARK_EXECUTOR_MEMORY" \
      -cp "$classpath" \
      org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
      --driver-url "$SPARK_DRIVER_URL" \
      --executor-id "$SPARK_EXECUTOR_ID" \
      --cores "$SPARK_EXECUTOR_CORES" \
      --app-id "$SPARK_APPLICATION_ID" \
      --hostname "$SPARK_EXECUTOR_POD_IP" \
      --resourceProfileId "$SPARK_RESOURCE_PROFILE_ID" \
      --podName "$SPARK_EXECUTOR_POD_NAME"
    ;;
  "")
    set -- bash
    ;;
esac
exec /usr/bin/tini -s -- "$@"
