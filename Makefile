# peerline — be your own phone exchange.
.DEFAULT_GOAL := help
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin:/usr/lib/go-1.23/bin
export GOTOOLCHAIN ?= auto

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GO ?= go
BIN := bin
LDFLAGS := -s -w -X main.version=$(VERSION)
# Every directory under cmd/ is a command.
CMDS := $(notdir $(wildcard cmd/*))
# The lab and demo are short; a hung softphone must not hang CI.
LAB_TIMEOUT ?= 45m
# make test RUN=TestFirewall runs only the tests matching (go test -run),
# PKG=./pkg/peerlab only those packages; either skips vet and image-smoke.
RUN ?=
PKG ?= ./...
# SOME is non-empty when RUN or PKG narrows make test: the whole-tree checks
# (vet, fmt-check, image-smoke) are then skipped.
SOME = $(RUN)$(filter-out ./...,$(PKG))
, := ,
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## install what building, tests and the demo need (apt packages, Go modules)
	@scripts/install-deps.sh

# The prerequisite of every target that needs only the go command: installs
# Go (and nothing else) when there is none, so they work from a fresh clone.
.PHONY: go-toolchain
go-toolchain: ## make sure a go command exists (installs only Go when there is none)
	@scripts/install-deps.sh go

.PHONY: build
build: deps ## build the commands for this machine into bin/
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))

.PHONY: build-arm64
build-arm64: go-toolchain ## build static arm64 binaries for the Pi into bin/arm64/
	@mkdir -p $(BIN)/arm64
	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/arm64/ $(addprefix ./cmd/,$(CMDS))

.PHONY: demo
demo: build ## two simulated Pis, a phone on each, a call both ways with audio checked (root)
	$(BIN)/peerlab -peerlined $(BIN)/peerlined demo

.PHONY: test
test: deps $(if $(SOME),,vet fmt-check) ## all tests: unit and lab (lab tests need root; CI=true makes a skip a failure); RUN=regexp, PKG=./pkg/x for fewer
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS)) ./scripts/testprogress
	@echo "make test: $(if $(SOME),the tests $(if $(RUN),matching $(value RUN) )in $(PKG),the unit and lab tests of every package$(,) one package at a time: seconds for most$(,) pkg/lab about 35 s$(,) pkg/peerlab's calls through simulated Pis about 12 minutes; about 17 minutes in all on a quiet 2-core machine); a line per package as it starts, and per test still running after 30 s"
	@set -o pipefail; PEERLINED=$(CURDIR)/$(BIN)/peerlined PEERLINE=$(CURDIR)/$(BIN)/peerline RENDEZVOUSD=$(CURDIR)/$(BIN)/rendezvousd \
		$(GO) test -json -tags lab -p 1 -count=1 -timeout $(LAB_TIMEOUT) $(if $(RUN),-run '$(value RUN)') $(PKG) 2>&1 | $(BIN)/testprogress
	@# The image's programs under qemu-user; the full qemu boot is make test-image (board/README.md).
	@$(if $(SOME),,$(MAKE) --no-print-directory image-smoke)

.PHONY: test-unit
test-unit: go-toolchain ## unit tests only: fast, no root (RUN=regexp, PKG=./pkg/x for fewer)
	$(GO) test -count=1 $(if $(RUN),-run '$(value RUN)') $(PKG)

.PHONY: fuzz
fuzz: go-toolchain ## run every fuzz target briefly (FUZZTIME=10s)
	@scripts/fuzz.sh $(or $(FUZZTIME),10s)

.PHONY: bench
bench: go-toolchain ## run the benchmarks; JSON results in bench/out/ (the NAT matrix needs root and takes a while)
	@scripts/bench.sh
	@$(MAKE) --no-print-directory bench-rendezvous bench-rewrite bench-nat bench-keepalive

.PHONY: vet
vet: go-toolchain ## go vet, for Linux and for another OS (Linux-only code must stay behind _linux.go), and staticcheck
	$(GO) vet ./...
	$(GO) vet -tags lab ./...
	GOOS=darwin $(GO) vet ./...
	@# Pinned; go run fetches it through the module proxy once and caches it.
	$(GO) run $(STATICCHECK) ./...
	$(GO) run $(STATICCHECK) -tags lab ./...

.PHONY: fmt-check
fmt-check: go-toolchain ## fail if gofmt would change a file
	@# The toolchain's own gofmt: the one beside a bootstrap go (1.23) may not parse newer Go.
	@out=$$("$$($(GO) env GOROOT)/bin/gofmt" -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')) || exit 1; \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

.PHONY: check-fresh
check-fresh: ## the README's commands in a fresh Debian minbase root (mmdebstrap): make demo, CI=true make test (root; make test's time + ~10 min)
	@scripts/check-fresh.sh

.PHONY: clean
clean: ## remove build output
	rm -rf $(BIN) bench/out

# Larger areas (the SD image, ...) keep their targets in their own file.
-include mk/*.mk
