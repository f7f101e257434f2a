#!/usr/bin/env bash
# The package as a user gets it: `npm pack`, then `npm install -g` of the
# tarball into an empty prefix (production dependencies only, nothing else on
# the module path), then test/package/installed.test.ts against the installed
# binary: the demo and `serve`, each with a sign-in and a tools/call.
# A runtime import of a dev dependency, or a file missing from package.json's
# `files`, fails here. Expects `npm run build` to have run (dist/ holds the
# test, and is what gets packed).
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# dist/ is built already; --ignore-scripts spares the second compile `prepare` would run.
npm pack --ignore-scripts --pack-destination "$work" >/dev/null
tarball=("$work"/forgejo-mcp-broker-*.tgz)
echo "package-check: installing ${tarball[0]##*/} into an empty prefix" >&2
# --prefer-offline: the npm ci before this filled the cache with the same versions.
npm install -g --prefix "$work/prefix" --prefer-offline --no-audit --no-fund "${tarball[0]}" >&2

BROKER_INSTALLED_BIN="$work/prefix/bin/forgejo-mcp-broker" \
  node --test --test-timeout=180000 dist/test/package/installed.test.js
