#!/bin/bash
# Start one Symphony host inside a pod: the master applies the entitlement and starts EGO;
# a compute host joins the master first. Runs in the foreground so the pod lives as long as
# EGO does.
#   start-symphony.sh master
#   start-symphony.sh compute MASTER-HOST
set -euo pipefail

role=${1:-master}
# shellcheck source=/dev/null
source "$EGO_TOP/profile.platform"

as_admin() { su -s /bin/bash "$CLUSTERADMIN" -c "source $EGO_TOP/profile.platform; $*"; }

case $role in
  master)
    if [[ ! -s $SYMPHONY_ENTITLEMENT ]]; then
      echo "no entitlement at $SYMPHONY_ENTITLEMENT: mount IBM's entitlement file there" >&2
      exit 1
    fi
    as_admin "egoconfig join $(hostname -f) -f"
    as_admin "egoconfig setentitlement $SYMPHONY_ENTITLEMENT"
    ;;
  compute)
    master=${2:?compute needs the master host name}
    as_admin "egoconfig join $master -f"
    ;;
  *)
    echo "usage: $0 master | compute MASTER-HOST" >&2
    exit 2
    ;;
esac

egosh ego start -f
# EGO daemonizes; follow its log so the container stays up and shows it.
exec tail -F "$EGO_TOP"/kernel/log/lim.log."$(hostname)"
