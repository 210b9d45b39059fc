#!/usr/bin/env bash
# Installs the Debian packages podway builds and runs with, when missing. Idempotent; needs root.
#   runc            the OCI runtime that runs containers
#   busybox-static  the demo image's only binary
#   umoci           builds the demo image offline
#   docker-registry, skopeo  the loopback registry and the pusher of the image pull tests
#   apache2-utils   htpasswd (bcrypt) for the registry of the pull-with-credentials test
#   protobuf-compiler  protoc, needed to build the CRI bindings
#   iproute2, curl, tmux  used by the tests
#   python3-grpcio, python3-grpc-tools, python3-protobuf  the Python CRI client of the interop test
#   python3-kubernetes  the official Kubernetes Python client of the interop test
#   util-linux      nsenter, the floor of the exec benchmark
#   containerd, containernetworking-plugins  the node agent's other CRI runtime (interop test)
set -euo pipefail
need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
for pkg in runc busybox-static umoci protobuf-compiler iproute2 curl tmux \
  python3-grpcio python3-grpc-tools python3-protobuf python3-kubernetes docker-registry skopeo \
  util-linux containerd containernetworking-plugins apache2-utils; do
  have "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
if ! command -v kubectl >/dev/null && ! ls /usr/lib/google-cloud-sdk/bin/kubectl.1.* >/dev/null 2>&1; then
  echo "note: no kubectl found; podway works with any kubectl 1.20-1.33 (e.g. Debian's kubernetes-client)" >&2
fi

# Debian's kubectl 1.20 (SPDY only), for the interop tests: unpacked into a folder of its own,
# never installed over the kubectl on PATH.
kubectl_120=/opt/podway/kubectl-1.20
if [ ! -x "$kubectl_120/usr/bin/kubectl" ]; then
  echo "fetching Debian's kubectl 1.20 into $kubectl_120"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -q kubernetes-client >/dev/null 2>&1) \
    || { apt-get update -q >/dev/null && (cd "$tmp" && apt-get download -q kubernetes-client >/dev/null 2>&1); }
  mkdir -p "$kubectl_120"
  dpkg-deb -x "$tmp"/kubernetes-client_*.deb "$kubectl_120"
  rm -rf "$tmp"
fi
