# Sourced by every start script and hook: writes the cluster's *-site.xml into
# $HADOOP_CONF_DIR from the membership rendered for {{ instance }}.
export HADOOP_HOME=${HADOOP_HOME:-/opt/hadoop}
export PATH="$HADOOP_HOME/bin:$HADOOP_HOME/sbin:$PATH"
export HADOOP_CONF_DIR=/tmp/hadoop-conf
mkdir -p "$HADOOP_CONF_DIR"
if [ -f "$HADOOP_HOME/etc/hadoop/log4j.properties" ]; then
  cp "$HADOOP_HOME/etc/hadoop/log4j.properties" "$HADOOP_CONF_DIR/"
fi
namenode={{ roles.namenode.fqdns[0] }}
resourcemanager={{ roles.resourcemanager.fqdns[0] }}
{%- set datanodes = roles.datanode.members %}
{%- if datanodes < 3 %}{% set replication = datanodes %}{% else %}{% set replication = 3 %}{% endif %}
{%- if replication < 1 %}{% set replication = 1 %}{% endif %}

property() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }
site() {  # site FILE NAME VALUE [NAME VALUE]...
  local file=$1; shift
  { echo '<?xml version="1.0"?>'; echo '<configuration>'
    while [ $# -ge 2 ]; do property "$1" "$2"; shift 2; done
    echo '</configuration>'; } > "$HADOOP_CONF_DIR/$file"
}

site core-site.xml \
  fs.defaultFS "hdfs://$namenode:{{ roles.namenode.ports.rpc }}"
site hdfs-site.xml \
  dfs.replication {{ replication }} \
  dfs.namenode.name.dir /var/lib/hadoop/name \
  dfs.datanode.data.dir /var/lib/hadoop/data \
  dfs.namenode.rpc-bind-host 0.0.0.0 \
  dfs.namenode.http-address "0.0.0.0:{{ roles.namenode.ports.ui }}" \
  dfs.datanode.address "0.0.0.0:{{ roles.datanode.ports.data }}" \
  dfs.datanode.http.address "0.0.0.0:{{ roles.datanode.ports.ui }}" \
  dfs.datanode.ipc.address "0.0.0.0:{{ roles.datanode.ports.ipc }}" \
  dfs.namenode.datanode.registration.ip-hostname-check false
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
{%- if roles.nodemanager.memory_mib %}
  yarn.nodemanager.resource.memory-mb {{ roles.nodemanager.memory_mib }} \
{%- endif %}
{%- if roles.nodemanager.cpu %}
  yarn.nodemanager.resource.cpu-vcores {{ roles.nodemanager.cpu }} \
{%- endif %}
  yarn.nodemanager.vmem-check-enabled false
site mapred-site.xml \
  mapreduce.framework.name yarn \
  yarn.app.mapreduce.am.env "HADOOP_MAPRED_HOME=$HADOOP_HOME" \
  mapreduce.map.env "HADOOP_MAPRED_HOME=$HADOOP_HOME" \
  mapreduce.reduce.env "HADOOP_MAPRED_HOME=$HADOOP_HOME"

wait_for() {  # wait_for HOST PORT WHAT
  for i in $(seq 1 180); do
    if (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; then return 0; fi
    echo "waiting for the $3 at $1:$2 ($i)"
    sleep 2
  done
  echo "the $3 never answered" >&2
  return 1
}
