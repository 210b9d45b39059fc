#!/usr/bin/env bash
# CRI benchmark of `podway runtime`: daemon RSS idle and with N containers, ListContainers and
# ContainerStatus requests/s, Exec round trip of `true` through the streaming server against a
# bare `runc exec` on the same container. Prints a markdown table. Needs root, runc, umoci,
# busybox-static, python3-grpcio and python3-grpc-tools (scripts/install-deps.sh).
#
#   bench/cri.sh [N]       (default 100; PODWAY_BIN selects the binary, default target/debug/podway)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
count=${1:-100}
bin=${PODWAY_BIN:-$root/target/debug/podway}
[ -x "$bin" ] || { echo "$bin is missing: cargo build -p podway (or --release)" >&2; exit 1; }
case "$bin" in
  */release/*) profile="release profile" ;;
  */debug/*) profile="dev profile (opt-level 1, dependencies 2; not release)" ;;
  *) profile=unknown ;;
esac

work=$(mktemp -d /tmp/podway-bench.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bash "$root/scripts/demo-image.sh" "$work/demo.tar" >/dev/null
"$bin" image import "$work/demo.tar" --name busybox:1.35 --data-dir "$work/data" >/dev/null 2>&1
"$bin" runtime --data-dir "$work/data" --state-dir "$work/state" \
  --listen "unix://$work/cri.sock" >"$work/daemon.log" 2>&1 &
pid=$!
for _ in $(seq 100); do [ -S "$work/cri.sock" ] && break; sleep 0.1; done
[ -S "$work/cri.sock" ] || { cat "$work/daemon.log" >&2; exit 1; }
sleep 1 # settle before the idle RSS

echo "podway runtime, $profile ($bin), $(nproc) cores, $(date -u +%FT%TZ)"
/usr/bin/python3 "$here/cri_bench.py" "$work/cri.sock" busybox:1.35 "$work/state/runc" "$pid" "$count"
