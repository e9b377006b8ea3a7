# The Pi's SIP service (issue 18): registrations with digest per second
# (goal >= 2000) and call set-ups by name through the redirect per second
# (goal >= 500) on this machine, sipgo clients and the service in one
# process on loopback; and, from one caller alone, the time a redirect
# takes: what dialling by name adds to a call's set-up (one round trip).
.PHONY: bench-sip
bench-sip: go-toolchain ## SIP service: digest REGISTERs/s and name-dialled set-ups/s -> bench/out/sip.json
	@mkdir -p bench/out
	$(GO) test -run='^$$' -bench='^Benchmark(Register|Redirect|RedirectLatency)$$' -benchtime=5000x -count=3 ./pkg/sipservice 2>/dev/null | tee bench/out/sip.txt
	@awk '/^BenchmarkRegister/ { r[nr++] = $$3 } /^BenchmarkRedirect-/ { d[nd++] = $$3 } /^BenchmarkRedirectLatency/ { l[nl++] = $$3 } \
		function med(a, n,  i, j, t) { for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t } return a[int(n / 2)] } \
		END { if (nr == 0 || nd == 0) { print "bench-sip: no result" > "/dev/stderr"; exit 1 } \
		rm = med(r, nr); dm = med(d, nd); lm = med(l, nl); \
		printf "{\"registers_per_s\": %d, \"register_runs\": %d, \"setups_per_s\": %d, \"setup_runs\": %d, \"name_dial_added_us\": %.0f, \"goal_registers_per_s\": 2000, \"goal_setups_per_s\": 500}\n", 1e9 / rm, nr, 1e9 / dm, nd, lm / 1000 }' \
		bench/out/sip.txt >bench/out/sip.json
	@cat bench/out/sip.json
