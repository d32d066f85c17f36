# shellcheck shell=bash
# The Hadoop image of scripts/build-app-images.sh (sourced by it; uses its WORK, OUT, log, die,
# require_tools, is_current, write_meta, sha_of, in_root, spark_base and scripts/lib/oci.sh).
#
#   localhost/director-boot/hadoop:3.4.2   Debian bookworm + OpenJDK 17 JRE (the very layer of
#                                          the spark image) + Hadoop's jars from Maven Central
#
# The jars are resolved by Maven itself from images/hadoop/pom.xml with strict checksums
# (`mvn -C`); Maven's local repository is cached in $WORK/m2, outside the image. No Apache
# release tarball is used: the `hadoop`, `hdfs`, `yarn` and `mapred` commands are the thin
# launcher images/hadoop/hadoop-launcher.sh. The image contract is images/hadoop/README.md.

HADOOP_VERSION=$(sed -n 's:.*<hadoop.version>\(.*\)</hadoop.version>.*:\1:p' \
  "$REPO_ROOT/images/hadoop/pom.xml")
readonly HADOOP_VERSION
readonly HADOOP_REF=localhost/director-boot/hadoop:$HADOOP_VERSION
readonly HADOOP_SRC=$REPO_ROOT/images/hadoop
readonly HADOOP_ENV=(
  PATH=/opt/hadoop/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
  HADOOP_HOME=/opt/hadoop
  HADOOP_COMMON_HOME=/opt/hadoop
  HADOOP_HDFS_HOME=/opt/hadoop
  HADOOP_YARN_HOME=/opt/hadoop
  HADOOP_MAPRED_HOME=/opt/hadoop
  HADOOP_CONF_DIR=/opt/hadoop/etc/hadoop
  HADOOP_LOG_DIR=/var/log/hadoop
  LANG=C.UTF-8
)
# The image's own files (besides the jars), fingerprinted with the build functions.
readonly HADOOP_INPUTS=(pom.xml hadoop-launcher.sh etc/log4j.properties
  etc/capacity-scheduler.xml)

# hadoop_tree STAGE: STAGE/opt/hadoop (jars, HDFS web apps, launcher, etc/hadoop) and the
# empty data and log directories.
hadoop_tree() {
  local stage=$1 home=$1/opt/hadoop
  require_tools mvn java
  rm -rf "$stage"
  mkdir -p "$home/share/hadoop/common/lib" "$home/share/hadoop/hdfs" "$home/bin" \
    "$home/libexec" "$home/etc/hadoop" "$stage/var/lib/hadoop" "$stage/var/log/hadoop"
  log "hadoop: mvn -C package images/hadoop/pom.xml (Hadoop $HADOOP_VERSION jars from Maven Central)"
  mvn -B -C -q -f "$HADOOP_SRC/pom.xml" -Dmaven.repo.local="$WORK/m2" \
    -Dbuild.dir="$WORK/hadoop-mvn" -Dhadoop.lib="$home/share/hadoop/common/lib" \
    -Dhadoop.webapps="$home/share/hadoop/hdfs" package >"$WORK/hadoop-mvn.log" 2>&1 ||
    die "mvn failed; see $WORK/hadoop-mvn.log"
  rm -rf "$WORK/hadoop-mvn"
  [[ -f $home/share/hadoop/common/lib/hadoop-common-$HADOOP_VERSION.jar ]] ||
    die "mvn left no hadoop-common-$HADOOP_VERSION.jar in $home/share/hadoop/common/lib"
  [[ -d $home/share/hadoop/hdfs/webapps/hdfs ]] ||
    die "mvn left no HDFS web apps in $home/share/hadoop/hdfs/webapps"
  # Jars for other platforms (macOS, aarch64, riscv64 natives of netty) are dead weight.
  find "$home/share/hadoop/common/lib" -name '*-osx-*.jar' -delete
  find "$home/share/hadoop/common/lib" \( -name '*-linux-aarch_64.jar' -o \
    -name '*-linux-riscv64.jar' \) -delete
  (cd "$home/share/hadoop/common/lib" && sha256sum -- *.jar) >"$home/share/hadoop/jars.sha256"
  install -m 0755 "$HADOOP_SRC/hadoop-launcher.sh" "$home/libexec/hadoop-launcher"
  local c
  for c in hadoop hdfs yarn mapred; do ln -s ../libexec/hadoop-launcher "$home/bin/$c"; done
  install -m 0644 "$HADOOP_SRC/etc/log4j.properties" "$HADOOP_SRC/etc/capacity-scheduler.xml" \
    "$home/etc/hadoop/"
}

build_hadoop() {
  local fp base stage=$WORK/hadoop-stage layout=$WORK/oci-hadoop f
  fp=$({
    printf '%s\n' "$HADOOP_REF" "$SUITE" "$IMAGE_CREATED" "${SPARK_PACKAGES[@]}" "${HADOOP_ENV[@]}"
    for f in "${HADOOP_INPUTS[@]}"; do sha_of <"$HADOOP_SRC/$f"; done
    declare -f slim_debian spark_base hadoop_tree build_hadoop layer_tar oci_new \
      oci_add_layer oci_config oci_archive
  } | sha_of)
  if is_current hadoop "$fp"; then
    log "hadoop: up to date: $OUT/hadoop.tar ($HADOOP_REF)"
    return 0
  fi
  require_tools debootstrap systemd-nspawn
  # The spark image's Debian + JRE base: the same layer, stored once on every node.
  base=$(spark_base)
  hadoop_tree "$stage"
  log "hadoop: packing layers ($(du -sh "$stage/opt/hadoop" | cut -f1) in /opt/hadoop)"
  oci_new "$layout" "$HADOOP_REF"
  local top
  mapfile -t top < <(cd "$base" && find . -mindepth 1 -maxdepth 1 ! -name .complete \
    -printf '%P\n' | sort)
  layer_tar "$base" "$WORK/layer-base.tar" "${top[@]}"
  oci_add_layer "$layout" "$HADOOP_REF" "$WORK/layer-base.tar" \
    "debootstrap --variant=minbase $SUITE + ${SPARK_PACKAGES[*]} (scripts/build-app-images.sh)"
  rm -f "$WORK/layer-base.tar"
  layer_tar "$stage" "$WORK/layer-hadoop.tar" opt var
  oci_add_layer "$layout" "$HADOOP_REF" "$WORK/layer-hadoop.tar" \
    "mvn -C package images/hadoop/pom.xml (Hadoop $HADOOP_VERSION from Maven Central) + launcher"
  rm -f "$WORK/layer-hadoop.tar"
  local env_args=() e
  for e in "${HADOOP_ENV[@]}"; do env_args+=(--config.env "$e"); done
  oci_config "$layout" "$HADOOP_REF" "${env_args[@]}" --config.workingdir /opt/hadoop \
    --config.label "org.opencontainers.image.title=director-boot hadoop" \
    --config.label "org.opencontainers.image.version=$HADOOP_VERSION" \
    --config.label "org.opencontainers.image.source=images/hadoop/pom.xml"
  oci_archive "$layout" "$OUT/hadoop.tar"
  rm -rf "$layout" "$stage"
  write_meta hadoop "$HADOOP_REF" "$fp"
  log "hadoop: $OUT/hadoop.tar ($(du -h "$OUT/hadoop.tar" | cut -f1))"
}

# --verify: a whole single-node Hadoop inside the unpacked image, in its own network
# namespace (nspawn --private-network, loopback only): NameNode, DataNode, ResourceManager
# and NodeManager from the image's commands, the NameNode and ResourceManager web UIs,
# `hdfs dfs -put/-get` byte-identical, and the MapReduce pi example on YARN; then the
# catalog's DataNode decommissioning hooks against a NameNode and three DataNodes.
verify_hadoop() {
  local bundle opts=() ref
  require_tools systemd-nspawn
  verify_dir
  ref=$(jq -r .ref "$OUT/hadoop.json")
  bundle=$VERIFY_DIR/hadoop
  log "verify hadoop: unpacking $OUT/hadoop.tar ($ref)"
  oci_unpack "$OUT/hadoop.tar" "$ref" "$bundle"
  mapfile -t opts < <(bundle_nspawn_opts "$bundle")
  mkdir -p "$VERIFY_DIR/hjob"
  install -m 0755 "$REPO_ROOT/scripts/lib/verify-hadoop-single-node.sh" "$VERIFY_DIR/hjob/run.sh"
  local run=(in_root "$bundle/rootfs" "${opts[@]}" --private-network
    --bind="$VERIFY_DIR/hjob:/job" --setenv=HOME=/tmp --)
  check hadoop-version "Hadoop $HADOOP_VERSION" "${run[@]}" hadoop version
  check hdfs-classpath 'share/hadoop/common/lib' "${run[@]}" hdfs classpath
  check hadoop-single-node 'single node: ok' "${run[@]}" /bin/bash /job/run.sh
  # The catalog's decommissioning hooks against this image's HDFS (3 DataNodes, each in its
  # own network namespace inside the machine).
  install -m 0755 "$REPO_ROOT/scripts/lib/verify-hadoop-decommission.sh" "$VERIFY_DIR/hjob/decom.sh"
  check hadoop-decommission 'decommission: ok' in_root "$bundle/rootfs" "${opts[@]}" \
    --private-network --capability=CAP_NET_ADMIN,CAP_SYS_ADMIN --bind="$VERIFY_DIR/hjob:/job" \
    --bind-ro="$REPO_ROOT/catalog/hadoop:/catalog" --setenv=HOME=/tmp -- \
    /bin/bash /job/decom.sh /catalog
  log "verify hadoop: rootfs $(du -sh "$bundle/rootfs" | cut -f1) unpacked, archive $(du -h "$OUT/hadoop.tar" | cut -f1)"
  rm -rf "$bundle"
}
