#!/usr/bin/env bash
# Verify the mirror built by scripts/build-mirror.sh, for real, on loopback:
#   1. SHA256SUMS match; every executable the mirror stages on hosts (bin/, cni/)
#      is static (no ELF interpreter: runs on any glibc, e.g. RHEL 8's 2.28);
#      every binary runs and reports its version (kubernetes binaries must
#      report the manifest's kubernetes_version; etcd 3.6+, containerd 2.x,
#      runc 1.3+);
#   2. kube-apiserver from the mirror against the mirror's etcd on 127.0.0.1
#      (high ports, temp data dir) reaches /readyz=ok, and kubectl can talk to
#      it with a client certificate (version, create namespace);
#   3. a private containerd (own --root/--state/--address under a temp dir)
#      imports the three images; `ctr images ls` lists them; each image runs.
# Every process it starts is started with setsid and stopped by its PID.
# Needs root (containerd, runc), openssl and curl. Takes well under a minute.
set -euo pipefail
shopt -s inherit_errexit

readonly CACHE_DIR=${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}
readonly MIRROR=${DIRECTOR_BOOT_MIRROR_DIR:-$CACHE_DIR/mirror}
readonly BIN=$MIRROR/bin
TMP=$(mktemp -d /tmp/verify-mirror.XXXXXX)
readonly TMP
PIDS=()

log() { printf '[verify-mirror %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[i]}"; done
  if [[ ${KEEP_TMP:-0} == 1 ]]; then log "kept $TMP"; return; fi
  grep -o " $TMP/[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# start_bg NAME CMD... : setsid, log to $TMP/NAME.log, remember the PID.
start_bg() {
  local name=$1
  shift
  setsid "$@" >"$TMP/$name.log" 2>&1 </dev/null &
  PIDS+=("$!")
  log "started $name (pid $!)"
}

# A free TCP port on 127.0.0.1 in 20000-59999.
free_port() {
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { printf '%s\n' "$p"; return; }
  done
}

# wait_for SECONDS NAME CMD... : retry CMD every 0.5 s until it succeeds.
wait_for() {
  local deadline=$((SECONDS + $1)) name=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || die "$name not ready after ${deadline}s; see logs in $TMP"
    sleep 0.5
  done
}

require() {
  [[ -s $MIRROR/manifest.json ]] || die "no $MIRROR/manifest.json: run scripts/build-mirror.sh"
  ((EUID == 0)) || die "must run as root (containerd, runc)"
  local t
  for t in openssl curl sha256sum readelf; do command -v "$t" >/dev/null || die "missing $t"; done
}

manifest_k8s_version() {
  sed -n 's/.*"kubernetes_version": *"\([^"]*\)".*/\1/p' "$MIRROR/manifest.json"
}

check_checksums() {
  (cd "$MIRROR" && sha256sum --quiet -c SHA256SUMS) || die "SHA256SUMS mismatch"
  log "sha256 ok ($(wc -l <"$MIRROR/SHA256SUMS") artifacts)"
}

show_version() {
  local out
  out=$("$BIN/$1" "${@:2}" 2>&1) || die "$1 ${*:2} failed: $out"
  log "  $1: ${out%%$'\n'*}"
}

# Every executable under bin/ and cni/: no PT_INTERP program header (static).
check_static() {
  local f n=0 dynamic=()
  for f in "$MIRROR"/bin/* "$MIRROR"/cni/*; do
    [[ -f $f && -x $f ]] || continue
    n=$((n + 1))
    if readelf -lW "$f" 2>/dev/null | grep -q 'INTERP'; then
      dynamic+=("${f#"$MIRROR"/} ($(readelf -lW "$f" | sed -n 's/.*interpreter: \(.*\)\]/\1/p'))")
    fi
  done
  ((${#dynamic[@]} == 0)) || die "dynamically linked (ELF interpreter): ${dynamic[*]}"
  log "all $n executables in bin/ and cni/ are static (no ELF interpreter)"
}

# version_at_least VERSION MIN: dotted numeric comparison (v prefix ignored).
version_at_least() {
  [[ $(printf '%s\n%s\n' "${2#v}" "${1#v}" | sort -V | head -n1) == "${2#v}" ]]
}

# check_min NAME OUTPUT MIN MAX-EXCLUSIVE: the first x.y.z in OUTPUT within [MIN, MAX).
check_min() {
  local name=$1 out=$2 min=$3 max=$4 v
  v=$(grep -oE '[0-9]+\.[0-9]+\.[0-9]+' <<<"$out" | head -n1)
  [[ -n $v ]] || die "$name: no version in '$out'"
  version_at_least "$v" "$min" || die "$name $v: want $min or newer"
  ! version_at_least "$v" "$max" || die "$name $v: want older than $max"
  log "  $name $v (>= $min, < $max)"
}

check_component_versions() {
  check_min etcd "$("$BIN/etcd" --version 2>&1)" 3.6.0 3.7.0
  check_min etcdctl "$("$BIN/etcdctl" version 2>&1)" 3.6.0 3.7.0
  check_min containerd "$("$BIN/containerd" --version 2>&1 | sed 's/.*containerd //')" 2.0.0 3.0.0
  check_min runc "$("$BIN/runc" --version 2>&1)" 1.3.0 2.0.0
  "$BIN/runc" --version | grep -q '^libseccomp: [0-9]' || die "runc built without seccomp (no libseccomp line in runc --version)"
  check_min cni-bridge "$("$MIRROR/cni/bridge" 2>&1 </dev/null || true)" 1.0.0 2.0.0
}

check_versions() {
  local kv=$1 c out
  for c in kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do
    out=$("$BIN/$c" --version 2>&1)
    [[ $out == *"$kv"* ]] || die "$c --version: '$out' (want $kv)"
  done
  out=$("$BIN/kubectl" version --client 2>&1)
  [[ $out == *"$kv"* ]] || die "kubectl version: '$out'"
  log "kubernetes binaries report $kv"
  show_version etcd --version
  show_version etcdctl version
  show_version containerd --version
  show_version ctr --version
  show_version runc --version
  show_version crictl --version
  show_version coredns -version
  for c in "$MIRROR"/cni/*; do
    [[ -x $c ]] || die "not executable: $c"
  done
}

# ---- etcd + kube-apiserver ----------------------------------------------------
make_pki() {
  local d=$TMP/pki
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -subj /CN=verify-ca -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj /O=system:masters/CN=verify-admin -keyout "$d/admin.key" -out "$d/admin.csr" 2>/dev/null
  openssl x509 -req -in "$d/admin.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
    -CAcreateserial -days 1 -out "$d/admin.crt" 2>/dev/null
  openssl ecparam -name prime256v1 -genkey -noout -out "$d/sa.key"
  openssl ec -in "$d/sa.key" -pubout -out "$d/sa.pub" 2>/dev/null
}

start_etcd() {
  local client=$1 peer=$2
  start_bg etcd "$BIN/etcd" --name verify --data-dir "$TMP/etcd" \
    --listen-client-urls "http://127.0.0.1:$client" \
    --advertise-client-urls "http://127.0.0.1:$client" \
    --listen-peer-urls "http://127.0.0.1:$peer" \
    --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "verify=http://127.0.0.1:$peer"
  wait_for 20 etcd "$BIN/etcdctl" --endpoints "127.0.0.1:$client" endpoint health
}

start_apiserver() {
  local etcd=$1 port=$2 d=$TMP/pki
  start_bg kube-apiserver "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --cert-dir "$TMP/apiserver-certs" --client-ca-file "$d/ca.crt" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$d/sa.pub" \
    --service-account-signing-key-file "$d/sa.key" \
    --service-cluster-ip-range 10.96.0.0/12 --authorization-mode Node,RBAC
}

readyz_ok() {
  [[ $(curl -sk --max-time 2 --cert "$TMP/pki/admin.crt" --key "$TMP/pki/admin.key" \
    "https://127.0.0.1:$1/readyz") == ok ]]
}

write_kubeconfig() {
  local port=$1 d=$TMP/pki
  cat >"$TMP/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: verify
  cluster: {server: "https://127.0.0.1:$port", insecure-skip-tls-verify: true}
users:
- name: admin
  user: {client-certificate: "$d/admin.crt", client-key: "$d/admin.key"}
contexts:
- name: verify
  context: {cluster: verify, user: admin}
current-context: verify
EOF
}

check_kubectl() {
  local kv=$1 k=("$BIN/kubectl" --kubeconfig "$TMP/kubeconfig") out
  out=$("${k[@]}" version -o json)
  [[ $out == *"\"gitVersion\": \"$kv\""* ]] || die "server version: $out"
  "${k[@]}" create namespace verify-mirror >/dev/null
  "${k[@]}" get namespace verify-mirror -o name | grep -qx namespace/verify-mirror
  log "kubectl: server $kv, namespace created"
}

healthz_ok() { [[ $(curl -sk --max-time 2 "https://127.0.0.1:$1/healthz") == ok ]]; }

# kube-controller-manager and kube-scheduler against the apiserver: /healthz.
check_controllers() {
  local cm sch d=$TMP/pki
  cm=$(free_port); sch=$(free_port)
  start_bg kube-controller-manager "$BIN/kube-controller-manager" \
    --kubeconfig "$TMP/kubeconfig" --bind-address 127.0.0.1 --secure-port "$cm" \
    --leader-elect=false --service-account-private-key-file "$d/sa.key" \
    --root-ca-file "$d/ca.crt" --controllers '*,-nodeipam'
  start_bg kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$TMP/kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$sch" --leader-elect=false
  wait_for 60 kube-controller-manager healthz_ok "$cm"
  wait_for 60 kube-scheduler healthz_ok "$sch"
  log "kube-controller-manager and kube-scheduler /healthz ok"
  check_deployment
}

# Deployment -> ReplicaSet -> Pod (controller-manager), Pod marked
# Unschedulable because there are no nodes (scheduler).
pod_unschedulable() {
  [[ $("$BIN/kubectl" --kubeconfig "$TMP/kubeconfig" -n verify-mirror get pods \
    -l app=verify -o jsonpath='{.items[0].status.conditions[0].reason}') == Unschedulable ]]
}

check_deployment() {
  "$BIN/kubectl" --kubeconfig "$TMP/kubeconfig" -n verify-mirror create deployment verify \
    --image registry.k8s.io/pause:3.10 >/dev/null
  wait_for 60 "deployment -> pod (Unschedulable)" pod_unschedulable
  log "deployment -> replicaset -> pod created; scheduler: Unschedulable (no nodes)"
}

check_control_plane() {
  local kv=$1 ep pp ap t0=$SECONDS
  ep=$(free_port); pp=$(free_port); ap=$(free_port)
  make_pki
  start_etcd "$ep" "$pp"
  start_apiserver "$ep" "$ap"
  wait_for 90 kube-apiserver readyz_ok "$ap"
  log "kube-apiserver /readyz ok on 127.0.0.1:$ap (etcd 127.0.0.1:$ep) after $((SECONDS - t0))s"
  write_kubeconfig "$ap"
  check_kubectl "$kv"
  check_controllers
}

# ---- containerd + images ------------------------------------------------------
start_containerd() {
  local d=$TMP/containerd
  mkdir -p "$d"
  cat >"$d/config.toml" <<EOF
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$d/containerd.sock"
[ttrpc]
  address = "$d/containerd.sock.ttrpc"
EOF
  # shim and runc are looked up in PATH: use the mirror's.
  start_bg containerd env PATH="$BIN:$PATH" "$BIN/containerd" --config "$d/config.toml" \
    --root "$d/root" --state "$d/state" --address "$d/containerd.sock"
  wait_for 20 containerd "$BIN/ctr" --address "$d/containerd.sock" version
}

ctr_() { PATH="$BIN:$PATH" "$BIN/ctr" --address "$TMP/containerd/containerd.sock" -n k8s.io "$@"; }

pause_running() { [[ $(ctr_ tasks ls) =~ verify-pause[[:space:]]+[0-9]+[[:space:]]+RUNNING ]]; }
pause_stopped() { ! pause_running; }

image_refs() {
  sed -n 's/.*"ref": *"\([^"]*\)".*/\1/p' "$MIRROR/manifest.json"
}

check_images() {
  local ref listed out
  for ref in "$MIRROR"/images/*.tar; do ctr_ images import "$ref" >/dev/null; done
  listed=$(ctr_ images ls -q)
  printf '%s\n' "$listed" | sed 's/^/  /' >&2
  while read -r ref; do
    grep -qx "$ref" <<<"$listed" || die "image $ref not listed by ctr images ls"
  done < <(image_refs)
  out=$(ctr_ run --rm "$(image_refs | grep /busybox:)" verify-bb sh -c 'echo hello-from-busybox')
  [[ $out == hello-from-busybox ]] || die "busybox run: $out"
  out=$(ctr_ run --rm "$(image_refs | grep /coredns:)" verify-dns /coredns -version)
  [[ $out == *CoreDNS* ]] || die "coredns run: $out"
  ctr_ run -d "$(image_refs | grep /pause:)" verify-pause >/dev/null
  sleep 0.5
  pause_running || die "pause not running"
  ctr_ tasks kill -s SIGTERM verify-pause
  wait_for 10 "pause exit" pause_stopped
  ctr_ tasks rm verify-pause >/dev/null 2>&1 || true
  ctr_ containers rm verify-pause
  log "images imported, listed and run: busybox, coredns, pause (SIGTERM exit ok)"
}

main() {
  local t0=$SECONDS kv
  require
  kv=$(manifest_k8s_version)
  check_checksums
  check_static
  check_versions "$kv"
  check_component_versions
  check_control_plane "$kv"
  start_containerd
  check_images
  log "ALL OK in $((SECONDS - t0))s"
}

main "$@"
