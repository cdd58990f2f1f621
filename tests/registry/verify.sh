#!/usr/bin/env bash
# Checks kecs-sim/registry:test behaves like registry:2 for what the k3d/kind
# providers need: started on a Docker-picked 127.0.0.1 port, `GET /v2/` answers
# `{}`, the machine's Docker Engine pushes an image to it at localhost:<port>
# (loopback registries need no insecure-registry setting), `/v2/_catalog` lists
# it, and a pull of it round-trips. Builds the image first when missing or stale.
# Cleans up its container, volume, tags and probe image whatever happens.
# Usage: tests/registry/verify.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
image="${KECS_SIM_REGISTRY_IMAGE:-kecs-sim/registry:test}"

want="$("$here/build-image.sh" --hash)"
have="$(docker image inspect -f '{{index .Config.Labels "kecs.sim.source-hash"}}' "$image" 2>/dev/null || true)"
[ "$have" = "$want" ] || "$here/build-image.sh"

name="kecs-registry-verify-$$"
probe="kecs-sim/registry-probe:$$"
tmp="$(mktemp -d)"
pushed=""
cleanup() {
  docker rm -f -v "$name" >/dev/null 2>&1 || true
  [ -z "$pushed" ] || docker rmi "$pushed" >/dev/null 2>&1 || true
  docker rmi "$probe" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "verify: FAIL: $*" >&2; docker logs "$name" 2>&1 | tail -20 >&2 || true; exit 1; }

docker run -d --name "$name" -p 127.0.0.1::5000 "$image" >/dev/null
port="$(docker port "$name" 5000/tcp | head -1 | sed 's/.*://')"
# Ready when the registry logs its listen line (bounded by timeout).
timeout 20 grep -q -m1 'listening on' <(docker logs -f "$name" 2>&1) || fail "no 'listening on' line within 20 s"

body="$(curl -fsS "http://127.0.0.1:$port/v2/")" || fail "GET /v2/ failed"
[ "$body" = "{}" ] || fail "GET /v2/ answered '$body', want '{}'"
echo "verify: GET /v2/ -> $body"

# A tiny probe image (one small file) so the push moves a few bytes, not a node image.
echo "kecs registry probe $$" > "$tmp/probe.txt"
tar -C "$tmp" -c probe.txt | docker import - "$probe" >/dev/null
pushed="localhost:$port/kecs-probe:1"
docker tag "$probe" "$pushed"
docker push "$pushed" >/dev/null || fail "docker push $pushed failed"
catalog="$(curl -fsS "http://127.0.0.1:$port/v2/_catalog")" || fail "GET /v2/_catalog failed"
case "$catalog" in
  *'"kecs-probe"'*) echo "verify: /v2/_catalog -> $catalog" ;;
  *) fail "catalog '$catalog' does not list kecs-probe" ;;
esac
tags="$(curl -fsS "http://127.0.0.1:$port/v2/kecs-probe/tags/list")"
[ "$tags" = '{"name":"kecs-probe","tags":["1"]}' ] || fail "tags/list answered '$tags'"
# Pull it back: drop the local tag, pull by name, compare image IDs.
id="$(docker image inspect -f '{{.Id}}' "$probe")"
docker rmi "$pushed" >/dev/null
docker pull "$pushed" >/dev/null || fail "docker pull $pushed failed"
[ "$(docker image inspect -f '{{.Id}}' "$pushed")" = "$id" ] || fail "pulled image differs from the pushed one"
# Data lives in the volume at /var/lib/registry, as with registry:2.
mounts="$(docker inspect -f '{{range .Mounts}}{{.Destination}} {{end}}' "$name")"
[ "$mounts" = "/var/lib/registry " ] || fail "mounts are '$mounts', want the /var/lib/registry volume"
echo "verify: pushed and pulled $pushed; registry OK"
