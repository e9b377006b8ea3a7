//go:build linux && lab

package netifs

import (
	"context"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// A Watcher in a namespace of its own sees the kernel's changes to the
// uplink promptly, and the tunnels' links coming and going leave its list
// alone.
func TestWatchInNamespace(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.New(t)
	h, err := l.Host("pi")
	if err != nil {
		t.Fatal(err)
	}
	ip := func(args ...string) {
		t.Helper()
		if err := h.IP(args...); err != nil {
			t.Fatal(err)
		}
	}
	w := NewWatcher(WatchOptions{Skip: func(name string) bool { return strings.HasPrefix(name, "pl-") }, Log: labtest.Logger(t)})
	labtest.Serve(t, func(ctx context.Context) error {
		return h.Do(func() error { return w.Run(ctx) })
	})
	// until waits for a snapshot that ok accepts and says how long that took.
	until := func(what string, ok func([]Interface) bool) {
		t.Helper()
		start := time.Now()
		for {
			s := w.Snapshot()
			if s.Err != nil {
				t.Fatalf("%s: %v", what, s.Err)
			}
			if ok(s.Interfaces) {
				t.Logf("%s: seen after %v", what, time.Since(start).Round(time.Millisecond))
				return
			}
			select {
			case <-s.Changed:
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: not seen in 5 s; list %+v", what, s.Interfaces)
			}
		}
	}
	find := func(ifs []Interface, name string) *Interface {
		i := slices.IndexFunc(ifs, func(i Interface) bool { return i.Name == name })
		if i < 0 {
			return nil
		}
		return &ifs[i]
	}
	until("first listing", func(ifs []Interface) bool { return find(ifs, "lo") != nil })

	// veth, not dummy: a container's kernel may lack the dummy module.
	ip("link", "add", "up0", "type", "veth", "peer", "name", "up1")
	until("link added", func(ifs []Interface) bool { i := find(ifs, "up0"); return i != nil && !i.Up })
	ip("link", "set", "up0", "up")
	until("link up", func(ifs []Interface) bool { i := find(ifs, "up0"); return i != nil && i.Up })
	a := netip.MustParseAddr("192.168.50.2")
	ip("addr", "add", "192.168.50.2/24", "dev", "up0")
	until("address added", func(ifs []Interface) bool { i := find(ifs, "up0"); return i != nil && slices.Contains(i.Addrs, a) })

	// Tunnels' links with addresses: not in the list, and no new list.
	snap := w.Snapshot()
	for n := range 20 {
		name := "pl-" + strconv.Itoa(n)
		ip("link", "add", name, "type", "veth", "peer", "name", name+"b")
		ip("addr", "add", "10.254."+strconv.Itoa(n)+".1/24", "dev", name)
		ip("link", "set", name, "up")
		ip("link", "set", name+"b", "up")
	}
	for n := range 10 {
		ip("link", "del", "pl-"+strconv.Itoa(n))
	}
	time.Sleep(500 * time.Millisecond)
	if w.Snapshot() != snap {
		t.Errorf("tunnel links changed the list: %+v", w.Snapshot().Interfaces)
	}

	ip("addr", "del", "192.168.50.2/24", "dev", "up0")
	until("address removed", func(ifs []Interface) bool { i := find(ifs, "up0"); return i != nil && !slices.Contains(i.Addrs, a) })
	ip("link", "set", "up0", "down")
	until("link down", func(ifs []Interface) bool { i := find(ifs, "up0"); return i != nil && !i.Up })
	ip("link", "del", "up0")
	until("link removed", func(ifs []Interface) bool { return find(ifs, "up0") == nil && find(ifs, "up1") == nil })

	// The list is what List says in the namespace.
	want, err := lab.In(h, func() ([]Interface, error) { return List(w.opt.Skip) })
	if err != nil {
		t.Fatal(err)
	}
	if got := w.Snapshot().Interfaces; !slices.EqualFunc(got, want, sameInterface) {
		t.Errorf("watched %+v, listed %+v", got, want)
	}
}
