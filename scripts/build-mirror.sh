#!/usr/bin/env bash
# Build director-boot's artifact mirror: every binary and image that
# `director-boot init` uploads to nodes, built locally from the upstream Go
# modules as static binaries (no ELF interpreter: they run on any glibc, e.g.
# RHEL 8's 2.28), into a cache OUTSIDE the repository.
#
#   ${DIRECTOR_BOOT_MIRROR_DIR:-${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}/mirror}/
#     bin/       kube-apiserver kube-controller-manager kube-scheduler kubelet
#                kube-proxy kubectl crictl coredns etcd etcdctl etcdutl containerd
#                containerd-shim-runc-v2 ctr runc
#     cni/       CNI plugins (bridge, host-local, loopback, portmap, ...)
#     images/    pause.tar coredns.tar busybox.tar kube-network-policies.tar
#                local-path-provisioner.tar (OCI archives for `ctr -n k8s.io images import`)
#     upstream/  the same binaries in the upstream release layout (kube binaries
#                one file each, etcd/containerd/CNI/crictl tarballs, runc.ARCH),
#                as `director-boot artifacts export` serves them
#     versions/VERSION/bin/
#                the kube binaries of each upgrade target (K8S_UPGRADE_VERSIONS: further
#                Kubernetes versions for `director-boot upgrade --to`); the rest of the
#                mirror (etcd, containerd, CNI, images) serves every version
#     pinned.yaml    pinned component manifest (src/artifacts/pinned.yaml's
#                format) with the sha256 of what this build made, for
#                `director-boot artifacts fetch --manifest`
#     manifest.json  SHA256SUMS
#
# Idempotent: when every output is present and unchanged (size+mtime stamp,
# or sha256 with --verify) it exits in seconds. See scripts/README.md.
set -euo pipefail
shopt -s inherit_errexit

# ---- pins -------------------------------------------------------------------
readonly K8S_VERSION=v1.36.3      # k8s.io/kubernetes (Go module proxy): what `init` installs
# Upgrade targets: further k8s.io/kubernetes versions whose kube binaries (K8S_COMMANDS) the
# mirror also holds, under versions/VERSION/bin/, each added as a whole (a new directory renamed
# into place: nothing already in the mirror changes). --no-upgrade-targets leaves them out.
K8S_UPGRADE_VERSIONS=(v1.37.2)
readonly CRICTL_VERSION=v1.36.0   # sigs.k8s.io/cri-tools
readonly COREDNS_VERSION=v1.14.7  # github.com/coredns/coredns
readonly PAUSE_TAG=3.10           # tag given to our own images/pause/pause.c
# The versions of src/artifacts/pinned.yaml (kubespray's checksums.yml lists them).
readonly ETCD_VERSION=v3.6.14         # go.etcd.io/etcd/{server,etcdctl,etcdutl}/v3
readonly CONTAINERD_VERSION=v2.3.4    # github.com/containerd/containerd/v2
readonly RUNC_VERSION=v1.4.3          # github.com/opencontainers/runc (cgo, static libseccomp)
readonly CNI_VERSION=v1.9.1           # github.com/containernetworking/plugins
readonly CNI_PLUGINS=(main/bridge main/dummy main/host-device main/ipvlan main/loopback
  main/macvlan main/ptp main/tap main/vlan ipam/dhcp ipam/host-local ipam/static
  meta/bandwidth meta/firewall meta/portmap meta/sbr meta/tuning meta/vrf)
readonly ARCH=amd64
# Fixed timestamp for image configs, layers and archives: images are
# reproducible (same inputs -> same digests). SOURCE_DATE_EPOCH overrides.
IMAGE_CREATED=$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
readonly IMAGE_CREATED
# Only the busybox test image's content comes from Debian; nothing a host runs does.
readonly DEB_PACKAGES=(busybox-static)
# Outputs added after layout-2 mirrors existed: a warm mirror without one builds just it.
readonly ADDED_OUTPUTS=(bin/etcdutl)
readonly K8S_COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler
  kubelet kube-proxy kubectl)

# ---- paths ------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly CACHE_DIR=${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}
readonly MIRROR=${DIRECTOR_BOOT_MIRROR_DIR:-$CACHE_DIR/mirror}
readonly WORK=$CACHE_DIR/work
readonly STAMPS=$MIRROR/.stamps
readonly PAUSE_SRC=$REPO_ROOT/images/pause/pause.c

export GOCACHE=${DIRECTOR_BOOT_GOCACHE:-$CACHE_DIR/go/build}
export GOMODCACHE=${DIRECTOR_BOOT_GOMODCACHE:-$CACHE_DIR/go/mod}
export GOPATH=$CACHE_DIR/go/path
export GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0

VERIFY_FULL=0
ARTIFACTS=()   # "name<TAB>version<TAB>kind<TAB>relpath<TAB>source" rows

START=$SECONDS
log() { printf '[build-mirror %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - START))" "$*" >&2; }

# step NAME FN [ARGS...]: one line when a step starts and one when it ends, with its time.
step() {
  local name=$1 t0=$SECONDS
  shift
  log "step $name ..."
  "$@"
  log "step $name done in $((SECONDS - t0))s"
}
die() { log "ERROR: $*"; exit 1; }

usage() {
  cat <<EOF
usage: $0 [--verify] [--no-upgrade-targets] [--help]
  --verify               re-hash every artifact (sha256) instead of the size+mtime stamp
  --no-upgrade-targets   only $K8S_VERSION's kube binaries (not ${K8S_UPGRADE_VERSIONS[*]})
env: DIRECTOR_BOOT_CACHE_DIR (default \$HOME/.cache/director-boot),
     DIRECTOR_BOOT_GOCACHE, DIRECTOR_BOOT_GOMODCACHE (default under the cache dir)
EOF
}

parse_args() {
  while (($#)); do
    case $1 in
      --verify) VERIFY_FULL=1 ;;
      --no-upgrade-targets) K8S_UPGRADE_VERSIONS=() ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
    shift
  done
}

require_tools() {
  local missing=() t
  for t in go gcc pkg-config umoci dpkg-deb apt-get file readelf sha256sum tar gzip stat flock; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  [[ -f /usr/lib/x86_64-linux-gnu/libseccomp.a ]] || missing+=(libseccomp-dev)
  ((${#missing[@]} == 0)) && return 0
  die "missing tools: ${missing[*]} (Debian: apt-get install golang gcc libc6-dev pkg-config libseccomp-dev umoci file binutils)"
}

take_lock() {
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.build-mirror.lock"
  flock -n 9 || die "another build-mirror.sh holds $CACHE_DIR/.build-mirror.lock"
}

# Fingerprint of everything that decides the mirror's content.
fingerprint() {
  {
    printf '%s\n' "$K8S_VERSION" "$CRICTL_VERSION" "$COREDNS_VERSION" "$PAUSE_TAG" \
      "$IMAGE_CREATED" "$ETCD_VERSION" "$CONTAINERD_VERSION" "$RUNC_VERSION" "$CNI_VERSION"
    printf '%s\n' "${DEB_PACKAGES[@]}" "${K8S_COMMANDS[@]}" "${CNI_PLUGINS[@]}" layout-2
    sha256sum <"$PAUSE_SRC"
  } | sha256sum | cut -d' ' -f1
}

file_stamp() { stat -c '%s %Y' "$1"; }

# ---- warm path ----------------------------------------------------------------
# 0 when manifest.json exists, the fingerprint matches and every recorded file
# still has its recorded size+mtime (or sha256 with --verify).
mirror_is_current() {
  [[ -s $MIRROR/manifest.json && -s $MIRROR/pinned.yaml && -s $STAMPS ]] || return 1
  local fp rel size mtime sha
  # Outputs added since a mirror of the same pins may have been built: built on their own.
  for rel in "${ADDED_OUTPUTS[@]}"; do
    grep -q "^$rel " "$STAMPS" || { log "new output: $rel"; return 1; }
  done
  read -r _ fp <"$STAMPS"
  [[ $fp == "$(fingerprint)" ]] || { log "pins or sources changed"; return 1; }
  while read -r rel size mtime sha; do
    [[ -f $MIRROR/$rel ]] || { log "missing: $rel"; return 1; }
    if ((VERIFY_FULL)); then
      [[ $(sha256sum <"$MIRROR/$rel" | cut -d' ' -f1) == "$sha" ]] ||
        { log "sha256 mismatch: $rel"; return 1; }
    else
      [[ $(file_stamp "$MIRROR/$rel") == "$size $mtime" ]] ||
        { log "changed since last build: $rel"; return 1; }
    fi
  done < <(tail -n +2 "$STAMPS")
}

# Drop outputs that no longer match their recorded sha256 (so they get rebuilt);
# on a pin change, drop the whole mirror.
invalidate_stale() {
  [[ -s $STAMPS ]] || return 0
  local fp rel size mtime sha
  read -r _ fp <"$STAMPS"
  if [[ $fp != "$(fingerprint)" ]]; then
    log "fingerprint changed: clearing $MIRROR"
    rm -rf "$MIRROR"
    return 0
  fi
  while read -r rel size mtime sha; do
    [[ -f $MIRROR/$rel ]] || continue
    [[ $(file_stamp "$MIRROR/$rel") == "$size $mtime" ]] && ((!VERIFY_FULL)) && continue
    [[ $(sha256sum <"$MIRROR/$rel" | cut -d' ' -f1) == "$sha" ]] && continue
    log "invalid, will rebuild: $rel"
    rm -f "$MIRROR/$rel"
  done < <(tail -n +2 "$STAMPS")
}

all_present() {
  local rel
  for rel in "$@"; do [[ -s $MIRROR/$rel ]] || return 1; done
}

record() { ARTIFACTS+=("$(printf '%s\t%s\t%s\t%s\t%s' "$@")"); }

# Atomic install of an executable into the mirror.
put_binary() {
  local src=$1 rel=$2
  mkdir -p "$(dirname "$MIRROR/$rel")"
  install -m 0755 "$src" "$MIRROR/$rel.tmp"
  mv -f "$MIRROR/$rel.tmp" "$MIRROR/$rel"
}

# ---- Debian packages (.deb extracted, never installed) ---------------------
fetch_debs() {
  local dir=$WORK/debs pkg missing=()
  mkdir -p "$dir"
  for pkg in "${DEB_PACKAGES[@]}"; do
    compgen -G "$dir/${pkg}_*.deb" >/dev/null || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  log "apt-get download ${missing[*]}"
  (cd "$dir" && apt-get download "${missing[@]}" 2>/dev/null) || {
    log "apt-get download failed; running apt-get update once"
    apt-get update -qq
    (cd "$dir" && apt-get download "${missing[@]}")
  }
}

deb_file() { compgen -G "$WORK/debs/${1}_*.deb" | sort -V | tail -n 1; }
deb_version() { dpkg-deb -f "$(deb_file "$1")" Version; }

extract_deb() {
  local pkg=$1 root=$WORK/debroot/$1
  if [[ ! -d $root ]]; then
    rm -rf "$root.tmp"
    mkdir -p "$root.tmp"
    dpkg-deb -x "$(deb_file "$pkg")" "$root.tmp"
    mv "$root.tmp" "$root"
  fi
  printf '%s\n' "$root"
}

# deb_binary PKG PATH-IN-DEB MIRROR-RELPATH NAME
deb_binary() {
  local pkg=$1 inpath=$2 rel=$3 name=$4 root
  if ! all_present "$rel"; then
    root=$(extract_deb "$pkg")
    put_binary "$root/$inpath" "$rel"
  fi
  record "$name" "$(deb_version "$pkg")" binary "$rel" "debian:$pkg"
}

# ---- Go builds ----------------------------------------------------------------
k8s_ldflags() {
  local v=$1 released=$2 minor pkg flags="-s -w"
  minor=${v#v1.}; minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=archive -X $pkg.buildDate=$released"
  done
  printf '%s\n' "$flags"
}

# Staging modules = the k8s.io/* modules that k8s.io/kubernetes requires at
# the placeholder version v0.0.0 (its own go.mod replaces them with ./staging).
k8s_staging_modules() {
  awk '/^require[ \t]*\(/ {r=1; next} r && /^\)/ {r=0}
       r && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$1"
}

# Writes the generated module for kubernetes $2 into $1; prints kubernetes' release time.
write_k8s_module() {
  local dir=$1 version=$2 json gomod staging_v mod
  mkdir -p "$dir"
  json=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$version")
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p' <<<"$json")
  [[ -s $gomod ]] || die "no go.mod for k8s.io/kubernetes@$version"
  staging_v=v0.${version#v1.}
  {
    printf 'module director-boot.local/mirror/kubernetes\n\ngo 1.26\n\n'
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$version"
    for mod in $(k8s_staging_modules "$gomod"); do
      printf '\t%s => %s %s\n' "$mod" "$mod" "$staging_v"
    done
    printf ')\n'
  } >"$dir/go.mod"
  sed -n 's/.*"Time": *"\([^"]*\)".*/\1/p' "${gomod%.mod}.info"
}

# k8s_build VERSION OUT-DIR: the kube binaries of kubernetes VERSION into OUT-DIR.
k8s_build() {
  local version=$1 out=$2 dir=$WORK/go-kubernetes-$1 released c pkgs=()
  released=$(write_k8s_module "$dir" "$version")
  log "building kubernetes $version (${K8S_COMMANDS[*]}); cold: several minutes"
  for c in "${K8S_COMMANDS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  (cd "$dir" && go build -mod=mod -trimpath -tags providerless \
    -ldflags "$(k8s_ldflags "$version" "$released")" -o "$out/" "${pkgs[@]}")
}

k8s_artifacts() {
  local rels=() c out
  for c in "${K8S_COMMANDS[@]}"; do rels+=("bin/$c"); done
  if ! all_present "${rels[@]}"; then
    out=$(mktemp -d "$WORK/k8s-out.XXXXXX")
    k8s_build "$K8S_VERSION" "$out"
    for c in "${K8S_COMMANDS[@]}"; do put_binary "$out/$c" "bin/$c"; done
    rm -rf "$out"
  fi
  for c in "${K8S_COMMANDS[@]}"; do
    record "$c" "$K8S_VERSION" binary "bin/$c" "go:k8s.io/kubernetes@$K8S_VERSION"
  done
}

# ---- upgrade targets: versions/VERSION/bin/ ----------------------------------
UPGRADE_ROWS=()   # "version<TAB>name<TAB>relpath" rows (manifest's kubernetes_versions)

upgrade_targets_present() {
  local v c
  for v in "${K8S_UPGRADE_VERSIONS[@]}"; do
    for c in "${K8S_COMMANDS[@]}"; do
      [[ -s $MIRROR/versions/$v/bin/$c ]] || return 1
    done
  done
}

# A missing version is built into a hidden directory and renamed into place as a whole; a
# version with a file missing (dropped as invalid) gets that file back, one atomic rename each.
upgrade_artifacts() {
  local v c out stage rels
  for v in "${K8S_UPGRADE_VERSIONS[@]}"; do
    [[ $v != "$K8S_VERSION" ]] || die "K8S_UPGRADE_VERSIONS lists the default $K8S_VERSION"
    rels=()
    for c in "${K8S_COMMANDS[@]}"; do rels+=("versions/$v/bin/$c"); done
    if ! all_present "${rels[@]}"; then
      out=$(mktemp -d "$WORK/k8s-out.XXXXXX")
      k8s_build "$v" "$out"
      if [[ ! -d $MIRROR/versions/$v ]]; then
        stage=$MIRROR/versions/.$v.partial
        rm -rf "$stage"
        mkdir -p "$stage/bin"
        for c in "${K8S_COMMANDS[@]}"; do install -m 0755 "$out/$c" "$stage/bin/$c"; done
        mv "$stage" "$MIRROR/versions/$v"
      else
        for c in "${K8S_COMMANDS[@]}"; do put_binary "$out/$c" "versions/$v/bin/$c"; done
      fi
      rm -rf "$out"
    fi
    for c in "${K8S_COMMANDS[@]}"; do
      UPGRADE_ROWS+=("$(printf '%s\t%s\t%s' "$v" "$c" "versions/$v/bin/$c")")
    done
  done
}

# A generated module that only requires MODULE@VERSION, so the tool is built
# with exactly the dependency versions its own go.mod pins. (`go install
# pkg@version` is avoided: it reads the proxy's @v/list, which this proxy
# refuses for some modules, e.g. cri-tools.)
write_tool_module() {
  local dir=$1 module=$2 version=$3
  mkdir -p "$dir"
  printf 'module director-boot.local/mirror/%s\n\ngo 1.26\n\nrequire %s %s\n' \
    "${module##*/}" "$module" "$version" >"$dir/go.mod"
}

# go_tool_binary NAME MODULE PACKAGE VERSION LDFLAGS
go_tool_binary() {
  local name=$1 module=$2 pkg=$3 version=$4 ldflags=$5 dir=$WORK/go-$1-$4 out
  if ! all_present "bin/$name"; then
    log "building $name $version"
    write_tool_module "$dir" "$module" "$version"
    out=$(mktemp -d "$WORK/$name-out.XXXXXX")
    (cd "$dir" && go build -mod=mod -trimpath -ldflags "$ldflags" -o "$out/$name" "$pkg")
    put_binary "$out/$name" "bin/$name"
    rm -rf "$out"
  fi
  record "$name" "$version" binary "bin/$name" "go:${pkg}@$version"
}

go_tool_artifacts() {
  go_tool_binary crictl sigs.k8s.io/cri-tools sigs.k8s.io/cri-tools/cmd/crictl \
    "$CRICTL_VERSION" "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
  go_tool_binary coredns github.com/coredns/coredns github.com/coredns/coredns \
    "$COREDNS_VERSION" "-s -w"
}

# go_module_build MODULE VERSION CGO TAGS LDFLAGS DEST-DIR PKG=NAME...
# Builds packages of MODULE@VERSION (through a generated module that only requires it, so
# the module's own go.mod decides every dependency) into DEST-DIR/NAME, unless all present.
go_module_build() {
  local module=$1 version=$2 cgo=$3 tags=$4 ldflags=$5 dest=$6 spec rels=() dir out
  shift 6
  for spec in "$@"; do rels+=("$dest/${spec#*=}"); done
  all_present "${rels[@]}" && return 0
  dir=$WORK/go-${module//\//_}-$version
  log "building ${module} ${version}: ${*#*=}"
  write_tool_module "$dir" "$module" "$version"
  out=$(mktemp -d "$WORK/build-out.XXXXXX")
  for spec in "$@"; do
    (cd "$dir" && CGO_ENABLED=$cgo go build -mod=mod -trimpath -tags "$tags" \
      -ldflags "$ldflags" -o "$out/${spec#*=}" "${spec%%=*}")
    put_binary "$out/${spec#*=}" "$dest/${spec#*=}"
  done
  rm -rf "$out"
}

etcd_artifacts() {
  local v=$ETCD_VERSION ld
  ld="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v"
  go_module_build go.etcd.io/etcd/server/v3 "$v" 0 "netgo osusergo" "$ld" bin \
    go.etcd.io/etcd/server/v3=etcd
  go_module_build go.etcd.io/etcd/etcdctl/v3 "$v" 0 "netgo osusergo" "$ld" bin \
    go.etcd.io/etcd/etcdctl/v3=etcdctl
  # etcdutl: offline snapshot restore (`director-boot restore`); etcdctl 3.6 has none.
  go_module_build go.etcd.io/etcd/etcdutl/v3 "$v" 0 "netgo osusergo" "$ld" bin \
    go.etcd.io/etcd/etcdutl/v3=etcdutl
  record etcd "$v" binary bin/etcd "go:go.etcd.io/etcd/server/v3@$v"
  record etcdctl "$v" binary bin/etcdctl "go:go.etcd.io/etcd/etcdctl/v3@$v"
  record etcdutl "$v" binary bin/etcdutl "go:go.etcd.io/etcd/etcdutl/v3@$v"
}

containerd_artifacts() {
  local v=$CONTAINERD_VERSION m=github.com/containerd/containerd/v2 ld c
  ld="-s -w -X $m/version.Version=$v -X $m/version.Revision=$v -X $m/version.Package=github.com/containerd/containerd"
  # Upstream's static release: no cgo (btrfs snapshotter left out), netgo/osusergo.
  go_module_build "$m" "$v" 0 "no_btrfs urfave_cli_no_docs netgo osusergo static_build" "$ld" bin \
    "$m/cmd/containerd=containerd" "$m/cmd/containerd-shim-runc-v2=containerd-shim-runc-v2" \
    "$m/cmd/ctr=ctr"
  for c in containerd containerd-shim-runc-v2 ctr; do
    record "$c" "$v" binary "bin/$c" "go:$m@$v"
  done
}

# runc needs cgo for seccomp: linked statically against Debian's libseccomp.a (libseccomp-dev).
runc_artifacts() {
  local v=$RUNC_VERSION ld
  ld="-s -w -X main.version=${v#v} -X main.gitCommit=$v -linkmode external -extldflags -static"
  go_module_build github.com/opencontainers/runc "$v" 1 \
    "seccomp netgo osusergo urfave_cli_no_docs" "$ld" bin github.com/opencontainers/runc=runc
  record runc "$v" binary bin/runc "go:github.com/opencontainers/runc@$v (seccomp, static libseccomp)"
}

cni_artifacts() {
  local v=$CNI_VERSION m=github.com/containernetworking/plugins p specs=()
  for p in "${CNI_PLUGINS[@]}"; do specs+=("$m/plugins/$p=${p#*/}"); done
  go_module_build "$m" "$v" 0 "netgo osusergo" \
    "-s -w -X $m/pkg/utils/buildversion.BuildVersion=$v" cni "${specs[@]}"
  for p in "${CNI_PLUGINS[@]}"; do
    record "cni-${p#*/}" "$v" binary "cni/${p#*/}" "go:$m@$v"
  done
}

# ---- upstream layout + pinned manifest ---------------------------------------
# The binaries again, in the layout of the upstream releases (kubespray's files_repo
# layout: host + path of the download URL), so `director-boot artifacts export` can serve
# them and `artifacts fetch --manifest mirror/pinned.yaml` can check them. Single-file
# downloads are hard links; tarballs are reproducible (sorted, mtime 0, owner 0, gzip -n).
UPSTREAM_ROWS=()   # "component<TAB>version<TAB>relpath<TAB>members" rows

upstream_file() {
  local component=$1 version=$2 rel=$3 src=$4
  mkdir -p "$(dirname "$MIRROR/upstream/$rel")"
  ln -f "$MIRROR/$src" "$MIRROR/upstream/$rel"
  UPSTREAM_ROWS+=("$(printf '%s\t%s\t%s\t%s' "$component" "$version" "$rel" "=$src")")
}

# upstream_tarball COMPONENT VERSION RELPATH PREFIX MEMBER=MIRROR-REL...
upstream_tarball() {
  local component=$1 version=$2 rel=$3 prefix=$4 spec stage members=() stale=0
  shift 4
  [[ -s $MIRROR/upstream/$rel ]] || stale=1
  for spec in "$@"; do [[ $MIRROR/${spec#*=} -nt $MIRROR/upstream/$rel ]] && stale=1; done
  if ((stale)); then
    stage=$(mktemp -d "$WORK/tarball.XXXXXX")
    for spec in "$@"; do
      install -D -m 0755 "$MIRROR/${spec#*=}" "$stage/$prefix${spec%%=*}"
    done
    mkdir -p "$(dirname "$MIRROR/upstream/$rel")"
    (cd "$stage" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -cf - .) |
      gzip -n -6 >"$MIRROR/upstream/$rel.tmp"
    mv -f "$MIRROR/upstream/$rel.tmp" "$MIRROR/upstream/$rel"
    rm -rf "$stage"
  fi
  for spec in "$@"; do members+=("$prefix${spec%%=*}=${spec#*=}"); done
  UPSTREAM_ROWS+=("$(printf '%s\t%s\t%s\t%s' "$component" "$version" "$rel" "${members[*]}")")
}

upstream_layout() {
  local k=${K8S_VERSION#v} c p cni=()
  for c in "${K8S_COMMANDS[@]}"; do
    upstream_file "$c" "$k" "dl.k8s.io/release/v$k/bin/linux/$ARCH/$c" "bin/$c"
  done
  upstream_tarball etcd "${ETCD_VERSION#v}" \
    "github.com/etcd-io/etcd/releases/download/$ETCD_VERSION/etcd-$ETCD_VERSION-linux-$ARCH.tar.gz" \
    "etcd-$ETCD_VERSION-linux-$ARCH/" etcd=bin/etcd etcdctl=bin/etcdctl etcdutl=bin/etcdutl
  upstream_tarball containerd "${CONTAINERD_VERSION#v}" \
    "github.com/containerd/containerd/releases/download/$CONTAINERD_VERSION/containerd-static-${CONTAINERD_VERSION#v}-linux-$ARCH.tar.gz" \
    "" bin/containerd=bin/containerd bin/containerd-shim-runc-v2=bin/containerd-shim-runc-v2 \
    bin/ctr=bin/ctr
  upstream_file runc "${RUNC_VERSION#v}" \
    "github.com/opencontainers/runc/releases/download/$RUNC_VERSION/runc.$ARCH" bin/runc
  for p in "${CNI_PLUGINS[@]}"; do cni+=("${p#*/}=cni/${p#*/}"); done
  upstream_tarball cni-plugins "${CNI_VERSION#v}" \
    "github.com/containernetworking/plugins/releases/download/$CNI_VERSION/cni-plugins-linux-$ARCH-$CNI_VERSION.tgz" \
    "./" "${cni[@]}"
  upstream_tarball crictl "${CRICTL_VERSION#v}" \
    "github.com/kubernetes-sigs/cri-tools/releases/download/$CRICTL_VERSION/crictl-$CRICTL_VERSION-linux-$ARCH.tar.gz" \
    "" crictl=bin/crictl
}

# pinned.yaml: src/artifacts/pinned.yaml's format, one architecture, the sha256 of what was
# built. URLs are the upstream ones; `fetch --from BASE` takes host+path below BASE.
write_pinned() {
  local row component version rel members m sha name out=$MIRROR/pinned.yaml.tmp
  {
    printf '# Written by scripts/build-mirror.sh: what this lab build made (%s only), in the\n' "$ARCH"
    printf '# upstream release layout under upstream/. Use with\n'
    printf '#   director-boot artifacts fetch --from URL --manifest %s\n' "$MIRROR/pinned.yaml"
    printf 'source: "scripts/build-mirror.sh (static builds from the upstream Go modules), %s"\n' \
      "$(go env GOVERSION)"
    printf 'kubernetes_version: %s\ncomponents:\n' "$K8S_VERSION"
    for row in "${UPSTREAM_ROWS[@]}"; do
      IFS=$'\t' read -r component version rel members <<<"$row"
      sha=$(sha256sum <"$MIRROR/upstream/$rel" | cut -d' ' -f1)
      printf -- '- name: %s\n  version: "%s"\n  url: "https://%s"\n' "$component" "$version" "$rel"
      printf '  sha256: {%s: %s}\n  files:\n' "$ARCH" "$sha"
      for m in $members; do
        if [[ $m == =* ]]; then
          name=${m#=}; name=${name#bin/}
          printf '  - {name: %s, path: "%s"}\n' "$name" "${m#=}"
        else
          name=${m#*=}
          if [[ $name == cni/* ]]; then name=cni-${name#cni/}; else name=${name#bin/}; fi
          printf '  - {name: %s, member: "%s", path: "%s"}\n' "$name" "${m%%=*}" "${m#*=}"
        fi
      done
    done
    for name in pause coredns busybox kube-network-policies local-path-provisioner; do
      row=$(printf '%s\n' "${ARTIFACTS[@]}" | awk -F'\t' -v n="$name" '$1 == n && $3 == "image"')
      IFS=$'\t' read -r _ version _ rel m <<<"$row"
      sha=$(sha256sum <"$MIRROR/$rel" | cut -d' ' -f1)
      printf -- '- name: %s\n  kind: image\n  version: "%s"\n  ref: "%s"\n' "$name" "$version" "${m#ref:}"
      printf '  path: "%s"\n  sha256: {all: %s}\n' "$rel" "$sha"
    done
  } >"$out"
  mv -f "$out" "$MIRROR/pinned.yaml"
}

# ---- images (umoci: OCI layout -> tar accepted by `ctr images import`) ------
build_pause_binary() {
  local out=$WORK/pause
  gcc -Os -static -s -Wall -Wextra -o "$out.tmp" "$PAUSE_SRC"
  mv -f "$out.tmp" "$out"
  printf '%s\n' "$out"
}

busybox_rootfs() {
  local rootfs=$1 bb applet
  bb=$(extract_deb busybox-static)/bin/busybox
  install -D -m 0755 "$bb" "$rootfs/bin/busybox"
  while read -r applet; do
    [[ $applet == bin/busybox ]] && continue
    mkdir -p "$rootfs/$(dirname "$applet")"
    ln -sf /bin/busybox "$rootfs/$applet"
  done < <("$bb" --list-full)
  mkdir -p "$rootfs/tmp" "$rootfs/etc" "$rootfs/root"
  chmod 1777 "$rootfs/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$rootfs/etc/group"
}

# oci_image NAME REF POPULATE-FN [umoci config args...]
oci_image() {
  local name=$1 ref=$2 populate=$3 layout bundle rel=images/$1.tar
  shift 3
  if ! all_present "$rel"; then
    log "image $ref"
    layout=$WORK/oci/$name
    bundle=$WORK/oci/$name-bundle
    rm -rf "$layout" "$bundle"
    umoci init --layout "$layout"
    umoci new --image "$layout:$ref"
    umoci unpack --image "$layout:$ref" "$bundle" >/dev/null
    "$populate" "$bundle/rootfs"
    find "$bundle/rootfs" -exec touch -h -d "$IMAGE_CREATED" {} +
    umoci repack --image "$layout:$ref" --history.created "$IMAGE_CREATED" \
      --history.created_by "scripts/build-mirror.sh" "$bundle"
    umoci config --image "$layout:$ref" --author director-boot \
      --created "$IMAGE_CREATED" --history.created "$IMAGE_CREATED" \
      --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
    umoci gc --layout "$layout"
    mkdir -p "$MIRROR/images"
    tar -C "$layout" --sort=name --mtime="$IMAGE_CREATED" --owner=0 --group=0 \
      --numeric-owner -cf "$MIRROR/$rel.tmp" oci-layout index.json blobs
    mv -f "$MIRROR/$rel.tmp" "$MIRROR/$rel"
    rm -rf "$layout" "$bundle"
  fi
  record "$name" "${ref##*:}" image "$rel" "ref:$ref"
}

pause_rootfs() { install -m 0755 "$(build_pause_binary)" "$1/pause"; }
coredns_rootfs() { install -m 0755 "$MIRROR/bin/coredns" "$1/coredns"; }

image_artifacts() {
  local bbv
  bbv=$(deb_version busybox-static)        # e.g. 1:1.35.0-4+deb12u1+b1
  bbv=${bbv#*:}; bbv=${bbv%%-*}; bbv=${bbv%.*}   # -> 1.35
  oci_image pause "registry.k8s.io/pause:$PAUSE_TAG" pause_rootfs \
    --config.entrypoint /pause --config.user 65535:65535
  oci_image coredns "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" coredns_rootfs \
    --config.entrypoint /coredns --config.exposedports 53/udp \
    --config.exposedports 53/tcp --config.exposedports 9153/tcp
  oci_image busybox "docker.io/library/busybox:$bbv" busybox_rootfs --config.cmd sh
}

# ---- NetworkPolicy engine: kube-network-policies (role network-policy) ------
# Self-contained step with its own stamp: SIG Network's kube-network-policies
# from its Go module, with images/kube-network-policies/xt-nfqueue.patch (the
# NFQUEUE verdict through the x_tables target, for kernels without nft_queue),
# built static into images/kube-network-policies.tar. Rebuilt only when the
# version or the patch changes.
readonly KNP_MODULE=sigs.k8s.io/kube-network-policies
readonly KNP_VERSION=v0.8.0
readonly KNP_PATCH=$REPO_ROOT/images/kube-network-policies/xt-nfqueue.patch
readonly KNP_REF=localhost/director-boot/kube-network-policies:$KNP_VERSION-xtnfqueue
readonly KNP_REL=images/kube-network-policies.tar
readonly KNP_STAMP=$MIRROR/.stamp-kube-network-policies

netpol_fingerprint() {
  printf '%s %s %s %s\n' "$KNP_VERSION" "$KNP_REF" "$IMAGE_CREATED" \
    "$(sha256sum <"$KNP_PATCH" | cut -d' ' -f1)"
}

netpol_is_current() {
  [[ -s $MIRROR/$KNP_REL && -s $KNP_STAMP && $(<"$KNP_STAMP") == "$(netpol_fingerprint)" ]]
}

# Prints the path of the patched, static binary.
build_netpol_binary() {
  local src=$WORK/go-kube-network-policies-$KNP_VERSION json dir out=$WORK/kube-network-policies
  command -v patch >/dev/null || die "missing tool: patch (Debian: apt-get install patch)"
  json=$(cd "$WORK" && go mod download -json "$KNP_MODULE@$KNP_VERSION")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' <<<"$json")
  [[ -d $dir ]] || die "no source for $KNP_MODULE@$KNP_VERSION"
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  patch -s -p1 -d "$src" <"$KNP_PATCH"
  log "building kube-network-policies $KNP_VERSION (patched: xt NFQUEUE)"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out.tmp" ./cmd)
  mv -f "$out.tmp" "$out"
  printf '%s\n' "$out"
}

netpol_rootfs() { install -D -m 0755 "$(build_netpol_binary)" "$1/bin/netpol"; }

netpol_artifacts() {
  netpol_is_current || rm -f "$MIRROR/$KNP_REL" "$KNP_STAMP"
  oci_image kube-network-policies "$KNP_REF" netpol_rootfs --config.entrypoint /bin/netpol
}

# After write_manifest: the image in the manifest is the one this stamp names.
netpol_stamp() { netpol_fingerprint >"$KNP_STAMP"; }

# ---- default StorageClass: local-path-provisioner (role local-path-storage) --
# Self-contained step with its own stamp, like kube-network-policies: Rancher's
# local-path-provisioner (what k3s ships) from its Go module, built static into
# images/local-path-provisioner.tar. Its helper pods (mkdir/rm of a volume's
# directory) run the mirror's busybox image. Rebuilt only when the pin changes.
readonly LPP_MODULE=github.com/rancher/local-path-provisioner
readonly LPP_VERSION=v0.0.30
readonly LPP_REF=localhost/director-boot/local-path-provisioner:$LPP_VERSION
readonly LPP_REL=images/local-path-provisioner.tar
readonly LPP_STAMP=$MIRROR/.stamp-local-path-provisioner

lpp_fingerprint() { printf '%s %s %s\n' "$LPP_VERSION" "$LPP_REF" "$IMAGE_CREATED"; }

lpp_is_current() {
  [[ -s $MIRROR/$LPP_REL && -s $LPP_STAMP && $(<"$LPP_STAMP") == "$(lpp_fingerprint)" ]]
}

# Prints the path of the static binary.
build_lpp_binary() {
  local src=$WORK/go-local-path-provisioner-$LPP_VERSION json dir out=$WORK/local-path-provisioner
  json=$(cd "$WORK" && go mod download -json "$LPP_MODULE@$LPP_VERSION")
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' <<<"$json")
  [[ -d $dir ]] || die "no source for $LPP_MODULE@$LPP_VERSION"
  rm -rf "$src"
  cp -r "$dir" "$src"
  chmod -R u+w "$src"
  # The module zip keeps vendor/modules.txt but not the vendored code: build from the proxy.
  rm -rf "$src/vendor"
  log "building local-path-provisioner $LPP_VERSION"
  (cd "$src" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$out.tmp" .)
  mv -f "$out.tmp" "$out"
  rm -rf "$src"
  printf '%s\n' "$out"
}

lpp_rootfs() {
  install -D -m 0755 "$(build_lpp_binary)" "$1/usr/bin/local-path-provisioner"
  mkdir -p "$1/tmp" "$1/etc"
  chmod 1777 "$1/tmp"
}

lpp_artifacts() {
  lpp_is_current || rm -f "$MIRROR/$LPP_REL" "$LPP_STAMP"
  oci_image local-path-provisioner "$LPP_REF" lpp_rootfs \
    --config.entrypoint /usr/bin/local-path-provisioner
}

lpp_stamp() { lpp_fingerprint >"$LPP_STAMP"; }

# ---- overlay encryption: wireguard-go + director-wg (role overlay-wireguard) -----
# Self-contained step with its own stamp: the userspace WireGuard implementation for hosts
# without the kernel module (this machine's kernel has none), and director-wg
# (scripts/director-wg: wgctrl, which drives the kernel module and wireguard-go alike), both
# static. Rebuilt only when the pin or director-wg's source changes.
readonly WG_GO_MODULE=golang.zx2c4.com/wireguard
readonly WG_GO_VERSION=v0.0.0-20260522210424-ecfc5a8d5446   # wireguard-go 0.0.20250522
readonly WG_TOOL_SRC=$REPO_ROOT/scripts/director-wg
readonly WG_STAMP=$MIRROR/.stamp-wireguard

wg_fingerprint() {
  printf '%s %s\n' "$WG_GO_VERSION" \
    "$(cat "$WG_TOOL_SRC/main.go" "$WG_TOOL_SRC/go.mod" "$WG_TOOL_SRC/go.sum" | sha256sum | cut -d' ' -f1)"
}

wg_is_current() {
  all_present bin/wireguard-go bin/director-wg && [[ -s $WG_STAMP && $(<"$WG_STAMP") == "$(wg_fingerprint)" ]]
}

wg_artifacts() {
  local out
  wg_is_current || rm -f "$MIRROR/bin/wireguard-go" "$MIRROR/bin/director-wg" "$WG_STAMP"
  go_module_build "$WG_GO_MODULE" "$WG_GO_VERSION" 0 "" "-s -w" bin "$WG_GO_MODULE=wireguard-go"
  if ! all_present bin/director-wg; then
    log "building director-wg (scripts/director-wg)"
    out=$(mktemp -d "$WORK/director-wg.XXXXXX")
    (cd "$WG_TOOL_SRC" && go build -trimpath -ldflags "-s -w" -o "$out/director-wg" .)
    put_binary "$out/director-wg" bin/director-wg
    rm -rf "$out"
  fi
  record wireguard-go "$WG_GO_VERSION" binary bin/wireguard-go "go:$WG_GO_MODULE@$WG_GO_VERSION"
  record director-wg "$(wg_fingerprint | cut -c1-12)" binary bin/director-wg \
    "scripts/director-wg (go:golang.zx2c4.com/wireguard/wgctrl)"
}

wg_stamp() { wg_fingerprint >"$WG_STAMP"; }

# ---- manifest ---------------------------------------------------------------
linkage() {
  local f=$1 libs
  if [[ $(file -b "$f") == *"statically linked"* ]]; then
    printf 'static'
  else
    libs=$(readelf -d "$f" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | paste -sd' ')
    printf 'dynamic (%s)' "$libs"
  fi
}

# sha256 from the previous stamp when size+mtime are unchanged, else hashed.
artifact_sha() {
  local rel=$1 stamp old=""
  stamp=$(file_stamp "$MIRROR/$rel")
  if [[ -f $STAMPS.old ]]; then
    old=$(awk -v r="$rel" -v s="$stamp" '$1 == r && ($2" "$3) == s {print $4}' "$STAMPS.old")
  fi
  [[ -n $old ]] && { printf '%s' "$old"; return; }
  sha256sum <"$MIRROR/$rel" | cut -d' ' -f1
}

# The upgrade targets in manifest.json: "kubernetes_versions": [{"version", "artifacts"}] (a
# key older readers ignore, so "artifacts" keeps naming each binary once).
write_upgrade_versions() {
  local v row rv name rel sha sep vsep=""
  ((${#K8S_UPGRADE_VERSIONS[@]})) || return 0
  printf ',\n  "kubernetes_versions": ['
  for v in "${K8S_UPGRADE_VERSIONS[@]}"; do
    printf '%s\n    {"version": "%s", "artifacts": [' "$vsep" "$v"
    sep=""
    for row in "${UPGRADE_ROWS[@]}"; do
      IFS=$'\t' read -r rv name rel <<<"$row"
      [[ $rv == "$v" ]] || continue
      sha=$(artifact_sha "$rel")
      printf '%s %s %s\n' "$rel" "$(file_stamp "$MIRROR/$rel")" "$sha" >>"$STAMPS.tmp"
      printf '%s  %s\n' "$sha" "$rel" >>"$MIRROR/SHA256SUMS.tmp"
      printf '%s\n      {"name": "%s", "version": "%s", "kind": "binary", "path": "%s", ' \
        "$sep" "$name" "$v" "$rel"
      printf '"sha256": "%s", "size": %s, "source": "go:k8s.io/kubernetes@%s", "linkage": "%s"}' \
        "$sha" "$(stat -c %s "$MIRROR/$rel")" "$v" "$(linkage "$MIRROR/$rel")"
      sep=","
    done
    printf '\n    ]}'
    vsep=","
  done
  printf '\n  ]'
}

write_manifest() {
  local row name version kind rel src sha size sep="" extra
  [[ -f $STAMPS ]] && mv -f "$STAMPS" "$STAMPS.old"
  printf '# %s\n' "$(fingerprint)" >"$STAMPS.tmp"
  : >"$MIRROR/SHA256SUMS.tmp"
  {
    printf '{\n  "kubernetes_version": "%s",\n' "$K8S_VERSION"
    printf '  "go_version": "%s",\n' "$(go env GOVERSION)"
    printf '  "generated_at": "%s",\n  "artifacts": [' "$(date -u +%FT%TZ)"
    for row in "${ARTIFACTS[@]}"; do
      IFS=$'\t' read -r name version kind rel src <<<"$row"
      sha=$(artifact_sha "$rel")
      size=$(stat -c %s "$MIRROR/$rel")
      printf '%s %s %s\n' "$rel" "$(file_stamp "$MIRROR/$rel")" "$sha" >>"$STAMPS.tmp"
      printf '%s  %s\n' "$sha" "$rel" >>"$MIRROR/SHA256SUMS.tmp"
      if [[ $kind == binary ]]; then
        extra=$(printf '"linkage": "%s"' "$(linkage "$MIRROR/$rel")")
      else
        extra=$(printf '"ref": "%s", "format": "oci-archive"' "${src#ref:}")
        src="built by scripts/build-mirror.sh (umoci)"
      fi
      printf '%s\n    {"name": "%s", "version": "%s", "kind": "%s", "path": "%s", ' \
        "$sep" "$name" "$version" "$kind" "$rel"
      printf '"sha256": "%s", "size": %s, "source": "%s", %s}' \
        "$sha" "$size" "$src" "$extra"
      sep=","
    done
    printf '\n  ]'
    write_upgrade_versions
    printf '\n}\n'
  } >"$MIRROR/manifest.json.tmp"
  mv -f "$MIRROR/SHA256SUMS.tmp" "$MIRROR/SHA256SUMS"
  mv -f "$MIRROR/manifest.json.tmp" "$MIRROR/manifest.json"
  mv -f "$STAMPS.tmp" "$STAMPS"
  rm -f "$STAMPS.old"
}

main() {
  parse_args "$@"
  require_tools
  take_lock
  if mirror_is_current && netpol_is_current && lpp_is_current && wg_is_current &&
    upgrade_targets_present; then
    log "mirror up to date: $MIRROR (${#K8S_COMMANDS[@]} k8s binaries, $K8S_VERSION${K8S_UPGRADE_VERSIONS[*]:+; upgrade targets ${K8S_UPGRADE_VERSIONS[*]}})"
    return 0
  fi
  invalidate_stale
  mkdir -p "$MIRROR" "$WORK"
  step "debian packages (busybox-static, for the busybox test image)" fetch_debs
  step "kubernetes $K8S_VERSION" k8s_artifacts
  step "crictl $CRICTL_VERSION, coredns $COREDNS_VERSION" go_tool_artifacts
  step "etcd $ETCD_VERSION" etcd_artifacts
  step "containerd $CONTAINERD_VERSION" containerd_artifacts
  step "runc $RUNC_VERSION" runc_artifacts
  step "cni plugins $CNI_VERSION" cni_artifacts
  step "images" image_artifacts
  step "kube-network-policies $KNP_VERSION" netpol_artifacts
  step "local-path-provisioner $LPP_VERSION" lpp_artifacts
  step "wireguard-go, director-wg" wg_artifacts
  ((${#K8S_UPGRADE_VERSIONS[@]} == 0)) ||
    step "kubernetes upgrade targets ${K8S_UPGRADE_VERSIONS[*]}" upgrade_artifacts
  step "upstream layout" upstream_layout
  step "manifest.json" write_manifest
  step "pinned.yaml" write_pinned
  netpol_stamp
  lpp_stamp
  wg_stamp
  log "mirror ready: $MIRROR ($(du -sh "$MIRROR" | cut -f1)) in $((SECONDS - START))s"
}

main "$@"
