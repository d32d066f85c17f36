#!/bin/bash
# `build-app-images.sh --verify hadoop`: run inside the unpacked Hadoop image (nspawn with
# its own network namespace): a one-node HDFS + YARN from the image's own commands, then
# put/get, the web UIs and MapReduce's pi on YARN. Small heaps; everything on loopback.
set -euo pipefail
ip link set lo up 2>/dev/null || true
# The machine's own name must resolve (Hadoop looks itself up); a pod's /etc/hosts has it.
grep -qw "$(hostname)" /etc/hosts 2>/dev/null || echo "127.0.0.1 $(hostname)" >> /etc/hosts
export HADOOP_CONF_DIR=/tmp/conf HADOOP_HEAPSIZE_MAX=256m
mkdir -p "$HADOOP_CONF_DIR" /tmp/data /tmp/logs
cp "$HADOOP_HOME"/etc/hadoop/* "$HADOOP_CONF_DIR"/
p() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }
site() { local f=$1; shift; { echo '<configuration>'; while (($#)); do p "$1" "$2"; shift 2; done; echo '</configuration>'; } >"$HADOOP_CONF_DIR/$f"; }
opens="--add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED"
site core-site.xml fs.defaultFS hdfs://localhost:8020
site hdfs-site.xml dfs.replication 1 dfs.namenode.name.dir /tmp/data/name \
  dfs.datanode.data.dir /tmp/data/dn dfs.namenode.datanode.registration.ip-hostname-check false \
  dfs.datanode.hostname localhost
cp_app="$HADOOP_CONF_DIR,$HADOOP_HOME/share/hadoop/common/lib/*"
site yarn-site.xml yarn.resourcemanager.hostname localhost yarn.nodemanager.hostname localhost \
  yarn.nodemanager.aux-services mapreduce_shuffle yarn.nodemanager.resource.memory-mb 2048 \
  yarn.scheduler.minimum-allocation-mb 128 yarn.nodemanager.vmem-check-enabled false \
  yarn.nodemanager.local-dirs /tmp/data/nm yarn.nodemanager.log-dirs /tmp/logs/nm \
  yarn.application.classpath "$cp_app"
site mapred-site.xml mapreduce.framework.name yarn mapreduce.application.classpath "$cp_app" \
  yarn.app.mapreduce.am.resource.mb 512 mapreduce.map.memory.mb 384 \
  mapreduce.reduce.memory.mb 384 \
  yarn.app.mapreduce.am.admin-command-opts "$opens" \
  mapreduce.admin.map.child.java.opts "-Djava.net.preferIPv4Stack=true $opens" \
  mapreduce.admin.reduce.child.java.opts "-Djava.net.preferIPv4Stack=true $opens"
pids=()
cleanup() { local p; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_port() { local i; for i in $(seq 1 90); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 1; done; echo "port $1 never opened ($2)" >&2; tail -n 30 "/tmp/logs/$2.log" >&2; return 1; }
hdfs namenode -format -nonInteractive -clusterId verify >/tmp/logs/format.log 2>&1
hdfs namenode >/tmp/logs/nn.log 2>&1 & pids+=($!)
wait_port 8020 nn
hdfs datanode >/tmp/logs/dn.log 2>&1 & pids+=($!)
yarn resourcemanager >/tmp/logs/rm.log 2>&1 & pids+=($!)
wait_port 8031 rm
yarn nodemanager >/tmp/logs/nm.log 2>&1 & pids+=($!)
wait_port 9866 dn
wait_port 13562 nm
hdfs dfsadmin -safemode wait
curl -sf http://127.0.0.1:9870/dfshealth.html | grep -q 'Namenode information' || { echo "no NameNode UI" >&2; exit 1; }
echo "NameNode UI: ok"
for i in $(seq 1 60); do
  [ "$(curl -sf http://127.0.0.1:8088/ws/v1/cluster/metrics | grep -o '"activeNodes":[0-9]*')" = '"activeNodes":1' ] && break
  sleep 1
done
curl -sf http://127.0.0.1:8088/ws/v1/cluster/info | grep -q '"state":"STARTED"' || { echo "no RM REST" >&2; exit 1; }
echo "ResourceManager REST: ok"
head -c 33554432 /dev/urandom >/tmp/in.bin
hdfs dfs -put /tmp/in.bin /in.bin
hdfs dfs -get /in.bin /tmp/out.bin
cmp /tmp/in.bin /tmp/out.bin && echo "put/get 32 MiB: identical"
ex=$(ls "$HADOOP_HOME"/share/hadoop/common/lib/hadoop-mapreduce-examples-*.jar)
if ! yarn jar "$ex" pi 2 1000 >/tmp/logs/pi.log 2>&1; then
  tail -n 60 /tmp/logs/pi.log >&2
  for f in /tmp/logs/nm/*/*/*; do echo "== $f" >&2; tail -n 30 "$f" >&2; done
  exit 1
fi
grep 'Estimated value of Pi' /tmp/logs/pi.log
echo "single node: ok"
