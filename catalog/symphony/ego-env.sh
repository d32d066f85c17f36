# Sourced by the start scripts and hooks: the EGO environment and a helper to run commands as
# the cluster administrator (the image's installation belongs to $CLUSTERADMIN).
for profile in "${EGO_PROFILE:-}" /opt/ibm/spectrumcomputing/profile.platform /opt/ibm/platform/profile.platform; do
  if [ -n "$profile" ] && [ -f "$profile" ]; then
    # shellcheck disable=SC1090
    . "$profile"
    export EGO_PROFILE="$profile"
    break
  fi
done
if [ -z "${EGO_PROFILE:-}" ]; then
  echo "no EGO profile.platform found (set EGO_PROFILE)" >&2
  exit 1
fi

as_admin() {
  if [ "$(id -u)" = 0 ] && id "$CLUSTERADMIN" >/dev/null 2>&1; then
    su -s /bin/bash "$CLUSTERADMIN" -c ". '$EGO_PROFILE' && $*"
  else
    bash -c "$*"
  fi
}

# Block while the local LIM runs, so the container lives as long as EGO does.
follow_ego() {
  trap 'as_admin "egosh ego shutdown -f" || true; exit 0' TERM INT
  while pgrep -x lim >/dev/null; do sleep 10 & wait $!; done
  echo "EGO's LIM is gone" >&2
  exit 1
}

wait_for_primary() {
  for i in $(seq 1 180); do
    if (exec 3<>"/dev/tcp/$SYMPHONY_PRIMARY/$BASEPORT") 2>/dev/null; then return 0; fi
    echo "waiting for the EGO primary at $SYMPHONY_PRIMARY:$BASEPORT ($i)"
    sleep 5
  done
  echo "the EGO primary never answered" >&2
  return 1
}
