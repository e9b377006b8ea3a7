# The rendezvous server's benchmark: authenticated registrations per second
# on one core (issue 3 goal: >= 50 000), from BenchmarkRegister's ns/op.
.PHONY: bench-rendezvous
bench-rendezvous: go-toolchain ## rendezvous registrations per second per core -> bench/out/rendezvous.json
	@mkdir -p bench/out
	$(GO) test -run='^$$' -bench='^BenchmarkRegister$$' -benchtime=2s -benchmem -count=1 -cpu=1 ./pkg/rvserver | tee bench/out/rendezvous.txt
	@awk '/^BenchmarkRegister/ { ns = $$3; for (i = 3; i < NF; i++) { if ($$(i + 1) == "B/op") bytes = $$i; if ($$(i + 1) == "allocs/op") allocs = $$i } } \
		END { if (ns == "") { print "bench-rendezvous: no result from BenchmarkRegister" > "/dev/stderr"; exit 1 } \
		printf "{\"registrations_per_s_per_core\": %d, \"ns_per_op\": %s, \"bytes_per_op\": %s, \"allocs_per_op\": %s, \"goal\": 50000}\n", 1e9 / ns, ns, bytes, allocs }' \
		bench/out/rendezvous.txt >bench/out/rendezvous.json
	@cat bench/out/rendezvous.json

# Issue 13's stranger flood against a lab rendezvousd with its default
# limits, while two Pis pair and relay through it and a probe pair times
# register, introduction, relay and invites (pkg/peerlab
# attackbench_lab_test.go). Root; ATTACK_RUNS runs (default 3) of a flood
# bounded to 45 s and 500,000 packets each; goals: legitimate success
# >= 99 %, server peak RSS <= 256 MB. Then the live heap with every table
# of a default server full (no root) -> bench/out/rendezvous-memory.json.
ATTACK_RUNS ?= 3
.PHONY: bench-attack
bench-attack: ## rendezvous flood in the lab (root): legitimate success rate, latency p95, server peak RSS -> bench/out/attack.json, rendezvous-memory.json
	@mkdir -p bench/out
	$(GO) build -o $(BIN)/ $(addprefix ./cmd/,$(CMDS))
	set -o pipefail; ATTACK_RUNS=$(ATTACK_RUNS) BENCH_OUT=$(CURDIR)/bench/out PEERLINED=$(CURDIR)/$(BIN)/peerlined PEERLINE=$(CURDIR)/$(BIN)/peerline RENDEZVOUSD=$(CURDIR)/$(BIN)/rendezvousd \
		$(GO) test -tags lab -run '^$$' -bench '^BenchmarkAttack$$' -benchtime 1x -timeout 30m ./pkg/peerlab | tee bench/out/attack-bench.txt | grep -E 'attack run|wrote|^(ok|FAIL|---)'
	set -o pipefail; BENCH_OUT=$(CURDIR)/bench/out $(GO) test -run '^$$' -bench '^BenchmarkFullTables$$' -benchtime 1x ./pkg/rvserver | grep -E '^Benchmark|FAIL'
	@head -25 bench/out/attack.json; cat bench/out/rendezvous-memory.json
