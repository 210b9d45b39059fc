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
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

bench_workdir podway-pf-bench
release_podway "$work"
test_bin=$(bench_test_binary portforward_bench)

echo "port-forward socket throughput, release build, $runs runs of $mib MiB each way, $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
tree_and_load
echo
PODWAY_BIN="$work/podway" PF_BENCH_RUNS="$runs" PF_BENCH_MIB="$mib" \
  "$test_bin" --ignored --nocapture --test-threads=1 port_forward_throughput |
  sed -n '/^|/p; /^$/p' | cat -s
echo
echo "load after:$(uptime | sed 's/.*load average://')"
