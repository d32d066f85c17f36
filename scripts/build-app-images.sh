#!/usr/bin/env bash
# Build the application images director-boot side-loads into clusters that have no registry
# (`director-boot images load INVENTORY FILE...`), as OCI archives in a cache OUTSIDE the
# repository:
#
#   ${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}/app-images/
#     spark.tar   localhost/director-boot/spark:4.0.1   Debian bookworm + OpenJDK 17 JRE +
#                 /opt/venv with pyspark 4.0.1 and Jupyter Notebook 7 (images/spark/)
#     hadoop.tar  localhost/director-boot/hadoop:3.4.2  the same Debian + JRE layer + Hadoop's
#                 jars from Maven Central (images/hadoop/, scripts/lib/app-hadoop.sh)
#     cassandra.tar localhost/director-boot/cassandra:5.0.9  the same Debian layer + Cassandra's
#                 jars from Maven Central (images/cassandra/, scripts/lib/app-cassandra.sh)
#     <name>.json ref, sha256, size, layers, fingerprint of the inputs
#
#   scripts/build-app-images.sh [spark] [cassandra] [hadoop] [--verify] [--force]
#   scripts/build-app-images.sh symphony --installer FILE [--entitlement FILE]
#     symphony.tar  localhost/director-boot/symphony:7.3.2 from IBM's licensed installer, which
#                   the user supplies (images/symphony/README.md); without --installer it says
#                   what to download and from where
#
# (netcheck's probe image is not built here: netcheck builds it from its own binary,
# src/netcheck/probe_image.rs.)
#
# Cached: an archive whose inputs (pins, package lists, requirements, the build functions
# themselves) are unchanged is not rebuilt; the Debian bootstrap and pip's downloads are
# cached separately, so a requirements change does not re-bootstrap Debian.
# --verify runs the images for real (systemd-nspawn / chroot) and imports them into a
# private, throw-away containerd. See scripts/README.md.
set -euo pipefail
shopt -s inherit_errexit

# ---- pins -------------------------------------------------------------------
readonly SUITE=bookworm
readonly SPARK_VERSION=4.0.1
readonly SPARK_PACKAGES=(openjdk-17-jre-headless python3 python3-venv bash procps curl
  ca-certificates tini iproute2 netbase)
IMAGE_CREATED=$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
readonly IMAGE_CREATED

# The image contract the catalog relies on (images/spark/README.md).
readonly SPARK_REF=localhost/director-boot/spark:$SPARK_VERSION
readonly SPARK_ENV=(
  PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64
  SPARK_HOME=/opt/venv/lib/python3.11/site-packages/pyspark
  PYSPARK_PYTHON=/opt/venv/bin/python
  LANG=C.UTF-8
)

# ---- paths ------------------------------------------------------------------
REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly REPO_ROOT
readonly CACHE_DIR=${DIRECTOR_BOOT_CACHE_DIR:-$HOME/.cache/director-boot}
readonly OUT=$CACHE_DIR/app-images
readonly WORK=$OUT/work
readonly SPARK_REQUIREMENTS=$REPO_ROOT/images/spark/requirements.txt
# The entrypoint Spark's Kubernetes scheduler runs in driver and executor pods.
readonly SPARK_ENTRYPOINT=$REPO_ROOT/images/spark/entrypoint.sh
# The host's CA bundle, bind-mounted (never copied) for pip's downloads during the build:
# a host behind a TLS-inspecting proxy trusts more than Debian's bundle does.
readonly HOST_CA=${DIRECTOR_BOOT_HOST_CA:-/etc/ssl/certs/ca-certificates.crt}

# shellcheck source=scripts/lib/oci.sh
source "$REPO_ROOT/scripts/lib/oci.sh"
# shellcheck source=scripts/lib/app-cassandra.sh
source "$REPO_ROOT/scripts/lib/app-cassandra.sh"
# shellcheck source=scripts/lib/app-hadoop.sh
source "$REPO_ROOT/scripts/lib/app-hadoop.sh"

TARGETS=()
VERIFY=0
FORCE=0
INSTALLER=""
ENTITLEMENT=""

log() { printf '[build-app-images %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

usage() {
  cat <<EOF
usage: $0 [spark] [cassandra] [hadoop] [--verify] [--force]
  spark          localhost/director-boot/spark:$SPARK_VERSION -> \$CACHE/app-images/spark.tar
                 (the default when no image is named)
  cassandra      localhost/director-boot/cassandra:$CASSANDRA_VERSION -> \$CACHE/app-images/cassandra.tar
                 (scripts/lib/app-cassandra.sh; jars by mvn from Maven Central)
  hadoop         $HADOOP_REF -> \$CACHE/app-images/hadoop.tar
                 (needs mvn and a JDK: Maven resolves the jars, images/hadoop/pom.xml)
  --verify       run the built images (nspawn/chroot) and import them into a throw-away
                 containerd; fails loudly on any check
  --force        rebuild even when the cache says the archive is current
  symphony --installer FILE [--entitlement FILE]
                 localhost/director-boot/symphony:7.3.2 -> \$CACHE/app-images/symphony.tar from
                 IBM's Symphony installer (podman or docker, Red Hat UBI 8 base); the
                 entitlement is checked and kept beside the archive (0600), never in the image
env: DIRECTOR_BOOT_CACHE_DIR (default \$HOME/.cache/director-boot),
     DIRECTOR_BOOT_DEBIAN_MIRROR (debootstrap's mirror; default: debootstrap's own),
     DIRECTOR_BOOT_HOST_CA (CA bundle pip uses while building; default $HOST_CA),
     SOURCE_DATE_EPOCH (image timestamps; default 0)
EOF
}

parse_args() {
  while (($#)); do
    case $1 in
      spark | cassandra | hadoop | symphony) TARGETS+=("$1") ;;
      --installer) INSTALLER=${2:?--installer needs a file}; shift ;;
      --entitlement) ENTITLEMENT=${2:?--entitlement needs a file}; shift ;;
      --verify) VERIFY=1 ;;
      --force) FORCE=1 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; exit 2 ;;
    esac
    shift
  done
  ((${#TARGETS[@]})) || TARGETS=(spark)
  if [[ -n $INSTALLER$ENTITLEMENT && ! " ${TARGETS[*]} " == *" symphony "* ]]; then
    die "--installer and --entitlement are for the symphony image"
  fi
  # Before any lock or tool check: what to download, for anyone who asks for symphony.
  if [[ " ${TARGETS[*]} " == *" symphony "* && -z $INSTALLER ]]; then
    cat "$SYMPHONY_HELP" >&2
    die "symphony: give IBM's installer with --installer FILE (see above)"
  fi
}

require_tools() {
  local missing=() t
  for t in umoci tar jq sha256sum flock stat "$@"; do
    command -v "$t" >/dev/null 2>&1 || missing+=("$t")
  done
  ((${#missing[@]} == 0)) && return 0
  die "missing tools: ${missing[*]} (Debian: apt-get install umoci jq debootstrap systemd-container binutils)"
}

take_lock() {
  mkdir -p "$OUT" "$WORK"
  exec 9>"$OUT/.build-app-images.lock"
  flock -n 9 || die "another build-app-images.sh holds $OUT/.build-app-images.lock"
}

sha_of() { sha256sum | cut -d' ' -f1; }
file_stamp() { stat -c '%s %Y' "$1"; }

# ---- cache ------------------------------------------------------------------
# is_current NAME FINGERPRINT: the archive exists, was built from these inputs and is
# unchanged since (size+mtime; sha256 too with --verify).
is_current() {
  local name=$1 fp=$2 meta=$OUT/$1.json archive=$OUT/$1.tar
  ((FORCE)) && return 1
  [[ -s $meta && -s $archive ]] || return 1
  [[ $(jq -r .fingerprint "$meta") == "$fp" ]] || { log "$name: inputs changed"; return 1; }
  [[ $(jq -r .stamp "$meta") == "$(file_stamp "$archive")" ]] ||
    { log "$name: $archive changed since it was built"; return 1; }
  if ((VERIFY)); then
    [[ $(sha_of <"$archive") == "$(jq -r .sha256 "$meta")" ]] ||
      { log "$name: sha256 mismatch"; return 1; }
  fi
}

# write_meta NAME REF FINGERPRINT
write_meta() {
  local name=$1 ref=$2 fp=$3 archive=$OUT/$1.tar layers
  layers=$(tar -xOf "$archive" index.json | jq -r '.manifests[0].digest' |
    sed 's/^sha256://' | xargs -I{} tar -xOf "$archive" "blobs/sha256/{}" | jq -c '[.layers[].size]')
  jq -n --arg ref "$ref" --arg path "$archive" --arg sha "$(sha_of <"$archive")" \
    --argjson size "$(stat -c %s "$archive")" --arg stamp "$(file_stamp "$archive")" \
    --arg fp "$fp" --argjson layers "$layers" --arg created "$IMAGE_CREATED" \
    --arg built "$(date -u +%FT%TZ)" \
    '{ref: $ref, path: $path, format: "oci-archive", sha256: $sha, size: $size,
      layer_sizes: $layers, created: $created, built_at: $built, fingerprint: $fp,
      stamp: $stamp}' >"$OUT/$name.json.tmp"
  mv -f "$OUT/$name.json.tmp" "$OUT/$name.json"
}

# ---- running things inside a root filesystem ----------------------------------
# in_root ROOT [nspawn options...] -- COMMAND...: run COMMAND in ROOT with the host's
# network, without registering a machine or a scope unit (no systemd needed on the host) and
# without touching ROOT's /etc (resolv.conf, localtime). (nspawn complains when /run is not
# a tmpfs, as on hosts without systemd; that line is dropped.)
in_root() {
  local root=$1 opts=()
  shift
  while (($#)) && [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  systemd-nspawn --quiet --register=no --keep-unit --machine="dbimg-$$" --link-journal=no \
    --resolv-conf=bind-host --timezone=off --console=pipe --directory="$root" "${opts[@]}" \
    -- "$@" 2> >(grep -v 'Attempted to remove disk file system' >&2)
}

# ---- spark: Debian base ---------------------------------------------------------
# Trim what a container never reads; future `apt-get install`s in derived images stay
# trimmed too (dpkg path excludes, as Debian's slim images do).
slim_debian() {
  local root=${1:?slim_debian needs a root}
  [[ $root != / ]] || die "slim_debian: refusing to trim /"
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d" "$root/etc/apt/apt.conf.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/director-boot-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
  printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
    >"$root/etc/apt/apt.conf.d/90director-boot-no-recommends"
  find "$root/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "${root:?}"/usr/share/{man,info,locale,lintian}/* "${root:?}"/var/lib/apt/lists/* \
    "${root:?}"/var/cache/apt/* "${root:?}"/var/cache/debconf/*-old \
    "${root:?}"/var/lib/dpkg/*-old "${root:?}"/var/log/* "${root:?}"/tmp/* \
    "${root:?}"/var/tmp/* "${root:?}"/run/* "${root:?}"/dev/* "${root:?}"/proc/* \
    "${root:?}"/sys/*
  # A container gets its identity, resolver and hostname from the runtime.
  : >"$root/etc/machine-id"
  : >"$root/etc/resolv.conf"
  printf 'localhost\n' >"$root/etc/hostname"
}

# The bootstrapped base, cached by suite + package list + these functions' text.
spark_base() {
  local key dir
  key=$({
    printf '%s\n' "$SUITE" "${SPARK_PACKAGES[@]}"
    declare -f slim_debian spark_base
  } | sha_of)
  dir=$WORK/base-$SUITE-${key:0:16}
  if [[ ! -f $dir/.complete ]]; then
    log "spark: debootstrap $SUITE (--variant=minbase, ${#SPARK_PACKAGES[@]} packages; 2-5 min)"
    rm -rf "$dir.building" "$WORK"/base-"$SUITE"-*
    local args=(--variant=minbase "--include=$(IFS=,; echo "${SPARK_PACKAGES[*]}")" "$SUITE"
      "$dir.building")
    [[ -n ${DIRECTOR_BOOT_DEBIAN_MIRROR:-} ]] && args+=("$DIRECTOR_BOOT_DEBIAN_MIRROR")
    debootstrap "${args[@]}" >"$WORK/debootstrap.log" 2>&1 ||
      die "debootstrap failed; see $WORK/debootstrap.log"
    slim_debian "$dir.building"
    touch "$dir.building/.complete"
    mv "$dir.building" "$dir"
  fi
  printf '%s\n' "$dir"
}

# ---- spark: the venv -------------------------------------------------------------
# Installs images/spark/requirements.txt (a full pin list) into ROOT/opt/venv with ROOT's
# own python3.11. pip's cache lives outside ROOT (bind-mounted), so the image gets none
# of it while rebuilds reuse downloads and the wheel built from pyspark's sdist.
spark_venv() {
  local root=$1 pipcache=$WORK/pip-cache
  mkdir -p "$pipcache" "$root/run/build"
  in_root "$root" --bind-ro="$HOST_CA:/run/host-ca.crt" --bind="$pipcache:/run/pip-cache" \
    --bind-ro="$SPARK_REQUIREMENTS:/run/build/requirements.txt" \
    --setenv=PIP_CERT=/run/host-ca.crt --setenv=PIP_CACHE_DIR=/run/pip-cache \
    --setenv=PIP_DISABLE_PIP_VERSION_CHECK=1 --setenv=PIP_NO_INPUT=1 -- \
    /bin/sh -euc '
      python3 -m venv /opt/venv
      /opt/venv/bin/pip install --quiet --no-compile --no-warn-script-location --use-pep517 \
        -r /run/build/requirements.txt
      /opt/venv/bin/pip check
    '
  rm -rf "$root/run/build"
  # Test suites and byte-code (python writes it again where it may) are dead weight.
  local sp=$root/opt/venv/lib/python3.11/site-packages
  find "$sp/pyspark" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
  find "$root/opt/venv" -depth -type d -name __pycache__ -exec rm -rf {} +
}

build_spark() {
  local fp base stage layout=$WORK/oci-spark
  fp=$({
    printf '%s\n' "$SPARK_REF" "$SUITE" "$IMAGE_CREATED" "${SPARK_PACKAGES[@]}" "${SPARK_ENV[@]}"
    sha_of <"$SPARK_REQUIREMENTS"
    sha_of <"$SPARK_ENTRYPOINT"
    declare -f slim_debian spark_base spark_venv build_spark layer_tar oci_new \
      oci_add_layer oci_config oci_archive
  } | sha_of)
  if is_current spark "$fp"; then
    log "spark: up to date: $OUT/spark.tar ($SPARK_REF)"
    return 0
  fi
  require_tools debootstrap systemd-nspawn
  base=$(spark_base)
  stage=$WORK/spark-venv-stage
  rm -rf "$stage"
  log "spark: venv (pyspark $SPARK_VERSION, notebook) from PyPI"
  cp -a "$base" "$stage"
  spark_venv "$stage"
  log "spark: packing layers"
  oci_new "$layout" "$SPARK_REF"
  # Layer 1: Debian + JRE + python (changes rarely); layer 2: /opt/venv.
  local top
  mapfile -t top < <(cd "$base" && find . -mindepth 1 -maxdepth 1 ! -name .complete \
    -printf '%P\n' | sort)
  layer_tar "$base" "$WORK/layer-base.tar" "${top[@]}"
  oci_add_layer "$layout" "$SPARK_REF" "$WORK/layer-base.tar" \
    "debootstrap --variant=minbase $SUITE + ${SPARK_PACKAGES[*]} (scripts/build-app-images.sh)"
  rm -f "$WORK/layer-base.tar"
  layer_tar "$stage" "$WORK/layer-venv.tar" opt/venv
  oci_add_layer "$layout" "$SPARK_REF" "$WORK/layer-venv.tar" \
    "python3 -m venv /opt/venv && pip install -r images/spark/requirements.txt"
  rm -f "$WORK/layer-venv.tar"
  # Layer 3: the Spark-on-Kubernetes entrypoint (driver/executor pods).
  install -D -m 0755 "$SPARK_ENTRYPOINT" "$stage/opt/entrypoint.sh"
  layer_tar "$stage" "$WORK/layer-entrypoint.tar" opt/entrypoint.sh
  oci_add_layer "$layout" "$SPARK_REF" "$WORK/layer-entrypoint.tar" \
    "COPY images/spark/entrypoint.sh /opt/entrypoint.sh"
  rm -f "$WORK/layer-entrypoint.tar"
  local env_args=() e
  for e in "${SPARK_ENV[@]}"; do env_args+=(--config.env "$e"); done
  oci_config "$layout" "$SPARK_REF" "${env_args[@]}" --config.workingdir /opt \
    --config.entrypoint /opt/entrypoint.sh \
    --config.label "org.opencontainers.image.title=director-boot spark" \
    --config.label "org.opencontainers.image.version=$SPARK_VERSION" \
    --config.label "org.opencontainers.image.source=images/spark/Dockerfile"
  oci_archive "$layout" "$OUT/spark.tar"
  rm -rf "$layout" "$stage"
  write_meta spark "$SPARK_REF" "$fp"
  log "spark: $OUT/spark.tar ($(du -h "$OUT/spark.tar" | cut -f1))"
}

# ---- symphony: from the user's IBM installer ----------------------------------
# IBM's installer is licensed: it is never downloaded or shipped here. With it, the image is
# images/symphony/Dockerfile (Red Hat UBI 8 + the seed procedure's silent install) built by
# podman or docker, saved as an archive for `director-boot images load`.
readonly SYMPHONY_REF=localhost/director-boot/symphony:7.3.2
readonly SYMPHONY_DIR=$REPO_ROOT/images/symphony
# The same text deploy-app shows when the image is missing on the nodes.
readonly SYMPHONY_HELP=$REPO_ROOT/catalog/symphony/image-help.txt

build_symphony() {
  if [[ -z $INSTALLER ]]; then
    cat "$SYMPHONY_HELP" >&2
    die "symphony: give IBM's installer with --installer FILE (see above)"
  fi
  [[ -f $INSTALLER && -s $INSTALLER ]] || die "symphony: --installer $INSTALLER: no such file (or empty)"
  if [[ -n $ENTITLEMENT ]]; then
    [[ -f $ENTITLEMENT && -s $ENTITLEMENT ]] ||
      die "symphony: --entitlement $ENTITLEMENT: no such file (or empty)"
  fi
  local engine fp ctx name
  engine=$(command -v podman || command -v docker) ||
    die "symphony: building from IBM's installer needs podman or docker (RHEL: dnf install podman; Debian: apt-get install podman) and access to registry.access.redhat.com for the base image ubi8/ubi:8.10"
  fp=$({
    printf '%s\n' "$SYMPHONY_REF" "$(basename "$INSTALLER")" "$(stat -c %s "$INSTALLER")"
    sha_of <"$INSTALLER"
    sha_of <"$SYMPHONY_DIR/Dockerfile"
    sha_of <"$SYMPHONY_DIR/start-symphony.sh"
    declare -f build_symphony
  } | sha_of)
  if is_current symphony "$fp"; then
    log "symphony: up to date: $OUT/symphony.tar ($SYMPHONY_REF)"
  else
    name=$(basename "$INSTALLER")
    ctx=$WORK/symphony-context
    rm -rf "$ctx"
    mkdir -p "$ctx/installer"
    cp "$SYMPHONY_DIR/Dockerfile" "$SYMPHONY_DIR/start-symphony.sh" "$ctx/"
    ln "$INSTALLER" "$ctx/installer/$name" 2>/dev/null || cp "$INSTALLER" "$ctx/installer/$name"
    log "symphony: $engine build ($name, IBM's silent install on UBI 8; minutes)"
    "$engine" build --build-arg "SYMPHONY_INSTALLER=$name" -t "$SYMPHONY_REF" "$ctx"
    rm -rf "$ctx"
    if [[ $engine == */podman ]]; then
      "$engine" save --format oci-archive -o "$OUT/symphony.tar.tmp" "$SYMPHONY_REF"
    else
      "$engine" save -o "$OUT/symphony.tar.tmp" "$SYMPHONY_REF"
    fi
    mv -f "$OUT/symphony.tar.tmp" "$OUT/symphony.tar"
    jq -n --arg ref "$SYMPHONY_REF" --arg path "$OUT/symphony.tar" \
      --arg sha "$(sha_of <"$OUT/symphony.tar")" --argjson size "$(stat -c %s "$OUT/symphony.tar")" \
      --arg stamp "$(file_stamp "$OUT/symphony.tar")" --arg fp "$fp" \
      --arg built "$(date -u +%FT%TZ)" --arg engine "$(basename "$engine")" \
      '{ref: $ref, path: $path, sha256: $sha, size: $size, built_at: $built, built_with: $engine,
        fingerprint: $fp, stamp: $stamp}' >"$OUT/symphony.json"
    log "symphony: $OUT/symphony.tar ($(du -h "$OUT/symphony.tar" | cut -f1))"
  fi
  local ent_arg=./sym_adv_entitlement.dat
  if [[ -n $ENTITLEMENT ]]; then
    install -m 0600 "$ENTITLEMENT" "$OUT/symphony-entitlement.dat"
    ent_arg=$OUT/symphony-entitlement.dat
  fi
  log "symphony: next: director-boot images load INVENTORY $OUT/symphony.tar"
  log "symphony: then: director-boot deploy-app symphony --set acceptLicense=true --set secrets.entitlement.file=$ent_arg"
}

main() {
  parse_args "$@"
  require_tools
  take_lock
  local t
  if ((VERIFY)) && [[ " ${TARGETS[*]} " == *" symphony "* ]]; then
    die "--verify checks the spark image only"
  fi
  for t in "${TARGETS[@]}"; do "build_$t"; done
  if ((VERIFY)); then
    # shellcheck source=scripts/lib/verify-app-images.sh
    source "$REPO_ROOT/scripts/lib/verify-app-images.sh"
    for t in "${TARGETS[@]}"; do "verify_$t"; done
    verify_import "${TARGETS[@]}"
  fi
}

main "$@"
