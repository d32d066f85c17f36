# shellcheck shell=bash
# OCI image helpers shared by director-boot's image build scripts (sourced, not run).
# Images are OCI image layouts made with umoci (no daemon, no registry), tagged with the
# full reference and tarred: `ctr -n k8s.io images import FILE.tar` takes them as they are.
#
# Needs: IMAGE_CREATED (RFC 3339, the fixed timestamp of reproducible images), umoci, tar.

# layer_tar ROOT OUT [PATH...]: an uncompressed, reproducible layer of ROOT (or of the given
# paths inside it): sorted entries, one fixed mtime, numeric owners, no atime/ctime.
layer_tar() {
  local root=$1 out=$2
  shift 2
  local paths=("$@")
  if ((${#paths[@]} == 0)); then
    mapfile -t paths < <(cd "$root" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | sort)
  fi
  tar -C "$root" --sort=name --format=posix --numeric-owner \
    --mtime="$IMAGE_CREATED" \
    --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    -cf "$out" -- "${paths[@]}"
}

# oci_new LAYOUT REF: an empty image (no layers, no command) tagged REF in a fresh layout.
oci_new() {
  local layout=$1 ref=$2
  rm -rf "$layout"
  umoci init --layout "$layout"
  umoci new --image "$layout:$ref"
}

# oci_add_layer LAYOUT REF LAYER.tar CREATED-BY: append an (uncompressed) layer; umoci
# compresses it and records a history entry.
oci_add_layer() {
  local layout=$1 ref=$2 tar=$3 by=$4
  umoci raw add-layer --image "$layout:$ref" --history.created "$IMAGE_CREATED" \
    --history.created_by "$by" "$tar"
}

# oci_config LAYOUT REF [umoci config args...]: image config with fixed timestamps.
oci_config() {
  local layout=$1 ref=$2
  shift 2
  umoci config --image "$layout:$ref" --author director-boot \
    --created "$IMAGE_CREATED" --no-history "$@"
}

# oci_archive LAYOUT OUT: garbage-collect the layout and tar it reproducibly into OUT
# (written to OUT.tmp, then renamed: a reader never sees half an archive).
oci_archive() {
  local layout=$1 out=$2
  umoci gc --layout "$layout"
  mkdir -p "$(dirname "$out")"
  tar -C "$layout" --sort=name --mtime="$IMAGE_CREATED" --owner=0 --group=0 \
    --numeric-owner -cf "$out.tmp" oci-layout index.json blobs
  mv -f "$out.tmp" "$out"
}

# oci_unpack ARCHIVE REF BUNDLE: unpack an archive made by oci_archive into an OCI runtime
# bundle (BUNDLE/rootfs + BUNDLE/config.json), the way a runtime would see it.
oci_unpack() {
  local archive=$1 ref=$2 bundle=$3 layout
  layout=$(mktemp -d "${TMPDIR:-/tmp}/director-boot-oci.XXXXXX")
  tar -C "$layout" -xf "$archive"
  rm -rf "$bundle"
  umoci unpack --image "$layout:$ref" "$bundle" >/dev/null
  rm -rf "$layout"
}

# oci_refs ARCHIVE: the image references an archive's index.json names.
oci_refs() {
  tar -xOf "$1" index.json |
    jq -r '.manifests[].annotations["org.opencontainers.image.ref.name"] // empty'
}
