#!/usr/bin/env bash
# End to end through clove-run: the same SDK agent (tests/vm/agent.py) runs unchanged in the process
# tier here and in a microVM inside L1, and both must print tests/vm/expected.json. Takes the static
# clove-run from $CLOVE_RUN or builds one (debug: faster to build), builds clove-guest (release,
# stripped), the guest kernel and the --python initramfs, runs the process tier, stages everything
# with vm-e2e-job.sh as job.sh in a fresh share and runs it in L1 (run.sh). Exits with the first
# failure's status, else the job's.
# Env: CLOVE_RUN, CARGO_TARGET_DIR (default target/nested), plus run.sh's L1_TIMEOUT, QEMU and
# CLOVE_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/nested}
out=$CARGO_TARGET_DIR/$target

log() { echo "vm-e2e: $*" >&2; }
elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN {printf "%.1f s", e - s}'; }

t=$(date +%s.%N)
# L1 has no C library: glibc goes in with crt-static. --target keeps RUSTFLAGS off the build scripts
# and proc macros, which must stay dynamic.
# The static clove-run CI already built ($CLOVE_RUN), else a debug one.
clove_run=${CLOVE_RUN:-$out/debug/clove-run}
if [[ -z ${CLOVE_RUN:-} ]]; then
  (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" nice cargo build -q -j 2 --target "$target" -p clove-run)
fi
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" nice cargo build -q -j 2 --release --target "$target" -p clove-guest)
for bin in "$clove_run" "$out/release/clove-guest"; do
  if readelf -l "$bin" | grep -q 'program interpreter'; then
    log "$bin is dynamically linked"
    exit 1
  fi
done
share=$(mktemp -d "${TMPDIR:-/tmp}/clove-vm-e2e.XXXXXX")
mkdir "$share/bin" "$share/assets" "$share/vm"
cp "$clove_run" "$share/bin/clove-run"
strip -o "$share/assets/clove-guest" "$out/release/clove-guest"
vmlinux=$(nice "$repo/guest/kernel/build.sh")/vmlinux
initramfs=$(nice "$repo/guest/initramfs.sh" --python "$share/assets/clove-guest" | tail -n1)
cp "$vmlinux" "$share/assets/vmlinux"
cp "$initramfs" "$share/assets/initramfs.cpio"
cp "$repo/tests/vm/agent.py" "$repo/tests/vm/expected.json" "$share/vm/"
cat >"$share/job.env" <<ENV
CLOVE_VM_KERNEL=/mnt/assets/vmlinux
CLOVE_VM_INITRAMFS=/mnt/assets/initramfs.cpio
ENV
cp "$here/vm-e2e-job.sh" "$share/job.sh"
chmod +x "$share/job.sh"
log "built and staged in $(elapsed "$t") (initramfs: $(stat -c %s "$initramfs") bytes)"

# The process tier, on this host: the SDK from the source tree, as the other suites use it.
t=$(date +%s.%N)
rc=0
got=$(cd "$repo" && "$clove_run" run --level unrestricted --env PYTHONPATH="$repo/bindings/python" -- \
  python3 tests/vm/agent.py) || rc=$?
want=$(cat "$repo/tests/vm/expected.json")
if [[ $rc -ne 0 || $got != "$want" ]]; then
  log "FAIL process tier: exit $rc, output:"
  printf '%s\n' "$got" >&2
  diff <(printf '%s\n' "$want") <(printf '%s\n' "$got") >&2 || true
  exit 1
fi
log "ok   process tier: agent.py printed expected.json ($(elapsed "$t"))"

t=$(date +%s.%N)
rc=0
"$here/run.sh" "$share" || rc=$?
if [[ $rc -eq 0 ]]; then
  log "ok   VM tier in L1 ($(elapsed "$t"))"
  rm -rf "$share"
else
  log "failed ($rc) after $(elapsed "$t"); the share, with job.out, is kept in $share"
fi
exit "$rc"
