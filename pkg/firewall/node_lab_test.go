//go:build linux && lab

package firewall

import (
	"strings"
	"testing"

	"github.com/peerline/peerline/pkg/labtest"
)

// TestNodeChangeInKernel: the node table changed by NodeChange's elements
// lists exactly as the table loaded whole for the new peers, so a peer
// added or removed in place is the policy NodeRules states; a script
// meant for another table fails whole and leaves the table as it was.
func TestNodeChangeInKernel(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "nft")
	l := labtest.New(t)
	changed, whole := host(t, l, "changed"), host(t, l, "whole")
	in := func(h interface{ Do(func() error) error }) Loader {
		return Loader{Do: func(_ string, fn func() error) error { return h.Do(fn) }}
	}
	for _, noRewrite := range []bool{false, true} {
		node := func(peers ...int) Node {
			return Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: peers, VethPrefix: "plv", NoRewrite: noRewrite}
		}
		steps := []Node{node(), node(7), node(7, 9, 70), node(9, 70), node(70, 253), node()}
		must(t, in(changed).Load("", NodeRules(steps[0])))
		for k := 1; k < len(steps); k++ {
			script, ok := NodeChange(steps[k-1], steps[k])
			if !ok {
				t.Fatalf("NodeChange(%v, %v) not a change of elements", steps[k-1].Peers, steps[k].Peers)
			}
			must(t, in(changed).Load("", script))
			must(t, in(whole).Load("", NodeRules(steps[k])))
			got, err := in(changed).List("")
			must(t, err)
			want, err := in(whole).List("")
			must(t, err)
			if got != want {
				t.Errorf("no rewrite %v, peers %v: table changed in place =\n%s\nloaded whole =\n%s", noRewrite, steps[k].Peers, got, want)
			}
		}
		// Peer 7 is gone: deleting it again fails, and adding 8 with it
		// does not happen either.
		before, err := in(changed).List("")
		must(t, err)
		script, _ := NodeChange(node(7), node(8))
		if err := in(changed).Load("", script); err == nil {
			t.Errorf("a script deleting an element the table lacks loaded")
		}
		after, err := in(changed).List("")
		must(t, err)
		if after != before {
			t.Errorf("a failed change altered the table:\n%s\nwas\n%s", after, before)
		}
		if strings.Contains(after, "plv8") {
			t.Errorf("half a failed change landed:\n%s", after)
		}
	}
}

// BenchmarkNodeAddOne is what adding one peer to a node with 252 costs:
// the whole table loaded again, or one element per set added in place.
func BenchmarkNodeAddOne(b *testing.B) {
	labtest.RequireRoot(b)
	labtest.RequireTools(b, "nft")
	l := labtest.New(b)
	h, err := l.Host("node")
	if err != nil {
		b.Fatal(err)
	}
	loader := Loader{Do: func(_ string, fn func() error) error { return h.Do(fn) }}
	node := func(n int) Node {
		peers := make([]int, n)
		for k := range peers {
			peers[k] = k + 1
		}
		return Node{PhonePort: "eth0", Lines: []int{1, 2}, Peers: peers, VethPrefix: "plv"}
	}
	b.Run("reload", func(b *testing.B) {
		for b.Loop() {
			if err := loader.Load("", NodeRules(node(253))); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("element", func(b *testing.B) {
		if err := loader.Load("", NodeRules(node(252))); err != nil {
			b.Fatal(err)
		}
		add, _ := NodeChange(node(252), node(253))
		remove, _ := NodeChange(node(253), node(252))
		for b.Loop() {
			if err := loader.Load("", add); err != nil {
				b.Fatal(err)
			}
			if err := loader.Load("", remove); err != nil {
				b.Fatal(err)
			}
		}
	})
}
