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
# What `propeller version` prints (the variables are in cmd/propeller's
# package main; keep the names in step). The date is the commit's, so one
# commit builds to the same bytes and the same image digest.
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
BUILD_DATE ?= $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ 2>/dev/null)
# Expanded once, not at every use.
VERSION := $(VERSION)
REVISION := $(REVISION)
BUILD_DATE := $(BUILD_DATE)
# One way to build the binary, for bin/propeller, the image and
# deploy/docker/Dockerfile (test/install checks the Dockerfile agrees):
# static (no libc: it runs on a base-less image, any distribution and old
# devices), no build paths, stamped.
GO_BUILD_ENV := CGO_ENABLED=0
GO_BUILD_FLAGS := -trimpath -ldflags "-s -w -X main.version=$(VERSION) -X main.revision=$(REVISION) -X main.buildDate=$(BUILD_DATE)"
# make image: one image per platform (an index when several), no Docker.
IMAGE_PLATFORMS ?= linux/$(shell $(GO) env GOARCH)
IMAGE_PLATFORMS := $(IMAGE_PLATFORMS)
IMAGE_NAME ?= propeller
TAG ?= $(VERSION)

.PHONY: help deps build build-edge image image-push helm kustomize examples test test-short soak fuzz bench lint generate manifests envtest demo fl-demo clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

build: ## build bin/propeller
	$(GO_BUILD_ENV) $(GO) build $(GO_BUILD_FLAGS) -o $(BIN)/propeller ./cmd/propeller

build-edge: ## build bin/propeller-edge: no Kubernetes operator, for devices (half the size and memory)
	$(GO_BUILD_ENV) $(GO) build -tags noperator $(GO_BUILD_FLAGS) -o $(BIN)/propeller-edge ./cmd/propeller

image: ## build the container image without Docker: OCI layout bin/image/oci, docker-archive bin/image/propeller.tar (IMAGE_PLATFORMS="linux/amd64 linux/arm64" for several)
	@set -e; bins=""; for p in $(IMAGE_PLATFORMS); do \
	  out=$(BIN)/image/propeller-$${p%%/*}-$${p##*/}; \
	  echo "go build $$p -> $$out"; \
	  $(GO_BUILD_ENV) GOOS=$${p%%/*} GOARCH=$${p##*/} $(GO) build $(GO_BUILD_FLAGS) -o $$out ./cmd/propeller; \
	  bins="$$bins --binary $$p=$$out"; \
	done; \
	$(GO) run ./hack/image build $$bins --layout $(BIN)/image/oci --tarball $(BIN)/image/propeller.tar \
	  --tag $(IMAGE_NAME):$(TAG) --version $(VERSION) --revision $(REVISION) --created $(BUILD_DATE)

image-push: ## push the image from make image: make image-push REGISTRY=registry.example.com/team [TAG=v1]
	@[ -n "$(REGISTRY)" ] || { echo "REGISTRY is required: make image-push REGISTRY=registry.example.com/team"; exit 2; }
	$(GO) run ./hack/image push --layout $(BIN)/image/oci --ref $(REGISTRY)/$(IMAGE_NAME):$(TAG)
	@echo "helm install propeller-operator ./deploy/helm/propeller-operator --set image.repository=$(REGISTRY)/$(IMAGE_NAME) --set image.tag=$(TAG)"

print-%: # print a make variable (tests read the build flags this way)
	@echo '$($*)'

deps: ## install missing system tools (wat2wasm, mosquitto, systemd-analyze) from Debian packages
	@missing=""; command -v wat2wasm >/dev/null || missing="$$missing wabt"; \
	  [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || missing="$$missing mosquitto"; \
	  command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	  if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	  fi

examples: deps ## build the example WASM modules into bin/wasm
	@mkdir -p $(BIN)/wasm
	@for e in $(EXAMPLES); do GOOS=wasip1 GOARCH=wasm $(GO) build $$(cat examples/$$e/buildflags 2>/dev/null) -o $(BIN)/wasm/$$e.wasm ./examples/$$e || exit 1; done
	@for w in $(WAT); do wat2wasm $$w -o $(BIN)/wasm/$$(basename $$w .wat).wasm || exit 1; done

test: build examples envtest helm kustomize ## run every test (unit, integration, e2e) with -race
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

FUZZTIME ?= 20000x
fuzz: ## run every fuzz target for FUZZTIME each (go test -fuzztime: a count such as 20000x, or a duration) and print executions per target
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

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

manifests: ## regenerate CRDs (deploy/crd, copied into the Helm chart) and RBAC (deploy/rbac) from kubebuilder markers
	$(CONTROLLER_GEN) crd:allowDangerousTypes=true paths=./api/... output:crd:dir=deploy/crd
	rm -f deploy/helm/propeller-operator/crds/*.yaml && cp deploy/crd/propeller.absmach.io_*.yaml deploy/helm/propeller-operator/crds/
	$(CONTROLLER_GEN) rbac:roleName=propeller-operator paths=./operator/... output:rbac:dir=deploy/rbac

# envtest: kube-apiserver and etcd for controller tests, built from source
# through the Go module proxy (tools/envtest/*) so a fresh machine needs only Go.
# The binaries are skipped when present; `make clean` removes them.
envtest: $(ENVTEST_ASSETS)/kube-apiserver $(ENVTEST_ASSETS)/etcd ## build kube-apiserver + etcd into bin/k8s

$(ENVTEST_ASSETS)/kube-apiserver:
	cd tools/envtest/kube-apiserver && $(GO) build -trimpath -o $(abspath $@) k8s.io/kubernetes/cmd/kube-apiserver

$(ENVTEST_ASSETS)/etcd:
	cd tools/envtest/etcd && $(GO) build -trimpath -o $(abspath $@) go.etcd.io/etcd/server/v3

# helm and kustomize for the manifest tests (test/install), built the same
# way from tools/helm and tools/kustomize; skipped when present.
HELM_VERSION := $(shell sed -n 's/^require helm.sh\/helm\/v4 //p' tools/helm/go.mod)
helm: $(BIN)/helm ## build the helm CLI into bin/helm
kustomize: $(BIN)/kustomize ## build the kustomize CLI into bin/kustomize

$(BIN)/helm:
	cd tools/helm && $(GO) build -trimpath -ldflags "-X helm.sh/helm/v4/internal/version.version=$(HELM_VERSION)" -o $(abspath $@) helm.sh/helm/v4/cmd/helm

$(BIN)/kustomize:
	cd tools/kustomize && $(GO) build -trimpath -o $(abspath $@) sigs.k8s.io/kustomize/kustomize/v5

clean:
	rm -rf $(BIN)
