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
