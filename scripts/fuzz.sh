#!/usr/bin/env bash
# Runs the frame-decoder fuzz target (cargo fuzz, libFuzzer) for SECONDS (default 600).
# cargo fuzz needs nightly flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
RUSTC_BOOTSTRAP=1 cargo fuzz run frame_decoder -- -max_total_time="${1:-600}" -max_len=8192
