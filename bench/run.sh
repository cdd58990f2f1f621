#!/usr/bin/env bash
# Runs the benchmark harness (see BENCHMARKS.md): builds the release binaries,
# the simulator image and the Go driver, then prints a markdown table.
# usage: bench/run.sh [--runs N] [--scale-runs N] [--memory-cycles N] [--json PATH]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -d /usr/lib/go-1.23/bin ] && export PATH="/usr/lib/go-1.23/bin:$PATH"
export GOTOOLCHAIN=local
cargo build --release --workspace --quiet
tests/node-sim/build-image.sh >/dev/null
(cd bindings/go && go build -o "$root/target/release/kecs-bench-go" ./cmd/kecs-bench-go)
exec "$root/target/release/kecs-bench" --go-driver "$root/target/release/kecs-bench-go" "$@"
