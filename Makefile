# twilio-worker: `make help` lists the targets.
GO      ?= go
BIN     ?= bin
PKGS    ?= ./...
TESTFLAGS ?= -race -count=1 -timeout 20m
# A -race binary sleeps 1 s at exit so late race reports can print; races are
# reported as they happen, and the tests start hundreds of binaries.
GORACE  ?= atexit_sleep_ms=0
export GORACE

.DEFAULT_GOAL := help

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build worker, enqueue, twiliosim and bench into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

run: ## Run the worker in local mode (built-in simulator; embedded Redis if none answers)
	$(GO) run ./cmd/worker

# The end-to-end package runs on its own, after the others: its fault and
# rate tests keep both cores busy and must not share them with the browser
# test (httpapi) or each other's packages. Each phase prints its time;
# go test's own "ok <package> <time>" lines show each package's.
E2E_PKG := github.com/sbagenthub/twilio-worker/e2e

test: ## Run every test with the race detector: every package but e2e, then e2e alone
	@pkgs=$$($(GO) list $(PKGS)) || exit 1; \
	rest=$$(echo "$$pkgs" | grep -vx '$(E2E_PKG)'); e2e=$$(echo "$$pkgs" | grep -x '$(E2E_PKG)'); \
	rc=0; \
	if [ -n "$$rest" ]; then \
	  t0=$$(date +%s); $(GO) test $(TESTFLAGS) $$rest || rc=1; \
	  echo "== test phase 1, every package but e2e: $$(( $$(date +%s) - t0 )) s"; \
	fi; \
	if [ -n "$$e2e" ]; then \
	  t0=$$(date +%s); $(GO) test $(TESTFLAGS) $$e2e || rc=1; \
	  echo "== test phase 2, e2e alone: $$(( $$(date +%s) - t0 )) s"; \
	fi; \
	exit $$rc

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

bench: ## Run the benchmark table (private redis-server + twiliosim); BENCHFLAGS=-short for a quick look
	$(GO) run ./cmd/bench $(BENCHFLAGS)

.PHONY: help build run test lint bench
