#!/usr/bin/env bash
# Build the upstream Kubernetes conformance suite and the images it pulls, for clusters that
# have no registry, into a cache OUTSIDE the repository:
#
#   ${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}/conformance/
#     bin/e2e.test   `go test -c k8s.io/kubernetes/test/e2e` at the cluster's version, built in
#                    a module that requires k8s.io/kubernetes with one replace line per staging
#                    module (the approach of scripts/build-mirror.sh)
#     bin/ginkgo     the ginkgo CLI of the version k8s.io/kubernetes requires (parallel runs)
#     images/conformance-images.tar
#                    ONE OCI archive holding every image the conformance tests pull, under the
#                    exact names the suite asks for (`e2e.test --list-images`), layers shared:
#                    `director-boot images load INVENTORY FILE` side-loads them all at once
#     images/refs.txt the image names in that archive
#
#   scripts/build-conformance.sh [--force]
#
# The images (what each upstream image does for the tests that use it, built here):
#   agnhost 2.63.0 (and 2.55, the "previous" one: same content, its own image id)
#                  Debian bookworm + the tools upstream's Alpine image installs (dig, curl,
#                  nc, ip, iperf, bash) + /agnhost built from k8s.io/kubernetes/test/images/agnhost
#                  + /coredns + porter's localhost.crt/key, entrypoint /agnhost, cmd pause
#   glibc-dns-testing 2.0.0  Debian bookworm + dnsutils + /coredns (upstream: bookworm-slim)
#   nginx 1.15-4, 1.27-0     Debian's nginx on port 80 in the foreground
#   nautilus 1.8, kitten 1.8 agnhost + the html/ files, cmd test-webserver
#   busybox 1.37.0-1         busybox 1.37.0 built static from its source with `make defconfig`
#                            (as the upstream image; Debian's busybox-static drops environment
#                            variables with names like "data-1", which tests check), every
#                            applet linked in /bin
#   pause 3.10.2             images/pause/pause.c, static
#   sample-apiserver 1.29.2  k8s.io/sample-apiserver's main at the cluster's version
#   etcd 3.6.8-0             the mirror's etcd/etcdctl (3.6) under /usr/local/bin
#   nonewprivs 1.4, nonroot 1.5  nnp.go; Debian with a uid-1234 user
# Cached: each output records a fingerprint of its inputs and is rebuilt only when they change.
set -euo pipefail
shopt -s inherit_errexit

# ---- pins -------------------------------------------------------------------
readonly K8S_VERSION=${DIRECTOR_BOOT_CONFORMANCE_VERSION:-v1.36.3}
readonly SUITE=bookworm
readonly DEBIAN_PACKAGES=(bash curl bind9-dnsutils netcat-openbsd iproute2 iperf util-linux
  nginx procps ca-certificates iputils-ping)
readonly E2E=registry.k8s.io/e2e-test-images
# busybox's source as Debian's archive serves it (the pristine upstream tarball).
readonly BUSYBOX_VERSION=1.37.0
readonly BUSYBOX_URL=http://deb.debian.org/debian/pool/main/b/busybox/busybox_$BUSYBOX_VERSION.orig.tar.bz2
readonly BUSYBOX_SHA256=3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
IMAGE_CREATED=$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
readonly IMAGE_CREATED

# ---- paths ------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly CACHE_DIR=${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}
readonly MIRROR=${DIRECTOR_BOOT_MIRROR_DIR:-$CACHE_DIR/mirror}
readonly OUT=$CACHE_DIR/conformance
readonly WORK=$OUT/work
readonly MODDIR=$WORK/go-e2e-$K8S_VERSION
readonly ARCHIVE=$OUT/images/conformance-images.tar

export GOCACHE=${DIRECTOR_BOOT_GOCACHE:-$CACHE_DIR/go/build}
export GOMODCACHE=${DIRECTOR_BOOT_GOMODCACHE:-$CACHE_DIR/go/mod}
export GOPATH=$CACHE_DIR/go/path
export GOTOOLCHAIN=local GOFLAGS="-modcacherw -buildvcs=false" CGO_ENABLED=0

# shellcheck source=scripts/lib/oci.sh
source "$REPO_ROOT/scripts/lib/oci.sh"

FORCE=0
ONLY=
START=$SECONDS
log() { printf '[build-conformance %s +%ss] %s\n' "$(date -u +%H:%M:%S)" "$((SECONDS - START))" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
sha_of() { sha256sum | cut -d' ' -f1; }

usage() {
  cat <<EOF
usage: $0 [--force] [--suite-only|--images-only]
  builds $OUT/bin/{e2e.test,ginkgo} (k8s.io/kubernetes $K8S_VERSION) and
  $ARCHIVE (every image the conformance tests pull)
  --force   rebuild even what the cache says is current
env: DIRECTOR_BOOT_CACHE_DIR, DIRECTOR_BOOT_MIRROR_DIR (etcd comes from the mirror),
     DIRECTOR_BOOT_DEBIAN_MIRROR (debootstrap's mirror), SOURCE_DATE_EPOCH
EOF
}

require_tools() {
  local missing=() t
  for t in go gcc make curl bzip2 umoci tar jq debootstrap sha256sum flock "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  ((${#missing[@]} == 0)) && return 0
  die "missing tools: ${missing[*]} (Debian: apt-get install golang gcc libc6-dev umoci jq debootstrap)"
}

take_lock() {
  mkdir -p "$OUT/bin" "$OUT/images" "$WORK"
  exec 9>"$OUT/.build-conformance.lock"
  flock -n 9 || die "another build-conformance.sh holds $OUT/.build-conformance.lock"
}

# current NAME FINGERPRINT: OUT/.stamp-NAME holds FINGERPRINT (and --force is not given).
current() { ((!FORCE)) && [[ -s $OUT/.stamp-$1 && $(<"$OUT/.stamp-$1") == "$2" ]]; }
stamp() { printf '%s\n' "$2" >"$OUT/.stamp-$1"; }

# ---- the Go module: k8s.io/kubernetes at the cluster's version -----------------
k8s_staging_modules() {
  awk '/^require[ \t]*\(/ {r=1; next} r && /^\)/ {r=0}
       r && $1 ~ /^k8s\.io\// && $2 == "v0.0.0" {print $1}' "$1"
}

write_module() {
  local json gomod staging_v mod
  mkdir -p "$MODDIR"
  json=$(cd "$MODDIR" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION")
  gomod=$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p' <<<"$json")
  [[ -s $gomod ]] || die "no go.mod for k8s.io/kubernetes@$K8S_VERSION"
  staging_v=v0.${K8S_VERSION#v1.}
  {
    printf 'module director-boot.local/conformance/e2e\n\ngo 1.26\n\n'
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$K8S_VERSION"
    for mod in $(k8s_staging_modules "$gomod"); do
      printf '\t%s => %s %s\n' "$mod" "$mod" "$staging_v"
    done
    printf ')\n'
  } >"$MODDIR/go.mod.new"
  cmp -s "$MODDIR/go.mod.new" "$MODDIR/go.mod" 2>/dev/null || mv -f "$MODDIR/go.mod.new" "$MODDIR/go.mod"
  rm -f "$MODDIR/go.mod.new"
}

k8s_src() { (cd "$MODDIR" && go list -mod=mod -m -f '{{.Dir}}' k8s.io/kubernetes); }

ldflags() {
  local pkg flags="-s -w" minor=${K8S_VERSION#v1.}
  minor=${minor%%.*}
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    flags+=" -X $pkg.gitTreeState=archive"
  done
  printf '%s\n' "$flags"
}

go_fingerprint() { printf '%s %s %s\n' "$K8S_VERSION" "$(go env GOVERSION)" "$(ldflags)" | sha_of; }

# ---- e2e.test and ginkgo ----------------------------------------------------------
build_suite() {
  local fp
  fp=$(go_fingerprint)
  if current suite "$fp" && [[ -x $OUT/bin/e2e.test && -x $OUT/bin/ginkgo ]]; then
    log "suite: up to date ($OUT/bin/e2e.test, $K8S_VERSION)"
    return 0
  fi
  write_module
  log "suite: go test -c k8s.io/kubernetes/test/e2e@$K8S_VERSION (cold: 30-60 min on 2 cores)"
  (cd "$MODDIR" && go test -c -p="${DIRECTOR_BOOT_CONFORMANCE_GO_P:-2}" -mod=mod -trimpath \
    -ldflags "$(ldflags)" -o "$OUT/bin/e2e.test.tmp" k8s.io/kubernetes/test/e2e)
  mv -f "$OUT/bin/e2e.test.tmp" "$OUT/bin/e2e.test"
  log "suite: ginkgo CLI"
  (cd "$MODDIR" && go build -mod=mod -trimpath -ldflags "-s -w" -o "$OUT/bin/ginkgo.tmp" \
    github.com/onsi/ginkgo/v2/ginkgo)
  mv -f "$OUT/bin/ginkgo.tmp" "$OUT/bin/ginkgo"
  stamp suite "$fp"
}

# ---- image inputs -------------------------------------------------------------------
# Static Go binaries of the images: agnhost, sample-apiserver, nnp (nonewprivs).
build_image_binaries() {
  local fp dir=$WORK/bin
  fp=$(go_fingerprint)
  if current image-binaries "$fp" && [[ -x $dir/agnhost && -x $dir/sample-apiserver && -x $dir/nnp ]]; then
    return 0
  fi
  write_module
  mkdir -p "$dir"
  log "images: building agnhost, sample-apiserver, nnp ($K8S_VERSION)"
  (cd "$MODDIR" && go build -mod=mod -trimpath -ldflags "$(ldflags)" -o "$dir/" \
    k8s.io/kubernetes/test/images/agnhost k8s.io/sample-apiserver)
  cp "$(k8s_src)/test/images/nonewprivs/nnp.go" "$WORK/nnp.go"
  (cd "$WORK" && GOFLAGS=-buildvcs=false go build -trimpath -ldflags "-s -w" -o "$dir/nnp" nnp.go)
  stamp image-binaries "$fp"
}

# The Debian base shared by agnhost, glibc-dns-testing and nginx (cached by its inputs).
debian_base() {
  local key dir
  key=$({ printf '%s\n' "$SUITE" "${DEBIAN_PACKAGES[@]}"; declare -f debian_base; } | sha_of)
  dir=$WORK/debian-$SUITE-${key:0:16}
  if [[ ! -f $dir/.complete ]]; then
    log "images: debootstrap $SUITE (minbase + ${DEBIAN_PACKAGES[*]}; 2-5 min)"
    rm -rf "$dir.building" "$WORK"/debian-"$SUITE"-*
    local args=(--variant=minbase "--include=$(IFS=,; echo "${DEBIAN_PACKAGES[*]}")" "$SUITE"
      "$dir.building")
    [[ -n ${DIRECTOR_BOOT_DEBIAN_MIRROR:-} ]] && args+=("$DIRECTOR_BOOT_DEBIAN_MIRROR")
    debootstrap "${args[@]}" >"$WORK/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $WORK/debootstrap.log"
    local r=$dir.building
    rm -rf "${r:?}"/usr/share/{doc,man,info,locale}/* "${r:?}"/var/lib/apt/lists/* \
      "${r:?}"/var/cache/apt/* "${r:?}"/var/log/* "${r:?}"/tmp/* "${r:?}"/run/* \
      "${r:?}"/dev/* "${r:?}"/proc/* "${r:?}"/sys/*
    : >"$r/etc/machine-id"
    : >"$r/etc/resolv.conf"
    printf 'localhost\n' >"$r/etc/hostname"
    # agnhost's user and group (upstream: adduser -u 1000 user-defined-in-image, group 50000)
    printf 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n' >>"$r/etc/passwd"
    printf 'user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n' >>"$r/etc/group"
    printf 'user-defined-in-image:!:19000::::::\n' >>"$r/etc/shadow"
    mkdir -p "$r/home/user-defined-in-image"
    chown 1000:1000 "$r/home/user-defined-in-image"
    # nginx: IPv4 port 80 only (a pod may have no IPv6), the foreground is the entrypoint's
    printf 'server {\n\tlisten 80 default_server;\n\troot /var/www/html;\n\tindex index.html index.nginx-debian.html;\n\tserver_name _;\n\tlocation / { try_files $uri $uri/ =404; }\n}\n' \
      >"$r/etc/nginx/sites-available/default"
    touch "$r/.complete"
    mv "$dir.building" "$dir"
  fi
  printf '%s\n' "$dir"
}

# busybox from source, static, upstream's defconfig (tc left out: it does not build against
# current kernel headers). Cached by version.
busybox_binary() {
  local out=$WORK/busybox-$BUSYBOX_VERSION tarball=$WORK/busybox-$BUSYBOX_VERSION.tar.bz2 src
  if [[ ! -x $out ]]; then
    if [[ ! -s $tarball ]] || [[ $(sha_of <"$tarball") != "$BUSYBOX_SHA256" ]]; then
      log "images: fetching $BUSYBOX_URL"
      curl -fsSL -o "$tarball.tmp" "$BUSYBOX_URL"
      [[ $(sha_of <"$tarball.tmp") == "$BUSYBOX_SHA256" ]] || die "sha256 mismatch: $BUSYBOX_URL"
      mv -f "$tarball.tmp" "$tarball"
    fi
    src=$WORK/busybox-src
    rm -rf "$src"
    mkdir -p "$src"
    tar -C "$src" --strip-components=1 -xjf "$tarball"
    log "images: building busybox $BUSYBOX_VERSION (static, defconfig; a few minutes)"
    make -C "$src" defconfig >/dev/null
    sed -i 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/; s/^CONFIG_TC=y/# CONFIG_TC is not set/' \
      "$src/.config"
    make -C "$src" -j2 >"$WORK/busybox-build.log" 2>&1 ||
      die "busybox build failed; see $WORK/busybox-build.log"
    install -m 0755 "$src/busybox" "$out"
    rm -rf "$src"
  fi
  printf '%s\n' "$out"
}

busybox_root() {
  local root=$1 bb applet
  bb=$(busybox_binary)
  install -D -m 0755 "$bb" "$root/bin/busybox"
  # Every applet in /bin, as in the upstream image (tests run /bin/sysctl, /bin/sh, ...).
  while read -r applet; do
    [[ $applet == busybox ]] && continue
    ln -sf busybox "$root/bin/$applet"
  done < <("$bb" --list)
  mkdir -p "$root/tmp" "$root/etc" "$root/root" "$root/home" "$root/var"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$root/etc/group"
}

# ---- the archive ------------------------------------------------------------------
LAYOUT=$WORK/oci
LAYERS=$WORK/layers

# layer NAME ROOT: a reproducible layer tar of ROOT at $LAYERS/NAME.tar
layer() {
  local name=$1 root=$2 top
  mkdir -p "$LAYERS"
  mapfile -t top < <(cd "$root" && find . -mindepth 1 -maxdepth 1 ! -name .complete -printf '%P\n' | sort)
  find "$root" -mindepth 1 -exec touch -h -d "$IMAGE_CREATED" {} + 2>/dev/null || true
  layer_tar "$root" "$LAYERS/$name.tar" "${top[@]}"
}

# image REF "LAYER..." [umoci config args...]
image() {
  local ref=$1 layers=$2 l
  shift 2
  umoci new --image "$LAYOUT:$ref"
  for l in $layers; do
    umoci raw add-layer --image "$LAYOUT:$ref" --history.created "$IMAGE_CREATED" \
      --history.created_by "scripts/build-conformance.sh: $l" "$LAYERS/$l.tar"
  done
  umoci config --image "$LAYOUT:$ref" --author director-boot --created "$IMAGE_CREATED" \
    --no-history \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --config.label "org.opencontainers.image.ref.name=$ref" "$@"
  printf '%s\n' "$ref" >>"$OUT/images/refs.txt.tmp"
}

stage() { rm -rf "$WORK/stage/$1"; mkdir -p "$WORK/stage/$1"; printf '%s\n' "$WORK/stage/$1"; }

build_images() {
  local fp base src s
  fp=$({
    go_fingerprint
    printf '%s\n' "$SUITE" "${DEBIAN_PACKAGES[@]}" "$IMAGE_CREATED"
    sha_of <"$REPO_ROOT/images/pause/pause.c"
    sha_of <"$MIRROR/bin/etcd"
    sha_of <"$MIRROR/bin/coredns"
    printf '%s\n' "$BUSYBOX_VERSION" "$BUSYBOX_SHA256"
    declare -f debian_base busybox_binary busybox_root layer image build_images
  } | sha_of)
  if current images "$fp" && [[ -s $ARCHIVE ]]; then
    log "images: up to date ($ARCHIVE)"
    return 0
  fi
  [[ -x $MIRROR/bin/etcd && -x $MIRROR/bin/coredns ]] ||
    die "no etcd/coredns in $MIRROR/bin: run scripts/build-mirror.sh first"
  build_image_binaries
  base=$(debian_base)
  src=$(k8s_src)
  rm -rf "$LAYOUT" "$LAYERS" "$OUT/images/refs.txt.tmp"
  umoci init --layout "$LAYOUT"

  log "images: layers"
  layer debian "$base"
  s=$(stage coredns); install -m 0755 "$MIRROR/bin/coredns" "$s/coredns"; layer coredns "$s"
  s=$(stage agnhost)
  install -m 0755 "$WORK/bin/agnhost" "$s/agnhost"
  ln -s agnhost "$s/agnhost-2"
  install -m 0644 "$src/test/images/agnhost/porter/localhost.crt" "$s/localhost.crt"
  install -m 0644 "$src/test/images/agnhost/porter/localhost.key" "$s/localhost.key"
  mkdir -p "$s/uploads"
  layer agnhost "$s"
  for s in nautilus kitten; do
    cp -r "$src/test/images/$s/html" "$WORK/stage-$s.tmp"
    rm -rf "$(stage "$s")"
    mv "$WORK/stage-$s.tmp" "$WORK/stage/$s"
    chmod -R u+w,go+r "$WORK/stage/$s"
    layer "$s" "$WORK/stage/$s"
  done
  s=$(stage busybox); busybox_root "$s"; layer busybox "$s"
  s=$(stage pause)
  gcc -Os -static -s -Wall -Wextra -o "$s/pause" "$REPO_ROOT/images/pause/pause.c"
  layer pause "$s"
  s=$(stage sample-apiserver)
  install -m 0755 "$WORK/bin/sample-apiserver" "$s/sample-apiserver"
  mkdir -p "$s/tmp"; chmod 1777 "$s/tmp"
  layer sample-apiserver "$s"
  s=$(stage etcd)
  install -D -m 0755 "$MIRROR/bin/etcd" "$s/usr/local/bin/etcd"
  install -D -m 0755 "$MIRROR/bin/etcdctl" "$s/usr/local/bin/etcdctl"
  mkdir -p "$s/tmp" "$s/var/lib/etcd"; chmod 1777 "$s/tmp"
  layer etcd "$s"
  s=$(stage nnp); install -D -m 0755 "$WORK/bin/nnp" "$s/usr/local/bin/nnp"; layer nnp "$s"
  s=$(stage nonroot)
  mkdir -p "$s/etc"
  cp "$base/etc/passwd" "$base/etc/group" "$s/etc/"
  printf 'nonroot:x:1234:1234::/home/nonroot:/bin/sh\n' >>"$s/etc/passwd"
  printf 'nonroot:x:1234:\n' >>"$s/etc/group"
  layer nonroot "$s"

  log "images: OCI layout"
  local agn=(--config.entrypoint /agnhost --config.cmd pause --config.exposedports 80/tcp
    --config.exposedports 8080/tcp --config.exposedports 8081/tcp
    --config.exposedports 9376/tcp --config.exposedports 5000/tcp)
  image "$E2E/agnhost:2.63.0" "debian coredns agnhost" "${agn[@]}" \
    --config.label org.opencontainers.image.version=2.63.0
  image "$E2E/agnhost:2.55" "debian coredns agnhost" "${agn[@]}" \
    --config.label org.opencontainers.image.version=2.55
  image "$E2E/glibc-dns-testing:2.0.0" "debian coredns" --config.cmd /bin/bash
  local ngx=(--config.entrypoint nginx --config.cmd -g --config.cmd "daemon off;"
    --config.exposedports 80/tcp --config.stopsignal SIGQUIT)
  image "$E2E/nginx:1.15-4" debian "${ngx[@]}" --config.label org.opencontainers.image.version=1.15-4
  image "$E2E/nginx:1.27-0" debian "${ngx[@]}" --config.label org.opencontainers.image.version=1.27-0
  image "$E2E/nautilus:1.8" "debian coredns agnhost nautilus" --config.entrypoint /agnhost \
    --config.cmd test-webserver --config.exposedports 80/tcp
  image "$E2E/kitten:1.8" "debian coredns agnhost kitten" --config.entrypoint /agnhost \
    --config.cmd test-webserver --config.exposedports 80/tcp
  image "$E2E/busybox:1.37.0-1" busybox --config.cmd sh
  image "registry.k8s.io/pause:3.10.2" pause --config.entrypoint /pause --config.user 65535:65535
  image "$E2E/sample-apiserver:1.29.2" sample-apiserver --config.entrypoint /sample-apiserver
  image "registry.k8s.io/etcd:3.6.8-0" "busybox etcd" --config.workingdir /var/lib/etcd
  image "$E2E/nonewprivs:1.4" "busybox nnp" --config.entrypoint /usr/local/bin/nnp
  image "$E2E/nonroot:1.5" "busybox nonroot" --config.user 1234 --config.cmd sh

  oci_archive "$LAYOUT" "$ARCHIVE"
  mv -f "$OUT/images/refs.txt.tmp" "$OUT/images/refs.txt"
  rm -rf "$LAYOUT" "$LAYERS" "$WORK/stage"
  stamp images "$fp"
  log "images: $ARCHIVE ($(du -h "$ARCHIVE" | cut -f1), $(wc -l <"$OUT/images/refs.txt") names)"
}

# The names e2e.test pulls that the archive does not hold (informational: most are used by
# no conformance test).
report_missing() {
  [[ -x $OUT/bin/e2e.test ]] || return 0
  local missing
  missing=$("$OUT/bin/e2e.test" --list-images 2>/dev/null | grep -vxFf "$OUT/images/refs.txt" || true)
  [[ -z $missing ]] ||
    log "$(wc -l <<<"$missing") names the suite lists are not built (no conformance test pulls them; $OUT/images/not-built.txt)"
  printf '%s\n' "$missing" >"$OUT/images/not-built.txt"
}

main() {
  while (($#)); do
    case $1 in
      --force) FORCE=1 ;;
      --images-only) ONLY=images ;;
      --suite-only) ONLY=suite ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
    shift
  done
  require_tools
  take_lock
  [[ $ONLY == images ]] || build_suite
  [[ $ONLY == suite ]] || build_images
  report_missing
  log "done: $OUT/bin/e2e.test $OUT/bin/ginkgo $ARCHIVE"
}

main "$@"
