#!/usr/bin/env bash
# Tests the header-only C++ binding (bindings/cpp/clove.hpp); run from anywhere.
#  1. Header drift: every function include/clove.h declares must be used by clove.hpp (a changed
#     signature already fails the compilation).
#  2. The tests (bindings/cpp/tests, three files linked into one program) compiled with -std=c++17
#     and -std=c++20, -Wall -Wextra -Werror: linked to libclove.so under valgrind (natively too
#     when valgrind cannot start agents), and statically to libclove.a under ASAN, UBSan and
#     LeakSanitizer.
#  3. As root, the C and C++ example hosts under ASAN, UBSan and LeakSanitizer, against
#     examples/expected-output.txt.
# Builds libclove in debug (honouring CARGO_TARGET_DIR) and exits non-zero on any failure.
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="$(realpath -m "${CARGO_TARGET_DIR:-target}/debug")"
out="$target/cpp-tests"
mkdir -p "$out"

cargo build -q -p clove-ffi
# What the static library needs from the system, as rustc says (cargo replays it when cached).
native_libs="$(cargo rustc -p clove-ffi --lib --crate-type staticlib -- \
    --print native-static-libs 2>&1 | sed -n 's/.*native-static-libs: //p' | tail -n 1)"
if [ -z "$native_libs" ]; then
    echo "test.sh: rustc printed no native-static-libs" >&2
    exit 1
fi
read -r -a native_libs <<<"$native_libs"

status=0

echo "== header drift: include/clove.h against bindings/cpp/clove.hpp"
declared="$(grep -v '^\s*\(\*\|/\*\)' include/clove.h | grep -oE '\bclove_[a-z0-9_]+\(' | tr -d '(' | sort -u)"
wrapper_code="$(g++ -fpreprocessed -dD -E -P bindings/cpp/clove.hpp)"  # comments stripped
unused=0
for function in $declared; do
    if ! grep -qw "$function" <<<"$wrapper_code"; then
        echo "FAIL - clove.hpp does not use $function"
        unused=$((unused + 1))
    fi
done
echo "$(wc -w <<<"$declared") functions declared, $unused not used by clove.hpp"
if [ "$unused" != 0 ] || [ -z "$declared" ]; then status=1; fi

echo "== compiling"
# Strict: a header-only library is compiled with its users' warning flags.
cxxflags=(-Wall -Wextra -Werror -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wold-style-cast
    -g -I include -I bindings/cpp)
sources=(bindings/cpp/tests/test_main.cpp bindings/cpp/tests/test_offline.cpp
    bindings/cpp/tests/test_agents.cpp)
sanitize=(-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
for std in c++17 c++20; do
    g++ -std="$std" "${cxxflags[@]}" "${sources[@]}" -o "$out/test_${std}_shared" \
        -L "$target" -Wl,-rpath,"$target" -lclove -lpthread
    g++ -std="$std" "${cxxflags[@]}" "${sanitize[@]}" "${sources[@]}" -o "$out/test_${std}_asan" \
        "$target/libclove.a" "${native_libs[@]}"
done
if ! ldd "$out/test_c++17_shared" | grep -q "$target/libclove.so"; then
    echo "test.sh: test_c++17_shared does not load $target/libclove.so" >&2
    exit 1
fi

source "$root/tests/c/valgrind.sh"

# A hung test (a deadlock) fails instead of blocking for ever.
run() {
    echo "== $*"
    timeout 600 "$@" || status=1
}
sanitizer_env=(env ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1)
for std in c++17 c++20; do
    run env CLOVE_TEST_SKIP_AGENTS="$skip_agents" CLOVE_REPO="$root" "${valgrind[@]}" "$out/test_${std}_shared"
    if [ "$skip_agents" = 1 ]; then
        run env CLOVE_REPO="$root" "$out/test_${std}_shared"
    fi
    run "${sanitizer_env[@]}" CLOVE_REPO="$root" "$out/test_${std}_asan"
done

if [ "$(id -u)" != 0 ]; then
    echo "!! SKIPPED: the example hosts need root (sandboxes and cgroups)"
    exit "$status"
fi
# The hosts print the expected lines on stdout; sanitizer reports go to stderr and fail the run.
check_host() {
    local name="$1"
    shift
    echo "== $name under ASAN and UBSan"
    if timeout 120 "${sanitizer_env[@]}" "$@" examples | diff -u examples/expected-output.txt -; then
        echo "ok   $name"
    else
        echo "FAIL $name"
        status=1
    fi
}
gcc -std=c11 -Wall -Wextra -Werror -g "${sanitize[@]}" -I include examples/c-host/main.c \
    -o "$out/c-host_asan" "$target/libclove.a" "${native_libs[@]}"
g++ -std=c++17 "${cxxflags[@]}" "${sanitize[@]}" examples/cpp-host/main.cpp \
    -o "$out/cpp-host_asan" "$target/libclove.a" "${native_libs[@]}"
check_host c-host "$out/c-host_asan"
check_host cpp-host "$out/cpp-host_asan"
exit "$status"
