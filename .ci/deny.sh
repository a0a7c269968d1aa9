#!/usr/bin/env bash
# make lint's dependency check: cargo deny (installed when missing) with
# .ci/deny.toml. The advisory database (github.com/rustsec/advisory-db) is
# fetched fresh on every run; when it cannot be reached, the advisories are
# skipped with a message saying so, and licenses, bans and sources are
# checked all the same.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.18.9
if ! cargo deny --version 2>/dev/null | grep -q "$version"; then
  echo "installing cargo-deny $version (cargo install --locked; a few minutes)..." >&2
  cargo install --quiet --locked cargo-deny --version "$version"
fi
config=.ci/deny.toml
if timeout 120 cargo deny --log-level error fetch --config "$config" db >/dev/null 2>&1; then
  cargo deny --log-level error check --config "$config" --disable-fetch
  echo "ok: cargo deny: advisories (database fetched now), licenses, bans, sources"
else
  echo "SKIPPED: the advisory database (github.com/rustsec/advisory-db) cannot be fetched from here;" \
       "advisories are NOT checked. Licenses, bans and sources are." >&2
  cargo deny --log-level error check --config "$config" --disable-fetch licenses bans sources
  echo "ok: cargo deny: licenses, bans, sources (advisories skipped: no database)"
fi
