#!/usr/bin/env bash
# Builds the static clove-run and runs the main job.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bin=$(bash scripts/build-static.sh)
exec "$bin" demo
