#!/usr/bin/env bash
# bench-vm.sh [clove-bench --vm ARGS..]: the microVM benchmark inside the emulated SVM machine (L1,
# see README.md), where /dev/kvm is a real nested KVM. Stages into a fresh share:
# - clove-bench, static (L1 has no C library), and the guest: vmlinux and an initramfs with the
#   stripped static clove-guest as /init;
# - the anchor, Debian's qemu-system-x86_64 with its shared libraries, the dynamic loader and its
#   firmware (/usr/share/qemu), run in L1 through the loader;
# - vhost_vsock and the modules it needs, from the same Debian kernel package L1 boots (downloaded
#   once with apt-get, cached in ${CLOVE_CACHE:-~/.cache/clove}/nested-l1-vsock/<release>/), so
#   QEMU's guest has a vhost-vsock device and clove-bench an AF_VSOCK listener in L1;
# then runs bench-vm-job.sh there with run.sh and prints the table. Exits with the job's status.
# Env: CARGO_TARGET_DIR (default target/nested), run.sh's L1_TIMEOUT, QEMU and CLOVE_CACHE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
target=x86_64-unknown-linux-gnu
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$repo/target/nested}
cache=${CLOVE_CACHE:-$HOME/.cache/clove}

log() { echo "bench-vm: $*" >&2; }

# vsock_modules: prints a directory holding vhost_vsock and its dependencies (.ko) and `load-order`,
# for the kernel L1 boots (its cache directory's VERSION names the package and version).
vsock_modules() {
  local l1 kpkg kver release out tmp
  l1=$("$here/build-l1.sh")
  read -r kpkg kver release _ <"$l1/VERSION"
  release=${release//[(),]/}
  out=$cache/nested-l1-vsock/$release
  if [ -f "$out/load-order" ]; then
    echo "$out"
    return
  fi
  log "fetching $kpkg $kver for vhost_vsock"
  mkdir -p "$cache/nested-l1-vsock"
  tmp=$(mktemp -d "$cache/nested-l1-vsock/.build.XXXXXX")
  local apt_opts=()
  [ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
  (cd "$tmp" && apt-get download -q "${apt_opts[@]}" "$kpkg=$kver" >&2)
  dpkg-deb --fsys-tarfile "$tmp/${kpkg}_"*.deb \
    | tar -x -C "$tmp" --wildcards './lib/modules/*/kernel/drivers/vhost/*' './lib/modules/*/kernel/net/vmw_vsock/*'
  local kdir=$tmp/lib/modules/$release/kernel order=() placed=" "
  place() {
    local name=$1 file dep
    case $placed in *" $name "*) return ;; esac
    placed="$placed$name "
    file=$(find "$kdir" -name "$name.ko" | head -n1)
    [ -n "$file" ] || { log "module $name is not in $kpkg"; exit 1; }
    for dep in $(modinfo -F depends "$file" | tr ',' ' '); do place "$dep"; done
    cp "$file" "$tmp/$name.ko"
    order+=("$name")
  }
  place vhost_vsock
  printf '%s\n' "${order[@]}" >"$tmp/load-order"
  rm -rf "${tmp:?}/lib" "$tmp/"*.deb
  mv -T "$tmp" "$out" 2>/dev/null || rm -rf "$tmp"
  echo "$out"
}

# stage_qemu DIR: qemu-system-x86_64, its libraries (ldd) and loader, and its firmware.
stage_qemu() {
  local dir=$1 qemu lib loader
  qemu=$(command -v qemu-system-x86_64) || { log "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86)"; exit 1; }
  mkdir -p "$dir/lib" "$dir/share"
  cp "$qemu" "$dir/qemu-system-x86_64"
  for lib in $(ldd "$qemu" | awk '$3 ~ /^\// { print $3 }'); do cp -L "$lib" "$dir/lib/"; done
  loader=$(ldd "$qemu" | awk '$1 ~ /^\/.*ld-linux/ { print $1 }')
  cp -L "$loader" "$dir/ld-linux-x86-64.so.2"
  cp -rL /usr/share/qemu/. "$dir/share/"
}

log "building clove-bench and clove-guest (static) in $CARGO_TARGET_DIR"
# One package per build: together, cargo would give the guest clove-core's std features too.
for p in clove-bench clove-guest; do
  (cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" nice cargo build --release -j 2 --quiet \
    --target "$target" -p "$p")
done
bin=$CARGO_TARGET_DIR/$target/release

share=$(mktemp -d "${TMPDIR:-/tmp}/clove-bench-vm.XXXXXX")
mkdir -p "$share/assets"
strip -o "$share/clove-bench" "$bin/clove-bench"
strip -o "$share/assets/clove-guest" "$bin/clove-guest"
# build.sh prints the directory of its cached build.
cp "$(nice "$repo/guest/kernel/build.sh" | tail -n1)/vmlinux" "$share/assets/vmlinux"
cp "$(nice "$repo/guest/initramfs.sh" "$share/assets/clove-guest" | tail -n1)" "$share/assets/initramfs.cpio"
modules=$(vsock_modules)
cp -r "$modules" "$share/modules"
stage_qemu "$share/q"
printf '%s\n' "$@" >"$share/bench.args"
cp "$here/bench-vm-job.sh" "$share/job.sh"
chmod +x "$share/job.sh"
log "staged in $share ($(du -sh "$share" | cut -f1))"

rc=0
L1_TIMEOUT=${L1_TIMEOUT:-1800} "$here/run.sh" "$share" >"$share/console.log" 2>&1 || rc=$?
if [ -f "$share/table.md" ]; then
  cat "$share/table.md"
fi
if [ "$rc" -eq 0 ] && grep -qx -- --dmesg "$share/bench.args"; then
  log "--dmesg: the guest's boot log is in $share/console.log (the share is kept)"
elif [ "$rc" -eq 0 ]; then
  rm -rf "$share"
else
  tail -n 40 "$share/console.log" >&2
  log "failed ($rc); the share, with job.out and console.log, is kept in $share"
fi
exit "$rc"
