#!/usr/bin/env bash
# Builds tests/c/smoke.c against the committed header and the release static
# library with -Wall -Wextra -Werror, runs it against the real Docker Engine, and
# (with --valgrind) again under valgrind: no definite leaks, no invalid accesses.
# Needs: cargo build --release (done by the caller), gcc, docker, the simulator image.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$root/target/c-smoke"
mkdir -p "$out"
cc -std=c11 -Wall -Wextra -Werror -pedantic -O1 -g -I"$root/include" "$root/tests/c/smoke.c" \
   "$root/target/release/libkecs_cluster.a" -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o "$out/smoke"

kubeconfigs="$(mktemp -d)"
name="kecs-csmoke-$$"
cleanup() { rm -rf "$kubeconfigs"; docker ps -aq --filter "label=k3d.cluster=$name" | xargs -r docker rm -f -v >/dev/null 2>&1 || true; docker network rm "k3d-$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT

"$out/smoke" "$name" "$kubeconfigs"
if [ "${1:-}" = "--valgrind" ]; then
  valgrind --quiet --suppressions="$root/tests/c/valgrind.supp" --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --error-exitcode=99 "$out/smoke" "$name-vg" "$kubeconfigs"
  echo "smoke under valgrind: no definite leaks, no invalid reads or writes"
fi
