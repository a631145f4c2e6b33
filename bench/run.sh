#!/usr/bin/env bash
# Runs the whole benchmark (a few minutes) and writes bench/RESULTS.md.
# Needs nginx (Debian package) for the plain-proxy baseline. `--quick` for a smoke run.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || { echo "install nginx first (apt-get install nginx)" >&2; exit 1; }
cargo build --release --bin mcp-edge -p mcp-edge
cargo build --release -p mcp-edge-bench
exec target/release/mcp-edge-bench run "$@"
