package ntpd

import (
	"net/netip"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	a := netip.MustParseAddr("10.0.1.1")
	b := netip.MustParseAddr("10.0.2.1")
	l := newLimiter(3, 1, 2)
	now := t0
	for i := range 3 {
		if !l.allow(a, now) {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	if l.allow(a, now) {
		t.Error("request beyond the burst allowed")
	}
	if !l.allow(b, now) {
		t.Error("another source is limited by the first one's flood")
	}
	now = now.Add(time.Second)
	if !l.allow(a, now) {
		t.Error("a token did not come back after 1 s")
	}
	if l.allow(a, now) {
		t.Error("more than one token came back after 1 s")
	}
	// The table (max 2) is full of busy sources: a new one is refused.
	c := netip.MustParseAddr("10.0.3.1")
	if l.allow(c, now) {
		t.Error("new source admitted beyond the table's bound")
	}
	if len(l.buckets) > 2 {
		t.Errorf("%d entries, bound is 2", len(l.buckets))
	}
	// Once the others have idled long enough to be full again, they go.
	now = now.Add(10 * time.Second)
	if !l.allow(c, now) {
		t.Error("new source refused although the others were idle")
	}
	if len(l.buckets) != 1 {
		t.Errorf("%d entries after eviction, want 1", len(l.buckets))
	}
}
