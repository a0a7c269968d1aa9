#!/usr/bin/env bash
# Installs the pinned anvil and solc from the npm registry into
# tests/chain/node_modules (npm ci against package-lock.json), once: a stamp
# records the lock file it was installed from. Prints the anvil path last.
set -euo pipefail
cd "$(dirname "$0")"
anvil="node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
stamp="node_modules/.liqpass-stamp"
lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ ! -x "$anvil" || ! -f "$stamp" || "$(cat "$stamp")" != "$lock_sum" ]]; then
  command -v npm >/dev/null || { echo "npm is required (apt-get install nodejs npm)" >&2; exit 1; }
  echo "installing the pinned anvil and solc from the npm registry..." >&2
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$lock_sum" > "$stamp"
  touch "$anvil"
fi
"$anvil" --version >&2
echo "$(pwd)/$anvil"
