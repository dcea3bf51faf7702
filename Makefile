# Propeller build. `make help` lists targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
EXAMPLES := $(patsubst examples/%/main.go,%,$(wildcard examples/*/main.go))
WAT := $(wildcard examples/wat/*.wat)

.PHONY: help build examples test test-short bench lint generate demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/propeller
	$(GO) build -o $(BIN)/propeller ./cmd/propeller

examples: ## build the example WASM modules into bin/wasm
	@mkdir -p $(BIN)/wasm
	@for e in $(EXAMPLES); do GOOS=wasip1 GOARCH=wasm $(GO) build $$(cat examples/$$e/buildflags 2>/dev/null) -o $(BIN)/wasm/$$e.wasm ./examples/$$e || exit 1; done
	@for w in $(WAT); do wat2wasm $$w -o $(BIN)/wasm/$$(basename $$w .wat).wasm || exit 1; done

test: build examples ## run every test (unit, integration, e2e) with -race
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

test-short: ## unit tests only
	$(GO) test -short -count=1 $(PKGS)

bench: build examples ## run Go benchmarks and load harnesses
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s $(PKGS)

lint: ## gofmt + go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

generate: ## regenerate generated code
	$(GO) generate $(PKGS)

clean:
	rm -rf $(BIN)
