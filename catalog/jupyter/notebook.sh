#!/bin/bash
# Jupyter notebook of {{ instance }}; log in with the token in the Secret {{ instance }}-token.
set -euo pipefail
cd /notebooks
exec jupyter notebook --ip=0.0.0.0 --port={{ role.ports.http }} --no-browser --allow-root \
  --ServerApp.root_dir=/notebooks
