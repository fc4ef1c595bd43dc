#!/usr/bin/env bash
# Usage: guest/initramfs.sh [--python] INIT
# Builds the Clove guest's initramfs, an uncompressed newc cpio with /init = INIT (a static binary, or
# a #! script for tests), busybox-static at /bin/busybox with a link in /bin for each applet, empty
# /proc /sys /dev /tmp /run /etc, /dev/console (the kernel opens it for init's stdin, stdout and
# stderr before any devtmpfs is mounted) and /dev/null (for them when there is no console). With
# --python it also holds Debian's CPython 3.11 (the interpreter, its libraries and loader, a pruned
# stdlib with unchecked-hash .pyc files) and the Clove SDK in /usr/lib/python3/dist-packages, so
# `python3 -c 'import clove_sdk'` works in the guest.
# Cached under ${CLOVE_CACHE:-~/.cache/clove}/initramfs by the hash of every input file and this
# script; prints the archive's path on stdout. Every entry has uid 0 and mtime 0 and entries are
# sorted, so the same inputs give the same bytes.
set -euo pipefail

log() { echo "initramfs: $*" >&2; }
usage() { echo "usage: $0 [--python] INIT" >&2; exit 2; }

python=0
if [[ ${1:-} == --python ]]; then
  python=1
  shift
fi
(($# == 1)) || usage
init=$1
[[ -f $init && -x $init ]] || { log "$init is not an executable file"; exit 1; }
if [[ $(head -c4 "$init" | od -An -c | tr -d ' ') == 177ELF ]] && readelf -l "$init" | grep -q 'INTERP'; then
  log "$init is dynamically linked; the guest has no libraries, link it statically"
  exit 1
fi

need() {
  local pkg=$1
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed'; then
    log "installing $pkg from apt"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >&2
  fi
}
need busybox-static
busybox=$(dpkg-query -L busybox-static | grep -m1 '/bin/busybox$')

# --python: what goes in, as "guest-path<TAB>host-file" lines (directories follow from the paths).
pyver=3.11
pylib=/usr/lib/python$pyver
sdk=$(readlink -f "$(dirname "${BASH_SOURCE[0]}")/../bindings/python/clove_sdk")
# Not needed by agents, large, or needing libraries the guest does not carry (it has no network:
# no _ssl, and hashlib uses its built-in hashes instead of OpenSSL's, 5 MB less).
stdlib_dropped='^(test|idlelib|tkinter|turtledemo|ensurepip|lib2to3|pydoc_data|distutils|venv|config-[^/]*|site-packages|lib-dynload|__phello__)(/|$)|(^|/)__pycache__/|^(turtle|antigravity|this|sitecustomize)\.py$'
dynload_dropped='^(_ssl|_hashlib|_test|_ctypes_test|xxlimited|_xxtestfuzz|_xxsubinterpreters|_curses|readline|_dbm|nis|ossaudiodev|audioop|_codecs_|_multibytecodec|_crypt)'
python_inputs() {
  local f lib
  printf '/usr/bin/python%s\t/usr/bin/python%s\n' "$pyver" "$pyver"
  (cd "$pylib" && find . -type f -printf '%P\n') | grep -Ev "$stdlib_dropped" | while read -r f; do
    printf '%s/%s\t%s/%s\n' "$pylib" "$f" "$pylib" "$f"
  done
  local dynload=()
  for f in "$pylib"/lib-dynload/*.so; do
    [[ $(basename "$f") =~ $dynload_dropped ]] && continue
    dynload+=("$f")
    printf '%s\t%s\n' "$f" "$f"
  done
  # Libraries at the paths the loader finds them (ldd's), with their contents (symlinks followed).
  for lib in $(ldd "/usr/bin/python$pyver" "${dynload[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u); do
    printf '%s\t%s\n' "$lib" "$(readlink -f "$lib")"
  done
  lib=$(readelf -l "/usr/bin/python$pyver" | sed -n 's/.*program interpreter: \(.*\)]/\1/p')
  printf '%s\t%s\n' "$lib" "$(readlink -f "$lib")"
  for f in "$sdk"/*.py; do
    printf '/usr/lib/python3/dist-packages/clove_sdk/%s\t%s\n' "$(basename "$f")" "$f"
  done
}

inputs=("$init" "$busybox" "${BASH_SOURCE[0]}")
manifest=
if ((python)); then
  need "python$pyver"
  [[ -f $sdk/__init__.py ]] || { log "no Clove SDK beside this script (bindings/python/clove_sdk)"; exit 1; }
  manifest=$(python_inputs | LC_ALL=C sort)
  mapfile -t pyfiles < <(cut -f2 <<<"$manifest")
  inputs+=("${pyfiles[@]}")
fi

cache=${CLOVE_CACHE:-$HOME/.cache/clove}/initramfs
# The guest paths are part of the key too: the same file placed elsewhere is another archive.
key=$({ sha256sum "${inputs[@]}" | cut -d' ' -f1; printf '%s\n' "$python"; cut -f1 <<<"$manifest"; } | sha256sum | cut -d' ' -f1)
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
pad() {
  case $(((4 - $1 % 4) % 4)) in
    1) printf '\0' ;;
    2) printf '\0\0' ;;
    3) printf '\0\0\0' ;;
  esac
}
dir() { header $((8#040755)) 2 0 0 0 "$1"; }
# file NAME PATH [PERMISSIONS]
file() {
  local size
  size=$(stat -c %s "$2")
  header $((8#0100000 | 8#${3:-755})) 1 "$size" 0 0 "$1"
  cat "$2"
  pad "$size"
}
symlink() {
  header $((8#0120777)) 1 "${#2}" 0 0 "$1"
  printf '%s' "$2"
  pad "${#2}"
}

# stage_python DIR: the --python tree (guest paths under DIR), its .pyc files compiled, checked.
stage_python() {
  local stage=$1 guest host
  while IFS=$'\t' read -r guest host; do
    mkdir -p "$stage$(dirname "$guest")"
    cp "$host" "$stage$guest"
  done <<<"$manifest"
  ln -s "python$pyver" "$stage/usr/bin/python3"
  # Unchecked-hash .pyc files are used without comparing mtimes (all 0 in the archive), and a fixed
  # hash seed keeps set constants in the same order, so the bytes depend only on the sources.
  PYTHONHASHSEED=0 "/usr/bin/python$pyver" -m compileall -q -j 1 --invalidation-mode unchecked-hash \
    -s "$stage" -p / "$stage$pylib" "$stage/usr/lib/python3/dist-packages" >&2
  if [[ $(id -u) == 0 ]]; then
    chroot "$stage" /usr/bin/python3 -B -c 'import clove_sdk, socket, struct, json, os, time, subprocess, select, base64, typing, dataclasses, enum' ||
      { log "the staged python cannot import the SDK"; return 1; }
  else
    log "not root: the staged python is not checked in a chroot"
  fi
}

# tree DIR: every entry under DIR, parents first, with its permissions.
tree() {
  local type perm path
  while IFS=' ' read -r -d '' type perm path; do
    case $type in
      d) header $((8#040000 | 8#$perm)) 2 0 0 0 "$path" ;;
      f) file "$path" "$1/$path" "$perm" ;;
      l) symlink "$path" "$(readlink "$1/$path")" ;;
      *) log "$path: unexpected file type $type"; return 1 ;;
    esac
  done < <(find "$1" -mindepth 1 -printf '%y %m %P\0' | LC_ALL=C sort -z -k3)
}

archive() {
  local d applet
  for d in bin dev etc proc run sys tmp; do dir "$d"; done
  header $((8#020600)) 1 0 5 1 dev/console
  # Without a console (8250.nr_uarts=0) the kernel leaves init's fds 0-2 closed, and Rust's runtime
  # opens /dev/null on them before main, aborting PID 1 (a kernel panic) when it cannot.
  header $((8#020666)) 1 0 1 3 dev/null
  file init "$init"
  file bin/busybox "$busybox"
  for applet in $("$busybox" --list | LC_ALL=C sort -u); do
    [[ $applet == busybox ]] || symlink "bin/$applet" busybox
  done
  if ((python)); then tree "$stage"; fi
  header 0 1 0 0 0 'TRAILER!!!'
}

mkdir -p "$cache"
tmp=$(mktemp "$cache/.tmp.XXXXXX")
stage=
trap 'rm -rf "$tmp" ${stage:+"$stage"}' EXIT
if ((python)); then
  stage=$(mktemp -d "$cache/.stage.XXXXXX")
  stage_python "$stage"
fi
archive >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
log "built $out ($(stat -c %s "$out") bytes)"
echo "$out"
