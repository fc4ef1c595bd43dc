#!/usr/bin/env bash
# Builds the Clove guest kernel from Debian's linux-source-6.1 with guest/kernel/config and caches it
# outside the repository, keyed by the config, the source package version and this script. Prints on
# stdout only the directory holding vmlinux (ELF with the PVH note, symbols stripped) and bzImage;
# progress goes to stderr. A second call with the same key prints the directory at once.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
fragment=$here/config
cache=${CLOVE_CACHE:-$HOME/.cache/clove}/guest-kernel

log() { echo "guest-kernel: $*" >&2; }

install_deps() {
  local need=() pkg
  for pkg in linux-source-6.1 bc flex bison libelf-dev libssl-dev make gcc binutils xz-utils; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || need+=("$pkg")
  done
  if ((${#need[@]})); then
    log "installing ${need[*]} from apt"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  fi
}

# Every option the fragment names must read the same in the final .config: Kconfig drops an option
# whose dependencies are off without a word, and that must fail the build instead. An option the
# fragment turns off may also be absent (its menu is off), but its name must exist in Kconfig.
check_config() {
  local src=$1 final=$2 symbols line name bad=0
  symbols=$(grep -rhoE '^[[:space:]]*(menu)?config[[:space:]]+[A-Za-z0-9_]+' --include='Kconfig*' "$src" |
    awk '{print $2}' | sort -u)
  while IFS= read -r line; do
    if [[ $line =~ ^CONFIG_([A-Za-z0-9_]+)= ]]; then
      name=${BASH_REMATCH[1]}
      grep -qxF -- "$line" "$final" || {
        log "config: wanted '$line', got '$(grep -E "^(# )?CONFIG_${name}[= ]" "$final" || echo absent)'"
        bad=1
      }
    elif [[ $line =~ ^#\ CONFIG_([A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
      name=${BASH_REMATCH[1]}
      grep -qxF "$name" <<<"$symbols" || { log "config: no such option CONFIG_$name"; bad=1; }
      if grep -qE "^CONFIG_${name}=" "$final"; then
        log "config: wanted CONFIG_$name off, got '$(grep -E "^CONFIG_${name}=" "$final")'"
        bad=1
      fi
    fi
  done <"$fragment"
  return "$bad"
}

install_deps
version=$(dpkg-query -W -f='${Version}' linux-source-6.1)
key=$({ cat "$fragment"; printf '%s\n' "$version"; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -d' ' -f1)
out=$cache/$key
if [[ -f $out/vmlinux && -f $out/bzImage ]]; then
  echo "$out"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock -n 9 || { log "waiting for another build to finish"; flock 9; }
if [[ -f $out/vmlinux && -f $out/bzImage ]]; then
  echo "$out"
  exit 0
fi

# The source is unpacked once per package version; the object directory persists too, so a changed
# fragment rebuilds only what it touches.
src=$cache/src/linux-source-6.1-$version
if [[ ! -f $src/Makefile ]]; then
  log "unpacking /usr/src/linux-source-6.1.tar.xz"
  rm -rf "$src.tmp"
  mkdir -p "$src.tmp"
  tar -xJf /usr/src/linux-source-6.1.tar.xz -C "$src.tmp"
  mv "$src.tmp/linux-source-6.1" "$src"
  rm -rf "$src.tmp"
fi
obj=$cache/obj-$version
mkdir -p "$obj"

# Fixed build stamps: the same inputs give the same banner in /proc/version.
export KBUILD_BUILD_TIMESTAMP='1970-01-01 00:00:00 UTC' KBUILD_BUILD_USER=clove KBUILD_BUILD_HOST=clove
kmake=(make -C "$src" O="$obj" ARCH=x86_64)

log "configuring (allnoconfig + $fragment)"
"${kmake[@]}" -s allnoconfig KCONFIG_ALLCONFIG="$fragment" >&2
check_config "$src" "$obj/.config" || { log "config: the fragment did not survive, see above"; exit 1; }

log "building vmlinux and bzImage in $obj"
start=$SECONDS
nice -n 10 "${kmake[@]}" -j2 vmlinux bzImage >&2
log "built in $((SECONDS - start)) s"

tmp=$(mktemp -d "$cache/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
strip -o "$tmp/vmlinux" "$obj/vmlinux"
cp "$obj/arch/x86/boot/bzImage" "$tmp/bzImage"
cp "$obj/System.map" "$tmp/System.map"
cp "$obj/.config" "$tmp/config"
# readelf names no Xen note types: 0x12 is XEN_ELFNOTE_PHYS32_ENTRY, the PVH entry point.
readelf -n "$tmp/vmlinux" | grep -qE 'Xen.*(PHYS32_ENTRY|0x00000012)' || { log "vmlinux has no PVH entry note"; exit 1; }
mv "$tmp" "$out"
trap - EXIT
log "cached in $out"
echo "$out"
