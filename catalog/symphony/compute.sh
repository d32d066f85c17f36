#!/bin/bash
# Symphony compute host of {{ instance }}: joins the primary through cluster DNS
# ({{ roles.primary.fqdns[0] }}), no /etc/hosts editing, then starts EGO.
set -euo pipefail
. {{ mount }}/ego-env.sh
wait_for_primary
as_admin "egoconfig join $SYMPHONY_PRIMARY -f"
as_admin "egosh ego start -f"
follow_ego
