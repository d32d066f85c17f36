# shellcheck shell=bash
# The Cassandra image of scripts/build-app-images.sh (sourced by it; uses its WORK, OUT, log,
# die, sha_of, is_current, write_meta, require_tools, in_root, spark_base and scripts/lib/oci.sh).
#
#   localhost/director-boot/cassandra:5.0.9  = Spark's Debian bookworm + OpenJDK 17 JRE layer
#     (the same layer, stored once on a node) + /opt/cassandra: the jars Maven resolves from
#     Maven Central for images/cassandra/pom.xml (checksums enforced), the launchers
#     images/cassandra/bin/{cassandra,nodetool} and images/cassandra/conf/.
# The image contract is images/cassandra/README.md.

readonly CASSANDRA_VERSION=5.0.9
readonly CASSANDRA_REF=localhost/director-boot/cassandra:$CASSANDRA_VERSION
readonly CASSANDRA_SRC=$REPO_ROOT/images/cassandra
readonly CASSANDRA_ENV=(
  PATH=/opt/cassandra/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
  CASSANDRA_HOME=/opt/cassandra
  CASSANDRA_CONF=/opt/cassandra/conf
  CASSANDRA_LOG_DIR=/var/log/cassandra
  LANG=C.UTF-8
)

# cassandra_jars DIR: every runtime jar of cassandra-all (pom.xml) into DIR, by Maven itself:
# -C fails on any checksum mismatch; the local repository is a cache under $WORK (not ~/.m2),
# so rebuilds download nothing. Honours MAVEN_OPTS / ~/.m2/settings.xml for proxies.
cassandra_jars() {
  local dir=$1 repo=$WORK/m2
  require_tools mvn
  rm -rf "$dir"
  mkdir -p "$dir" "$repo"
  mvn --batch-mode --quiet --strict-checksums -Dmaven.repo.local="$repo" \
    -f "$CASSANDRA_SRC/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$dir" >"$WORK/mvn-cassandra.log" 2>&1 ||
    die "cassandra: mvn could not resolve images/cassandra/pom.xml; see $WORK/mvn-cassandra.log"
  [[ -f $dir/cassandra-all-$CASSANDRA_VERSION.jar ]] ||
    die "cassandra: Maven gave no cassandra-all-$CASSANDRA_VERSION.jar (pom.xml's version?)"
  # Native libraries for other systems ride along with netty's jars: amd64 Linux only.
  find "$dir" -name '*-osx-*.jar' -o -name '*-windows-*.jar' -o -name '*-linux-aarch_64.jar' \
    -o -name '*-linux-riscv64.jar' | xargs -r rm -f
}

build_cassandra() {
  local fp base stage layout=$WORK/oci-cassandra
  fp=$({
    printf '%s\n' "$CASSANDRA_REF" "$SUITE" "$IMAGE_CREATED" "${SPARK_PACKAGES[@]}" \
      "${CASSANDRA_ENV[@]}"
    (cd "$CASSANDRA_SRC" && find pom.xml bin conf -type f -print0 | sort -z |
      xargs -0 sha256sum && find bin -type f -printf '%p %m\n' | sort)
    declare -f slim_debian spark_base cassandra_jars build_cassandra layer_tar oci_new \
      oci_add_layer oci_config oci_archive
  } | sha_of)
  if is_current cassandra "$fp"; then
    log "cassandra: up to date: $OUT/cassandra.tar ($CASSANDRA_REF)"
    return 0
  fi
  require_tools debootstrap systemd-nspawn
  base=$(spark_base)
  stage=$WORK/cassandra-stage
  rm -rf "$stage"
  # The data directory (the catalog mounts the member's volume there) and the log directory.
  mkdir -p "$stage/opt/cassandra" "$stage/var/lib/cassandra" "$stage/var/log/cassandra"
  log "cassandra: jars of org.apache.cassandra:cassandra-all:$CASSANDRA_VERSION from Maven Central"
  cassandra_jars "$stage/opt/cassandra/lib"
  cp -r "$CASSANDRA_SRC/bin" "$CASSANDRA_SRC/conf" "$stage/opt/cassandra/"
  chmod 0755 "$stage/opt/cassandra/bin"/*
  log "cassandra: $(find "$stage/opt/cassandra/lib" -name '*.jar' | wc -l) jars," \
    "$(du -sh "$stage/opt/cassandra/lib" | cut -f1)"
  log "cassandra: packing layers"
  oci_new "$layout" "$CASSANDRA_REF"
  # Layer 1: the very layer of the Spark image (same base, same bytes); layer 2: Cassandra.
  local top
  mapfile -t top < <(cd "$base" && find . -mindepth 1 -maxdepth 1 ! -name .complete \
    -printf '%P\n' | sort)
  layer_tar "$base" "$WORK/layer-base.tar" "${top[@]}"
  oci_add_layer "$layout" "$CASSANDRA_REF" "$WORK/layer-base.tar" \
    "debootstrap --variant=minbase $SUITE + ${SPARK_PACKAGES[*]} (scripts/build-app-images.sh)"
  rm -f "$WORK/layer-base.tar"
  layer_tar "$stage" "$WORK/layer-cassandra.tar" opt var
  oci_add_layer "$layout" "$CASSANDRA_REF" "$WORK/layer-cassandra.tar" \
    "mvn dependency:copy-dependencies (images/cassandra/pom.xml) + images/cassandra/{bin,conf}"
  rm -f "$WORK/layer-cassandra.tar"
  local env_args=() e
  for e in "${CASSANDRA_ENV[@]}"; do env_args+=(--config.env "$e"); done
  oci_config "$layout" "$CASSANDRA_REF" "${env_args[@]}" --config.workingdir /var/lib/cassandra \
    --config.cmd /opt/cassandra/bin/cassandra \
    --config.exposedports 7000/tcp --config.exposedports 7199/tcp \
    --config.exposedports 9042/tcp --config.volume /var/lib/cassandra \
    --config.label "org.opencontainers.image.title=director-boot cassandra" \
    --config.label "org.opencontainers.image.version=$CASSANDRA_VERSION" \
    --config.label "org.opencontainers.image.source=images/cassandra/pom.xml"
  oci_archive "$layout" "$OUT/cassandra.tar"
  rm -rf "$layout" "$stage"
  write_meta cassandra "$CASSANDRA_REF" "$fp"
  log "cassandra: $OUT/cassandra.tar ($(du -h "$OUT/cassandra.tar" | cut -f1))"
}

# --verify: the image's daemon answers nodetool on loopback, in the unpacked rootfs.
verify_cassandra() {
  local bundle opts=() ref
  require_tools systemd-nspawn
  verify_dir
  ref=$(jq -r .ref "$OUT/cassandra.json")
  bundle=$VERIFY_DIR/cassandra
  log "verify cassandra: unpacking $OUT/cassandra.tar ($ref)"
  oci_unpack "$OUT/cassandra.tar" "$ref" "$bundle"
  mapfile -t opts < <(bundle_nspawn_opts "$bundle")
  local run=(in_root "$bundle/rootfs" "${opts[@]}" --setenv=MAX_HEAP_SIZE=512M --)
  check java 'openjdk version "17' "${run[@]}" java -version
  check nodetool-version "ReleaseVersion: $CASSANDRA_VERSION" "${run[@]}" /bin/bash -c '
    cassandra -Dcassandra.ring_delay_ms=1000 >/var/log/cassandra.out 2>&1 &
    for _ in $(seq 1 90); do
      nodetool status 2>/dev/null | grep -q "^UN " && break
      sleep 2
    done
    nodetool version; nodetool status; kill %1; wait'
  log "verify cassandra: rootfs $(du -sh "$bundle/rootfs" | cut -f1) unpacked"
  rm -rf "$bundle"
}
