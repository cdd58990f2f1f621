#!/usr/bin/env bash
# Runs every test of the repository against the real Docker Engine:
#   formatting and lints, the committed C header, the Rust unit and integration
#   tests (library, C ABI, node simulator), the C smoke test (plain and under
#   valgrind), and the Go bindings (vet, gofmt, -race, cgocheck2).
# Needs Docker running, busybox-static, gcc, valgrind and Go >= 1.21 on PATH
# (.ci/run installs them on a fresh machine). One build profile: release.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n== %s\n' "$*"; }
[ -d /usr/lib/go-1.23/bin ] && export PATH="/usr/lib/go-1.23/bin:$PATH"
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly

step "rustfmt"
cargo fmt --all --check

step "build (release)"
cargo build --release --workspace --all-targets

step "C header is current"
if ! cmp -s "$(ls -t target/release/build/kecs-cluster-*/out/kecs_cluster.h | head -1)" include/kecs_cluster.h; then
  echo "include/kecs_cluster.h differs from what the sources generate." >&2
  echo "Regenerate it with: KECS_UPDATE_HEADER=1 cargo build --release   (then commit it)" >&2
  exit 1
fi

step "clippy"
cargo clippy --release --workspace --all-targets -- -D warnings

step "node simulator image"
tests/node-sim/build-image.sh

step "cargo test"
cargo test --release --workspace

step "C smoke test (+ valgrind)"
tests/c/run.sh --valgrind

step "Go bindings"
cd bindings/go
go vet ./...
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then echo "gofmt: needs formatting: $unformatted" >&2; exit 1; fi
GOEXPERIMENT=cgocheck2 go test -count=1 ./...
go test -race -count=1 -v ./...
