# shellcheck shell=bash
# `build-app-images.sh --verify`: run the built archives for real, without Kubernetes.
# Each archive is unpacked with umoci exactly as a runtime would (layers in order, the
# image config turned into config.json) and its programs are run inside the rootfs; then
# the archives are imported into a private containerd, as `director-boot images load`
# does on nodes. Sourced by build-app-images.sh (uses its OUT, WORK, log, die, in_root).

VERIFY_DIR=""

verify_cleanup() {
  [[ -n $VERIFY_DIR && -d $VERIFY_DIR ]] && rm -rf "$VERIFY_DIR"
  return 0
}

verify_dir() {
  if [[ -z $VERIFY_DIR ]]; then
    VERIFY_DIR=$(mktemp -d "$WORK/verify.XXXXXX")
    : >"$OUT/verify.log"
    trap verify_cleanup EXIT
  fi
}

# check NAME EXPECTED-REGEX COMMAND...: run, demand exit 0 and the pattern in the output;
# show the matching lines (all of it on failure), keep the whole output in verify.log.
check() {
  local name=$1 want=$2 out rc=0 t0=${EPOCHREALTIME/./} ms
  shift 2
  out=$("$@" 2>&1) || rc=$?
  printf '== %s (exit %s): %s\n%s\n' "$name" "$rc" "$*" "$out" >>"$OUT/verify.log"
  if ((rc != 0)) || ! grep -qE "$want" <<<"$out"; then
    printf '%s\n' "$out" | tail -n 40 | sed "s/^/    $name | /" >&2
    ((rc == 0)) && die "verify $name: output lacks /$want/ (full output: $OUT/verify.log)"
    die "verify $name: exit status $rc (full output: $OUT/verify.log)"
  fi
  grep -E "$want" <<<"$out" | head -n 3 | sed "s/^/    $name | /" >&2
  ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
  log "verify $name: ok ($((ms / 1000)).$((ms % 1000 / 100)) s)"
}

# The image's env and working directory, as a runtime would apply them (from config.json).
bundle_nspawn_opts() {
  local bundle=$1 e
  while read -r e; do printf -- '--setenv=%s\n' "$e"; done < <(jq -r '.process.env[]' "$bundle/config.json")
  printf -- '--chdir=%s\n' "$(jq -r '.process.cwd' "$bundle/config.json")"
}

verify_spark() {
  local bundle opts=() meta=$OUT/spark.json ref
  require_tools systemd-nspawn
  verify_dir
  ref=$(jq -r .ref "$meta")
  bundle=$VERIFY_DIR/spark
  log "verify spark: unpacking $OUT/spark.tar ($ref)"
  oci_unpack "$OUT/spark.tar" "$ref" "$bundle"
  mapfile -t opts < <(bundle_nspawn_opts "$bundle")
  mkdir -p "$VERIFY_DIR/job"
  cat >"$VERIFY_DIR/job/pi.py" <<'EOF'
import random
from pyspark.sql import SparkSession

spark = SparkSession.builder.appName("director-boot-pi").getOrCreate()
n = 200000
def inside(_):
    x, y = random.random() * 2 - 1, random.random() * 2 - 1
    return 1 if x * x + y * y <= 1 else 0
count = spark.sparkContext.parallelize(range(n), 4).map(inside).reduce(lambda a, b: a + b)
print("Pi is roughly %f" % (4.0 * count / n))
spark.stop()
EOF
  # nspawn gives the machine its own hostname; /etc/hosts in a pod names it, here Spark is
  # told to bind loopback instead.
  local run=(in_root "$bundle/rootfs" "${opts[@]}" --bind-ro="$VERIFY_DIR/job:/job"
    --setenv=SPARK_LOCAL_IP=127.0.0.1 --setenv=HOME=/tmp --)
  check env 'JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64' "${run[@]}" /usr/bin/env
  check java 'openjdk version "17' "${run[@]}" java -version
  check spark-submit-version "version $SPARK_VERSION" "${run[@]}" spark-submit --version
  check pyspark-pi 'Pi is roughly 3\.1' "${run[@]}" spark-submit --master 'local[2]' \
    --conf spark.ui.enabled=false /job/pi.py
  # The Spark-on-Kubernetes entrypoint as a driver pod runs it (local master here), with
  # Spark's own SparkPi example from the image.
  check entrypoint-driver-pi 'Pi is roughly 3\.1' "${run[@]}" \
    env SPARK_DRIVER_BIND_ADDRESS=127.0.0.1 /opt/entrypoint.sh driver --master 'local[2]' \
    --conf spark.ui.enabled=false \
    local:///opt/venv/lib/python3.11/site-packages/pyspark/examples/src/main/python/pi.py 4
  check jupyter-notebook-version '^7\.' "${run[@]}" jupyter notebook --version
  check spark-master-help 'Usage: Master' "${run[@]}" \
    spark-class org.apache.spark.deploy.master.Master --help
  check tini 'tini version' "${run[@]}" tini --version
  log "verify spark: rootfs $(du -sh "$bundle/rootfs" | cut -f1) unpacked, archive $(du -h "$OUT/spark.tar" | cut -f1)"
  rm -rf "$bundle"
}

# Import every built archive into a throw-away containerd (own root, state and socket;
# stopped by its PID) and list it, as `director-boot images load` does on a node.
verify_import() {
  local name dir pid ref ctr_out
  if ! command -v containerd >/dev/null || ! command -v ctr >/dev/null; then
    log "verify import: containerd/ctr not installed here; skipped"
    return 0
  fi
  verify_dir
  dir=$VERIFY_DIR/containerd
  mkdir -p "$dir"
  # No CRI plugin: this containerd only stores and unpacks images.
  printf 'version = 2\nroot = "%s/root"\nstate = "%s/state"\n%s\n[grpc]\n  address = "%s/sock"\n' \
    "$dir" "$dir" 'disabled_plugins = ["io.containerd.grpc.v1.cri"]' "$dir" >"$dir/config.toml"
  containerd --config "$dir/config.toml" >"$dir/log" 2>&1 &
  pid=$!
  local tries=50
  while ((tries-- > 0)) && [[ ! -S $dir/sock ]]; do sleep 0.2; done
  [[ -S $dir/sock ]] || { kill "$pid"; die "verify import: containerd did not start ($dir/log)"; }
  for name in "$@"; do
    ref=$(jq -r .ref "$OUT/$name.json")
    check "ctr-import-$name" "$ref" ctr --address "$dir/sock" -n k8s.io images import \
      --snapshotter native "$OUT/$name.tar"
    ctr_out=$(ctr --address "$dir/sock" -n k8s.io images ls -q)
    grep -qxF "$ref" <<<"$ctr_out" || { kill "$pid"; die "verify import: $ref not listed"; }
    log "verify import: ctr -n k8s.io images ls -q lists $ref"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}
