#!/usr/bin/env bash
# Usage: guest/initramfs.sh INIT
# Builds the Clove guest's initramfs, an uncompressed newc cpio with /init = INIT (a static binary, or
# a #! script for tests), busybox-static at /bin/busybox with a link in /bin for each applet, empty
# /proc /sys /dev /tmp /run /etc, /dev/console (the kernel opens it for init's stdin, stdout and
# stderr before any devtmpfs is mounted) and /dev/null (what init's runtime opens when it cannot). Cached under ${CLOVE_CACHE:-~/.cache/clove}/initramfs by the
# hash of INIT, busybox and this script; prints the archive's path on stdout. Every entry has uid 0 and
# mtime 0 and entries are sorted, so the same inputs give the same bytes.
set -euo pipefail

log() { echo "initramfs: $*" >&2; }

(($# == 1)) || { echo "usage: $0 INIT" >&2; exit 2; }
init=$1
[[ -f $init && -x $init ]] || { log "$init is not an executable file"; exit 1; }
if [[ $(head -c4 "$init" | od -An -c | tr -d ' ') == 177ELF ]] && readelf -l "$init" | grep -q 'INTERP'; then
  log "$init is dynamically linked; the guest has no libraries, link it statically"
  exit 1
fi

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
  log "installing busybox-static from apt"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static >&2
fi
busybox=$(dpkg-query -L busybox-static | grep -m1 '/bin/busybox$')

cache=${CLOVE_CACHE:-$HOME/.cache/clove}/initramfs
key=$(sha256sum "$init" "$busybox" "${BASH_SOURCE[0]}" | cut -d' ' -f1 | sha256sum | cut -d' ' -f1)
out=$cache/$key.cpio
if [[ -f $out ]]; then
  echo "$out"
  exit 0
fi

ino=0
# One newc header and name, padded to 4 bytes: mode, nlink, size, rdev major and minor, name.
header() {
  local namesize=$((${#6} + 1))
  ino=$((ino + 1))
  printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X' \
    "$ino" "$1" 0 0 "$2" 0 "$3" 0 0 "$4" "$5" "$namesize" 0
  printf '%s\0' "$6"
  pad $((110 + namesize))
}
pad() { head -c $(((4 - $1 % 4) % 4)) /dev/zero; }
dir() { header $((8#040755)) 2 0 0 0 "$1"; }
file() {
  local size
  size=$(stat -c %s "$2")
  header $((8#0100755)) 1 "$size" 0 0 "$1"
  cat "$2"
  pad "$size"
}
symlink() {
  header $((8#0120777)) 1 "${#2}" 0 0 "$1"
  printf '%s' "$2"
  pad "${#2}"
}

archive() {
  local d applet
  for d in bin dev etc proc run sys tmp; do dir "$d"; done
  header $((8#020600)) 1 0 5 1 dev/console
  # Without a console (8250.nr_uarts=0, the quiet default) init starts with fds 0-2 closed, and a
  # Rust program's runtime aborts unless it can open /dev/null in their place before main.
  header $((8#020666)) 1 0 1 3 dev/null
  file init "$init"
  file bin/busybox "$busybox"
  for applet in $("$busybox" --list | LC_ALL=C sort -u); do
    [[ $applet == busybox ]] || symlink "bin/$applet" busybox
  done
  header 0 1 0 0 0 'TRAILER!!!'
}

mkdir -p "$cache"
tmp=$(mktemp "$cache/.tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT
archive >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
trap - EXIT
log "built $out ($(stat -c %s "$out") bytes)"
echo "$out"
