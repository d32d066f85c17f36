#!/bin/bash
# Symphony primary of {{ instance }}: joins itself by its cluster DNS name, keeps the shared
# configuration on /shared (the persistent volume), sets the entitlement and starts EGO.
set -euo pipefail
. {{ mount }}/ego-env.sh
chown "$CLUSTERADMIN" /shared 2>/dev/null || true
as_admin "egoconfig join $SYMPHONY_PRIMARY -f"
as_admin "egoconfig mghost /shared -f"
as_admin "egoconfig setentitlement /var/run/director-boot/entitlement/entitlement.dat"
as_admin "egosh ego start -f"
follow_ego
