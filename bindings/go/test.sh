#!/usr/bin/env bash
# Checks the Go binding: builds libclove (debug), then gofmt, go vet and go test -race against
# libclove.a. Runs from anywhere; installs Debian's golang-go when go is missing. The sandbox, OOM
# and prewarm tests need root: without it they are skipped, and this script says so.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"

if ! command -v go >/dev/null; then
    apt-get install -y golang-go >&2 || { apt-get update >&2 && apt-get install -y golang-go >&2; }
fi
cargo build -q -p clove-ffi
target="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/debug"
# The package links libclove.a (see docs/binding-go.md); only its directory comes from here.
export CGO_LDFLAGS="-L$target"
# Standard library only: nothing to download.
export GOFLAGS=-mod=mod GOPROXY=off

cd bindings/go
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
    echo "test.sh: not gofmt-ed: $unformatted" >&2
    exit 1
fi
go vet ./...
if [ "$(id -u)" != 0 ]; then
    echo "!! SKIPPED: not root, so the sandbox, OOM and prewarm tests are skipped" >&2
fi
go test -race -count=1 ./...
