#!/usr/bin/env bash
# make check-deploy: validates everything under deploy/ with the ecosystem's
# own tools, installing them when missing (Debian: prometheus for promtool,
# systemd for systemd-analyze, kubernetes-client for kubectl's kustomize;
# PyPI: kubernetes-validate in target/deploy-venv).
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
need_apt kubectl kubernetes-client
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
rule = yaml.safe_load(open("deploy/k8s/common/prometheusrule.yaml"))
alerts = yaml.safe_load(open("deploy/prometheus/alerts.yml"))
assert rule["kind"] == "PrometheusRule", "prometheusrule.yaml is not a PrometheusRule"
assert rule["spec"] == alerts, "deploy/k8s/common/prometheusrule.yaml differs from deploy/prometheus/alerts.yml"
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
for limit in MemoryMax TasksMax; do
  grep -q "^$limit=" deploy/systemd/liqpass-indexer.service || fail "the unit has no $limit"
done
grep -q '^Environment=LIQPASS__DATABASE__URL=$' deploy/systemd/liqpass-indexer.service.d/postgres.conf \
  || fail "postgres.conf must drop the unit's SQLite URL (Environment=LIQPASS__DATABASE__URL=)"
grep -q '^# LIQPASS__DATABASE__URL=postgres://' deploy/systemd/env.example \
  || fail "env.example does not show the PostgreSQL URL"
ok "postgres.conf drops the SQLite URL; env.example shows the postgres:// one; TimeoutStopSec=${stop}s > grace $grace s + 10 s"

# Kubernetes: core kinds against the schemas; the CRD kinds checked by shape.
# Every file, in each mode's directory (deploy/k8s, common/, postgres/).
for f in $(find deploy/k8s -name '*.yaml' | sort); do
  kind="$("$py" -c 'import sys,yaml; print(yaml.safe_load(open(sys.argv[1]))["kind"])' "$f")"
  case "$kind" in
    ServiceMonitor|PrometheusRule|Kustomization)
      "$py" - "$f" <<'PY'
import sys, yaml
d = yaml.safe_load(open(sys.argv[1]))
k = d["kind"]
if k == "Kustomization":
    import os
    base = os.path.dirname(sys.argv[1])
    for r in d["resources"]:
        p = os.path.join(base, r)
        assert os.path.isfile(p) or os.path.isfile(os.path.join(p, "kustomization.yaml")), f"missing resource {r}"
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

# Each mode as kubectl applies it (kustomize build): every core object of
# the render against the schemas, then what the docs promise of it.
for dir in deploy/k8s deploy/k8s/postgres; do
  kubectl kustomize "$dir" > "$tmp/render.yaml" 2>"$tmp/render.err" || { cat "$tmp/render.err" >&2; fail "kustomize build $dir"; }
  summary="$("$py" - "$tmp/render.yaml" "$tmp/render-core.yaml" "$dir" <<'PY'
import glob, sys, tomllib, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
yaml.safe_dump_all(core, open(sys.argv[2], "w"))
mode = "postgres" if sys.argv[3].endswith("postgres") else "sqlite"
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
assert {"Service", "ServiceMonitor", "PrometheusRule", "ConfigMap"} <= set(by_kind), sorted(by_kind)
workloads = by_kind.get("StatefulSet", []) + by_kind.get("Deployment", [])
assert len(workloads) == 1, f"{mode}: expected one workload, got {[w['kind'] for w in workloads]}"
w = workloads[0]
spec, pod = w["spec"], w["spec"]["template"]["spec"]
labels = w["spec"]["template"]["metadata"]["labels"]
if mode == "sqlite":
    assert w["kind"] == "StatefulSet" and spec["replicas"] == 1, "SQLite: a StatefulSet of one replica"
else:
    assert w["kind"] == "Deployment" and spec["replicas"] >= 2, "PostgreSQL: a Deployment of two or more"
    ru = spec["strategy"]["rollingUpdate"]
    assert spec["strategy"]["type"] == "RollingUpdate" and ru["maxUnavailable"] == 0 and ru["maxSurge"] >= 1, \
        "a rollout must start a new pod before stopping an old one"
    spread = pod["topologySpreadConstraints"]
    assert any(c["topologyKey"] == "kubernetes.io/hostname" and c["whenUnsatisfiable"] == "DoNotSchedule"
               and c["labelSelector"]["matchLabels"].items() <= labels.items() for c in spread), \
        "replicas are not spread across nodes"
    (pdb,) = by_kind["PodDisruptionBudget"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items(), "the PDB does not select the pods"
    budget = pdb["spec"].get("maxUnavailable", spec["replicas"] - pdb["spec"].get("minAvailable", spec["replicas"]))
    assert 1 <= budget < spec["replicas"], f"the PDB allows {budget} of {spec['replicas']} at once"
svc = by_kind["Service"][0]
assert svc["spec"]["selector"].items() <= labels.items(), "the Service does not select the pods"
# The stop path: the batch in hand (shutdown.grace_s), lease release and HTTP drain (5 s each at most).
(cm,) = [c for c in by_kind["ConfigMap"] if c["metadata"]["name"] == next(
    v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v)]
toml = tomllib.loads(cm["data"]["config.toml"])
grace = toml.get("shutdown", {}).get("grace_s", 20)
assert pod["terminationGracePeriodSeconds"] > grace + 10, \
    f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} is not above grace_s {grace} + 10"
url = toml.get("database", {}).get("url", "")
envs = {e["name"]: e for c in pod["containers"] + pod.get("initContainers", []) for e in c.get("env", [])}
if mode == "sqlite":
    assert url.startswith("sqlite:"), "SQLite mode without a sqlite: URL"
else:
    assert not url and "valueFrom" in envs["LIQPASS__DATABASE__URL"], \
        "the PostgreSQL URL holds a password: from a Secret, never the ConfigMap"
# Every Secret the pods read has an example of that name and key.
examples = {}
for f in glob.glob("deploy/k8s/**/secret.example.yaml", recursive=True):
    e = yaml.safe_load(open(f))
    examples.setdefault(e["metadata"]["name"], set()).update(e["stringData"])
for e in envs.values():
    ref = e.get("valueFrom", {}).get("secretKeyRef")
    if ref:
        assert ref["key"] in examples.get(ref["name"], ()), f"no secret.example.yaml shows {ref['name']}/{ref['key']}"
# Images pinned by digest; the init container (migrate) gets no RPC secret.
for c in pod["containers"] + pod.get("initContainers", []):
    assert "@sha256:" in c["image"], f"{c['name']}: image {c['image']} is not pinned by digest"
for c in pod.get("initContainers", []):
    assert not c.get("envFrom"), f"init container {c['name']} takes a whole ConfigMap or Secret (envFrom)"
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef", {})
        assert not e["name"].startswith("LIQPASS__CHAIN__") and ref.get("name") != "liqpass-indexer-rpc", \
            f"init container {c['name']} receives {e['name']}, which migrate does not read"
# Ingress only from Prometheus, on the metrics port.
(np,) = by_kind["NetworkPolicy"]
assert np["spec"]["podSelector"]["matchLabels"].items() <= labels.items(), "the NetworkPolicy does not select the pods"
assert "Ingress" in np["spec"]["policyTypes"], "the NetworkPolicy does not restrict ingress"
for rule in np["spec"].get("ingress", []):
    assert rule.get("from"), "an ingress rule without `from` admits everyone"
    for peer in rule["from"]:
        assert "ipBlock" not in peer, "an ipBlock peer: name Prometheus by its labels"
        for sel in ("namespaceSelector", "podSelector"):
            assert peer.get(sel, {}).get("matchLabels"), f"a peer without {sel} labels admits too much"
    assert all("endPort" not in p for p in rule.get("ports", [])), "a port range admits more than the metrics port"
    assert {p["port"] for p in rule.get("ports", [])} <= {"metrics", 9464} and rule.get("ports"), \
        "an ingress rule admits more than the metrics port"
print(f"{w['kind']} of {spec['replicas']}, terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} > grace_s {grace} + 10, images by digest, ingress from Prometheus only")
PY
)" || fail "kustomize build $dir: the render breaks a promise of deploy/README.md (above)"
  "$venv/bin/kubernetes-validate" --strict --quiet "$tmp/render-core.yaml" || fail "kubernetes-validate on kustomize build $dir"
  ok "kustomize build $dir: kubernetes-validate --strict on each core object; $summary"
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
  "liqpass_indexer_db_write_retries_total", "liqpass_indexer_db_write_failures_total",
  "liqpass_indexer_db_lock_wait_seconds", "liqpass_indexer_rpc_rate_limited_total",
  "liqpass_indexer_write_lock_hold_seconds_bucket", "liqpass_indexer_stalled",
  "liqpass_indexer_payment_verifications_total", "liqpass_indexer_disputed_payments",
  "liqpass_indexer_leader", "liqpass_indexer_lease_epoch",
  "liqpass_indexer_webhook_deliveries_total", "liqpass_indexer_webhook_queue_depth",
  "liqpass_indexer_webhook_oldest_undelivered_age_seconds", "liqpass_indexer_webhook_endpoint_disabled",
  "liqpass_indexer_catchup_active", "liqpass_indexer_catchup_start_block",
  "liqpass_indexer_catchup_done_ratio", "liqpass_indexer_catchup_blocks_per_second",
  "liqpass_indexer_catchup_events_per_second", "liqpass_indexer_catchup_eta_seconds",
  "liqpass_indexer_catchup_range_blocks",
  "liqpass_indexer_logs_recovered_total", "liqpass_indexer_bloom_blocks_total",
  "liqpass_indexer_audited_block", "liqpass_indexer_malformed_logs_total",
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

# The shipped configurations are valid settings: each one's config.toml
# through `check-config`, with what the Secrets and env files would add.
"$py" - "$tmp" <<'PY'
import sys, yaml
for f, out in [("deploy/k8s/configmap.yaml", "sqlite.toml"),
               ("deploy/k8s/postgres/configmap.yaml", "postgres.toml")]:
    doc = yaml.safe_load(open(f))
    open(f"{sys.argv[1]}/{out}", "w").write(doc["data"]["config.toml"])
PY
cp deploy/systemd/config.toml.example "$tmp/systemd.toml"
for cfg in "$tmp/sqlite.toml" "$tmp/postgres.toml" "$tmp/systemd.toml"; do
  url="sqlite:///var/lib/liqpass-indexer/liqpass.db"
  [[ "$cfg" == *postgres* ]] && url="postgres://liqpass:example-password@db.internal:5432/liqpass"
  out="$(LIQPASS__DATABASE__URL="$url" LIQPASS__CHAIN__RPC_URL="https://rpc.example/key" \
    target/debug/liqpass-indexer --config "$cfg" check-config 2>&1)" \
    || { echo "$out" >&2; fail "check-config --config $cfg"; }
  [[ "$out" != *example-password* ]] || fail "check-config printed the database password ($cfg)"
  ok "check-config --config $(basename "$cfg") (database $(grep -m1 '^url' <<<"$out"))"
done
cargo run --quiet --example metrics_scrape > "$tmp/scrape.txt"
grep -q '^liqpass_indexer_events_indexed_total' "$tmp/scrape.txt" || fail "the scrape has no indexer metrics"
lint="$(promtool check metrics < "$tmp/scrape.txt" 2>&1)" || { echo "$lint" >&2; fail "promtool check metrics"; }
[[ -z "$lint" ]] || { echo "$lint" >&2; fail "promtool check metrics reported problems"; }
ok "promtool check metrics on a live scrape ($(grep -c '^liqpass_indexer' "$tmp/scrape.txt") samples)"
