#!/bin/bash
# `build-app-images.sh --verify hadoop`, second part: the catalog's DataNode decommissioning
# hooks (catalog/hadoop/namenode-delnodes.sh, -addnodes.sh) against a real HDFS from the
# image: a NameNode and three DataNodes, each DataNode in its own network namespace behind a
# bridge (the NameNode matches its exclude file by address, as it does for pods), a file at
# replication 2 and one at 3; then the hook decommissions dn2 (lowering the file at 3 to the
# 2 DataNodes that stay), dn2 stops, fsck must say HEALTHY and the file read back identical;
# the addnodes hook takes dn2 off the exclude file. Runs inside nspawn --private-network.
# Usage: verify-hadoop-decommission.sh CATALOG_DIR
set -euo pipefail
catalog=$1
mkdir -p /run/netns
ip link set lo up
ip link add br0 type bridge
ip addr add 10.77.0.1/24 dev br0
ip link set br0 up
for i in 0 1 2; do
  ip netns add "dn$i"
  ip link add "veth$i" type veth peer name eth0 netns "dn$i"
  ip link set "veth$i" master br0 up
  ip netns exec "dn$i" ip addr add "10.77.0.1$i/24" dev eth0
  ip netns exec "dn$i" ip link set eth0 up
  ip netns exec "dn$i" ip link set lo up
done
printf '10.77.0.1 nn.test %s\n10.77.0.10 dn0.test\n10.77.0.11 dn1.test\n10.77.0.12 dn2.test\n' \
  "$(hostname)" >> /etc/hosts
export HADOOP_CONF_DIR=/tmp/conf HADOOP_HEAPSIZE_MAX=200m HOME=/tmp
mkdir -p "$HADOOP_CONF_DIR" /tmp/logs
cp "$HADOOP_HOME"/etc/hadoop/* "$HADOOP_CONF_DIR"/
: > "$HADOOP_CONF_DIR/dfs.exclude"
p() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }
site() { local f=$1; shift; { echo '<configuration>'; while (($#)); do p "$1" "$2"; shift 2; done; echo '</configuration>'; } > "$f"; }
site "$HADOOP_CONF_DIR/core-site.xml" fs.defaultFS hdfs://nn.test:8020
nn=(dfs.namenode.rpc-bind-host 0.0.0.0 dfs.replication 2 dfs.namenode.name.dir /tmp/name
  dfs.namenode.datanode.registration.ip-hostname-check false
  dfs.hosts.exclude "$HADOOP_CONF_DIR/dfs.exclude" dfs.namenode.decommission.interval 5s
  dfs.namenode.safemode.extension 1000)
site "$HADOOP_CONF_DIR/hdfs-site.xml" "${nn[@]}"
pids=()
cleanup() { local q; for q in "${pids[@]}"; do kill "$q" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
hdfs namenode -format -nonInteractive -clusterId decom > /tmp/logs/format.log 2>&1
hdfs namenode > /tmp/logs/nn.log 2>&1 & pids+=($!)
for i in 0 1 2; do
  d=/tmp/dn$i
  mkdir -p "$d/conf"
  cp "$HADOOP_CONF_DIR"/* "$d/conf/"
  site "$d/conf/hdfs-site.xml" "${nn[@]}" dfs.datanode.data.dir "$d/data" dfs.datanode.hostname "dn$i.test"
  ip netns exec "dn$i" env HADOOP_CONF_DIR="$d/conf" hdfs datanode > "/tmp/logs/dn$i.log" 2>&1 & pids+=($!)
done
live=0
for _ in $(seq 1 90); do
  live=$(hdfs dfsadmin -report -live 2>/dev/null | sed -n 's/^Live datanodes (\([0-9]*\)).*/\1/p' || true)
  [ "$live" = 3 ] && break
  sleep 2
done
[ "$live" = 3 ] || { echo "only ${live:-0} DataNodes registered" >&2; tail -n 20 /tmp/logs/nn.log >&2; exit 1; }
head -c 50000000 /dev/urandom > /tmp/a.bin
hdfs dfs -D dfs.blocksize=4194304 -put /tmp/a.bin /a.bin
hdfs dfs -D dfs.blocksize=4194304 -D dfs.replication=3 -put /tmp/a.bin /a3.bin
# The hooks as the catalog renders them, with this configuration instead of hadoop-conf.sh.
for h in delnodes addnodes; do
  sed 's|^\. .*/hadoop-conf\.sh$|export HADOOP_CONF_DIR=/tmp/conf|' "$catalog/namenode-$h.sh" > "/tmp/$h.sh"
done
DB_ROLE=datanode DB_NODES=dn2.test DB_DECOMMISSION_TIMEOUT=300 bash /tmp/delnodes.sh
kill "${pids[3]}"
hdfs fsck / | grep -E 'Missing replicas|Under-replicated|HEALTHY|CORRUPT'
hdfs fsck / | grep -q 'is HEALTHY'
for f in a a3; do
  hdfs dfs -get "/$f.bin" "/tmp/$f.back"
  cmp /tmp/a.bin "/tmp/$f.back"
done
echo "both files read back identical without dn2"
DB_ROLE=datanode DB_NODES=dn2.test bash /tmp/addnodes.sh
[ ! -s "$HADOOP_CONF_DIR/dfs.exclude" ]
echo "decommission: ok"
