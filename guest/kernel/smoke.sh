#!/usr/bin/env bash
# Boots the guest kernel under QEMU TCG (microvm machine: no ACPI, no PCI, like the Clove VMM) with a
# busybox initramfs whose /init checks the guest from the inside, and fails unless every check passes.
# Runs twice: the ELF vmlinux through its PVH entry, and the bzImage. Needs no /dev/kvm.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
log() { echo "smoke: $*" >&2; }

if ! command -v qemu-system-x86_64 >/dev/null; then
  log "installing qemu-system-x86 from apt"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86 >&2
fi

kernel_dir=$("$here/build.sh")
readelf -n "$kernel_dir/vmlinux" | grep -qE 'Xen.*(PHYS32_ENTRY|0x00000012)' ||
  { log "$kernel_dir/vmlinux has no XEN_ELFNOTE_PHYS32_ENTRY note"; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# Each check prints "check NAME ok"; the host wants every name in $checks, then the marker.
cat >"$work/init" <<'EOF'
#!/bin/sh
export PATH=/bin
check() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "check $name ok"; else echo "check $name FAIL"; fi; }
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
check proc test -r /proc/self/status
check devtmpfs test -c /dev/null
check tmpfs sh -c 'echo x >/tmp/f && test "$(cat /tmp/f)" = x'
check smp test "$(grep -c ^processor /proc/cpuinfo)" = 2
check vsock grep -q VSOCK /proc/net/protocols
check dev_vsock test -c /dev/vsock
check virtio_mmio test -e /sys/bus/virtio/devices/virtio0
check cgroup2 grep -qw memory /sys/fs/cgroup/cgroup.controllers
check pids grep -qw pids /sys/fs/cgroup/cgroup.controllers
check cpu grep -qw cpu /sys/fs/cgroup/cgroup.controllers
check seccomp grep -q '^Seccomp:' /proc/self/status
check landlock sh -c 'dmesg | grep -q "landlock: Up and running"'
check namespaces unshare -U -p -n -u -i -m -f true
echo "--- init argv: $*"
echo "--- init env: $(env | grep -vE '^(PATH|PWD|SHLVL|HOME|TERM)=' | tr '\n' ' ')"
echo "--- ls /dev"; ls /dev
echo "--- dmesg (virtio, landlock, clock)"; dmesg | grep -iE 'virtio|landlock|kvm-clock|clocksource' | tail -8
echo CLOVE-SMOKE-OK
reboot -f
EOF
chmod +x "$work/init"
checks="proc devtmpfs tmpfs smp vsock dev_vsock virtio_mmio cgroup2 pids cpu seccomp landlock namespaces"

# The Clove VMM's base command line (its virtio_mmio.device= slots are QEMU's here).
cmdline="reboot=k panic=-1 pci=off nomodule i8042.noaux i8042.nomux i8042.dumbkbd rdinit=/init"
initrd=$("$(dirname "$here")/initramfs.sh" "$work/init")

boot() {
  local kernel=$1 out=$work/serial.log start=$EPOCHREALTIME
  log "booting $kernel"
  # acpi=off makes QEMU write the MP table and name its virtio-mmio slots on the command line, as the
  # Clove VMM does. virtio-rng-device has no driver in this kernel; it only has to show on the bus.
  # The i8042 makes the guest's reset (0xFE to port 0x64) end QEMU (-no-reboot), as it ends a Clove
  # VM; microvm has none by default and the guest would re-enter the firmware and boot again.
  local rc=0
  timeout 120 qemu-system-x86_64 -accel tcg -smp 2 -m 256 \
    -M microvm,x-option-roms=off,isa-serial=on,rtc=off,acpi=off,auto-kernel-cmdline=on \
    -nodefaults -no-user-config -nographic -no-reboot -serial stdio \
    -device i8042 -device virtio-rng-device \
    -kernel "$kernel" -initrd "$initrd" -append "console=ttyS0 $cmdline" \
    </dev/null >"$out" 2>&1 || rc=$?
  log "qemu exited with $rc after $(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s"
  local name failed=0
  ((rc == 0)) || { log "the guest did not reset itself (qemu status $rc)"; failed=1; }
  (($(grep -c 'Linux version' "$out") == 1)) || { log "the guest booted more than once"; failed=1; }
  for name in $checks; do
    grep -q "^check $name ok" "$out" || { log "check $name failed"; failed=1; }
  done
  grep -q '^CLOVE-SMOKE-OK' "$out" || { log "no marker"; failed=1; }
  if ((failed)); then
    log "serial log of $kernel:"
    cat "$out" >&2
    return 1
  fi
  sed -n '/Run \/init/,$p' "$out" >&2
}

boot "$kernel_dir/vmlinux"
boot "$kernel_dir/bzImage"
log "ok"
