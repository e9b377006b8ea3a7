package netifs

import (
	"net"
	"net/netip"
	"slices"
	"testing"
)

// TestListMatchesNet checks List against the standard library's answer
// for this machine's interfaces.
func TestListMatchesNet(t *testing.T) {
	got, err := List(nil)
	if err != nil {
		t.Fatal(err)
	}
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ifs) {
		t.Fatalf("List: %d interfaces, net.Interfaces: %d", len(got), len(ifs))
	}
	for _, i := range ifs {
		j := slices.IndexFunc(got, func(g Interface) bool { return g.Name == i.Name })
		if j < 0 {
			t.Errorf("%s missing from List", i.Name)
			continue
		}
		g := got[j]
		if g.Up != (i.Flags&net.FlagUp != 0) || g.Loop != (i.Flags&net.FlagLoopback != 0) {
			t.Errorf("%s: up=%v loop=%v, net says flags %v", i.Name, g.Up, g.Loop, i.Flags)
		}
		addrs, err := i.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		var want []netip.Addr
		for _, a := range addrs {
			want = append(want, netip.MustParsePrefix(a.String()).Addr())
		}
		slices.SortFunc(want, netip.Addr.Compare)
		have := slices.SortedFunc(slices.Values(g.Addrs), netip.Addr.Compare)
		if !slices.Equal(have, want) {
			t.Errorf("%s: addresses %v, net says %v", i.Name, have, want)
		}
	}
	var lo bool
	for _, g := range got {
		lo = lo || g.Loop && slices.Contains(g.Addrs, netip.MustParseAddr("127.0.0.1"))
	}
	if !lo {
		t.Errorf("no loopback interface with 127.0.0.1 in %v", got)
	}
}

func TestListSkips(t *testing.T) {
	all, err := List(nil)
	if err != nil || len(all) == 0 {
		t.Fatalf("List: %v, %v", all, err)
	}
	skipped := all[0].Name
	got, err := List(func(name string) bool { return name == skipped })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(all)-1 || slices.ContainsFunc(got, func(i Interface) bool { return i.Name == skipped }) {
		t.Errorf("skipping %s: %v (all: %v)", skipped, got, all)
	}
}

// BenchmarkList lists this machine's interfaces the way the console and
// mDNS did before (net.Interfaces, then Addrs on each) and with List.
func BenchmarkList(b *testing.B) {
	b.Run("net", func(b *testing.B) {
		for b.Loop() {
			ifs, err := net.Interfaces()
			if err != nil {
				b.Fatal(err)
			}
			for _, i := range ifs {
				i.Addrs()
			}
		}
	})
	b.Run("List", func(b *testing.B) {
		for b.Loop() {
			if _, err := List(nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
