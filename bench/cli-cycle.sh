#!/usr/bin/env bash
# The Docker-CLI way (the "(c)" peer of the benchmark): one create → ready →
# delete cycle with `docker` commands, the same network, volume, container and
# labels as the library, readiness by polling `docker logs` every 100 ms.
# usage: cli-cycle.sh NAME IMAGE
set -euo pipefail
c="$1"; image="$2"
net="k3d-$c"; node="k3d-$c-server-0"; vol="k3d-$c-images"
tmp="$(mktemp)"
trap 'rm -f "$tmp"' EXIT
docker network create --driver bridge -o com.docker.network.bridge.enable_ip_masquerade=true \
  --label app=k3d --label "k3d.cluster=$c" "$net" >/dev/null
docker volume create --label app=k3d --label "k3d.cluster=$c" "$vol" >/dev/null
docker create --name "$node" --hostname "$node" --init --tmpfs /run --tmpfs /var/run \
  --restart unless-stopped --network "$net" -p 127.0.0.1::6443 -v "$vol:/k3d/images" \
  --label app=k3d --label "k3d.cluster=$c" --label k3d.role=server \
  -e K3S_TOKEN=benchmark-token -e K3S_KUBECONFIG_OUTPUT=/output/kubeconfig.yaml \
  "$image" server --tls-san 127.0.0.1 >/dev/null
docker start "$node" >/dev/null
until docker logs "$node" 2>&1 | grep -q "k3s is up and running"; do sleep 0.1; done
docker cp "$node:/output/kubeconfig.yaml" "$tmp"
echo READY
docker rm -f -v "$node" >/dev/null
docker network rm "$net" >/dev/null
docker volume rm "$vol" >/dev/null
