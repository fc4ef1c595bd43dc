#!/bin/sh
# shellcheck shell=dash
# The job vm-e2e.sh runs inside L1 (as /mnt/job.sh, cwd /mnt; busybox sh, no C library): VM agents
# through the static clove-run, as users start them. Checks that
#  - tests/vm/agent.py (the SDK agent the process tier ran on the host) prints expected.json in a VM,
#    named by an absolute and by a relative path;
#  - a VM program's stdout, stderr and exit status reach clove-run's;
#  - a file one VM writes is gone in the next.
# Prints each check, the guest's console when the agent fails, and exits 1 if any check failed.
set -u
set -a
# shellcheck source=/dev/null
. ./job.env
set +a

# Off tmpfs rather than 9p; each VM is a fresh process of it.
cp ./bin/clove-run /tmp/clove-run
chmod +x /tmp/clove-run
run() { /tmp/clove-run run "$@"; }
uptime_s() { cut -d' ' -f1 /proc/uptime; }
failed=0
pass() { echo "vm-e2e: ok   $*"; }
fail() { echo "vm-e2e: FAIL $*"; failed=1; }
# check NAME WANT GOT
check() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1: want '$2', got '$3'"; fi
}

expected=$(cat ./vm/expected.json)
# agent NAME ARG...: runs the agent in a VM and compares its output and status.
agent() {
  name=$1
  shift
  t0=$(uptime_s)
  out=$(run --vm --memory 512M --level unrestricted -- "$@" 2>/tmp/agent.err)
  rc=$?
  echo "vm-e2e: $name took $(echo "$t0 $(uptime_s)" | awk '{printf "%.2f", $2 - $1}') s (L1 clock)"
  check "$name: exit status" 0 "$rc"
  check "$name: output is vm/expected.json" "$expected" "$out"
  if [ "$rc" -ne 0 ] || [ "$out" != "$expected" ]; then
    echo "vm-e2e: its stderr:"
    cat /tmp/agent.err
    echo "vm-e2e: again with the guest's console (CLOVE_VM_CONSOLE_LOG):"
    CLOVE_VM_CONSOLE_LOG=/tmp/console.log run --vm --memory 512M --level unrestricted -- "$@"
    tail -n 60 /tmp/console.log
  fi
}

echo "vm-e2e: guest kernel $CLOVE_VM_KERNEL, initramfs $CLOVE_VM_INITRAMFS ($(wc -c <"$CLOVE_VM_INITRAMFS") bytes)"
agent "python agent (absolute path)" python3 /mnt/vm/agent.py
agent "python agent (relative path)" python3 vm/agent.py

t0=$(uptime_s)
out=$(run --vm -- /bin/sh -c 'echo hello; echo err >&2; exit 3' 2>/tmp/sh.err)
rc=$?
echo "vm-e2e: sh -c took $(echo "$t0 $(uptime_s)" | awk '{printf "%.2f", $2 - $1}') s (L1 clock)"
check "sh -c: stdout" hello "$out"
check "sh -c: stderr" err "$(cat /tmp/sh.err)"
check "sh -c: exit status" 3 "$rc"

run --vm -- /bin/sh -c 'echo x > /tmp/mark && test -e /tmp/mark'
check "first VM writes /tmp/mark" 0 "$?"
run --vm -- test -e /tmp/mark
check "the next VM has no /tmp/mark (test -e exits 1)" 1 "$?"

[ "$failed" -eq 0 ] && echo "vm-e2e: all checks passed"
exit "$failed"
