# Shared setup of the runtime benchmarks (sourced, not run).
#
#   bench_workdir NAME      makes a temp dir /tmp/NAME.XXXXXX in $work, removed on exit
#   release_podway DIR      builds the release binary and copies it to DIR/podway (another build
#                           of the shared target dir may replace the original meanwhile)
#   bench_test_binary NAME  builds podway-runtime's test NAME in release and prints its path
#   tree_and_load           prints the commit (and whether crates/ has uncommitted changes) and
#                           the load average

bench_workdir() {
  work=$(mktemp -d "/tmp/$1.XXXXXX")
  trap 'rm -rf "$work"' EXIT
}

release_podway() {
  cargo build --release -q -p podway
  cp "$(cargo metadata -q --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/podway" "$1/podway"
}

bench_test_binary() {
  local bin
  bin=$(cargo test --release -p podway-runtime --test "$1" --no-run \
    --message-format=json 2>/dev/null | grep -o "\"executable\":\"[^\"]*$1-[^\"]*\"" |
    tail -n 1 | cut -d'"' -f4)
  [ -x "$bin" ] || { echo "$1 test binary not found" >&2; return 1; }
  echo "$bin"
}

tree_and_load() {
  echo "tree: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- crates || echo ' (+ uncommitted changes)');" \
    "load before:$(uptime | sed 's/.*load average://')"
}
