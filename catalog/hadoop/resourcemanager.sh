#!/bin/bash
# YARN ResourceManager of {{ instance }}.
set -euo pipefail
. {{ mount }}/hadoop-conf.sh
exec yarn resourcemanager
