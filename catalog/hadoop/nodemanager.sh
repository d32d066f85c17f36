#!/bin/bash
# YARN NodeManager of {{ instance }}: registers with the ResourceManager at
# {{ roles.resourcemanager.fqdns[0] }}.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
mkdir -p /var/lib/hadoop/yarn/local /var/lib/hadoop/yarn/logs
wait_for "$resourcemanager" {{ roles.resourcemanager.ports.tracker }} ResourceManager
exec yarn nodemanager
