# Run `make` or `make help` for the list of targets. Extra go test flags go
# in GOTESTFLAGS, e.g. make test GOTESTFLAGS='-run TestQueue -v'.

.DEFAULT_GOAL := help

GO ?= go

.PHONY: help test test-race lint build release install-check demo dashboard bench bench-river

help: ## List the targets
	@echo "Targets:"
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  %-13s %s\n", $$1, $$2}'

test: ## Run all tests against a throwaway PostgreSQL (or the server in PAMPA_TEST_DATABASE_URL)
	bash scripts/test.sh

test-race: ## Same as test, with the race detector
	GOTESTFLAGS="-race $(GOTESTFLAGS)" bash scripts/test.sh

lint: ## Check formatting (gofmt) and run go vet
	@unformatted="$$(gofmt -l .)"; \
	if [ -n "$$unformatted" ]; then \
		echo "These files need gofmt -w:"; echo "$$unformatted"; exit 1; \
	fi
	$(GO) vet ./...

build: ## Build the pampa command into bin/pampa
	$(GO) build -o bin/pampa ./cmd/pampa

release: ## Static pampa binaries for linux and darwin, amd64 and arm64, archives and SHA256SUMS in dist/ (VERSION=... to name it)
	GO=$(GO) bash scripts/release.sh

install-check: ## go install ./cmd/pampa from an empty module cache (dependencies from the module proxy), then pampa --version
	GO=$(GO) bash scripts/install-check.sh

demo: ## Quick start on embedded SQLite: 100,000 tasks on 10 workers, then the report
	$(GO) run ./examples/quickstart demo

dashboard: ## The dashboard over the quick start's database, on http://127.0.0.1:8080/ (run it beside make demo)
	$(GO) run ./examples/quickstart dashboard

bench: ## pampa bench on PostgreSQL (throwaway, fsync on) and SQLite: burns at queue_size 250 and 5, in one process and as processes, trickle, scale, waiting tasks, memory
	bash scripts/bench.sh

bench-river: ## Pampa and River side by side on one throwaway PostgreSQL: burn, trickle and waiting tasks
	bash scripts/bench-river.sh

.PHONY: chaos
chaos: ## Chaos run on a throwaway PostgreSQL: kills, stops, a restart; JSON verdict last (CHAOS_SHORT=1: under a minute; CHAOS_NODES=1: workers under node dispatchers)
	$(GO) run ./internal/chaos/cmd/pampa-chaos
