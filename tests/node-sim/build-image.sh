#!/usr/bin/env bash
# Builds the node simulator test images from this checkout, with no registry:
#   kecs-sim/k3s:test        — a k3s node stand-in (k3d provider)
#   kecs-sim/kind-node:test  — a kindest/node stand-in (kind provider)
# Test infrastructure only: never tagged with an upstream image name.
# Usage: tests/node-sim/build-image.sh        (from anywhere; needs cargo, docker, busybox-static)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
image="${KECS_SIM_IMAGE:-kecs-sim/k3s:test}"
kind_image="${KECS_SIM_KIND_IMAGE:-kecs-sim/kind-node:test}"
busybox="${BUSYBOX:-/bin/busybox}"

if ! { [ -x "$busybox" ] && { ldd "$busybox" 2>&1 || true; } | grep -q "not a dynamic executable"; }; then
  echo "build-image: need Debian's busybox-static at $busybox (apt-get install busybox-static)" >&2
  exit 1
fi

cd "$root"
# The image is labelled with a hash of the simulator's sources, so tests can tell
# a stale image from a current one (`build-image.sh --hash` prints it).
hash="$(cat tests/node-sim/Cargo.toml tests/node-sim/src/*.rs tests/node-sim/kind/* tests/node-sim/build-image.sh | sha256sum | cut -c1-16)"
if [ "${1:-}" = "--hash" ]; then echo "$hash"; exit 0; fi
# Static glibc (crt-static) so the binary runs in an image with nothing else in it;
# only this final crate gets the flag, dependencies are shared with the normal build.
cargo rustc --quiet --release -p kecs-node-sim --bin kecs-node-sim -- -C target-feature=+crt-static

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "${CARGO_TARGET_DIR:-$root/target}/release/kecs-node-sim" "$ctx/k3s"
strip --strip-debug "$ctx/k3s" 2>/dev/null || true
cp "$busybox" "$ctx/busybox"
cp tests/node-sim/kind/* "$ctx/"
cat > "$ctx/Dockerfile.k3s" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/mkdir", "-p", "/tmp", "/output", "/etc/rancher/k3s", "/var/lib/rancher/k3s"]
COPY k3s /bin/k3s
RUN ["/bin/ln", "-s", "/bin/k3s", "/bin/crictl"]
LABEL org.opencontainers.image.title="kecs node simulator (k3s)" \
      org.opencontainers.image.description="Test stand-in for a k3s node; not k3s"
ENV PATH=/bin
ENTRYPOINT ["/bin/k3s"]
CMD ["server"]
DOCKERFILE
cat > "$ctx/Dockerfile.kind" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/mkdir", "-p", "/tmp", "/run", "/kind/manifests", "/etc/kubernetes", "/usr/local/bin"]
COPY k3s /usr/local/bin/kecs-node-sim
RUN ["/bin/ln", "-s", "/usr/local/bin/kecs-node-sim", "/bin/kubeadm"]
RUN ["/bin/ln", "-s", "/usr/local/bin/kecs-node-sim", "/bin/kubectl"]
RUN ["/bin/ln", "-s", "/usr/local/bin/kecs-node-sim", "/usr/local/bin/crictl"]
RUN ["/bin/mkdir", "-p", "/etc/containerd/certs.d"]
COPY version /kind/version
COPY default-cni.yaml default-storage.yaml /kind/manifests/
LABEL org.opencontainers.image.title="kecs node simulator (kind node)" \
      org.opencontainers.image.description="Test stand-in for a kind node; not Kubernetes"
ENV PATH=/bin:/usr/local/bin
ENTRYPOINT ["/usr/local/bin/kecs-node-sim", "kind-node"]
DOCKERFILE
for pair in "Dockerfile.k3s:$image" "Dockerfile.kind:$kind_image"; do
  DOCKER_BUILDKIT=0 docker build --quiet --label "kecs.sim.source-hash=$hash" -f "$ctx/${pair%%:*}" \
    --tag "${pair#*:}" "$ctx" >/dev/null 2>"$ctx/build.log" || { cat "$ctx/build.log" >&2; exit 1; }
  echo "built ${pair#*:}"
done
