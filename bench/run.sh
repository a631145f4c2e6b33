#!/usr/bin/env bash
# Runs the whole benchmark (a few minutes) and writes bench/RESULTS.md.
# Needs nginx (Debian package) for the plain-proxy baseline. `--quick` for a smoke run.
# `bench/run.sh features [--quick]`: the gateway one feature at a time (bench/FEATURES.md);
# `bench/run.sh conns [N]`: memory per connection (bench/CONNECTIONS.md).
# MCP_EDGE_BENCH_BEFORE=/path/to/another/mcp-edge adds that build (say, the commit before a change)
# as two more targets of the same interleaved run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "install nginx first (apt-get install nginx)" >&2; exit 1; }
cargo build --release --bin mcp-edge -p mcp-edge
cargo build --release -p mcp-edge-bench
case "${1:-}" in
  features|conns) exec target/release/mcp-edge-bench "$@" ;;
  *) exec target/release/mcp-edge-bench run "$@" ;;
esac
