#!/bin/bash
# director-boot's thin launcher for the Hadoop image: /opt/hadoop/bin/{hadoop,hdfs,yarn,mapred}
# are symlinks to this file (installed as /opt/hadoop/libexec/hadoop-launcher). Upstream's
# shell scripts come only in Apache's release tarball; this image is built from Maven
# Central's jars, so the commands map each subcommand to upstream's main class and run it in
# the foreground with one classpath (images/hadoop/README.md lists what is supported).
#
# Environment: HADOOP_HOME (/opt/hadoop), HADOOP_CONF_DIR ($HADOOP_HOME/etc/hadoop),
# HADOOP_CLASSPATH (appended), HADOOP_HEAPSIZE_MAX (-Xmx, e.g. 512m), HADOOP_OPTS (every
# JVM), HADOOP_CLIENT_OPTS (commands that are not daemons), per-daemon
# HDFS_NAMENODE_OPTS, HDFS_DATANODE_OPTS, HDFS_SECONDARYNAMENODE_OPTS, HDFS_JOURNALNODE_OPTS,
# YARN_RESOURCEMANAGER_OPTS, YARN_NODEMANAGER_OPTS, YARN_PROXYSERVER_OPTS,
# HADOOP_ROOT_LOGGER (INFO,console), HADOOP_LOG_DIR (/var/log/hadoop).
set -euo pipefail

HADOOP_HOME=${HADOOP_HOME:-/opt/hadoop}
HADOOP_CONF_DIR=${HADOOP_CONF_DIR:-$HADOOP_HOME/etc/hadoop}
HADOOP_LOG_DIR=${HADOOP_LOG_DIR:-/var/log/hadoop}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
export HADOOP_HOME HADOOP_CONF_DIR HADOOP_LOG_DIR

# What JDK 17 must open for Hadoop 3.4 (reflection into java.base: Guice in the YARN web
# apps, the RPC and shuffle code); MapReduce containers get the same list from mapred-site
# (images/hadoop/README.md).
readonly JDK17_OPENS=(
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
  --add-opens=java.base/java.io=ALL-UNNAMED
  --add-opens=java.base/java.net=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent=ALL-UNNAMED
  --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/sun.security.util=ALL-UNNAMED
)

classpath() {
  local cp="$HADOOP_CONF_DIR:$HADOOP_HOME/share/hadoop/hdfs:$HADOOP_HOME/share/hadoop/common/lib/*"
  [[ -n ${HADOOP_CLASSPATH:-} ]] && cp+=":$HADOOP_CLASSPATH"
  printf '%s\n' "$cp"
}

usage() {
  local cmd=$1
  case $cmd in
    hdfs) echo "usage: hdfs {namenode|datanode|secondarynamenode|journalnode|balancer|dfs|dfsadmin|fsck|getconf|haadmin|groups|ec|storagepolicies|cacheadmin|crypto|snapshotDiff|lsSnapshottableDir|diskbalancer|oiv|oev|classpath|version} [ARGS...]" ;;
    yarn) echo "usage: yarn {resourcemanager|nodemanager|proxyserver|jar|application|applicationattempt|container|node|queue|logs|rmadmin|cluster|top|schedulerconf|classpath|version|CLASSNAME} [ARGS...]" ;;
    mapred) echo "usage: mapred {job|queue|pipes|classpath|version|CLASSNAME} [ARGS...]" ;;
    *) echo "usage: hadoop {fs|jar|classpath|version|checknative|conftest|credential|key|kerbname|kdiag|dtutil|CLASSNAME} [ARGS...]" ;;
  esac
}

main() {
  local cmd sub class="" daemon=0 daemon_opts="" keep_sub=0
  cmd=$(basename "$0")
  [[ $cmd == hadoop-launcher ]] && { cmd=${1:-}; shift || true; }
  sub=${1:-}
  if [[ -z $sub || $sub == -h || $sub == --help || $sub == help ]]; then
    usage "$cmd"
    [[ -n $sub ]] && exit 0
    exit 1
  fi
  shift
  case $sub in
    classpath) classpath; exit 0 ;;
    version) class=org.apache.hadoop.util.VersionInfo ;;
  esac
  if [[ -z $class ]]; then
    case $cmd:$sub in
      hdfs:namenode) class=org.apache.hadoop.hdfs.server.namenode.NameNode daemon=1 daemon_opts=${HDFS_NAMENODE_OPTS:-} ;;
      hdfs:datanode) class=org.apache.hadoop.hdfs.server.datanode.DataNode daemon=1 daemon_opts=${HDFS_DATANODE_OPTS:-} ;;
      hdfs:secondarynamenode) class=org.apache.hadoop.hdfs.server.namenode.SecondaryNameNode daemon=1 daemon_opts=${HDFS_SECONDARYNAMENODE_OPTS:-} ;;
      hdfs:journalnode) class=org.apache.hadoop.hdfs.qjournal.server.JournalNode daemon=1 daemon_opts=${HDFS_JOURNALNODE_OPTS:-} ;;
      hdfs:balancer) class=org.apache.hadoop.hdfs.server.balancer.Balancer ;;
      hdfs:dfs) class=org.apache.hadoop.fs.FsShell ;;
      hdfs:dfsadmin) class=org.apache.hadoop.hdfs.tools.DFSAdmin ;;
      hdfs:fsck) class=org.apache.hadoop.hdfs.tools.DFSck ;;
      hdfs:getconf) class=org.apache.hadoop.hdfs.tools.GetConf ;;
      hdfs:haadmin) class=org.apache.hadoop.hdfs.tools.DFSHAAdmin ;;
      hdfs:groups) class=org.apache.hadoop.hdfs.tools.GetGroups ;;
      hdfs:ec) class=org.apache.hadoop.hdfs.tools.ECAdmin ;;
      hdfs:storagepolicies) class=org.apache.hadoop.hdfs.tools.StoragePolicyAdmin ;;
      hdfs:cacheadmin) class=org.apache.hadoop.hdfs.tools.CacheAdmin ;;
      hdfs:crypto) class=org.apache.hadoop.hdfs.tools.CryptoAdmin ;;
      hdfs:snapshotDiff) class=org.apache.hadoop.hdfs.tools.snapshot.SnapshotDiff ;;
      hdfs:lsSnapshottableDir) class=org.apache.hadoop.hdfs.tools.snapshot.LsSnapshottableDir ;;
      hdfs:diskbalancer) class=org.apache.hadoop.hdfs.tools.DiskBalancerCLI ;;
      hdfs:oiv) class=org.apache.hadoop.hdfs.tools.offlineImageViewer.OfflineImageViewerPB ;;
      hdfs:oev) class=org.apache.hadoop.hdfs.tools.offlineEditsViewer.OfflineEditsViewer ;;
      yarn:resourcemanager) class=org.apache.hadoop.yarn.server.resourcemanager.ResourceManager daemon=1 daemon_opts=${YARN_RESOURCEMANAGER_OPTS:-} ;;
      yarn:nodemanager) class=org.apache.hadoop.yarn.server.nodemanager.NodeManager daemon=1 daemon_opts=${YARN_NODEMANAGER_OPTS:-} ;;
      yarn:proxyserver) class=org.apache.hadoop.yarn.server.webproxy.WebAppProxyServer daemon=1 daemon_opts=${YARN_PROXYSERVER_OPTS:-} ;;
      yarn:application | yarn:applicationattempt | yarn:container)
        class=org.apache.hadoop.yarn.client.cli.ApplicationCLI keep_sub=1 ;;
      yarn:node) class=org.apache.hadoop.yarn.client.cli.NodeCLI ;;
      yarn:queue) class=org.apache.hadoop.yarn.client.cli.QueueCLI ;;
      yarn:logs) class=org.apache.hadoop.yarn.client.cli.LogsCLI ;;
      yarn:rmadmin) class=org.apache.hadoop.yarn.client.cli.RMAdminCLI ;;
      yarn:cluster) class=org.apache.hadoop.yarn.client.cli.ClusterCLI ;;
      yarn:top) class=org.apache.hadoop.yarn.client.cli.TopCLI ;;
      yarn:schedulerconf) class=org.apache.hadoop.yarn.client.cli.SchedConfCLI ;;
      yarn:jar | hadoop:jar | mapred:jar) class=org.apache.hadoop.util.RunJar ;;
      mapred:job) class=org.apache.hadoop.mapred.JobClient ;;
      mapred:queue) class=org.apache.hadoop.mapred.JobQueueClient ;;
      mapred:pipes) class=org.apache.hadoop.mapred.pipes.Submitter ;;
      hadoop:fs | hadoop:dfs) class=org.apache.hadoop.fs.FsShell ;;
      hadoop:checknative) class=org.apache.hadoop.util.NativeLibraryChecker ;;
      hadoop:conftest) class=org.apache.hadoop.util.ConfTest ;;
      hadoop:credential) class=org.apache.hadoop.security.alias.CredentialShell ;;
      hadoop:key) class=org.apache.hadoop.crypto.key.KeyShell ;;
      hadoop:kerbname) class=org.apache.hadoop.security.HadoopKerberosName ;;
      hadoop:kdiag) class=org.apache.hadoop.security.KDiag ;;
      hadoop:dtutil) class=org.apache.hadoop.security.token.DtUtilShell ;;
      *)
        # Like upstream: `hadoop CLASSNAME` (and yarn/mapred) runs a class.
        if [[ $cmd != hdfs && $sub == *.* ]]; then
          class=$sub
        else
          echo "$cmd: unknown subcommand '$sub' (this image's $cmd is a thin launcher)" >&2
          usage "$cmd" >&2
          exit 1
        fi
        ;;
    esac
  fi
  ((keep_sub)) && set -- "$sub" "$@"

  local opts=(-Dproc_"$sub" -Dhadoop.home.dir="$HADOOP_HOME" -Dhadoop.log.dir="$HADOOP_LOG_DIR"
    -Dyarn.log.dir="$HADOOP_LOG_DIR" -Dhadoop.id.str="${USER:-$(id -un 2>/dev/null || echo root)}"
    -Dhadoop.root.logger="${HADOOP_ROOT_LOGGER:-INFO,console}"
    -Dhadoop.policy.file=hadoop-policy.xml -Djava.net.preferIPv4Stack=true "${JDK17_OPENS[@]}")
  [[ -n ${HADOOP_HEAPSIZE_MAX:-} ]] && opts+=("-Xmx$HADOOP_HEAPSIZE_MAX")
  # Word-split the *_OPTS variables as upstream does.
  # shellcheck disable=SC2206
  opts+=(${HADOOP_OPTS:-})
  if ((daemon)); then
    # shellcheck disable=SC2206
    opts+=($daemon_opts)
  else
    # shellcheck disable=SC2206
    opts+=(${HADOOP_CLIENT_OPTS:-})
  fi
  mkdir -p "$HADOOP_LOG_DIR" 2>/dev/null || true
  exec "$JAVA" "${opts[@]}" -cp "$(classpath)" "$class" "$@"
}

main "$@"
