#!/usr/bin/env bash
# CI entry point of the VM tests: builds the static test binaries of the VM crates, stages them
# (and the assets they need) with vm-job.sh in a fresh share directory, and runs that job in the
# L1 machine (run.sh), where /dev/kvm is a real, nested KVM. Exits with the job's status.
# On a host whose own /dev/kvm boots Linux (hardware KVM, not kvm_pvm) the same binaries run here
# directly instead, unless CLOVE_FORCE_NESTED is set.
# Env: CARGO_TARGET_DIR (default target/nested, apart from the ordinary builds), CLOVE_FORCE_NESTED,
# plus run.sh's L1_TIMEOUT, QEMU and CLOVE_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/nested}

# What runs in L1: the test binaries of these crates (all of clove-vmm's; clove-core's VM tests).
# Assets: see stage_assets.
test_args=(-p clove-vmm)
core_test_args=(-p clove-core --test vm)

log() { echo "vm-tests: $*" >&2; }

# stage_assets SHARE: the guest kernel and two initramfs archives, copied to SHARE/assets, with env
# vars in SHARE/job.env (paths as L1 sees them, under /mnt) that the tests read: a marker /init for
# vmm/tests/boot.rs (CLOVE_GUEST_*), and the real guest, clove-guest as PID 1, for the runtime's VM
# agents (CLOVE_VM_*).
stage_assets() {
  local share=$1 kernel_dir guest marker_initramfs guest_initramfs
  mkdir -p "$share/assets"
  kernel_dir=$(nice "$repo/guest/kernel/build.sh")
  (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" nice cargo build -q --release -j 2 \
    --target "$target" -p clove-guest)
  guest=$share/assets/clove-guest
  strip -o "$guest" "$CARGO_TARGET_DIR/$target/release/clove-guest"
  marker_initramfs=$("$repo/guest/initramfs.sh" "$here/marker-init")
  guest_initramfs=$("$repo/guest/initramfs.sh" "$guest")
  cp "$kernel_dir/vmlinux" "$share/assets/vmlinux"
  cp "$marker_initramfs" "$share/assets/marker.cpio"
  cp "$guest_initramfs" "$share/assets/guest.cpio"
  cat >"$share/job.env" <<EOT
CLOVE_GUEST_KERNEL=/mnt/assets/vmlinux
CLOVE_GUEST_INITRAMFS=/mnt/assets/marker.cpio
CLOVE_VM_KERNEL=/mnt/assets/vmlinux
CLOVE_VM_INITRAMFS=/mnt/assets/guest.cpio
CLOVE_VM_CYCLES=0
EOT
}

# L1 has no C library: glibc goes in with crt-static. --target keeps RUSTFLAGS off the build
# scripts and proc macros, which must stay dynamic.
log "building static test binaries in $CARGO_TARGET_DIR"
mkdir -p "$CARGO_TARGET_DIR"
artifacts=$CARGO_TARGET_DIR/nested-artifacts.json
build_tests() {
  (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" nice cargo test --no-run -j 2 \
    --target "$target" "$@" --message-format=json-render-diagnostics)
}
{ build_tests "${test_args[@]}"; build_tests "${core_test_args[@]}"; } >"$artifacts"
mapfile -t bins < <(jq -r 'select(.reason == "compiler-artifact" and .profile.test
  and .executable != null) | .executable' "$artifacts")
[ ${#bins[@]} -gt 0 ] || { log "cargo built no test binaries"; exit 1; }

share=$(mktemp -d "${TMPDIR:-/tmp}/clove-nested-share.XXXXXX")
mkdir "$share/bin"
for b in "${bins[@]}"; do
  # A static(-pie) executable asks for no program interpreter.
  if readelf -l "$b" | grep -q 'program interpreter'; then
    log "$b is dynamically linked; L1 cannot run it"
    exit 1
  fi
  cp "$b" "$share/bin/"
done
stage_assets "$share"
cp "$here/vm-job.sh" "$share/job.sh"
chmod +x "$share/job.sh"
log "staged ${#bins[@]} test binaries in $share"

rc=0
if [ -c /dev/kvm ] && [ ! -d /sys/module/kvm_pvm ] && [ -z "${CLOVE_FORCE_NESTED:-}" ]; then
  # A hardware KVM here boots Linux: the same tests run directly, with nothing skipped.
  log "this host's /dev/kvm boots Linux: running the tests here, not in L1"
  for b in "$share"/bin/*; do
    # shellcheck source=/dev/null # job.env, with the share's paths for L1's
    (set -a && . <(sed "s|=/mnt/|=$share/|" "$share/job.env") && CLOVE_REQUIRE_KVM=1 \
      "$b" --test-threads=1) || rc=1
  done
else
  "$here/run.sh" "$share" || rc=$?
fi
if [ "$rc" -eq 0 ]; then
  rm -rf "$share"
else
  log "failed ($rc); the share, with job.out, is kept in $share"
fi
exit "$rc"
