#!/usr/bin/env bash
# A newcomer's first cluster, in one command: builds the CLI, creates a k3d-style
# cluster (one server, one agent, the load balancer), shows its nodes with
# kubectl (or with `kecs-cluster info` when there is no kubectl), and deletes it.
# The cluster and its kubeconfig are removed on every exit: success, failure or
# Ctrl-C.
#
# Images: the real rancher/k3s and k3d-proxy images when they are present or can
# be pulled. Where they cannot (no registry reachable, as on our CI machines), it
# builds and uses the project's SIMULATOR images instead and says so loudly:
# those behave like a k3s node and k3d's proxy seen from outside; they are not k3s.
#
# Usage: scripts/quickstart.sh [--simulator]
#   --simulator   do not try to pull; use the simulator images
# Environment (optional):
#   QUICKSTART_K3S_IMAGE, QUICKSTART_LB_IMAGE   images to try first
#                 (default: the library's defaults, read from src/config.rs)
#   QUICKSTART_PULL_TIMEOUT                     seconds per pull (default 300)
#   KUBECTL                                     the kubectl to use (default: kubectl on PATH)
# Needs: Docker Engine, cargo; for the simulators also busybox-static.
# The default kubeconfig (~/.kube/config) is never touched: the cluster's
# kubeconfig lives in a temporary directory for the script's lifetime.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

simulator_only=0
case "${1:-}" in
  "") ;;
  --simulator) simulator_only=1 ;;
  *) echo "quickstart.sh: unknown argument $1 (usage: scripts/quickstart.sh [--simulator])" >&2; exit 2 ;;
esac

say() { printf '\n==> [%3ds] %s\n' "$SECONDS" "$*"; }
banner() {
  printf '\n%s\n' "##############################################################################"
  for line in "$@"; do printf '#  %-72s  #\n' "$line"; done
  printf '%s\n\n' "##############################################################################"
}
die() { echo "quickstart.sh: $*" >&2; exit 1; }

command -v docker >/dev/null || die "needs the docker CLI (to check and pull images) and a running Docker Engine"
docker version --format '{{.Server.Version}}' >/dev/null 2>&1 \
  || die "the Docker Engine is not reachable (is it running? is DOCKER_HOST right? may this user use it?)"

# The library's own defaults, so this script cannot drift from them.
default_const() { sed -n "s/^pub const $1: &str = \"\(.*\)\";$/\1/p" src/config.rs; }
k3s_image="${QUICKSTART_K3S_IMAGE:-$(default_const DEFAULT_K3S_IMAGE)}"
lb_image="${QUICKSTART_LB_IMAGE:-$(default_const DEFAULT_LB_IMAGE)}"
[ -n "$k3s_image" ] && [ -n "$lb_image" ] || die "cannot read the default images from src/config.rs"
pull_timeout="${QUICKSTART_PULL_TIMEOUT:-300}"

say "building the CLI (cargo build --release)"
cargo build --release --quiet -p kecs-cluster --bin kecs-cluster
cli="${CARGO_TARGET_DIR:-$root/target}/release/kecs-cluster"

# Present locally, or pulled now. A pull that cannot reach its registry fails in
# seconds; the timeout only bounds a registry that accepts and then stalls.
image_available() {
  docker image inspect "$1" >/dev/null 2>&1 && return 0
  echo "pulling $1 (at most ${pull_timeout}s) ..."
  local out
  if out="$(timeout "$pull_timeout" docker pull --quiet "$1" 2>&1)"; then return 0; fi
  echo "  cannot pull $1: $(printf '%s' "$out" | tail -1)"
  return 1
}

# A simulator image is rebuilt only when its sources changed (the images carry
# a hash of them, as the tests check).
sim_current() {
  local have
  have="$(docker image inspect -f '{{index .Config.Labels "kecs.sim.source-hash"}}' "$1" 2>/dev/null || true)"
  [ -n "$have" ] && [ "$have" = "$("$2" --hash)" ]
}

# The simulator images are busybox-static plus one static binary; install the
# package as .ci/run does when we can (root with apt-get), else say how.
need_static_busybox() {
  is_static() { [ -x /bin/busybox ] && { ldd /bin/busybox 2>&1 || true; } | grep -q "not a dynamic executable"; }
  is_static && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing busybox-static (the simulator images are built from it)"
    ls /var/lib/apt/lists/*_Packages >/dev/null 2>&1 || apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static >/dev/null
  fi
  is_static || die "the simulator images need Debian's busybox-static at /bin/busybox: apt-get install busybox-static"
}

simulated=0
if [ "$simulator_only" = 0 ] && image_available "$k3s_image" && image_available "$lb_image"; then
  node_image="$k3s_image" proxy_image="$lb_image" privileged=true
else
  simulated=1
  node_image=kecs-sim/k3s:test proxy_image=kecs-sim/k3d-proxy:test privileged=false
  if [ "$simulator_only" = 1 ]; then why="--simulator: the upstream images were not tried:"
  else why="NOT K3S. The upstream images are not available here:"; fi
  banner "$why" "  $k3s_image" "  $lb_image" \
         "so this run uses the project's SIMULATOR images instead:" \
         "  $node_image        (node simulator, tests/node-sim)" \
         "  $proxy_image  (load-balancer stand-in, tests/lb-sim)" \
         "They behave like a k3s node and k3d's proxy seen from outside (logs," \
         "kubeconfig, a TLS Kubernetes API kubectl can use) but run no pods." \
         "The library, Docker calls and kubeconfig are real; Kubernetes is not."
  need_static_busybox
  sim_current "$node_image" tests/node-sim/build-image.sh || { say "building the node simulator image"; tests/node-sim/build-image.sh; }
  sim_current "$proxy_image" tests/lb-sim/build-image.sh || { say "building the load-balancer stand-in image"; tests/lb-sim/build-image.sh; }
fi
image_line="nodes: $node_image, load balancer: $proxy_image"
[ "$simulated" = 1 ] && image_line="$image_line  (SIMULATORS, not k3s)"

# Our settings win over any KECS_* the caller's shell carries.
export KECS_K3S_IMAGE="$node_image" KECS_LB_IMAGE="$proxy_image" KECS_PRIVILEGED="$privileged"
kubeconfig_dir="$(mktemp -d)"
name="quickstart-$$"
kc=("$cli" --provider k3d --kubeconfig-dir "$kubeconfig_dir")
# Never delete a cluster we did not create: refuse a name that is taken.
if "${kc[@]}" -q exists "$name"; then die "a cluster named $name already exists; not touching it"; fi

attempted=0
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ "$attempted" = 1 ]; then
    say "deleting the cluster"
    if ! "${kc[@]}" delete "$name"; then
      echo "quickstart.sh: delete failed; remove the cluster with: $cli delete $name" >&2
      rc=1
    fi
  fi
  rm -rf "$kubeconfig_dir"
  if [ "$rc" = 0 ]; then say "done. Images used: $image_line"
  else echo "quickstart.sh: FAILED (exit $rc). Images used: $image_line" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The default kubeconfig stays untouched where the CLI would merge into it.
create_flags=(--agents 1)
if "$cli" create --help 2>/dev/null | grep -q -- --kubeconfig-update-default; then
  create_flags+=(--kubeconfig-update-default=false)
fi
say "creating cluster $name ($image_line)"
attempted=1
"${kc[@]}" create "$name" "${create_flags[@]}"

say "the library's view: kecs-cluster info $name"
"${kc[@]}" info "$name"

kubectl="${KUBECTL:-kubectl}"
if command -v "$kubectl" >/dev/null; then
  kubeconfig="$("${kc[@]}" info "$name" -o json | sed -n 's/.*"kubeconfigPath": *"\([^"]*\)".*/\1/p')"
  [ -n "$kubeconfig" ] || kubeconfig="$kubeconfig_dir/kecs-$name.config"
  say "kubectl get nodes"
  "$kubectl" --kubeconfig "$kubeconfig" get nodes -o wide
else
  say "no kubectl on PATH (set KUBECTL=...): the node listing above is the library's own"
fi
[ "$simulated" = 1 ] && banner "Reminder: those nodes were the SIMULATOR ($node_image), not k3s."
exit 0
