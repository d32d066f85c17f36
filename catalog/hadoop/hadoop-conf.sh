# Sourced by every start script and hook: writes the cluster's *-site.xml into
# $HADOOP_CONF_DIR from the membership rendered for {{ instance }}, over the image's own
# etc/hadoop (log4j.properties, capacity-scheduler.xml; images/hadoop/README.md).
export HADOOP_HOME=${HADOOP_HOME:-/opt/hadoop}
export PATH="$HADOOP_HOME/bin:$PATH"
# Commands (hdfs dfs, dfsadmin, yarn jar) run next to a daemon in its pod: small heaps.
export HADOOP_CLIENT_OPTS=${HADOOP_CLIENT_OPTS:--Xmx256m}
image_conf=${HADOOP_IMAGE_CONF_DIR:-$HADOOP_HOME/etc/hadoop}
export HADOOP_CONF_DIR=/tmp/hadoop-conf
mkdir -p "$HADOOP_CONF_DIR"
cp "$image_conf"/* "$HADOOP_CONF_DIR"/
# The DataNodes being decommissioned (the NameNode's delnodes hook writes it; read by the
# NameNode only). Kept across re-sourcing; a restarted NameNode starts with none.
[ -f "$HADOOP_CONF_DIR/dfs.exclude" ] || : > "$HADOOP_CONF_DIR/dfs.exclude"
namenode={{ roles.namenode.fqdns[0] }}
resourcemanager={{ roles.resourcemanager.fqdns[0] }}
{%- set datanodes = roles.datanode.members %}
{%- if datanodes < 3 %}{% set replication = datanodes %}{% else %}{% set replication = 3 %}{% endif %}
{%- if replication < 1 %}{% set replication = 1 %}{% endif %}
{%- if roles.nodemanager.memory_mib %}{% set nm_mb = roles.nodemanager.memory_mib - 768 %}{% else %}{% set nm_mb = 2048 %}{% endif %}
{%- if nm_mb < 1024 %}{% set nm_mb = 1024 %}{% endif %}

# A NodeManager's volume is its own: YARN's default 90 % disk limit would mark it unhealthy
# on a shared node disk that is merely busy (local-path volumes share the node's disk).
# YARN hands containers the NodeManager pod's memory less 768 MiB for the NodeManager's own
# JVM ({{ nm_mb }} MiB here), at least 1 GiB.
# Every JVM of a MapReduce job (AM, maps, reduces) runs in a NodeManager's container with the
# image's java and jars; JDK 17 needs the same opens as the daemons (the image's launcher).
app_classpath="$HADOOP_CONF_DIR,$HADOOP_HOME/share/hadoop/common/lib/*"
jdk17_opens="--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED"
mr_env="HADOOP_MAPRED_HOME=$HADOOP_HOME,HADOOP_COMMON_HOME=$HADOOP_HOME,HADOOP_HDFS_HOME=$HADOOP_HOME,HADOOP_YARN_HOME=$HADOOP_HOME"

property() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }
site() {  # site FILE NAME VALUE [NAME VALUE]...
  local file=$1; shift
  { echo '<?xml version="1.0"?>'; echo '<configuration>'
    while [ $# -ge 2 ]; do property "$1" "$2"; shift 2; done
    echo '</configuration>'; } > "$HADOOP_CONF_DIR/$file.tmp"
  mv -f "$HADOOP_CONF_DIR/$file.tmp" "$HADOOP_CONF_DIR/$file"
}

site core-site.xml \
  fs.defaultFS "hdfs://$namenode:{{ roles.namenode.ports.rpc }}" \
  hadoop.tmp.dir /tmp/hadoop
site hdfs-site.xml \
  dfs.replication {{ replication }} \
  dfs.namenode.name.dir /var/lib/hadoop/name \
  dfs.datanode.data.dir /var/lib/hadoop/data \
  dfs.namenode.rpc-bind-host 0.0.0.0 \
  dfs.namenode.servicerpc-bind-host 0.0.0.0 \
  dfs.namenode.http-address "0.0.0.0:{{ roles.namenode.ports.ui }}" \
  dfs.datanode.address "0.0.0.0:{{ roles.datanode.ports.data }}" \
  dfs.datanode.http.address "0.0.0.0:{{ roles.datanode.ports.ui }}" \
  dfs.datanode.ipc.address "0.0.0.0:{{ roles.datanode.ports.ipc }}" \
  dfs.datanode.hostname "${DB_FQDN:-$(hostname -f)}" \
  dfs.namenode.datanode.registration.ip-hostname-check false \
  dfs.hosts.exclude "$HADOOP_CONF_DIR/dfs.exclude" \
  dfs.namenode.decommission.interval 5s \
  dfs.namenode.safemode.extension 5000 \
  dfs.permissions.superusergroup root
site yarn-site.xml \
  yarn.resourcemanager.hostname "$resourcemanager" \
  yarn.resourcemanager.bind-host 0.0.0.0 \
  yarn.nodemanager.bind-host 0.0.0.0 \
  yarn.nodemanager.address "0.0.0.0:{{ roles.nodemanager.ports.ipc }}" \
  yarn.nodemanager.localizer.address "0.0.0.0:{{ roles.nodemanager.ports.localizer }}" \
  yarn.nodemanager.webapp.address "0.0.0.0:{{ roles.nodemanager.ports.ui }}" \
  yarn.nodemanager.hostname "${DB_FQDN:-$(hostname -f)}" \
  yarn.nodemanager.local-dirs /var/lib/hadoop/yarn/local \
  yarn.nodemanager.log-dirs /var/lib/hadoop/yarn/logs \
  yarn.nodemanager.aux-services mapreduce_shuffle \
  yarn.nodemanager.aux-services.mapreduce_shuffle.class org.apache.hadoop.mapred.ShuffleHandler \
  yarn.nodemanager.resource.memory-mb {{ nm_mb }} \
{%- if roles.nodemanager.cpu %}
  yarn.nodemanager.resource.cpu-vcores {{ roles.nodemanager.cpu }} \
{%- endif %}
  yarn.scheduler.minimum-allocation-mb 128 \
  yarn.scheduler.maximum-allocation-mb {{ nm_mb }} \
  yarn.nodemanager.vmem-check-enabled false \
  yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage 99.0 \
  yarn.application.classpath "$app_classpath"
site mapred-site.xml \
  mapreduce.framework.name yarn \
  mapreduce.application.classpath "$app_classpath" \
  yarn.app.mapreduce.am.env "$mr_env" \
  mapreduce.map.env "$mr_env" \
  mapreduce.reduce.env "$mr_env" \
  yarn.app.mapreduce.am.resource.mb 512 \
  mapreduce.map.memory.mb 512 \
  mapreduce.reduce.memory.mb 512 \
  yarn.app.mapreduce.am.admin-command-opts "-Djava.net.preferIPv4Stack=true $jdk17_opens" \
  mapreduce.admin.map.child.java.opts "-Djava.net.preferIPv4Stack=true $jdk17_opens" \
  mapreduce.admin.reduce.child.java.opts "-Djava.net.preferIPv4Stack=true $jdk17_opens"

wait_for() {  # wait_for HOST PORT WHAT
  for i in $(seq 1 180); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    echo "waiting for the $3 at $1:$2 ($i)"
    sleep 2
  done
  echo "the $3 never answered" >&2
  return 1
}
