# ambient — a sidecarless service mesh. `make help` lists the targets.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO        ?= go
BIN       := $(CURDIR)/_output/bin
NODES     ?= 2
STATE     ?= /tmp/ambient-localcluster
CP_BIN    ?= $(if $(XDG_CACHE_HOME),$(XDG_CACHE_HOME),$(HOME)/.cache)/ambient/controlplane/bin
VERSION   ?= dev
LDFLAGS   := -s -w -X github.com/ambient-mesh/ambient/pkg/version.Version=$(VERSION)
# grpcnotrace: gRPC without golang.org/x/net/trace (unused: tracing is off and
# no server serves http.DefaultServeMux), whose html/template keeps every
# exported method in the binaries (ztunnel 31 -> 24 MB; issue #5).
GOTAGS    ?= grpcnotrace
# Main packages built into $(BIN); the file name is the last path element.
CMDS      := ./hack/localcluster/cmd/localcluster ./e2e/apps/echo ./ztunnel/cmd/ztunnel ./ctl/cmd/ambientctl ./istiod-lite/cmd/istiod-lite ./waypoint/cmd/waypoint
E2E_FLAGS ?=
LC_FLAGS  := --state-dir $(STATE) --bin-dir $(BIN) --controlplane-bin-dir $(CP_BIN)

export CONTROLPLANE_BIN_DIR := $(CP_BIN)
export AMBIENT_BIN_DIR := $(BIN)
export AMBIENT_CLUSTER_STATE := $(STATE)

.PHONY: help
help: ## Show this help
	@echo "ambient — make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages the cluster and tests need (idempotent)
	@bash hack/deps.sh test

.PHONY: controlplane
controlplane: ## Build etcd and the Kubernetes binaries from the Go module proxy (cached under ~/.cache/ambient)
	@bash hack/controlplane/build.sh

.PHONY: build
build: ## Build the project's binaries into _output/bin
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -trimpath -tags '$(GOTAGS)' -ldflags '$(LDFLAGS)' -o $(BIN)/ $(CMDS)

.PHONY: images
images: build ## OCI image tarballs of ztunnel, waypoint, istiod-lite, ambientctl in _output/images (no Docker; IMAGE_HUB=ambient IMAGE_TAG=dev)
	$(GO) run ./hack/images --bin-dir $(BIN) --out $(CURDIR)/_output/images --hub $(or $(IMAGE_HUB),ambient) --tag $(or $(IMAGE_TAG),dev)

.PHONY: lint
lint: ## gofmt, go vet and staticcheck (pinned in go.mod)
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go')); if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags e2e ./...
	$(GO) tool staticcheck -tags e2e ./...

.PHONY: test
test: deps controlplane build lint check-generate test-unit fuzz-ci test-e2e ## Everything: lint, generated files current, unit, component, netns and end-to-end tests

.PHONY: test-unit
test-unit: ## Unit, component and netns tests (netns tests need root)
	$(GO) test -count=1 ./...

.PHONY: test-stress
test-stress: ## Flake hunt, not in `make test`: unit tests COUNT times (3) each, then once more under -race
	$(GO) test -count=$(or $(COUNT),3) ./...
	$(GO) test -race -count=1 ./...

.PHONY: test-e2e
test-e2e: build ## End-to-end tests against the local cluster (brought up once, removed afterwards)
	@was_up=0; if $(BIN)/localcluster status $(LC_FLAGS) >/dev/null 2>&1; then was_up=1; else $(BIN)/localcluster down $(LC_FLAGS) >/dev/null 2>&1 || true; $(BIN)/localcluster up --nodes $(NODES) $(LC_FLAGS); fi; \
	rc=0; \
	$(CP_BIN)/kubectl --kubeconfig $(STATE)/kubeconfig apply --server-side -f charts/base/crds >/dev/null || rc=$$?; \
	AMBIENT_E2E_KUBECONFIG=$(STATE)/kubeconfig $(GO) test -count=1 -run 'KubeE2E' ./istiod-lite/... || rc=$$?; \
	$(GO) test -count=1 -p 1 -tags e2e -timeout 30m $$($(GO) list -tags e2e ./e2e/... | grep -v -e /apps/ -e /framework$$) $(E2E_FLAGS) || rc=$$?; \
	if [ $$rc -ne 0 ]; then echo "e2e failed; cluster logs:"; tail -n 20 $(STATE)/logs/*.log || true; fi; \
	if [ $$was_up = 0 ]; then $(BIN)/localcluster down $(LC_FLAGS); fi; \
	exit $$rc

# The e2e packages run one at a time (-p 1): several of them break the shared cluster on
# purpose (e2e/faults stops istiod-lite and freezes the API server, e2e/ctl uninstalls the mesh,
# e2e/mesh restarts ztunnels), which would fail another package's traffic running beside them.

.PHONY: test-long
test-long: build ## Long tests, not in `make test`: 10k tunneled connections (ztunnel/proxy) and the soak on the local cluster (AMBIENT_SOAK_DURATION=10m)
	$(GO) test -count=1 -tags long -timeout 10m -run 'TestLong' -v ./ztunnel/proxy/
	@was_up=0; if $(BIN)/localcluster status $(LC_FLAGS) >/dev/null 2>&1; then was_up=1; else $(BIN)/localcluster down $(LC_FLAGS) >/dev/null 2>&1 || true; $(BIN)/localcluster up --nodes $(NODES) $(LC_FLAGS); fi; \
	rc=0; \
	$(CP_BIN)/kubectl --kubeconfig $(STATE)/kubeconfig apply --server-side -f charts/base/crds >/dev/null || rc=$$?; \
	$(GO) test -count=1 -tags e2e,long -timeout 90m -v ./e2e/soak/ $(E2E_FLAGS) || rc=$$?; \
	if [ $$rc -ne 0 ]; then echo "soak failed; cluster logs:"; tail -n 20 $(STATE)/logs/*.log || true; fi; \
	if [ $$was_up = 0 ]; then $(BIN)/localcluster down $(LC_FLAGS); fi; \
	exit $$rc

.PHONY: generate
generate: ## Regenerate committed generated files (needs clang: installed by hack/deps.sh generate)
	@bash hack/deps.sh generate
	$(GO) generate ./...

.PHONY: check-generate
check-generate: generate ## Fail if generated files are not current
	@git diff --exit-code -- . || { echo "generated files are stale: run 'make generate' and commit"; exit 1; }

.PHONY: fuzz-ci
fuzz-ci: ## Every fuzz target for 2s (part of make test; make fuzz-smoke FUZZTIME=1m for longer)
	@$(MAKE) --no-print-directory fuzz-smoke FUZZTIME=2s

FUZZTIME  ?= 5s
.PHONY: fuzz-smoke
fuzz-smoke: ## Run every fuzz target (func Fuzz* in *_test.go) for FUZZTIME (5s) each; their seed corpora already run in test-unit
	@for f in $$(git ls-files -co --exclude-standard '*_test.go' | xargs grep -l '^func Fuzz'); do \
		for t in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' $$f | cut -d' ' -f2); do \
			echo "== $$t ./$$(dirname $$f)"; \
			$(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10x ./$$(dirname $$f) || exit 1; \
		done; \
	done

.PHONY: bench
bench: ## Go benchmarks and hack/bench scripts (installs stunnel4, nginx, wrk, iperf3); netns comparisons: make bench-l4
	@bash hack/deps.sh bench
	bash hack/bench/ratios.sh
	@echo "netns benchmark against stunnel (root, ~2 min): make bench-l4"

.PHONY: bench-l4
bench-l4: ## L4 netns benchmark, as root: direct vs stunnel mTLS vs ztunnel HBONE with eBPF capture (~2 min, hack/bench/l4)
	@bash hack/deps.sh test bench
	bash hack/bench/l4/run.sh

.PHONY: bench-l7
bench-l7: ## L7 netns benchmark, as root: direct vs nginx reverse proxy vs ztunnel→waypoint→ztunnel, HTTP/1.1 (~2 min, hack/bench/l7)
	@bash hack/deps.sh test bench
	bash hack/bench/l7/run.sh

.PHONY: cluster-up
cluster-up: deps controlplane build ## Bring up the local cluster (NODES=2)
	$(BIN)/localcluster up --nodes $(NODES) $(LC_FLAGS)

.PHONY: cluster-down
cluster-down: ## Remove the local cluster and everything it made
	@if [ -x $(BIN)/localcluster ]; then $(BIN)/localcluster down $(LC_FLAGS); else $(GO) run ./hack/localcluster/cmd/localcluster down --state-dir $(STATE); fi

.PHONY: demo
demo: cluster-up ## Bring up the local cluster and show the mesh
	@bash hack/demo.sh

.PHONY: clean
clean: ## Remove build output
	rm -rf _output
