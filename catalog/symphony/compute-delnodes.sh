#!/bin/bash
# delnodes for compute hosts. In the leaving host (DB_SELF=1): close it to new work and stop
# EGO, so the primary sees it leave rather than fail. In the others: nothing to do, the
# primary tracks membership itself.
set -euo pipefail
. {{ mount }}/ego-env.sh
if [ "${DB_SELF:-0}" = 1 ]; then
  as_admin "egosh resource close $(hostname)" || true
  as_admin "egosh ego shutdown -f"
fi
