#!/usr/bin/env bash
# Ships the library the way KECS consumes it (issue #18) and checks each path:
#   1. C install: scripts/install.sh into a temporary prefix; the shared library
#      carries its soname, pkg-config finds the package.
#   2. Go program in another module: the package copied read-only outside the
#      checkout (as the module cache holds it), a separate module pointing at it
#      with a replace, built with only the documented install steps; it runs.
#   3. Fully static binary (CGO_ENABLED=1, external linking, -static) run alone in
#      an empty image with the Docker socket mounted, in container mode: it
#      creates a cluster, reads its kubeconfig, lists nodes, deletes the cluster.
#   4. cgo off: the package and the programs build with CGO_ENABLED=0 and say
#      ErrCgoRequired; the stub declares the cgo build's exported API.
# Prints the sizes (the BENCHMARKS.md "Distribution sizes" table) at the end.
# Needs: cargo build --release (done by the caller), docker, gcc, Go >= 1.21,
# patchelf, pkg-config, the simulator images (tests/node-sim/build-image.sh,
# tests/lb-sim/build-image.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
[ -d /usr/lib/go-1.23/bin ] && export PATH="/usr/lib/go-1.23/bin:$PATH"
export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod
artifacts="${CARGO_TARGET_DIR:-$root/target}/release"
sim_image="${KECS_SIM_IMAGE:-kecs-sim/k3s:test}"
step() { printf '\n== ship: %s\n' "$*"; }
fail() { echo "ship: FAIL: $*" >&2; exit 1; }

work="$(mktemp -d /tmp/kecs-ship.XXXXXX)"
tag="$$"
image="kecs-sim/ship-lifecycle:test-$tag" # a local import, never a registry name
net="kecs-ship-$tag"
container="kecs-ship-$tag"
cluster="ship-$tag"
full="kecs-$cluster" # the manager's default name prefix
cleanup() {
  docker rm -f -v "$container" >/dev/null 2>&1 || true
  docker ps -aq --filter "label=k3d.cluster=$full" | xargs -r docker rm -f -v >/dev/null 2>&1 || true
  docker network rm "k3d-$full" >/dev/null 2>&1 || true
  docker network rm "$net" >/dev/null 2>&1 || true
  docker image rm -f "$image" >/dev/null 2>&1 || true
  chmod -R u+w "$work" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# both images must be local: a missing image would make the engine try a registry
lb_image="${KECS_SIM_LB_IMAGE:-kecs-sim/k3d-proxy:test}"
docker image inspect "$sim_image" >/dev/null 2>&1 \
  || fail "the simulator image $sim_image is missing: run tests/node-sim/build-image.sh first"
docker image inspect "$lb_image" >/dev/null 2>&1 \
  || fail "the load-balancer stand-in $lb_image is missing: run tests/lb-sim/build-image.sh first"

step "C install into a temporary prefix"
prefix="$work/prefix"
"$root/scripts/install.sh" --no-build --prefix "$prefix"
export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
version="$(pkg-config --modversion kecs_cluster)"
abi="$(sed -n 's/^#define KECS_ABI_VERSION \([0-9][0-9]*\)$/\1/p' "$prefix/include/kecs_cluster.h")"
soname="$(patchelf --print-soname "$prefix/lib/libkecs_cluster.so")"
[ "$soname" = "libkecs_cluster.so.$abi" ] || fail "soname is '$soname', want libkecs_cluster.so.$abi"
echo "pkg-config kecs_cluster $version; soname $soname"

step "Go program in another module, package read-only outside the checkout"
# where `go get` would put it: the module cache, read-only, no Rust build beside it
modcopy="$work/gomodcache/github.com/kecs-cluster/kecs-cluster/bindings/go@v0.1.0"
mkdir -p "$modcopy"
cp -r "$root/bindings/go/." "$modcopy/"
chmod -R a-w "$modcopy"
before="$(cd "$modcopy" && find . -type f -exec sha256sum {} + | sort | sha256sum)"
consumer="$work/consumer"
mkdir -p "$consumer"
cp -r "$root/tests/ship/consumer/." "$consumer/"
cat > "$consumer/go.mod" <<EOF
module example.com/kecs-ship-consumer

go 1.21

require github.com/kecs-cluster/kecs-cluster/bindings/go v0.1.0

replace github.com/kecs-cluster/kecs-cluster/bindings/go => $modcopy
EOF
cd "$consumer"
# The documented install steps for a library installed outside the default
# search paths (with --prefix /usr/local none of this is needed):
export CGO_CFLAGS="$(pkg-config --cflags kecs_cluster)" CGO_LDFLAGS="$(pkg-config --libs-only-L kecs_cluster)"
mkdir -p "$work/bin"
go build -o "$work/bin/hello" ./hello
go build -o "$work/bin/manager" ./manager
go build -ldflags='-s -w' -o "$work/bin/hello-s" ./hello
go build -ldflags='-s -w' -o "$work/bin/manager-s" ./manager
# the flags the README recommends for shipping: no Go symbol tables, and the
# linker drops the library's functions the program cannot reach
shipflags='-s -w -extldflags=-Wl,--gc-sections'
go build -ldflags="$shipflags" -o "$work/bin/hello-gc" ./hello
go build -ldflags="$shipflags" -o "$work/bin/manager-gc" ./manager
for program in manager manager-gc; do
  out="$("$work/bin/$program")" || fail "the outside-module program $program failed: $out"
  [ "$out" = "hello from kecs-cluster $version" ] || fail "the outside-module program $program printed '$out'"
done
if ldd "$work/bin/manager" | grep -q kecs_cluster; then fail "the Go binary needs libkecs_cluster.so at run time"; fi
after="$(cd "$modcopy" && find . -type f -exec sha256sum {} + | sort | sha256sum)"
[ "$before" = "$after" ] || fail "building changed the read-only module copy"
echo "$out (static library linked, module copy unchanged)"

step "fully static binary alone in an empty image, container mode"
# netgo, osusergo: Go's own resolver and user lookup, so the Go side never calls
# glibc's NSS; the library's getaddrinfo (node names in container mode) uses the
# files and dns sources compiled into glibc >= 2.34, reading the /etc/hosts and
# /etc/resolv.conf Docker puts in every container. The linker's warnings about
# getaddrinfo and getpwuid_r in static binaries are expected.
go build -tags netgo,osusergo -ldflags "-s -w -linkmode external -extldflags '-static -Wl,--gc-sections'" \
  -o "$work/static/lifecycle" ./lifecycle
if readelf -l "$work/static/lifecycle" | grep -q INTERP; then fail "the static build has a dynamic loader"; fi
tar -C "$work/static" -c lifecycle | docker import --change 'ENTRYPOINT ["/lifecycle"]' - "$image" >/dev/null
docker network create --label "kecs.ship=$tag" "$net" >/dev/null
sock=/var/run/docker.sock
case "${DOCKER_HOST:-}" in unix://*) sock="${DOCKER_HOST#unix://}" ;; esac
# the program bounds its own work (3 min create, 1 min delete); timeout only
# guards against a stuck client, and cleanup removes whatever is left
rc=0
timeout 300 docker run --name "$container" --network "$net" -v "$sock:/var/run/docker.sock" \
  -e KECS_CONTAINER_MODE=true -e KECS_PRIVILEGED=false -e "KECS_K3S_IMAGE=$sim_image" -e "KECS_LB_IMAGE=$lb_image" \
  "$image" "$cluster" >"$work/lifecycle.out" 2>&1 || rc=$?
cat "$work/lifecycle.out"
[ "$rc" = 0 ] || fail "the static program exited with $rc in the empty image"
grep -qx "created $cluster" "$work/lifecycle.out" || fail "no create"
grep -q "^kubeconfig server https://k3d-$full-server-0:6443$" "$work/lifecycle.out" \
  || fail "the kubeconfig does not use the in-network URL (container mode)"
grep -q "^node k3d-$full-server-0 server running$" "$work/lifecycle.out" || fail "server-0 is not listed running"
grep -qx "deleted $cluster" "$work/lifecycle.out" || fail "no delete"
left="$(docker ps -aq --filter "label=k3d.cluster=$full")"
[ -z "$left" ] || fail "containers left after delete: $left"
if docker network inspect "k3d-$full" >/dev/null 2>&1; then fail "network k3d-$full left after delete"; fi

step "cgo off"
CGO_ENABLED=0 go build -o "$work/bin/manager-nocgo" ./manager
CGO_ENABLED=0 go build -o "$work/bin/lifecycle-nocgo" ./lifecycle
rc=0
"$work/bin/manager-nocgo" 2>"$work/nocgo.err" || rc=$?
[ "$rc" = 3 ] || fail "without cgo the program exited $rc, want 3 (ErrCgoRequired)"
grep -q "CGO_ENABLED=1" "$work/nocgo.err" || fail "the cgo-off error does not say how to build: $(cat "$work/nocgo.err")"
cat "$work/nocgo.err"
cd "$root/bindings/go"
CGO_ENABLED=0 go vet ./...
CGO_ENABLED=0 go test -count=1 -run 'WithoutCgo|NoCgoAPIParity' .

step "sizes"
size() { stat -c %s "$1"; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
hello="$(size "$work/bin/hello")" manager="$(size "$work/bin/manager")"
hello_s="$(size "$work/bin/hello-s")" manager_s="$(size "$work/bin/manager-s")"
hello_gc="$(size "$work/bin/hello-gc")" manager_gc="$(size "$work/bin/manager-gc")"
cat <<EOF
| artifact | size |
|---|---|
| CLI \`kecs-cluster\` | $(mb "$(size "$artifacts/kecs-cluster")") |
| \`libkecs_cluster.so\` | $(mb "$(size "$artifacts/libkecs_cluster.so")") |
| \`libkecs_cluster.a\` as built | $(mb "$(size "$artifacts/libkecs_cluster.a")") |
| \`libkecs_cluster.a\` installed (debug info stripped) | $(mb "$(size "$prefix/lib/libkecs_cluster.a")") |
| Go hello world + manager, growth over hello world | $(mb $((manager - hello))) ($(mb "$manager") vs $(mb "$hello")) |
| same with \`-ldflags='-s -w'\` | $(mb $((manager_s - hello_s))) ($(mb "$manager_s") vs $(mb "$hello_s")) |
| same with \`-ldflags='$shipflags'\` | $(mb $((manager_gc - hello_gc))) ($(mb "$manager_gc") vs $(mb "$hello_gc")) |
| fully static lifecycle program (same flags, \`-static\`) | $(mb "$(size "$work/static/lifecycle")") |
EOF
echo "ship: all checks passed"
