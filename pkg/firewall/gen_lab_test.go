//go:build linux && lab

package firewall

import (
	"testing"

	"github.com/peerline/peerline/pkg/labtest"
)

// TestGenerationInKernel: the generation moves with every change to the
// namespace's ruleset (a load, a flush, a delete) and stays put otherwise,
// including while the table is only listed.
func TestGenerationInKernel(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "nft")
	l := labtest.New(t)
	h := host(t, l, "node")
	loader := Loader{Do: func(_ string, fn func() error) error { return h.Do(fn) }}
	gen := func() uint32 {
		t.Helper()
		g, err := loader.Generation("node")
		must(t, err)
		return g
	}
	g0 := gen()
	must(t, loader.Load("node", Node{PhonePort: "eth0", Lines: []int{1}, Peers: []int{7}, VethPrefix: "plv"}))
	g1 := gen()
	if g1 == g0 {
		t.Errorf("generation %d unchanged by a load", g1)
	}
	if _, err := loader.List("node"); err != nil {
		t.Fatal(err)
	}
	if g := gen(); g != g1 {
		t.Errorf("generation moved from %d to %d by a listing", g1, g)
	}
	if out, err := h.Run(t.Context(), "nft", "flush", "table", "inet", Table); err != nil {
		t.Fatalf("nft flush: %v %s", err, out)
	}
	g2 := gen()
	if g2 == g1 {
		t.Errorf("generation %d unchanged by a flush", g2)
	}
	must(t, loader.Delete("node"))
	if g := gen(); g == g2 {
		t.Errorf("generation %d unchanged by a delete", g)
	}
}

// BenchmarkCheck compares the two ways the periodic check can tell that a
// table is unchanged: the generation (netlink) and a listing (nft).
func BenchmarkCheck(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireTools(b, "nft")
	l := labtest.New(b)
	h, err := l.Host("node")
	if err != nil {
		b.Fatal(err)
	}
	loader := Loader{Do: func(_ string, fn func() error) error { return h.Do(fn) }}
	if err := loader.Load("node", Node{PhonePort: "eth0", Lines: []int{1}, Peers: []int{7}, VethPrefix: "plv"}); err != nil {
		b.Fatal(err)
	}
	b.Run("generation", func(b *testing.B) {
		for b.Loop() {
			if _, err := loader.Generation("node"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("list", func(b *testing.B) {
		for b.Loop() {
			if _, err := loader.List("node"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
