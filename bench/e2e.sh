#!/usr/bin/env bash
# Full-stack benchmarks: kubectl → podway API server → node agent → runtime → container, each
# figure side by side with its floor measured in the same run, printed as a Markdown table.
#
#   bench/e2e.sh                      # release binary (cargo build --release -p podway first)
#   PODWAY_BIN=target/debug/podway N=10 SIZE_MB=128 bench/e2e.sh
#
# Rows:
#   port-forward: one HTTP download of SIZE_MB through `kubectl port-forward` (1.32: WebSocket
#     tunnel; 1.27: SPDY) vs the same busybox httpd + curl over plain loopback TCP on the host.
#   exec: mean wall time of `kubectl exec POD -- true` vs bare `runc exec` and `nsenter` into the
#     same container, and vs `kubectl get pod` (kubectl's own start-up + one API round trip).
#   memory: RSS of `podway up` (all three tiers); RSS, PSS and USS of the pod's shim and pause,
#     and of a 3-container pod's (one container logging), next to coreutils' `sleep`.
# Needs root, runc, busybox-static, umoci, curl, util-linux (nsenter). Cleans up on exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${PODWAY_BIN:-$root/target/release/podway}")
kubectl=${KUBECTL:-/usr/lib/google-cloud-sdk/bin/kubectl.1.32}
kubectl_spdy=${KUBECTL_SPDY:-/usr/lib/google-cloud-sdk/bin/kubectl.1.27}
n=${N:-20}
size_mb=${SIZE_MB:-512}
[[ -x $bin ]] || { echo "no podway binary at $bin (cargo build --release -p podway)" >&2; exit 1; }

work=$(mktemp -d /tmp/podway-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    if [[ -n ${up_pid:-} ]]; then
        kill -TERM "$up_pid" 2>/dev/null || true
        wait "$up_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ns() { date +%s%N; }
log() { echo "bench: $*" >&2; }
k() { "$kubectl" --kubeconfig "$work/data/kubeconfig" "$@"; }

api_port=$(free_port)
node_port=$(free_port)
log "starting podway up ($bin) in $work"
"$bin" up --data-dir "$work/data" --state-dir "$work/run" --api-port "$api_port" \
    --node-port "$node_port" --node-name bench >"$work/up.out" 2>"$work/up.log" &
up_pid=$!
"$root/scripts/demo-image.sh" "$work/busybox.tar" >/dev/null
for _ in $(seq 100); do [[ -f $work/data/kubeconfig ]] && break; sleep 0.2; done
"$bin" image import "$work/busybox.tar" --name busybox:1.35 --data-dir "$work/data" >/dev/null 2>&1
export HOME=$work KUBECACHEDIR=$work/kube-cache
for _ in $(seq 100); do
    [[ $(k get node bench -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]] && break
    sleep 0.3
done
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: bench
spec:
  containers:
    - name: main
      image: busybox:1.35
      command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /tmp/www; dd if=/dev/zero of=/tmp/www/big bs=1M count=$size_mb 2>/dev/null; touch /tmp/www/ready; httpd -p 127.0.0.1:8080 -h /tmp/www; while true; do sleep 1; done"]
EOF
for _ in $(seq 300); do
    k exec bench -- test -f /tmp/www/ready 2>/dev/null && break
    sleep 0.5
done
cid=$(k get pod bench -o 'jsonpath={.status.containerStatuses[0].containerID}')
cid=${cid#podway://}
ctr_pid=$(runc --root "$work/run/runc" state "$cid" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')

# --- port-forward throughput -------------------------------------------------------------
mkdir -p "$work/www"
dd if=/dev/zero of="$work/www/big" bs=1M count="$size_mb" 2>/dev/null
host_port=$(free_port)
busybox httpd -f -p "127.0.0.1:$host_port" -h "$work/www" &
pids+=($!)
sleep 0.3
# Best of three downloads, in MB/s.
download() {
    local best=0 speed
    for _ in 1 2 3; do
        speed=$(curl -s -o /dev/null -w '%{speed_download}' "http://127.0.0.1:$1/big")
        best=$(python3 -c "print(max($best, $speed / 1e6))")
    done
    printf '%.0f' "$best"
}
floor_mbs=$(download "$host_port")
forward_with() {
    local client=$1 port
    port=$(free_port)
    "$client" --kubeconfig "$work/data/kubeconfig" port-forward pod/bench "$port:8080" >"$work/pf.out" 2>&1 &
    local pf=$!
    pids+=("$pf")
    for _ in $(seq 100); do grep -q Forwarding "$work/pf.out" && break; sleep 0.1; done
    download "$port"
    kill "$pf" 2>/dev/null || true
}
log "port-forward downloads of $size_mb MiB"
ws_mbs=$(forward_with "$kubectl")
spdy_mbs=$(forward_with "$kubectl_spdy")

# --- exec latency -------------------------------------------------------------------------
mean_ms() { # command... ; mean wall time over $n runs, in ms
    local start end
    "$@" >/dev/null 2>&1 || { log "failed: $*"; return 1; }
    start=$(now_ns)
    for _ in $(seq "$n"); do "$@" >/dev/null 2>&1; done
    end=$(now_ns)
    python3 -c "print(f'{($end - $start) / $n / 1e6:.1f}')"
}
log "exec latency over $n runs each"
exec_ms=$(mean_ms k exec bench -- true)
get_ms=$(mean_ms k get pod bench -o name)
runc_ms=$(mean_ms runc --root "$work/run/runc" exec "$cid" true)
nsenter_ms=$(mean_ms nsenter -t "$ctr_pid" -m -u -i -n -p -r -w true)

# --- memory -------------------------------------------------------------------------------
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
up_rss=$(rss_kb "$up_pid")
# RSS / PSS / USS (private pages only: what one more pod adds), KiB.
mem_kb() { awk '/^Rss:/ {r=$2} /^Pss:/ {p=$2} /^Private_(Clean|Dirty):/ {u+=$2} END {print r " / " p " / " u}' "/proc/$1/smaps_rollup"; }
shim_pid=$(pgrep -f "podway shim .*--socket $work/run/" | head -1)
pause_pid=$(pgrep -f "podway pause --hostname bench" | head -1)
shim_mem=$(mem_kb "$shim_pid")
pause_mem=$(mem_kb "$pause_pid")
# A busier pod: three containers, one of them logging five lines a second.
k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata:
  name: trio
spec:
  containers:
    - {name: a, image: busybox:1.35, command: [sleep, "100000"]}
    - {name: b, image: busybox:1.35, command: [sh, -c, "while true; do echo line; sleep 0.2; done"]}
    - {name: c, image: busybox:1.35, command: [sleep, "100000"]}
EOF
for _ in $(seq 150); do
    [[ $(k get pod trio -o 'jsonpath={.status.phase}' 2>/dev/null) == Running ]] && break
    sleep 0.2
done
sleep 5
trio_shim_pid=$(pgrep -f "podway shim .*--socket $work/run/" | grep -vx "$shim_pid" | head -1)
trio_pause_pid=$(pgrep -f "podway pause --hostname trio" | head -1)
trio_shim_mem=$(mem_kb "$trio_shim_pid")
trio_pause_mem=$(mem_kb "$trio_pause_pid")
# The smallest process of the C library for comparison: coreutils' sleep.
sleep 60 &
sleep_pid=$!
pids+=("$sleep_pid")
sleep 0.2
sleep_mem=$(mem_kb "$sleep_pid")

ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
cat <<EOF
| figure | podway | floor | ratio |
|---|---|---|---|
| port-forward download, kubectl 1.32 (WebSocket tunnel), MB/s | $ws_mbs | $floor_mbs (loopback TCP) | $(ratio "$ws_mbs" "$floor_mbs") |
| port-forward download, kubectl 1.27 (SPDY), MB/s | $spdy_mbs | $floor_mbs (loopback TCP) | $(ratio "$spdy_mbs" "$floor_mbs") |
| \`kubectl exec -- true\`, ms | $exec_ms | $runc_ms (\`runc exec\`) | $(ratio "$exec_ms" "$runc_ms") |
| \`kubectl exec -- true\` minus \`kubectl get pod\` ($get_ms ms), ms | $(python3 -c "print(f'{$exec_ms - $get_ms:.1f}')") | $runc_ms (\`runc exec\`) | $(ratio "$(python3 -c "print(max($exec_ms - $get_ms, 0.01))")" "$runc_ms") |
| \`runc exec\` vs \`nsenter\`, ms | $runc_ms | $nsenter_ms (\`nsenter\`) | $(ratio "$runc_ms" "$nsenter_ms") |
| RSS of \`podway up\` (API server + node + runtime, 1 pod), MiB | $((up_rss / 1024)) | | |
| the pod's shim (one per pod), RSS / PSS / USS KiB | $shim_mem | $sleep_mem (coreutils \`sleep\`) | |
| the pod's pause, RSS / PSS / USS KiB | $pause_mem | | |
| a 3-container pod's shim (one container logging 5 lines/s), RSS / PSS / USS KiB | $trio_shim_mem | | |
| that pod's pause, RSS / PSS / USS KiB | $trio_pause_mem | | |
EOF
