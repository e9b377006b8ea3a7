# Issue 16: one node with many peers, half answering (wireguard-go devices
# in a lab namespace that all ping the node's phone for a minute, after
# which the first SCALE_ACTIVE of them go on pinging every 5 s and the
# others fall quiet) and half switched off. For each count in SCALE_PEERS:
# tunnels up, seconds to READY, RSS one minute after that (every online
# peer's device awake) and at the end of SCALE_IDLE (the quiet ones'
# devices parked: about 5-6 minutes after the first minute, so SCALE_IDLE
# of 8m or more), the daemon's heap and goroutines, idle CPU, and
# adding/removing one peer while the others run, and how fast the user's
# answers come (peerline peers/status, the control socket, the status page,
# a DHCP phone's phonebook; once READY and at the end). Needs root (network
# namespaces). A full run is about (SCALE_IDLE + 3 min) per count;
# SCALE_IDLE=2m gives a quick look at start-up and changes (at least 90s:
# the idle CPU is measured after the first minute), but parks nothing.
# Profiles: PEERLINED_PPROF=/tmp/pl-pprof.sock SCALE_PPROF_DIR=/tmp/prof
# saves a CPU profile of each idle stretch (cpu-N.pprof) and a heap profile
# at its end (heap-N.pprof); `go tool pprof bin/peerlined /tmp/prof/cpu-253.pprof`.
SCALE_PEERS ?= 32,128,253
SCALE_IDLE ?= 10m
SCALE_CHANGES ?= 3
SCALE_ACTIVE ?= 16
.PHONY: bench-scale
bench-scale: ## one node with 32/128/253 peers: tunnels, READY time, RSS over SCALE_IDLE, idle CPU, add/remove one, answer times (root) -> bench/out/scale.json
	@if [ "$$(id -u)" != 0 ]; then echo "bench-scale: needs root and network namespaces (sudo make bench-scale)" >&2; exit 1; fi
	@mkdir -p bench/out
	$(GO) build -o $(BIN)/ ./cmd/peerlined ./cmd/peerline
	@set -o pipefail; SCALE_PEERS=$(SCALE_PEERS) SCALE_IDLE=$(SCALE_IDLE) SCALE_CHANGES=$(SCALE_CHANGES) SCALE_ACTIVE=$(SCALE_ACTIVE) \
		PEERLINED=$(CURDIR)/$(BIN)/peerlined PEERLINE=$(CURDIR)/$(BIN)/peerline \
		$(GO) test -tags lab -p 1 -count=1 -run='^$$' -bench='^BenchmarkScale$$' -benchtime=1x -timeout 3h ./pkg/peerlab 2>&1 \
		| tee bench/out/scale.txt | grep -E '^(bench:|Benchmark|FAIL|ok|panic)'
	@cat $${BENCH_OUT:-bench/out}/$${SCALE_OUT:-scale.json}
