#!/usr/bin/env bash
# Runs the benchmark harness (see BENCHMARKS.md): builds the release binaries,
# the simulator images (nodes and load balancer) and the Go driver, then prints
# a markdown table.
# usage: bench/run.sh [--runs N] [--max-runs N] [--scale-runs N] [--scale-max-runs N]
#                     [--memory-cycles N] [--sections a,b] [--json PATH] [--charts DIR]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
[ -d /usr/lib/go-1.23/bin ] && export PATH="/usr/lib/go-1.23/bin:$PATH"
export GOTOOLCHAIN=local
cargo build --release -p kecs-cluster -p kecs-bench --quiet
tests/node-sim/build-image.sh >/dev/null
tests/lb-sim/build-image.sh >/dev/null
tests/registry/build-image.sh >/dev/null
(cd bindings/go && go build -o "$root/target/release/kecs-bench-go" ./cmd/kecs-bench-go)
exec "$root/target/release/kecs-bench" --go-driver "$root/target/release/kecs-bench-go" "$@"
