#!/usr/bin/env bash
# Builds libclove (if needed) and the C++ host with bindings/cpp/clove.hpp against libclove.so,
# then runs it; prints the scenario's three lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}/debug")"
cargo build -q -p clove-ffi
g++ -std=c++17 -Wall -Wextra -Werror -I include -I bindings/cpp examples/cpp-host/main.cpp \
    -o "$target/cpp-host" -L "$target" -Wl,-rpath,"$target" -lclove
exec "$target/cpp-host" examples
