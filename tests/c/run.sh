#!/usr/bin/env bash
# Installs the library into a temporary prefix (scripts/install.sh: header, static
# and shared library with its soname, kecs_cluster.pc), builds tests/c/smoke.c
# against that installed copy with `pkg-config --cflags --libs kecs_cluster` and
# -Wall -Wextra -Werror, and runs it against the real Docker Engine. With
# --valgrind it also runs a build linking the installed static archive (its
# symbols name the frames valgrind.supp matches): no definite leaks, no invalid
# accesses.
# Needs: cargo build --release (done by the caller), gcc, pkg-config, patchelf,
# docker, the simulator images (node and load balancer).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
work="$(mktemp -d)"
kubeconfigs="$work/kubeconfigs"
name="kecs-csmoke-$$"
cleanup() {
  rm -rf "$work"
  for n in "$name" "$name-vg"; do
    docker ps -aq --filter "label=k3d.cluster=$n" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
    docker network rm "k3d-$n" >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
# the load balancer's stand-in: the default upstream image is never pulled here
export KECS_LB_IMAGE="${KECS_SIM_LB_IMAGE:-kecs-sim/k3d-proxy:test}"
docker image inspect "$KECS_LB_IMAGE" >/dev/null 2>&1 \
  || { echo "the load-balancer stand-in $KECS_LB_IMAGE is missing: run tests/lb-sim/build-image.sh first" >&2; exit 1; }

"$root/scripts/install.sh" --no-build --prefix "$work/prefix" >/dev/null
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
libdir="$(pkg-config --variable=libdir kecs_cluster)"
cflags=(-std=c11 -Wall -Wextra -Werror -pedantic -O1 -g)

# shared library, found at run time through the rpath (as an installed library
# would be through ldconfig); it must be recorded by its soname
# shellcheck disable=SC2046 # pkg-config output is a list of flags
cc "${cflags[@]}" $(pkg-config --cflags kecs_cluster) "$root/tests/c/smoke.c" \
   $(pkg-config --libs kecs_cluster) -Wl,-rpath,"$libdir" -o "$work/smoke"
needed="$(readelf -d "$work/smoke" | sed -n 's/.*(NEEDED).*\[\(libkecs_cluster[^]]*\)\].*/\1/p')"
[ "$needed" = "$(patchelf --print-soname "$libdir/libkecs_cluster.so")" ] \
  || { echo "smoke links '$needed', not the library's soname" >&2; exit 1; }
"$work/smoke" "$name" "$kubeconfigs"
echo "smoke (pkg-config, shared $needed): ok"

if [ "${1:-}" = "--valgrind" ]; then
  # the static archive plus the system libraries pkg-config --static lists
  # shellcheck disable=SC2046
  cc "${cflags[@]}" $(pkg-config --cflags kecs_cluster) "$root/tests/c/smoke.c" \
     $(pkg-config --libs-only-L kecs_cluster) -Wl,-Bstatic -lkecs_cluster -Wl,-Bdynamic \
     $(pkg-config --static --libs-only-l kecs_cluster | sed 's/-lkecs_cluster//') -o "$work/smoke-static"
  valgrind --quiet --suppressions="$root/tests/c/valgrind.supp" --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite \
    --error-exitcode=99 "$work/smoke-static" "$name-vg" "$kubeconfigs"
  echo "smoke under valgrind: no definite leaks, no invalid reads or writes"
fi
