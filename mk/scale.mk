# Issue 16: one node with many peers, half answering (wireguard-go devices
# in a lab namespace that ping the node's phone for a minute) and half
# switched off. For each count in SCALE_PEERS: tunnels up, seconds to READY,
# RSS one minute after that and at the end of SCALE_IDLE, the daemon's heap
# and goroutines, idle CPU, and adding/removing one peer while the others
# run. Needs root (network namespaces). A full run is about
# (SCALE_IDLE + 3 min) per count; SCALE_IDLE=2m gives a quick look
# (at least 90s: the idle CPU is measured after the first minute).
# Profiles: PEERLINED_PPROF=/tmp/pl-pprof.sock SCALE_PPROF_DIR=/tmp/prof
# saves a CPU profile of each idle stretch (cpu-N.pprof) and a heap profile
# at its end (heap-N.pprof); `go tool pprof bin/peerlined /tmp/prof/cpu-253.pprof`.
SCALE_PEERS ?= 32,128,253
SCALE_IDLE ?= 10m
SCALE_CHANGES ?= 3
.PHONY: bench-scale
bench-scale: ## one node with 32/128/253 peers: tunnels, READY time, RSS over SCALE_IDLE, idle CPU, add/remove one (root) -> bench/out/scale.json
	@if [ "$$(id -u)" != 0 ]; then echo "bench-scale: needs root and network namespaces (sudo make bench-scale)" >&2; exit 1; fi
	@mkdir -p bench/out
	$(GO) build -o $(BIN)/ ./cmd/peerlined ./cmd/peerline
	@set -o pipefail; SCALE_PEERS=$(SCALE_PEERS) SCALE_IDLE=$(SCALE_IDLE) SCALE_CHANGES=$(SCALE_CHANGES) \
		PEERLINED=$(CURDIR)/$(BIN)/peerlined PEERLINE=$(CURDIR)/$(BIN)/peerline \
		$(GO) test -tags lab -p 1 -count=1 -run='^$$' -bench='^BenchmarkScale$$' -benchtime=1x -timeout 3h ./pkg/peerlab 2>&1 \
		| tee bench/out/scale.txt | grep -E '^(bench:|Benchmark|FAIL|ok|panic)'
	@cat bench/out/scale.json
