package rvserver

import (
	"net/netip"
	"strconv"
	"testing"

	"github.com/peerline/peerline/pkg/rendezvous"
)

// BenchmarkRegister measures one authenticated registration refresh on one
// core: envelope and cookie checks, key cache lookup, open, replay check,
// table update, and the sealed reply. make bench-rendezvous turns ns/op into
// registrations per second per core.
func BenchmarkRegister(b *testing.B) {
	// The same 1024 keys from one /24 refresh much faster than any node
	// may, on a clock that stands still: the per-key and per-prefix
	// budgets are still checked on every request, but never run out.
	h := newHarness(b, Config{Limits: Limits{RequestBurst: 1 << 30, PrefixBurst: 1 << 30}})
	const nodes, batch = 1024, 8192
	ns := make([]*testNode, nodes)
	for i := range ns {
		ns[i] = h.node("198.51.100.1:" + strconv.Itoa(1000+i))
		h.register(ns[i], 0)
	}
	// Sealing is the nodes' work, done outside the timer; the replay cache
	// is reset between batches, as nonces repeat across batches.
	reqs := make([][]byte, batch)
	for i := range reqs {
		reqs[i] = ns[i%nodes].seal(b, rendezvous.Register{}, h.clock.now())
	}
	before := h.s.Stats()
	send := func(int, netip.AddrPort, []byte) {}
	var w scratch
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i%batch == 0 && i > 0 {
			b.StopTimer()
			h.s.replay = newReplayCache(h.s.cfg.MaxReplay, h.s.cfg.MaxReplayPerKey, h.s.cfg.Window)
			b.StartTimer()
		}
		n := ns[i%nodes]
		h.s.handle(reqs[i%batch], n.addr, 0, &w, send)
	}
	st := h.s.Stats()
	if rejected := st.BadAuth + st.BadCookie + st.BadTime + st.Replays + st.TooBig - (before.BadAuth + before.BadCookie + before.BadTime + before.Replays + before.TooBig); rejected > 0 {
		b.Fatalf("benchmark requests were rejected: %+v", st)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
}
