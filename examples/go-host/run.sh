#!/usr/bin/env bash
# Builds libclove and the Go host, then runs it; prints the scenario's three lines.
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v go >/dev/null; then
    apt-get install -y golang-go >&2 || { apt-get update >&2 && apt-get install -y golang-go >&2; }
fi
cargo build -q -p clove-ffi
target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)"
# The binding links libclove.a from here (docs/binding-go.md); the host needs no library at run time.
export CGO_LDFLAGS="-L$target/debug" GOFLAGS=-mod=mod GOPROXY=off
(cd examples/go-host && go build -o "$target/clove-example-go-host" .)
exec "$target/clove-example-go-host" "$PWD"
