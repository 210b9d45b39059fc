#!/usr/bin/env bash
# Container start latency, in the same run and interleaved round by round:
#   runtime   Runtime::create_container + start_container of a busybox `sleep` in an existing
#             sandbox, until the process has exec'd `sleep` (/proc/PID/comm)
#   runc      the floor: the same image's snapshots on an overlayfs mount, the config.json the
#             runtime wrote for the same container, bare `runc run -d`, until `sleep` runs
#   sandbox   Runtime::run_sandbox (`podway pause`: net/ipc/uts namespaces, lo up; the pod's
#             `podway shim`; pod files, shm)
#   unshare   its floor: `unshare --net --ipc --uts true`
# with the breakdown of both container starts, and alone the parts of a sandbox's start
# (`podway pause` until its report; one fsync'd file). Every container, bundle, mount and sandbox is
# removed after its round. Prints a markdown table: median, p90, min, median over the floor's.
# Needs root, runc, umoci, busybox-static, util-linux's unshare (scripts/install-deps.sh).
#
#   bench/start_latency.sh [N]      (default 50 rounds; release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rounds=${1:-50}
cd "$root"
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

bench_workdir podway-start-bench
release_podway "$work"
test_bin=$(bench_test_binary start_bench)

echo "container start latency, release build, $rounds rounds, $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
tree_and_load
echo
PODWAY_BIN="$work/podway" START_BENCH_N="$rounds" \
  "$test_bin" --ignored --nocapture --test-threads=1 container_start_latency | grep '^|'
echo
echo "load after:$(uptime | sed 's/.*load average://')"
