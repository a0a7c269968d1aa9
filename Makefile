# liqpass-indexer: the commands of the README. Each installs what it needs.
CARGO ?= cargo
ANVIL := tests/chain/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil

.PHONY: demo test anvil postgres python3 lint bench check-deploy clean-demo

## make demo: anvil devnet, deploy, orders, payments, watch them reconcile.
demo: anvil
	$(CARGO) build --quiet --bin liqpass-indexer
	$(CARGO) run --quiet --example demo

## make test: the whole suite against a real anvil (installed from npm) and a
## throwaway PostgreSQL cluster (Debian's package, installed when missing).
test: anvil postgres python3
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --lib --bins --tests

## make anvil: the pinned anvil from the npm registry (tests/chain/package.json).
anvil: $(ANVIL)
$(ANVIL): tests/chain/package.json tests/chain/package-lock.json
	bash tests/chain/install.sh

## make python3: the interpreter tests/it/webhooks.rs runs README's webhook
## verification snippet with (Debian's python3-minimal, installed when missing).
python3:
	@command -v python3 >/dev/null || { [ "$$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get update -qq && apt-get install -y -qq python3-minimal >/dev/null; } || { echo "python3 is missing: run  sudo apt-get install -y python3-minimal" >&2; exit 1; }

## make postgres: PostgreSQL's server binaries for the tests' own cluster.
postgres:
	bash tests/pg/install.sh >/dev/null

## make lint: formatting, clippy, and cargo deny (advisories fetched fresh
## when github.com answers, licenses, bans, sources; .ci/deny.toml).
lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	bash .ci/deny.sh

## make bench: throughput, latency and memory figures (see README, Performance).
bench: anvil
	$(CARGO) bench --bench indexer

## make check-deploy: validate deploy/ with promtool, systemd-analyze, kubernetes schemas.
check-deploy:
	bash deploy/check.sh
