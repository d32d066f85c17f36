#!/bin/bash
# Cassandra {{ role.id }} of {{ instance }}: the ring's cassandra.yaml (seeds
# {{ roles.seed.fqdns | join(sep=", ") }}) with this pod's addresses, and a heap sized from
# the member's memory.
set -euo pipefail
conf=/tmp/cassandra-conf
rm -rf "$conf" && mkdir -p "$conf"
cp "$CASSANDRA_HOME/conf/logback.xml" "$conf/"
sed "s/@POD_IP@/$POD_IP/g" {{ mount }}/cassandra.yaml >"$conf/cassandra.yaml"
sed -e "s/@CASSANDRA_DC@/${CASSANDRA_DC:-dc1}/" -e "s/@CASSANDRA_RACK@/${CASSANDRA_RACK:-rack1}/" \
  {{ mount }}/cassandra-rackdc.properties >"$conf/cassandra-rackdc.properties"
export CASSANDRA_CONF=$conf
# The member's volume; a member that restarts finds its data (and host ID) here. A member
# decommissioned by a scale-down (delnodes.sh) and added again starts as a new node.
if [ -e /var/lib/cassandra/.decommissioned ]; then
  echo "this member's volume holds a decommissioned node: starting afresh"
  rm -rf /var/lib/cassandra/data /var/lib/cassandra/commitlog /var/lib/cassandra/saved_caches \
    /var/lib/cassandra/hints /var/lib/cassandra/cdc_raw /var/lib/cassandra/.decommissioned
fi
mkdir -p /var/lib/cassandra/data /var/lib/cassandra/commitlog /var/lib/cassandra/saved_caches \
  /var/lib/cassandra/hints /var/lib/cassandra/cdc_raw
{%- if role.memory_mib %}
# Heap: 40 % of the member's {{ role.memory_mib }} MiB (off-heap buffers, caches, metaspace
# and thread stacks need the rest), at most 8 GiB.
{%- set heap = role.memory_mib * 2 / 5 %}
{%- if heap > 8192 %}{% set heap = 8192 %}{% endif %}
export MAX_HEAP_SIZE={{ heap | round(method="floor") | int }}M
{%- endif %}
echo "cassandra {{ role.id }}: $POD_IP in ${CASSANDRA_DC:-dc1}/${CASSANDRA_RACK:-rack1}, heap ${MAX_HEAP_SIZE:-from the memory limit}"
exec cassandra
