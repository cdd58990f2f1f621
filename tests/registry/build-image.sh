#!/usr/bin/env bash
# Builds kecs-sim/registry:test: the real distribution registry (Debian's
# docker-registry 2.8.x), packaged to behave like docker.io/library/registry:2 —
# listens on :5000, stores in the volume /var/lib/registry, config at
# /etc/docker/registry/config.yml, the usual REGISTRY_* environment overrides.
# There is no registry to pull registry:2 from on this machine, so the binary
# comes from the Debian archive. Installs nothing: `apt-get download` into a
# temporary directory only.
# Usage: tests/registry/build-image.sh [--hash]   (needs apt-get, dpkg-deb, docker)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${KECS_SIM_REGISTRY_IMAGE:-kecs-sim/registry:test}"

# Labelled with a hash of this script, so a stale image can be told from a current one.
hash="$(sha256sum < "$here/build-image.sh" | cut -c1-16)"
if [ "${1:-}" = "--hash" ]; then echo "$hash"; exit 0; fi

for tool in apt-get dpkg-deb docker ldd; do
  command -v "$tool" >/dev/null || { echo "build-image: need $tool (a Debian-based machine with Docker)" >&2; exit 1; }
done

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
# apt's download sandbox user cannot write to a root-owned mktemp dir; let it.
chmod 755 "$ctx"
mkdir "$ctx/deb" && chmod 777 "$ctx/deb"
(cd "$ctx/deb" && apt-get download docker-registry >/dev/null) || {
  echo "build-image: 'apt-get download docker-registry' failed (run 'apt-get update' first?)" >&2
  exit 1
}
deb="$(ls "$ctx"/deb/docker-registry_*.deb)"
dpkg-deb -x "$deb" "$ctx/pkg"

root="$ctx/root"
mkdir -p "$root/bin" "$root/etc/docker/registry" "$root/var/lib/registry" "$root/tmp"
cp "$ctx/pkg/usr/bin/docker-registry" "$root/bin/registry"
# Copy exactly the shared objects the binary links (libc and the loader, as of
# 2.8.2), at the paths the loader looks them up by.
ldd "$root/bin/registry" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | while read -r lib; do
  mkdir -p "$root$(dirname "$lib")"
  cp -L "$lib" "$root$lib"
done
compgen -G "$root/lib*/ld-linux*" >/dev/null || { echo "build-image: the loader was not found by ldd" >&2; exit 1; }
# registry:2's config, minus nothing that matters here: filesystem storage in
# /var/lib/registry, plain HTTP on :5000, no auth.
cat > "$root/etc/docker/registry/config.yml" <<'YAML'
version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
YAML
version="$(dpkg-deb -f "$deb" Version)"
cat > "$ctx/Dockerfile" <<DOCKERFILE
FROM scratch
COPY root/ /
LABEL org.opencontainers.image.title="distribution registry (Debian docker-registry $version)" \\
      org.opencontainers.image.description="Test image: the real registry from Debian, laid out like registry:2"
VOLUME ["/var/lib/registry"]
EXPOSE 5000
ENTRYPOINT ["/bin/registry", "serve"]
CMD ["/etc/docker/registry/config.yml"]
DOCKERFILE
DOCKER_BUILDKIT=0 docker build --quiet --label "kecs.sim.source-hash=$hash" --tag "$image" "$ctx" >/dev/null 2>"$ctx/build.log" \
  || { cat "$ctx/build.log" >&2; exit 1; }
echo "built $image (docker-registry $version)"
