#!/bin/sh
# shellcheck shell=dash
# The job bench-vm.sh runs inside L1 (as /mnt/job.sh, cwd /mnt; busybox sh, no C library): loads
# vhost_vsock for QEMU's guests, copies what it runs to tmpfs (faster than 9p) and runs
# `clove-bench --vm` with the arguments in bench.args; its table goes to /mnt/table.md.
set -u
echo "bench: L1 $(uname -r), $(grep -c ^processor /proc/cpuinfo) vCPUs, kvm_amd nested=$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null)"
[ -c /dev/kvm ] || { echo "bench: FAIL: no /dev/kvm"; exit 1; }

while read -r m; do
  [ -d "/sys/module/$m" ] || insmod "./modules/$m.ko" || echo "bench: insmod $m FAILED"
done <./modules/load-order
[ -c /dev/vhost-vsock ] || echo "bench: no /dev/vhost-vsock: QEMU's column will say why"

mkdir -p /tmp/bench
cp -r ./clove-bench ./assets ./q /tmp/bench/
chmod +x /tmp/bench/clove-bench /tmp/bench/q/qemu-system-x86_64 /tmp/bench/q/ld-linux-x86-64.so.2
q=/tmp/bench/q
export CLOVE_GUEST_VMLINUX=/tmp/bench/assets/vmlinux CLOVE_GUEST_INITRAMFS=/tmp/bench/assets/initramfs.cpio
export CLOVE_BENCH_QEMU="$q/ld-linux-x86-64.so.2 --library-path $q/lib $q/qemu-system-x86_64 -L $q/share"

# bench.args: one argument a line (none: the defaults).
set --
while IFS= read -r a; do
  [ -n "$a" ] && set -- "$@" "$a"
done <./bench.args
cd /tmp && /tmp/bench/clove-bench --vm "$@" >/tmp/bench/table.md
rc=$?
cp /tmp/bench/table.md /mnt/table.md
cat /tmp/bench/table.md
exit "$rc"
