#!/bin/sh
# shellcheck shell=dash disable=SC3040 # busybox ash: dash's dialect, plus pipefail
# The job vm-tests.sh runs inside L1 (as /mnt/job.sh, cwd /mnt; busybox sh, no C library). It checks
# that the KVM here is the nested SVM one, then runs every test binary in /mnt/bin one test at a time.
# It fails when a binary fails or prints SKIPPED: inside L1 there is KVM, so a skip is a lost test.
set -u
# KEY=VALUE lines from vm-tests.sh: where the staged assets are, for the tests that need them.
if [ -f ./job.env ]; then
  set -a
  # shellcheck source=/dev/null
  . ./job.env
  set +a
fi
export CLOVE_REQUIRE_KVM=1

nested=$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null)
echo "job: /sys/module/kvm_amd/parameters/nested = ${nested:-<missing>}"
if [ "$nested" != 1 ] || [ ! -c /dev/kvm ]; then
  echo "job: FAIL: this is not the nested SVM KVM (kvm_amd nested=1 with /dev/kvm)"
  exit 1
fi

# cgroup v1 hierarchies, as on the machines Clove is developed on: a VM agent's threads get a cgroup
# of their own there (its CPU limits, PAUSE by the freezer).
mount -t tmpfs cgroup /sys/fs/cgroup
for controllers in cpu,cpuacct memory pids freezer; do
  mkdir -p "/sys/fs/cgroup/$controllers"
  mount -t cgroup -o "$controllers" cgroup "/sys/fs/cgroup/$controllers" ||
    echo "job: no v1 $controllers hierarchy here"
done

# Binaries run from tmpfs: faster than 9p, and the share stays as the host left it.
mkdir -p /tmp/bin
failed=0
for bin in ./bin/*; do
  [ -f "$bin" ] || { echo "job: FAIL: no test binaries in /mnt/bin"; exit 1; }
  name=$(basename "$bin")
  cp "$bin" "/tmp/bin/$name"
  chmod +x "/tmp/bin/$name"
  echo "job: == $name"
  set -o pipefail
  (cd /tmp && "/tmp/bin/$name" --test-threads=1) 2>&1 | tee "/tmp/$name.out"
  rc=$?
  set +o pipefail
  if [ "$rc" -ne 0 ]; then
    echo "job: FAIL: $name exited with $rc"
    failed=1
  elif grep -q SKIPPED "/tmp/$name.out"; then
    echo "job: FAIL: $name skipped tests inside L1, where KVM is there to use"
    failed=1
  fi
done
[ "$failed" -eq 0 ] && echo "job: all test binaries passed, none skipped"
exit "$failed"
