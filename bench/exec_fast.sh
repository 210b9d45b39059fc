#!/usr/bin/env bash
# Exec latency of `true` in a running container, six ways in the same run, interleaved:
#   fast          Runtime::exec_sync through the fast path (the runtime enters the namespaces)
#   runtime-runc  Runtime::exec_sync through `runc exec --process` (PODWAY_EXEC=runc's path)
#   runc-exec     bare `runc --root … exec ID true`
#   nsenter       `nsenter -a -t PID true` (the floor: one fork + setns + exec, no cgroup/caps)
#   fast-seccomp, runtime-runc-seccomp
#                 the first two in a second container with the RuntimeDefault seccomp filter
#                 (the fast path compiles and loads the filter itself)
# Prints a markdown table: median, p90, min, and medians as ratios to nsenter's.
# Needs root, runc, umoci, busybox-static, util-linux's nsenter (scripts/install-deps.sh).
#
#   bench/exec_fast.sh [N]      (default 200 rounds; release build)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
rounds=${1:-200}
cd "$root"

# shellcheck source=bench/lib.sh
. "$here/lib.sh"
bench_workdir podway-exec-bench
release_podway "$work"
test_bin=$(bench_test_binary exec_bench)

samples="$work/samples"
PODWAY_BIN="$work/podway" EXEC_BENCH_N="$rounds" \
  "$test_bin" --ignored --nocapture --test-threads=1 exec_true_latency_samples >"$samples"

echo "exec of \`true\`, release build, $rounds rounds, $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
echo
python3 - "$samples" <<'EOF'
import sys
samples = {}
for line in open(sys.argv[1]):
    parts = line.split()
    if len(parts) == 3 and parts[0] == "SAMPLE":
        samples.setdefault(parts[1], []).append(int(parts[2]) / 1000.0)
def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p * (len(values) - 1))))]
floor = pct(samples["nsenter"], 0.5)
print("| way | median ms | p90 ms | min ms | median / nsenter |")
print("|---|---:|---:|---:|---:|")
for way in ["fast", "runtime-runc", "runc-exec", "nsenter", "fast-seccomp", "runtime-runc-seccomp"]:
    v = samples.get(way)
    if not v:
        continue
    print(f"| {way} | {pct(v, 0.5):.2f} | {pct(v, 0.9):.2f} | {min(v):.2f} | {pct(v, 0.5) / floor:.2f} |")
EOF
