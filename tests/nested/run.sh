#!/usr/bin/env bash
# run.sh SHARE_DIR: boots the L1 machine (QEMU TCG emulating an AMD CPU with SVM, a Debian kernel with
# kvm_amd nested=1, so a real /dev/kvm inside), mounts SHARE_DIR at /mnt there and runs /mnt/job.sh.
# The job's output streams to stdout; the exit status is job.sh's, 124 when L1 had no /dev/kvm, and
# 125 when L1 wrote no status at all (crash or timeout).
# L1's own kernel sometimes locks up under QEMU's SVM emulation (a soft lockup, once a kernel stack
# overflow, in runs whose code passed before and after): it panics then (softlockup_panic), and a
# job whose L1 kernel panicked is run once more, saying so. A second panic fails the run.
# Env: L1_TIMEOUT (seconds, default 900), QEMU (default qemu-system-x86_64), CLOVE_CACHE (build-l1.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

[ $# -eq 1 ] || { echo "usage: $0 SHARE_DIR (with an executable job.sh in it)" >&2; exit 2; }
share=$(realpath "$1")
[ -x "$share/job.sh" ] || { echo "run.sh: $share/job.sh is missing or not executable" >&2; exit 2; }

l1=$("$here/build-l1.sh")
timeout_s=${L1_TIMEOUT:-900}

# Boots L1 once; its console streams to stdout and is kept in $share/l1-console.log.
boot_l1() {
  rm -f "$share/job.rc" "$share/job.out"
  start=$(date +%s.%N)
  set +e
  # stdin from /dev/null: QEMU leaves the terminal alone and the run does not depend on one.
  timeout --kill-after=10 "$timeout_s" "${QEMU:-qemu-system-x86_64}" \
    -accel tcg,thread=multi -smp 2 -cpu max,+svm -m 3072 -M q35 \
    -nographic -no-reboot -nic none \
    -virtfs "local,path=$share,mount_tag=host0,security_model=none,id=host0" \
    -kernel "$l1/vmlinuz" -initrd "$l1/initramfs.cpio" \
    -append "console=ttyS0 panic=1 softlockup_panic=1 quiet" </dev/null | tee "$share/l1-console.log"
  qemu_rc=${PIPESTATUS[0]}
  set -e
  elapsed=$(echo "$start $(date +%s.%N)" | awk '{printf "%.1f", $2 - $1}')
}

boot_l1
if [ ! -f "$share/job.rc" ] && grep -q "Kernel panic" "$share/l1-console.log"; then
  echo "run.sh: WARNING: L1's kernel panicked after ${elapsed} s (its console above says why), a fault" \
    "of the emulated machine; running the job once more" >&2
  boot_l1
fi

if [ ! -f "$share/job.rc" ]; then
  if [ "$qemu_rc" -eq 124 ] || [ "$qemu_rc" -eq 137 ]; then
    echo "run.sh: ERROR: L1 timed out after ${timeout_s} s (L1_TIMEOUT) and wrote no job.rc" >&2
  else
    echo "run.sh: ERROR: L1 stopped after ${elapsed} s (qemu status $qemu_rc) without writing job.rc" >&2
  fi
  exit 125
fi
rc=$(cat "$share/job.rc")
case $rc in
  '' | *[!0-9]*) echo "run.sh: ERROR: job.rc holds '$rc', not a status" >&2; exit 125 ;;
esac
if [ "$rc" -eq 124 ]; then
  echo "run.sh: ERROR: L1 had no /dev/kvm (its console above says why); job.sh did not run" >&2
else
  echo "run.sh: job.sh exited with $rc; L1 round trip ${elapsed} s" >&2
fi
exit "$rc"
