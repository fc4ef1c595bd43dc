#!/usr/bin/env bash
# Builds libclove in release and runs tests/c/test_abi.c, compiled with -Wall -Wextra -Werror against
# include/clove.h, three ways: linked to libclove.so and statically to libclove.a, each under
# valgrind, and statically with ASAN, UBSan and LeakSanitizer. Exits non-zero on any failed check,
# compiler warning, memory error or definite leak.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}/release"
out="$target/c-tests"
mkdir -p "$out"

cargo build --release -p clove-ffi
# What the static library needs from the system, as rustc says (it changes with the dependencies).
native_libs="$(cargo rustc -q --release -p clove-ffi --lib --crate-type staticlib -- \
    --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -n 1)"
if [ -z "$native_libs" ]; then
    echo "run.sh: rustc printed no native-static-libs" >&2
    exit 1
fi
read -r -a native_libs <<<"$native_libs"

cflags=(-std=c11 -Wall -Wextra -Werror -g -I "$root/include")
gcc "${cflags[@]}" tests/c/test_abi.c -o "$out/test_abi_shared" \
    -L "$target" -Wl,-rpath,"$target" -lclove -lpthread
gcc "${cflags[@]}" tests/c/test_abi.c -o "$out/test_abi_static" \
    "$target/libclove.a" "${native_libs[@]}"
gcc "${cflags[@]}" -fsanitize=address,undefined -fno-omit-frame-pointer tests/c/test_abi.c \
    -o "$out/test_abi_asan" "$target/libclove.a" "${native_libs[@]}"

# grep reads all of ldd's output: with -q it could stop early, and pipefail would count ldd's
# SIGPIPE as a failure.
if ! ldd "$out/test_abi_shared" | grep "$target/libclove.so" >/dev/null; then
    echo "run.sh: test_abi_shared does not load $target/libclove.so" >&2
    exit 1
fi
if ldd "$out/test_abi_static" | grep libclove >/dev/null; then
    echo "run.sh: test_abi_static loads libclove dynamically" >&2
    exit 1
fi

source "$root/tests/c/valgrind.sh"

export CLOVE_SDK_PATH="$root/bindings/python"
status=0
run() {
    echo "== $*"
    "$@" || status=1
}
for build in shared static; do
    run env CLOVE_TEST_SKIP_AGENTS="$skip_agents" "${valgrind[@]}" "$out/test_abi_$build"
done
if [ "$skip_agents" = 1 ]; then
    run "$out/test_abi_shared"
fi
run env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1 "$out/test_abi_asan"
exit "$status"
