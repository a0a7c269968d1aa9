#!/usr/bin/env bash
# Recompiles the contracts with the pinned solc and fails if the committed
# artifacts differ from what the sources produce.
set -euo pipefail
cd "$(dirname "$0")"
bash install.sh >/dev/null
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
node compile.js "$tmp" >/dev/null
if ! diff -r "$tmp" artifacts >/dev/null; then
  echo "tests/chain/artifacts are stale: run 'cd tests/chain && node compile.js' and commit" >&2
  diff -r "$tmp" artifacts | head -20 >&2
  exit 1
fi
echo "ok: artifacts match the sources"
