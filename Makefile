# Propeller build. `make help` lists targets.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
EXAMPLES := $(patsubst examples/%/main.go,%,$(wildcard examples/*/main.go))
WAT := $(wildcard examples/wat/*.wat)
ENVTEST_ASSETS := $(abspath $(BIN)/k8s)
CONTROLLER_TOOLS_VERSION := v0.23.0
CONTROLLER_GEN := $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
# `propeller version` prints these; without them the binary falls back to Go's VCS build stamp.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
BUILD_DATE ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.buildDate=$(BUILD_DATE)

.PHONY: help deps build build-edge examples test test-short soak bench lint generate manifests envtest demo fl-demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/propeller
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/propeller ./cmd/propeller

build-edge: ## build bin/propeller-edge: no Kubernetes operator, for devices (half the size and memory)
	$(GO) build -tags noperator -ldflags "$(LDFLAGS)" -o $(BIN)/propeller-edge ./cmd/propeller

deps: ## install missing system tools (wat2wasm, mosquitto) from Debian packages
	@missing=""; command -v wat2wasm >/dev/null || missing="$$missing wabt"; \
	  [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing="$$missing mosquitto"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	  fi

examples: deps ## build the example WASM modules into bin/wasm
	@mkdir -p $(BIN)/wasm
	@for e in $(EXAMPLES); do GOOS=wasip1 GOARCH=wasm $(GO) build $$(cat examples/$$e/buildflags 2>/dev/null) -o $(BIN)/wasm/$$e.wasm ./examples/$$e || exit 1; done
	@for w in $(WAT); do wat2wasm $$w -o $(BIN)/wasm/$$(basename $$w .wat).wasm || exit 1; done

test: build examples envtest ## run every test (unit, integration, e2e) with -race
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -race -count=1 -timeout 20m $(PKGS)

# make soak: the chaos suite (test/chaos) for DURATION with every fault kind
# and a new seed (SEED=n replays one); prints tasks, faults and violations.
DURATION ?= 30m
SEED ?= $(shell date +%s)
soak: ## long chaos run: make soak DURATION=30m [SEED=n]
	@mkdir -p $(BIN); rm -f $(BIN)/soak-report.txt
	CHAOS_DURATION=$(DURATION) CHAOS_SEED=$(SEED) CHAOS_FAULTS=all CHAOS_REPORT=$(abspath $(BIN))/soak-report.txt \
		$(GO) test -count=1 -timeout 0 -run '^TestChaos$$' ./test/chaos/ ; status=$$?; \
		cat $(BIN)/soak-report.txt 2>/dev/null; exit $$status

test-short: ## unit tests only
	$(GO) test -short -count=1 $(PKGS)

bench: build examples envtest ## run Go benchmarks, the REST load harness and the operator benchmark (numbers: docs/benchmarks.md)
	$(GO) test -run '^$$' -bench . -benchmem ./orchestration/... ./storage/... ./proplet/... ./api/safetensors/
	$(GO) test -run '^$$' -bench 'Load/proplets' -benchtime 15000x ./test/e2e/
	$(GO) test -run '^$$' -bench 'Load/lone' -benchtime 500x ./test/e2e/
	$(GO) test -run '^$$' -bench BatchCreate -benchtime 10x ./test/e2e/
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -run '^$$' -bench BenchmarkWasmTasks -benchtime 500x ./operator/
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -run '^$$' -bench BenchmarkWasmTaskPaced -benchtime 200x ./operator/

lint: ## gofmt + go mod tidy check + go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(GO) mod tidy -diff || { echo "go.mod/go.sum are not tidy: run go mod tidy"; exit 1; }
	$(GO) vet $(PKGS)
	$(GO) vet -tags noperator ./cmd/...

demo: build examples ## run manager + embedded broker + a proplet + sample tasks
	./examples/demo.sh

fl-demo: build examples ## federated learning: manager + 3 proplets train the digits model
	./examples/fl-demo.sh

generate: ## regenerate generated code (go generate + CRD deepcopy)
	$(GO) generate $(PKGS)
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

manifests: ## regenerate CRDs (deploy/crd) and RBAC (deploy/rbac) from kubebuilder markers
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths=./api/... output:crd:dir=deploy/crd
	$(CONTROLLER_GEN) rbac:roleName=propeller-operator paths=./operator/... output:rbac:dir=deploy/rbac

# envtest: kube-apiserver and etcd for controller tests, built from source
# through the Go module proxy (tools/envtest/*) so a fresh machine needs only Go.
# The binaries are skipped when present; `make clean` removes them.
envtest: $(ENVTEST_ASSETS)/kube-apiserver $(ENVTEST_ASSETS)/etcd ## build kube-apiserver + etcd into bin/k8s

$(ENVTEST_ASSETS)/kube-apiserver:
	cd tools/envtest/kube-apiserver && $(GO) build -trimpath -o $(abspath $@) k8s.io/kubernetes/cmd/kube-apiserver

$(ENVTEST_ASSETS)/etcd:
	cd tools/envtest/etcd && $(GO) build -trimpath -o $(abspath $@) go.etcd.io/etcd/server/v3

clean:
	rm -rf $(BIN)
