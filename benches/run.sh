#!/usr/bin/env bash
# Builds clove-bench in release and runs it twice, pinned to one CPU and unpinned, printing both
# tables. Extra arguments go to both runs (e.g. --requests 50000). Nothing here fails on a slow
# figure: a missed target is reported in the table, not enforced.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

model="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
echo "machine: $(nproc) CPUs${model:+ ($model)}, kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"

cargo build --release --quiet -p clove-bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/clove-bench"

echo
if command -v taskset >/dev/null 2>&1; then
    # Client, reactor and echo threads all share CPU 0: every wake-up is a context switch.
    taskset -c 0 "$bin" --mode pinned "$@"
else
    echo "taskset not found (it comes with util-linux): the pinned run is SKIPPED"
    echo
fi
"$bin" --mode unpinned "$@"
