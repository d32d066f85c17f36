# Sourced by node.sh and the hooks: where the image keeps Cassandra.
export CASSANDRA_HOME=${CASSANDRA_HOME:-/opt/cassandra}
export PATH="$CASSANDRA_HOME/bin:$CASSANDRA_HOME/tools/bin:$PATH"
for conf in "${CASSANDRA_CONF:-}" /etc/cassandra "$CASSANDRA_HOME/conf"; do
  if [ -n "$conf" ] && [ -f "$conf/cassandra.yaml" ]; then
    export CASSANDRA_IMAGE_CONF="$conf"
    break
  fi
done
