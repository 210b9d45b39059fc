#!/usr/bin/env bash
# Runs the whole test suite, as CI does: installs what is missing, builds once (dev profile) and runs
# every crate's tests, including the end-to-end tests with real runc containers and real kubectl.
# Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "the tests run containers: run this as root" >&2; exit 1; }
scripts/install-deps.sh
# CI builds from a fresh clone: incremental caches only cost disk there.
export CARGO_INCREMENTAL=0
# One build of every target (the podway binary included: the runtime's tests re-execute it).
cargo build --workspace --all-targets
export PODWAY_BIN=$PWD/target/debug/podway
cargo test --workspace --no-fail-fast -- --test-threads=2
