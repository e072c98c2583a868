# Two entry points: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
DATA_DIR ?= .data
export PORTCULLIS_DATABASE_URL ?= sqlite://$(DATA_DIR)/portcullis.db
export PORTCULLIS_SITE_ROOT ?= target/site

.PHONY: run test setup build release dist package-test unit unit-sqlite unit-postgres e2e netns fuzz-api lint bench bench-agent clean

# The browser and enforcement tests run what `make run` serves: the release build.
export PORTCULLIS_BIN ?= $(CURDIR)/target/release/portcullis-server
# ... and the static agent that the server offers for download.
export PORTCULLIS_AGENT_BIN ?= $(CURDIR)/target/x86_64-unknown-linux-musl/release/portcullis-agent

## Build the release and serve the portal on an embedded SQLite database.
run:
	scripts/setup.sh run
	$(MAKE) release
	@mkdir -p $(DATA_DIR)
	@[ -s $(DATA_DIR)/session.key ] || (head -c 64 /dev/urandom | base64 -w0 > $(DATA_DIR)/session.key && chmod 600 $(DATA_DIR)/session.key)
	PORTCULLIS_SESSION_KEY=$$(cat $(DATA_DIR)/session.key) ./target/release/portcullis-server

## The release server, the browser bundle (checked before any browser loads it) and the
## static agent the server offers for download: what `make run` serves, the browser and
## enforcement tests exercise, and the packages ship.
release:
	scripts/build-site.sh

## Debian packages (cargo-deb) and a tarball per binary, each with its SHA-256, in
## target/dist, made from the release build without compiling again.
dist:
	scripts/setup.sh dist
	$(MAKE) release
	scripts/dist.sh

## Inspects and installs the packages on this machine (root), starts the installed server
## from its installed configuration behind Caddy with TLS, verifies the units, then purges.
package-test:
	scripts/package-test.sh

## Every test: unit, store, HTTP, CLI, browser (hydrated and without JavaScript) against
## the release build, enforcement with nftables in network namespaces (root), and a
## schemathesis fuzz run of the REST API; the packages built, installed and started.
test:
	scripts/setup.sh test
	$(MAKE) release
	scripts/dist.sh
	$(MAKE) unit e2e netns fuzz-api package-test
	@# Browser tests that passed only when retried: their first errors again, where CI's
	@# last lines show them (end2end/last-words.js).
	@if [ -s end2end/test-results/last-words.txt ]; then cat end2end/test-results/last-words.txt; fi

## Unit, store and HTTP tests on SQLite, then the store and HTTP tests again on
## PostgreSQL (127.0.0.1:5432, or a throwaway cluster: scripts/test-postgres.sh).
unit: unit-sqlite unit-postgres

# The same package set in both passes, so that the second reuses the first's binaries.
TEST_PACKAGES = -p portcullis-app -p portcullis-server -p portcullis-agent -p portcullis-cli

# The replicas tests (named replicas_…) need PostgreSQL: they run in the PostgreSQL pass
# only (and fail loudly anywhere PostgreSQL is missing).
unit-sqlite:
	cargo test $(TEST_PACKAGES) -- --skip replicas_

unit-postgres:
	url=$$(scripts/test-postgres.sh) && \
	  PORTCULLIS_TEST_POSTGRES=$$url cargo test $(TEST_PACKAGES); \
	  status=$$?; PORTCULLIS_TEST_POSTGRES=$$url scripts/test-postgres.sh cleanup; exit $$status

e2e:
	cd end2end && npx playwright test

netns:
	bash end2end/netns/enforcement.sh

## Schema-based fuzzing of the REST API (schemathesis in target/fuzz-venv): no 5xx.
fuzz-api:
	bash scripts/fuzz-api.sh

## Figures, not tests: the JIT tabs with 10,000 VMs; sign-in memory under 1,000 parallel
## attempts (the release server); the activity page and API at 10k, 100k and 1M entries;
## every JIT tab, the activity page and the REST lists whole over HTTP from the release
## server at 100,000 VMs and 1M log entries (SQL statements, bytes, p50/p95 for 1 and 16
## clients), on SQLite and then PostgreSQL (BENCH_VMS, BENCH_LOG_ENTRIES make it smaller).
bench: release
	cargo bench -p portcullis-app --features ssr --bench vm_list
	cargo bench -p portcullis-server --bench hardening
	cargo bench -p portcullis-server --bench pages
	url=$$(scripts/test-postgres.sh) && \
	  PORTCULLIS_TEST_POSTGRES=$$url cargo bench -p portcullis-server --bench pages; \
	  status=$$?; PORTCULLIS_TEST_POSTGRES=$$url scripts/test-postgres.sh cleanup; exit $$status

## Figures, not tests: BENCH_AGENTS (10,000) simulated agents against the release server,
## on SQLite and then PostgreSQL (cold start, idle CPU and memory, change latency, access
## requests per second, restart, expiry lateness); then open latency through a real agent and nftables in
## network namespaces (root), idle and with 1,000 idle agents.
bench-agent: release
	ulimit -Sn $$(ulimit -Hn) && cargo bench -p portcullis-server --bench agents
	url=$$(scripts/test-postgres.sh) && \
	  (ulimit -Sn $$(ulimit -Hn) && PORTCULLIS_TEST_POSTGRES=$$url cargo bench -p portcullis-server --bench agents); \
	  status=$$?; PORTCULLIS_TEST_POSTGRES=$$url scripts/test-postgres.sh cleanup; exit $$status
	bash end2end/netns/enforcement.sh bench

lint:
	cargo fmt --all -- --check
	cargo clippy -p portcullis-app -p portcullis-server -p portcullis-agent -p portcullis-cli --all-targets -- -D warnings
	cargo clippy -p portcullis-frontend --target wasm32-unknown-unknown -- -D warnings

clean:
	cargo clean
