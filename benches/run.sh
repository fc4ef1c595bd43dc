#!/usr/bin/env bash
# Builds clove-bench in release and runs it: the protocol benchmark twice, pinned to one CPU and
# unpinned, then the spawn-latency benchmark once, then the state store and the fair-queue
# simulation, printing every table.
#
#   benches/run.sh                      # everything
#   benches/run.sh --requests 50000     # extra arguments go to both protocol runs
#   benches/run.sh protocol [ARGS..]    # only the protocol benchmark
#   benches/run.sh spawn [ARGS..]       # only the spawn benchmark (e.g. --runs 200)
#   benches/run.sh state [ARGS..]       # only the state store (e.g. --writes 1000 --agents 32)
#   benches/run.sh fair [ARGS..]        # only the fair LLM queue vs FIFO (a simulation; e.g. --minutes 600)
#   benches/run.sh think                # only THINK end to end, fair vs arrival order, loopback provider
#   benches/run.sh vm [--runs N]        # only /dev/kvm open to the first guest instruction, on this host
#                                       # (the rest of the microVM benchmark: tests/nested/bench-vm.sh)
#
# Nothing here fails on a slow figure: a missed target is reported in the table, not enforced.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

which="all"
case "${1:-}" in
    protocol | spawn | fair | state | think | vm)
        which="$1"
        shift
        ;;
esac

model="$(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ *//' || true)"
echo "machine: $(nproc) CPUs${model:+ ($model)}, kernel $(uname -r), $(date -u +%Y-%m-%dT%H:%MZ)"

cargo build --release --quiet -p clove-bench
bin="${CARGO_TARGET_DIR:-$root/target}/release/clove-bench"

if [ "$which" = fair ] || [ "$which" = state ] || [ "$which" = think ]; then
    echo
    exec "$bin" "--$which" "$@"
fi
if [ "$which" = vm ]; then
    echo
    exec "$bin" --vm-entry "$@"
fi

if [ "$which" != spawn ]; then
    echo
    if command -v taskset >/dev/null 2>&1; then
        # Client, reactor and echo threads all share CPU 0: every wake-up is a context switch.
        taskset -c 0 "$bin" --mode pinned "$@"
    else
        echo "taskset not found (it comes with util-linux): the pinned run is SKIPPED"
        echo
    fi
    "$bin" --mode unpinned "$@"
fi

if [ "$which" != protocol ]; then
    # The anchor of the spawn benchmark is Debian's bubblewrap; installed quietly when missing.
    if ! command -v bwrap >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing bubblewrap (apt-get install -y bubblewrap)"
        if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1; then
            apt-get update -qq >/dev/null 2>&1 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1 || true
        fi
    fi
    command -v bwrap >/dev/null 2>&1 || echo "bwrap not found: its row, and every ratio to it, is SKIPPED"
    echo
    if [ "$which" = spawn ]; then
        "$bin" --spawn "$@"
    else
        "$bin" --spawn
    fi
fi

if [ "$which" = all ]; then
    echo
    "$bin" --state
    echo
    "$bin" --fair
    echo
    "$bin" --think
fi
