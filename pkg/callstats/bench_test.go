package callstats

import (
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// fullNode is a day of a full node: 253 peers with an RTT every 5 s, and
// calls reaching maxEnded, each 5 minutes long.
func fullNode(tb testing.TB) *Tracker {
	tr := NewTracker(0)
	peers := make([]Peer, 253)
	for i := range peers {
		peers[i] = Peer{Index: i + 1, RTT: time.Duration(20+i) * time.Millisecond}
	}
	now := t0
	calls := 0
	var m *media
	for now.Before(t0.Add(Keep)) {
		now = now.Add(5 * time.Second)
		// A new call every 5 minutes (288 a day), on a new flow.
		if m == nil || now.Sub(m.f.Received.First) > 5*time.Minute {
			calls++
			m = newMedia(alice, netip.AddrPortFrom(bob.Addr(), uint16(calls)))
		}
		p := peers[calls%len(peers)]
		p.Flows = []Flow{m.send(perTick, now)}
		ps := append([]Peer(nil), peers...)
		ps[calls%len(peers)] = p
		tr.Update(now, ps)
	}
	return tr
}

// BenchmarkFullDay reports the heap a day of a full node holds (heap-bytes)
// and the cost of one sample of 253 peers (ns/op).
func BenchmarkFullDay(b *testing.B) {
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	tr := fullNode(b)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := float64(after.HeapAlloc) - float64(before.HeapAlloc)
	peers := make([]Peer, 253)
	for i := range peers {
		peers[i] = Peer{Index: i + 1, RTT: time.Millisecond}
	}
	m := newMedia(alice, carol)
	now := t0.Add(Keep + time.Minute)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		now = now.Add(5 * time.Second)
		peers[0].Flows = []Flow{m.send(perTick, now)}
		tr.Update(now, peers)
	}
	b.StopTimer()
	// Reported last: ResetTimer drops metrics reported before it.
	b.ReportMetric(heap, "heap-bytes")
	runtime.KeepAlive(tr)
}
