#!/usr/bin/env bash
# CI entry point of the VM tests: builds the static test binaries of the VM crates, stages them
# (and the assets they need) with vm-job.sh in a fresh share directory, and runs that job in the
# L1 machine (run.sh), where /dev/kvm is a real, nested KVM. Exits with the job's status.
# Env: CARGO_TARGET_DIR (default target/nested, apart from the ordinary builds), plus run.sh's
# L1_TIMEOUT, QEMU and CLOVE_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/nested}

# What runs in L1. Test binaries: of these crates. Assets: see stage_assets.
packages=(clove-vmm)

log() { echo "vm-tests: $*" >&2; }

# stage_assets SHARE: files the VM tests need, copied to SHARE/assets, each with an env var in
# SHARE/job.env (paths as L1 sees them, under /mnt) that the tests read.
stage_assets() {
  local share=$1
  mkdir -p "$share/assets"
  : >"$share/job.env"
  if [ -x "$repo/guest/kernel/build.sh" ] && [ -x "$repo/guest/initramfs.sh" ]; then
    local vmlinux initramfs
    vmlinux=$(nice "$repo/guest/kernel/build.sh" | grep -m1 '/vmlinux$')
    initramfs=$(nice "$repo/guest/initramfs.sh" | tail -n1)
    cp "$vmlinux" "$share/assets/vmlinux"
    cp "$initramfs" "$share/assets/initramfs.cpio"
    echo "CLOVE_GUEST_VMLINUX=/mnt/assets/vmlinux" >>"$share/job.env"
    echo "CLOVE_GUEST_INITRAMFS=/mnt/assets/initramfs.cpio" >>"$share/job.env"
  fi
}

# L1 has no C library: glibc goes in with crt-static. --target keeps RUSTFLAGS off the build
# scripts and proc macros, which must stay dynamic.
pkg_args=()
for p in "${packages[@]}"; do pkg_args+=(-p "$p"); done
log "building static test binaries of ${packages[*]} in $CARGO_TARGET_DIR"
mkdir -p "$CARGO_TARGET_DIR"
artifacts=$CARGO_TARGET_DIR/nested-artifacts.json
(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" nice cargo test --no-run -j 2 \
  --target "$target" "${pkg_args[@]}" --message-format=json-render-diagnostics >"$artifacts")
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
"$here/run.sh" "$share" || rc=$?
if [ "$rc" -eq 0 ]; then
  rm -rf "$share"
else
  log "failed ($rc); the share, with job.out, is kept in $share"
fi
exit "$rc"
