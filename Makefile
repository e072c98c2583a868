# Two entry points: `make run` and `make test`. Both install what is missing first.
SHELL := /bin/bash
DATA_DIR ?= .data
export PORTCULLIS_DATABASE_URL ?= sqlite://$(DATA_DIR)/portcullis.db
export PORTCULLIS_SITE_ROOT ?= target/site

.PHONY: run test setup build release unit unit-sqlite unit-postgres e2e netns fuzz-api lint bench bench-agent clean

## Build the release and serve the portal on an embedded SQLite database.
run:
	scripts/setup.sh run
	cargo leptos build --release
	@mkdir -p $(DATA_DIR)
	@[ -s $(DATA_DIR)/session.key ] || (head -c 64 /dev/urandom | base64 -w0 > $(DATA_DIR)/session.key && chmod 600 $(DATA_DIR)/session.key)
	PORTCULLIS_SESSION_KEY=$$(cat $(DATA_DIR)/session.key) ./target/release/portcullis-server

## Every test: unit, store, HTTP, CLI, browser (hydrated and without JavaScript),
## enforcement with nftables in network namespaces (root), and a schemathesis fuzz run
## of the REST API.
test:
	scripts/setup.sh test
	cargo leptos build
	cargo build -p portcullis-agent
	$(MAKE) unit e2e netns fuzz-api

## Unit, store and HTTP tests on SQLite, then the store and HTTP tests again on
## PostgreSQL (127.0.0.1:5432, or a throwaway cluster: scripts/test-postgres.sh).
unit: unit-sqlite unit-postgres

# The same package set in both passes, so that the second reuses the first's binaries.
TEST_PACKAGES = -p portcullis-app -p portcullis-server -p portcullis-agent -p portcullis-cli

unit-sqlite:
	cargo test $(TEST_PACKAGES)

unit-postgres:
	url=$$(scripts/test-postgres.sh) && \
	  PORTCULLIS_TEST_POSTGRES=$$url cargo test $(TEST_PACKAGES); \
	  status=$$?; scripts/test-postgres.sh cleanup; exit $$status

e2e:
	cd end2end && npx playwright test

netns:
	bash end2end/netns/enforcement.sh

## Schema-based fuzzing of the REST API (schemathesis in target/fuzz-venv): no 5xx.
fuzz-api:
	bash scripts/fuzz-api.sh

## Figures, not tests: the JIT tabs with 10,000 VMs.
bench:
	cargo bench -p portcullis-app --features ssr --bench vm_list

## Figures, not tests: open latency over 200 requests, idle and with 1,000 idle agents.
bench-agent:
	cargo build -p portcullis-agent -p portcullis-server
	bash end2end/netns/enforcement.sh bench

lint:
	cargo fmt --all -- --check
	cargo clippy -p portcullis-app -p portcullis-server -p portcullis-agent -p portcullis-cli --all-targets -- -D warnings
	cargo clippy -p portcullis-frontend --target wasm32-unknown-unknown -- -D warnings

clean:
	cargo clean
