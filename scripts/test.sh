#!/usr/bin/env bash
# Runs every test: lints, Rust unit and integration tests, the no_std probe, the Python SDK, the C ABI
# under valgrind, the language bindings and example hosts, and the end-to-end checks through the
# static clove-run.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

passed=0
failed=0
failures=()
# Each suite's output is kept, so that a failure's lines are repeated at the very end, where a
# truncated CI log still shows them.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
suite() {
  local name=$1
  shift
  echo "=== $name"
  local log="$logs/$((passed + failed)).log"
  "$@" 2>&1 | tee "$log"
  if ((PIPESTATUS[0] == 0)); then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "=== $name failed; its failures and last lines:" >>"$logs/failed"
    { grep -E -m 60 'FAIL|panicked|^error|SKIPPED' "$log"; echo ...; tail -n 40 "$log"; } >>"$logs/failed"
  fi
}

suite "cargo fmt" cargo fmt --all -- --check
suite "cargo clippy" cargo clippy -q --workspace --exclude clove-nostd-probe --all-targets -- -D warnings
suite "no_std probe" cargo build -q -p clove-nostd-probe
suite "rust tests" cargo test -q --workspace --exclude clove-nostd-probe -- --skip hostile_agents_do_not_escape
# The escape suite prints its table of attempts and the layer that stopped each.
suite "escape suite" cargo test -q -p clove-core --test escape -- --nocapture
# The end-to-end suites use the static binary, as users get it.
static_bin=$(bash scripts/build-static.sh) && export CLOVE_RUN="$static_bin"
suite "static clove-run" test -x "${CLOVE_RUN:-/nonexistent}"
# The Python host API (ctypes) loads the debug libclove.so.
export CLOVE_LIB="${CARGO_TARGET_DIR:-$PWD/target}/debug/libclove.so"
python_tests() { cargo build -q -p clove-ffi && python3 -m pytest -q bindings/python/tests; }
suite "python sdk and host api" python_tests
suite "c abi (valgrind)" bash tests/c/run.sh
suite "go binding" bash bindings/go/test.sh
suite "c++ binding" bash bindings/cpp/test.sh
# Each language's host runs the same scenario and must print the same lines.
suite "example hosts" bash examples/run.sh
suite "demo" "${CLOVE_RUN:-/nonexistent}" demo
# The microVM tier. The guest kernel boots under QEMU's emulator; then, in the emulated SVM machine
# with a real nested /dev/kvm: the VMM's and the runtime's VM tests, and the same SDK agent in both
# tiers through clove-run. Their builds go to target/nested, apart from the ordinary ones.
suite "guest kernel smoke (QEMU TCG)" bash guest/kernel/smoke.sh
suite "vm tier (emulated SVM machine)" bash tests/nested/vm-tests.sh
suite "vm end to end (emulated SVM machine)" bash tests/nested/vm-e2e.sh

echo
if ((failed)); then
  cat "$logs/failed"
  echo "failed suites: ${failures[*]}"
fi
echo "suites: $passed passed, $failed failed"
((failed == 0))
