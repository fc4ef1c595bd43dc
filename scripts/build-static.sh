#!/usr/bin/env bash
# Builds the static clove-run (glibc linked in with crt-static) and prints its absolute path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-gnu
# --target keeps RUSTFLAGS off the build scripts and proc macros, which must stay dynamic.
RUSTFLAGS="-C target-feature=+crt-static" cargo build -q --release -p clove-run --target "$target" >&2
out=${CARGO_TARGET_DIR:-target}
bin="$(cd "$out" && pwd)/$target/release/clove-run"
# A static(-pie) executable asks for no program interpreter.
if readelf -l "$bin" | grep -q 'program interpreter'; then
  echo "build-static: $bin is dynamically linked" >&2
  exit 1
fi
echo "$bin"
