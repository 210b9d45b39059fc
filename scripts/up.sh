#!/usr/bin/env bash
# From a fresh machine to a running podway with a demo pod: installs what is missing, builds in
# release mode, builds the demo busybox image, starts `podway up` in the foreground, and once the
# node is Ready imports the image and creates the pod `demo` from examples/demo-pod.yaml.
#
#   scripts/up.sh [--data-dir DIR] [--api-port N] [--node-port N]
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=/var/lib/podway
args=("$@")
while [ $# -gt 0 ]; do
  case "$1" in
    --data-dir) data_dir=$2; shift 2 ;;
    --data-dir=*) data_dir=${1#*=}; shift ;;
    *) shift ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "podway runs containers: run this as root" >&2; exit 1; }

scripts/install-deps.sh
echo "building podway (release)…"
cargo build --release --bin podway
bin=$PWD/target/release/podway
image=$(mktemp --suffix=.tar)
scripts/demo-image.sh "$image"

# Once the API server has written the kubeconfig and the node is Ready: import and deploy the demo.
(
  kubeconfig=$data_dir/kubeconfig
  for _ in $(seq 1 120); do
    [ -f "$kubeconfig" ] && kubectl --kubeconfig "$kubeconfig" get nodes 2>/dev/null | grep -q ' Ready' && break
    sleep 0.5
  done
  "$bin" image import "$image" --name busybox:1.35 --data-dir "$data_dir" && rm -f "$image"
  kubectl --kubeconfig "$kubeconfig" apply -f examples/demo-pod.yaml
  kubectl --kubeconfig "$kubeconfig" wait --for=condition=Ready pod/demo --timeout=60s >/dev/null \
    && printf '\ndemo pod ready:\n  kubectl --kubeconfig %s exec -it demo -- sh\n  kubectl --kubeconfig %s logs -f demo\n  kubectl --kubeconfig %s port-forward demo 18080:8080   # then: curl localhost:18080\n\n' \
      "$kubeconfig" "$kubeconfig" "$kubeconfig"
) &
exec "$bin" up "${args[@]}"
