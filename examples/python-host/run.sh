#!/usr/bin/env bash
# Builds libclove and runs the Python host; prints the scenario's three lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p clove-ffi
export CLOVE_LIB="${CARGO_TARGET_DIR:-$PWD/target}/debug/libclove.so"
export PYTHONPATH="$PWD/bindings/python${PYTHONPATH:+:$PYTHONPATH}"
exec python3 examples/python-host/main.py
