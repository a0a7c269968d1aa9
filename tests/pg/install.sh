#!/usr/bin/env bash
# Makes sure PostgreSQL's server binaries (initdb, pg_ctl, postgres) are
# there for the tests, which start their own throwaway cluster: installs
# Debian's `postgresql` package when pg_ctl is missing (needs root; otherwise
# it says what to run). Prints the directory holding pg_ctl last.
set -euo pipefail
find_bin() {
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [[ -x "$d/pg_ctl" && -x "$d/initdb" ]] && { echo "$d"; return 0; }
  done
  local p
  p="$(command -v pg_ctl 2>/dev/null)" && [[ -x "$(dirname "$p")/initdb" ]] && { dirname "$(readlink -f "$p")"; return 0; }
  return 1
}
if ! bin="$(find_bin)"; then
  if [[ "$(id -u)" != 0 ]]; then
    echo "PostgreSQL's server binaries are missing: run  sudo apt-get install -y postgresql" >&2
    exit 1
  fi
  echo "installing Debian's postgresql package (the tests start their own cluster)..." >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bin="$(find_bin)" || { echo "postgresql installed, but no pg_ctl found" >&2; exit 1; }
fi
id postgres >/dev/null 2>&1 || { echo "no 'postgres' user: reinstall the postgresql package" >&2; exit 1; }
"$bin/pg_ctl" --version >&2
echo "$bin"
