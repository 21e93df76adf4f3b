# twilio-worker: `make help` lists the targets.
GO      ?= go
BIN     ?= bin
PKGS    ?= ./...
TESTFLAGS ?= -race -count=1 -timeout 20m

.DEFAULT_GOAL := help

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build worker, enqueue, twiliosim and bench into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/...

run: ## Run the worker in local mode (built-in simulator; embedded Redis if none answers)
	$(GO) run ./cmd/worker

test: ## Run every test with the race detector (starts private redis-servers)
	$(GO) test $(TESTFLAGS) $(PKGS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

bench: ## Run the benchmark table (private redis-server + twiliosim); BENCHFLAGS=-short for a quick look
	$(GO) run ./cmd/bench $(BENCHFLAGS)

.PHONY: help build run test lint bench
