#!/usr/bin/env bash
# Builds the L1 machine of the nested harness from Debian packages and prints its cache directory,
# which holds `vmlinuz` (the Debian kernel that linux-image-amd64 points at) and `initramfs.cpio`
# (busybox-static, the kvm_amd and 9p/virtio-pci modules in load order, and l1-init as /init).
# The directory is ${CLOVE_CACHE:-$HOME/.cache/clove}/nested-l1/<key>, the key a hash of the kernel
# package and version, the busybox version, this script and l1-init: changing any of them rebuilds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

log() { echo "build-l1: $*" >&2; }

# The host tools: qemu for run.sh, the rest for the build. apt-get only when something is missing.
need_pkgs=()
command -v qemu-system-x86_64 >/dev/null || need_pkgs+=(qemu-system-x86)
command -v cpio >/dev/null || need_pkgs+=(cpio)
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need_pkgs+=(busybox-static)
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing ${need_pkgs[*]}"
  apt-get install -y -q "${need_pkgs[@]}" >&2
fi

# linux-image-amd64 is a metapackage; the kernel is the linux-image-6.1.0-*-amd64 it depends on,
# at the exact version its Depends names. One apt-cache call: each costs 1.5 s here.
read -r kpkg kver_pkg < <(apt-cache show --no-all-versions linux-image-amd64 \
  | sed -n 's/^Depends: \(linux-image-[0-9][^ ,]*-amd64\) (= \([^)]*\)).*/\1 \2/p' | head -n1) || true
[ -n "${kver_pkg:-}" ] || { log "no linux-image-*-amd64 (= version) in linux-image-amd64's Depends (apt-get update?)"; exit 1; }
bb_ver=$(dpkg-query -W -f '${Version}' busybox-static)

key=$( { echo "$kpkg $kver_pkg busybox-static $bb_ver"; cat "$here/build-l1.sh" "$here/l1-init"; } \
  | sha256sum | cut -c1-16)
base=${CLOVE_CACHE:-$HOME/.cache/clove}/nested-l1
out=$base/$key
if [ -f "$out/vmlinuz" ] && [ -f "$out/initramfs.cpio" ]; then
  echo "$out"
  exit 0
fi

log "building $out ($kpkg $kver_pkg)"
mkdir -p "$base"
# Built beside its final place, then renamed: a cache directory is complete or absent.
tmp=$(mktemp -d "$base/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

apt_opts=()
# apt's download sandbox user cannot write into a private temp dir; root downloads it itself.
[ "$(id -u)" -eq 0 ] && apt_opts+=(-o APT::Sandbox::User=root)
(cd "$tmp" && apt-get download -q "${apt_opts[@]}" "$kpkg=$kver_pkg" >&2)
dpkg -x "$tmp/${kpkg}_"*.deb "$tmp/pkg"
kdir=$(echo "$tmp/pkg/lib/modules/"*)
kernel_release=$(basename "$kdir")

root=$tmp/root
mkdir -p "$root"/{bin,sbin,dev,proc,sys,tmp,mnt,lib/modules}
# busybox-static's busybox: L1 has no C library for a dynamic one.
busybox=$(dpkg -L busybox-static | grep -m1 '/bin/busybox$')
cp "$busybox" "$root/bin/busybox"
cp "$here/l1-init" "$root/init"
chmod 755 "$root/init"

# module_file NAME: the .ko of a module, whose file name may spell `_` as `-` (kvm_amd is kvm-amd.ko).
module_file() {
  local pattern=${1//[-_]/[-_]}
  find "$kdir/kernel" -name "$pattern.ko*" | head -n1
}

# Loads go in dependency order: each module after everything `modinfo -F depends` names.
declare -A placed=()
order=()
place() {
  local name=${1//-/_} file dep
  [ -z "${placed[$name]:-}" ] || return 0
  placed[$name]=1
  file=$(module_file "$name")
  if [ -z "$file" ]; then
    # Built into the kernel: nothing to load.
    grep -q "/${name//_/[-_]}\.ko$" "$kdir/modules.builtin" && return 0
    log "module $name: neither in $kpkg nor built in"
    exit 1
  fi
  for dep in $(modinfo -F depends "$file" | tr ',' ' '); do
    place "$dep"
  done
  case $file in
    *.ko) cp "$file" "$root/lib/modules/$name.ko" ;;
    *.ko.xz) xz -dc "$file" >"$root/lib/modules/$name.ko" ;;
    *.ko.zst) zstd -qdc "$file" >"$root/lib/modules/$name.ko" ;;
    *) log "module $name: unknown compression of $file"; exit 1 ;;
  esac
  order+=("$name")
}
# kvm_amd gives /dev/kvm; virtio_pci, 9pnet_virtio and 9p give the host share (virtio-9p-pci on q35).
for m in kvm_amd virtio_pci 9pnet_virtio 9p; do
  place "$m"
done
printf '%s\n' "${order[@]}" >"$root/lib/modules/load-order"
log "modules ($kernel_release): ${order[*]}"

cp "$tmp/pkg/boot/vmlinuz-$kernel_release" "$tmp/vmlinuz"
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$tmp/initramfs.cpio"
echo "$kpkg $kver_pkg ($kernel_release), busybox-static $bb_ver" >"$tmp/VERSION"
rm -rf "$tmp/pkg" "$root" "$tmp/${kpkg}_"*.deb
chmod 755 "$tmp"

# Another build may have won the race; its result is as good as ours.
if mv -T "$tmp" "$out" 2>/dev/null; then
  trap - EXIT
else
  [ -f "$out/initramfs.cpio" ] || { log "cannot move the build into $out"; exit 1; }
fi
echo "$out"
