#!/usr/bin/env bash
# Installs what the build and the tests need and a fresh machine may lack. Safe to run again.
set -euo pipefail

need_apt=()
command -v gcc >/dev/null || need_apt+=(gcc)
command -v valgrind >/dev/null || need_apt+=(valgrind)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v bash >/dev/null || need_apt+=(bash)
command -v g++ >/dev/null || need_apt+=(g++)
command -v go >/dev/null || need_apt+=(golang-go)
command -v jq >/dev/null || need_apt+=(jq)
if ((${#need_apt[@]})); then
  echo "setup: installing ${need_apt[*]} from apt"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! python3 -m pytest --version >/dev/null 2>&1; then
  echo "setup: installing pytest from PyPI"
  python3 -m pip install -q pytest
fi

rustup component list --installed 2>/dev/null | grep -q '^clippy' || rustup component add clippy rustfmt
rustup target list --installed 2>/dev/null | grep -q '^x86_64-unknown-linux-gnu$' || rustup target add x86_64-unknown-linux-gnu
