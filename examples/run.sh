#!/usr/bin/env bash
# Runs every example host (examples/*-host/run.sh) and checks that each prints the shared scenario's
# expected output: a sandboxed memory hog is OOM-killed alone while a sibling agent keeps answering.
# Needs root (sandboxes and cgroups); without it every host says SKIPPED and the script fails.
set -uo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) != 0 ]]; then
  echo "SKIPPED: the example hosts need root for sandboxes and cgroups" >&2
  exit 1
fi
status=0
for host in examples/*-host/run.sh; do
  name=$(basename "$(dirname "$host")")
  out=$(bash "$host")
  rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "FAIL $name: exit $rc"; echo "$out"; status=1
  elif ! diff -u examples/expected-output.txt <(printf '%s\n' "$out"); then
    echo "FAIL $name: output differs from examples/expected-output.txt"; status=1
  else
    echo "ok   $name"
  fi
done
exit $status
