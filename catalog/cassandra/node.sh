#!/bin/bash
# Cassandra {{ role.id }} of {{ instance }}: a copy of the image's configuration with this
# ring's name, seeds ({{ roles.seed.fqdns | join(sep=", ") }}) and the pod's address.
set -euo pipefail
. {{ mount }}/cassandra-env.sh
: "${CASSANDRA_IMAGE_CONF:?no cassandra.yaml in the image (set CASSANDRA_CONF)}"
conf=/tmp/cassandra-conf
rm -rf "$conf" && cp -a "$CASSANDRA_IMAGE_CONF" "$conf"
set_option() {  # set_option KEY VALUE: replace a top-level `key:` line (commented or not)
  sed -i -E "s|^#? *$1:.*|$1: $2|" "$conf/cassandra.yaml"
}
set_option cluster_name "'$CASSANDRA_CLUSTER_NAME'"
set_option listen_address "$POD_IP"
set_option broadcast_address "$POD_IP"
set_option rpc_address 0.0.0.0
set_option broadcast_rpc_address "$POD_IP"
set_option endpoint_snitch GossipingPropertyFileSnitch
sed -i -E "s|- seeds:.*|- seeds: \"$CASSANDRA_SEEDS\"|" "$conf/cassandra.yaml"
mkdir -p /var/lib/cassandra/data /var/lib/cassandra/commitlog /var/lib/cassandra/saved_caches /var/lib/cassandra/hints
export CASSANDRA_CONF=$conf
{%- if role.memory_mib %}
# Heap: half the container's memory, at most 8 GiB; new generation a quarter of that.
{%- set heap = role.memory_mib / 2 %}
{%- if heap > 8192 %}{% set heap = 8192 %}{% endif %}
export MAX_HEAP_SIZE={{ heap | round(method="floor") | int }}M
export HEAP_NEWSIZE={{ heap / 4 | round(method="floor") | int }}M
{%- endif %}
exec cassandra -f -R
