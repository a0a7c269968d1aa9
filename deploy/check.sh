#!/usr/bin/env bash
# make check-deploy: validates everything under deploy/ with the ecosystem's
# own tools, installing them when missing (Debian: prometheus for promtool,
# systemd for systemd-analyze; PyPI: kubernetes-validate in target/deploy-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

need_apt() { # command package
  command -v "$1" >/dev/null && return
  echo "installing $2 (for $1) from Debian..." >&2
  apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >&2
  command -v "$1" >/dev/null || fail "$1 still missing after installing $2"
}
need_apt promtool prometheus
need_apt systemd-analyze systemd
venv="$root/target/deploy-venv"
# A venv is not relocatable: one copied or moved from elsewhere is rebuilt.
if ! "$venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
  echo "installing kubernetes-validate into $venv..." >&2
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q 'kubernetes-validate==1.37.0' 'PyYAML==6.0.2' >&2
fi
py="$venv/bin/python"

# Prometheus rules, and the PrometheusRule that must carry the same groups.
promtool check rules deploy/prometheus/alerts.yml >/dev/null || promtool check rules deploy/prometheus/alerts.yml
ok "promtool check rules deploy/prometheus/alerts.yml"
"$py" - "$tmp/rule-spec.yml" <<'PY'
import sys, yaml
rule = yaml.safe_load(open("deploy/k8s/prometheusrule.yaml"))
alerts = yaml.safe_load(open("deploy/prometheus/alerts.yml"))
assert rule["kind"] == "PrometheusRule", "prometheusrule.yaml is not a PrometheusRule"
assert rule["spec"] == alerts, "deploy/k8s/prometheusrule.yaml differs from deploy/prometheus/alerts.yml"
yaml.safe_dump(rule["spec"], open(sys.argv[1], "w"))
PY
promtool check rules "$tmp/rule-spec.yml" >/dev/null
ok "PrometheusRule spec equals alerts.yml and passes promtool"

# systemd: verify with the binary path pointed at a stand-in executable
# (the real binary is installed at deploy time), then the exposure score;
# the unit alone (SQLite), then with the PostgreSQL drop-in beside it.
stub="$tmp/liqpass-indexer"
printf '#!/bin/sh\nexit 0\n' > "$stub" && chmod +x "$stub"
grace="$(sed -n '/^\[shutdown\]/,/^\[/s/^grace_s = \([0-9]*\).*/\1/p' config/default.toml)"
stop="$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' deploy/systemd/liqpass-indexer.service)"
# The stop path: the batch in hand (grace_s), the lease release and the HTTP drain (5 s each at most).
(( stop > grace + 10 )) || fail "TimeoutStopSec=${stop}s is not above shutdown.grace_s ($grace s) + 10 s"
for mode in sqlite postgres; do
  dir="$tmp/systemd-$mode"
  mkdir -p "$dir"
  sed "s#/usr/local/bin/liqpass-indexer#$stub#g" deploy/systemd/liqpass-indexer.service > "$dir/liqpass-indexer.service"
  name="deploy/systemd/liqpass-indexer.service"
  if [[ $mode == postgres ]]; then
    cp -r deploy/systemd/liqpass-indexer.service.d "$dir/"
    name="$name + liqpass-indexer.service.d/postgres.conf"
  fi
  out="$(systemd-analyze verify "$dir/liqpass-indexer.service" 2>&1 || true)"
  if grep -v -e 'Documentation' <<<"$out" | grep -q .; then
    echo "$out" >&2
    fail "systemd-analyze verify $name"
  fi
  ok "systemd-analyze verify $name"
  score="$(systemd-analyze security --offline=yes "$dir/liqpass-indexer.service" 2>/dev/null | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p')"
  [[ -n "$score" ]] || fail "no exposure score from systemd-analyze security ($mode)"
  awk -v s="$score" 'BEGIN { exit !(s <= 2.0) }' || fail "exposure score $score > 2.0 ($mode)"
  ok "systemd-analyze security exposure $score (<= 2.0) ($mode)"
done
grep -q '^Environment=LIQPASS__DATABASE__URL=$' deploy/systemd/liqpass-indexer.service.d/postgres.conf \
  || fail "postgres.conf must drop the unit's SQLite URL (Environment=LIQPASS__DATABASE__URL=)"
grep -q '^# LIQPASS__DATABASE__URL=postgres://' deploy/systemd/env.example \
  || fail "env.example does not show the PostgreSQL URL"
ok "postgres.conf drops the SQLite URL; env.example shows the postgres:// one; TimeoutStopSec=${stop}s > grace $grace s + 10 s"

# Kubernetes: core kinds against the schemas; the CRD kinds checked by shape.
for f in deploy/k8s/*.yaml; do
  kind="$("$py" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["kind"])' "$f")"
  case "$kind" in
    ServiceMonitor|PrometheusRule|Kustomization)
      "$py" - "$f" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
k = d["kind"]
if k == "Kustomization":
    import os
    for r in d["resources"]:
        assert os.path.exists(os.path.join("deploy/k8s", r)), f"missing resource {r}"
else:
    assert d["apiVersion"] == "monitoring.coreos.com/v1", d["apiVersion"]
    assert d["metadata"]["name"]
    if k == "ServiceMonitor":
        assert d["spec"]["endpoints"][0]["port"] == "metrics"
        assert d["spec"]["selector"]["matchLabels"]
    else:
        assert d["spec"]["groups"][0]["rules"]
PY
      ok "$f ($kind: structure checked; kubernetes-validate has no schema for it)"
      ;;
    *)
      "$venv/bin/kubernetes-validate" --strict --quiet "$f" || fail "kubernetes-validate $f"
      ok "kubernetes-validate --strict $f ($kind)"
      ;;
  esac
done

# Grafana: valid JSON, every panel queries, only metrics that exist.
"$py" - <<'PY'
import json, re
known = {
  "liqpass_indexer_build_info", "liqpass_indexer_up", "liqpass_indexer_ready",
  "liqpass_indexer_head_block", "liqpass_indexer_indexed_block", "liqpass_indexer_lag_blocks",
  "liqpass_indexer_lag_seconds", "liqpass_indexer_last_commit_timestamp_seconds",
  "liqpass_indexer_events_indexed_total", "liqpass_indexer_ignored_logs_total",
  "liqpass_indexer_payments_total", "liqpass_indexer_order_transitions_total",
  "liqpass_indexer_reorgs_total", "liqpass_indexer_reorg_depth_blocks_bucket",
  "liqpass_indexer_deep_reorgs_total", "liqpass_indexer_unacknowledged_deep_reorgs",
  "liqpass_indexer_rpc_requests_total", "liqpass_indexer_rpc_errors_total",
  "liqpass_indexer_rpc_request_duration_seconds_bucket", "liqpass_indexer_getlogs_range_blocks_bucket",
  "liqpass_indexer_batch_commit_duration_seconds_bucket", "liqpass_indexer_batch_rows_bucket",
  "liqpass_indexer_sqlite_busy_retries_total", "liqpass_indexer_db_write_failures_total",
  "liqpass_indexer_write_lock_hold_seconds_bucket", "liqpass_indexer_stalled",
  "liqpass_indexer_payment_verifications_total", "liqpass_indexer_disputed_payments",
  "liqpass_indexer_leader", "liqpass_indexer_lease_epoch",
  "liqpass_indexer_catchup_active", "liqpass_indexer_catchup_start_block",
  "liqpass_indexer_catchup_done_ratio", "liqpass_indexer_catchup_blocks_per_second",
  "liqpass_indexer_catchup_events_per_second", "liqpass_indexer_catchup_eta_seconds",
  "liqpass_indexer_catchup_range_blocks",
}
d = json.load(open("deploy/grafana/liqpass-indexer.json"))
assert d["panels"], "no panels"
for p in d["panels"]:
    assert p.get("targets"), f"panel {p['title']} has no query"
    for t in p["targets"]:
        for m in re.findall(r"liqpass_indexer_[a-z_]+", t["expr"]):
            assert m in known, f"panel {p['title']}: unknown metric {m}"
for f in ("deploy/prometheus/alerts.yml",):
    for m in re.findall(r"liqpass_indexer_[a-z_]+", open(f).read()):
        assert m in known, f"{f}: unknown metric {m}"
PY
ok "deploy/grafana/liqpass-indexer.json parses; panels query known metrics (alerts too)"

# A live scrape, taken while indexing payments on anvil.
bash tests/chain/install.sh >/dev/null
cargo build --quiet --bin liqpass-indexer
cargo run --quiet --example metrics_scrape > "$tmp/scrape.txt"
grep -q '^liqpass_indexer_events_indexed_total' "$tmp/scrape.txt" || fail "the scrape has no indexer metrics"
lint="$(promtool check metrics < "$tmp/scrape.txt" 2>&1)" || { echo "$lint" >&2; fail "promtool check metrics"; }
[[ -z "$lint" ]] || { echo "$lint" >&2; fail "promtool check metrics reported problems"; }
ok "promtool check metrics on a live scrape ($(grep -c '^liqpass_indexer' "$tmp/scrape.txt") samples)"
