#!/usr/bin/env bash
# Socket throughput of the runtime's port-forward primitive (Runtime::port_forward: a TCP
# connection to localhost:PORT made inside a sandbox's network namespace) against plain loopback
# TCP in the host's namespace, in the same run, with the same client and server code (a
# sink/source server whose listener is bound in the pod's namespace from a thread that joined
# it, and one bound on the host's loopback). RUNS runs of MIB MiB each way, the paths
# interleaved; then the connect time of both. Prints markdown tables: MB/s, the ratio, and
# the process's CPU time (client + server, user + sys) per GiB.
# Needs root, runc, umoci, busybox-static (scripts/install-deps.sh).
#
#   bench/runtime_portforward.sh [RUNS] [MIB]     (default 5 runs of 1024 MiB; release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
runs=${1:-5}
mib=${2:-1024}
cd "$root"

work=$(mktemp -d /tmp/podway-pf-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
# A copy of the binary: another build of the shared target dir may replace it meanwhile.
cargo build --release -q -p podway
cp "$(cargo metadata -q --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/podway" "$work/podway"
test_bin=$(cargo test --release -p podway-runtime --test portforward_bench --no-run \
  --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*portforward_bench-[^"]*"' |
  tail -n 1 | cut -d'"' -f4)
[ -x "$test_bin" ] || { echo "portforward_bench test binary not found" >&2; exit 1; }

echo "port-forward socket throughput, release build, $runs runs of $mib MiB each way, $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
echo "tree: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (+ uncommitted changes)');" \
  "load before:$(uptime | sed 's/.*load average://')"
echo
PODWAY_BIN="$work/podway" PF_BENCH_RUNS="$runs" PF_BENCH_MIB="$mib" \
  "$test_bin" --ignored --nocapture --test-threads=1 port_forward_throughput |
  sed -n '/^|/p; /^$/p' | cat -s
echo
echo "load after:$(uptime | sed 's/.*load average://')"
