#!/usr/bin/env bash
# Builds the load-balancer stand-in images from this checkout, with no registry:
#   kecs-sim/k3d-proxy:test  — stands in for ghcr.io/k3d-io/k3d-proxy (k3d's serverlb)
#   kecs-sim/kind-lb:test    — stands in for docker.io/envoyproxy/envoy as kind runs it
# Both hold one static multi-call binary (tests/lb-sim) and busybox.
# Test infrastructure only: never tagged with an upstream image name.
# Usage: tests/lb-sim/build-image.sh [--hash]   (from anywhere; needs cargo, docker, busybox-static)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
proxy_image="${KECS_SIM_K3D_PROXY_IMAGE:-kecs-sim/k3d-proxy:test}"
kind_lb_image="${KECS_SIM_KIND_LB_IMAGE:-kecs-sim/kind-lb:test}"
busybox="${BUSYBOX:-/bin/busybox}"

cd "$root"
# The images are labelled with a hash of the simulator's sources, so tests can
# tell a stale image from a current one (`--hash` prints it).
hash="$(cat tests/lb-sim/Cargo.toml tests/lb-sim/src/*.rs tests/lb-sim/build-image.sh | sha256sum | cut -c1-16)"
if [ "${1:-}" = "--hash" ]; then echo "$hash"; exit 0; fi

if ! { [ -x "$busybox" ] && { ldd "$busybox" 2>&1 || true; } | grep -q "not a dynamic executable"; }; then
  echo "build-image: need Debian's busybox-static at $busybox (apt-get install busybox-static)" >&2
  exit 1
fi
# Static glibc (crt-static) so the binary runs in an image with nothing else in it;
# only this final crate gets the flag, dependencies are shared with the normal build.
cargo rustc --quiet --release -p kecs-lb-sim --bin kecs-lb-sim -- -C target-feature=+crt-static

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
cp "${CARGO_TARGET_DIR:-$root/target}/release/kecs-lb-sim" "$ctx/kecs-lb-sim"
strip --strip-debug "$ctx/kecs-lb-sim" 2>/dev/null || true
cp "$busybox" "$ctx/busybox"
# k3d runs the image with no Cmd/Entrypoint override and writes values.yaml
# before the first start; nginx's base image stops with SIGQUIT.
cat > "$ctx/Dockerfile.k3d-proxy" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/mkdir", "-p", "/tmp", "/etc/confd", "/etc/nginx", "/usr/bin"]
COPY kecs-lb-sim /bin/kecs-lb-sim
RUN ["/bin/ln", "-s", "/bin/kecs-lb-sim", "/usr/bin/nginx-proxy"]
LABEL org.opencontainers.image.title="kecs load-balancer simulator (k3d proxy)" \
      org.opencontainers.image.description="Test stand-in for k3d's nginx proxy; not nginx"
ENV PATH=/bin:/usr/bin
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/usr/bin/nginx-proxy"]
DOCKERFILE
# kind runs the image with Cmd `bash -c <bootstrap>` and the image's own
# entrypoint, which for envoy's image just runs the command.
cat > "$ctx/Dockerfile.kind-lb" <<'DOCKERFILE'
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/mkdir", "-p", "/tmp", "/etc/envoy", "/usr/local/bin"]
COPY kecs-lb-sim /bin/kecs-lb-sim
RUN ["/bin/ln", "-s", "/bin/kecs-lb-sim", "/usr/local/bin/envoy"]
RUN ["/bin/ln", "-s", "/bin/kecs-lb-sim", "/usr/local/bin/bash"]
RUN ["/bin/sh", "-c", "printf 'static_resources: {}\\n' > /etc/envoy/envoy.yaml"]
LABEL org.opencontainers.image.title="kecs load-balancer simulator (kind's envoy)" \
      org.opencontainers.image.description="Test stand-in for envoy as kind's external load balancer; not envoy"
ENV PATH=/usr/local/bin:/bin
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
DOCKERFILE
for pair in "Dockerfile.k3d-proxy:$proxy_image" "Dockerfile.kind-lb:$kind_lb_image"; do
  DOCKER_BUILDKIT=0 docker build --quiet --label "kecs.sim.source-hash=$hash" -f "$ctx/${pair%%:*}" \
    --tag "${pair#*:}" "$ctx" >/dev/null 2>"$ctx/build.log" || { cat "$ctx/build.log" >&2; exit 1; }
  echo "built ${pair#*:}"
done
