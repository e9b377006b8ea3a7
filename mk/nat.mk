# Issue 3's NAT figures: pairing by invite across every pair of home-router
# kinds (nat-matrix.json) and media gaps after NAT rebinding (recovery.json),
# in the lab with 50 ms one-way delay. Root; NAT_RUNS pairings per NAT pair
# and rebindings (default 10; the goals are read at 50: NAT_RUNS=50).
NAT_RUNS ?= 10
.PHONY: bench-nat
bench-nat: deps ## NAT matrix and rebinding recovery in the lab (root) -> bench/out/nat-matrix.json, recovery.json
	@mkdir -p bench/out
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))
	NAT_RUNS=$(NAT_RUNS) BENCH_OUT=$(CURDIR)/bench/out PEERLINED=$(CURDIR)/$(BIN)/peerlined PEERLINE=$(CURDIR)/$(BIN)/peerline RENDEZVOUSD=$(CURDIR)/$(BIN)/rendezvousd \
		$(GO) test -tags lab -run '^$$' -bench '^Benchmark(NATMatrix|Recovery)$$' -benchtime 1x -timeout 4h ./pkg/peerlab | tee bench/out/nat-bench.txt | grep -E 'wrote|connected|^(ok|FAIL|---)'

# What an idle tunnel costs on the wire (goal ≤ 1 packet per 10 s), direct
# and relayed, counted from a capture on a Pi's uplink. Root, ~6 minutes.
IDLE_WINDOW ?= 150s
.PHONY: bench-keepalive
bench-keepalive: deps ## idle tunnel keepalive cost, direct and relayed, in the lab (root) -> bench/out/keepalive.json
	@mkdir -p bench/out
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))
	IDLE_WINDOW=$(IDLE_WINDOW) BENCH_OUT=$(CURDIR)/bench/out PEERLINED=$(CURDIR)/$(BIN)/peerlined PEERLINE=$(CURDIR)/$(BIN)/peerline RENDEZVOUSD=$(CURDIR)/$(BIN)/rendezvousd \
		$(GO) test -tags lab -run '^$$' -bench '^BenchmarkIdleKeepalive$$' -benchtime 1x -timeout 20m ./pkg/peerlab | tee bench/out/keepalive-bench.txt | grep -E 'wrote|per tunnel|per node|^(ok|FAIL|---)'
