#!/usr/bin/env bash
# Port-forward benchmark on loopback: prints a markdown table (one connection through the
# podway-stream SPDY client+server halves vs plain loopback TCP in the same run, 100 concurrent
# connections, RSS per idle connection). PF_BENCH_MIB sets the single-connection size (default 1024).
set -euo pipefail
cd "$(dirname "$0")/../../.."
exec cargo run --release -q -p podway-stream --example pf_bench
