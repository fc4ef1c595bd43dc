#!/usr/bin/env bash
# Builds libclove (if needed) and the C host against include/clove.h and libclove.so, then runs it;
# prints the scenario's three lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
target="$(realpath -m "${CARGO_TARGET_DIR:-target}/debug")"
cargo build -q -p clove-ffi
gcc -std=c11 -Wall -Wextra -Werror -I include examples/c-host/main.c -o "$target/c-host" \
    -L "$target" -Wl,-rpath,"$target" -lclove
exec "$target/c-host" examples
