#!/usr/bin/env bash
# Builds and runs the Rust host; prints the scenario's three lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q -p clove-example-rust-host
exec "${CARGO_TARGET_DIR:-target}/debug/clove-example-rust-host"
