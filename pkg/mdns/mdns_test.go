package mdns

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"

	"github.com/peerline/peerline/pkg/netifs"
)

// fakeConn is an interface's socket: the test hands it datagrams and reads
// what was written.
type fakeConn struct {
	in     chan datagram
	mu     sync.Mutex
	out    []datagram
	closed chan struct{}
	once   sync.Once
}

type datagram struct {
	b    []byte
	addr netip.AddrPort
}

func newFakeConn() *fakeConn {
	return &fakeConn{in: make(chan datagram), closed: make(chan struct{})}
}

func (c *fakeConn) ReadFrom(b []byte) (int, netip.AddrPort, error) {
	select {
	case d := <-c.in:
		return copy(b, d.b), d.addr, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, net.ErrClosed
	}
}

func (c *fakeConn) WriteTo(b []byte, to netip.AddrPort) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, datagram{append([]byte(nil), b...), to})
	return nil
}

func (c *fakeConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

// sent returns and forgets what was written.
func (c *fakeConn) sent() []datagram {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.out
	c.out = nil
	return out
}

// records summarises a sent datagram: its answers' addresses and TTLs.
func records(t *testing.T, d datagram) (addrs []string, ttl uint32) {
	t.Helper()
	var m dns.Msg
	if err := m.Unpack(d.b); err != nil {
		t.Fatal(err)
	}
	for _, rr := range m.Answer {
		ttl = rr.Header().Ttl
		switch a := rr.(type) {
		case *dns.A:
			addrs = append(addrs, a.A.String())
		case *dns.AAAA:
			addrs = append(addrs, a.AAAA.String())
		}
	}
	return addrs, ttl
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		ifs := []Interface{
			{Name: "lo", Up: true, Loop: true, Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
			{Name: "eth0", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("10.0.1.2")}}, // phone port
			{Name: "wlan0", Up: true, Addrs: []netip.Addr{lan, netip.MustParseAddr("fe80::1")}},
			{Name: "wan1", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.9")}},  // public
			{Name: "pl-7", Up: true, Addrs: []netip.Addr{netip.MustParseAddr("192.168.77.1")}}, // a tunnel's link
		}
		conns := map[string]*fakeConn{}
		name := "Alice"
		r, err := New(Options{
			Name: func() string { mu.Lock(); defer mu.Unlock(); return name },
			Skip: func(n string) bool { return n == "eth0" || n[:3] == "pl-" },
			Interfaces: func() ([]Interface, error) {
				mu.Lock()
				defer mu.Unlock()
				return append([]Interface(nil), ifs...), nil
			},
			listen: func(ifname string) (conn, error) {
				mu.Lock()
				defer mu.Unlock()
				c := newFakeConn()
				conns[ifname] = c
				return c, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- r.Run(ctx) }()
		synctest.Wait()
		mu.Lock()
		if len(conns) != 1 || conns["wlan0"] == nil {
			t.Fatalf("listening on %v, want only wlan0 (private, not skipped)", conns)
		}
		c := conns["wlan0"]
		mu.Unlock()

		// Announced twice, a second apart, to the group.
		time.Sleep(1500 * time.Millisecond)
		ann := c.sent()
		if len(ann) != 2 || ann[0].addr != MulticastAddr {
			t.Fatalf("announcements = %v, want 2 to the group", ann)
		}
		if a, ttl := records(t, ann[1]); len(a) != 1 || a[0] != lan.String() || ttl != hostTTL {
			t.Errorf("announced %v TTL %d, want %v TTL %d (link-local left out)", a, ttl, lan, hostTTL)
		}

		// A query is answered by multicast, a second one within a second
		// is not (the group heard the first), a legacy one by unicast.
		c.in <- datagram{query(0, q("alice.local.", dns.TypeA, dns.ClassINET)), mcSrc}
		c.in <- datagram{query(0, q("alice.local.", dns.TypeA, dns.ClassINET)), mcSrc}
		c.in <- datagram{query(99, q("alice.local.", dns.TypeA, dns.ClassINET)), legSrc}
		synctest.Wait()
		got := c.sent()
		if len(got) != 2 || got[0].addr != MulticastAddr || got[1].addr != legSrc {
			t.Fatalf("replies = %v, want one multicast and one unicast to %v", got, legSrc)
		}

		// Renamed: goodbye for the old name, announcement of the new.
		mu.Lock()
		name = "alice2"
		mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		got = c.sent()
		if len(got) < 2 {
			t.Fatalf("after rename sent %d datagrams, want a goodbye and announcements", len(got))
		}
		if _, ttl := records(t, got[0]); ttl != 0 {
			t.Errorf("first after rename has TTL %d, want a goodbye (0)", ttl)
		}
		c.in <- datagram{query(1, q("alice2.local.", dns.TypeA, dns.ClassINET)), legSrc}
		synctest.Wait()
		if got := c.sent(); len(got) != 1 {
			t.Errorf("new name not answered: %v", got)
		}

		// The uplink loses its private address: goodbye, socket closed.
		mu.Lock()
		ifs[2].Addrs = []netip.Addr{netip.MustParseAddr("198.51.100.4")}
		mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		got = c.sent()
		if len(got) != 1 {
			t.Fatalf("after losing the address sent %v, want one goodbye", got)
		}
		if _, ttl := records(t, got[0]); ttl != 0 {
			t.Errorf("TTL %d, want a goodbye", ttl)
		}
		select {
		case <-c.closed:
		default:
			t.Errorf("socket still open on an interface with no private address")
		}

		// It comes back; then shutdown says goodbye.
		mu.Lock()
		ifs[2].Addrs = []netip.Addr{lan}
		mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		mu.Lock()
		c = conns["wlan0"]
		mu.Unlock()
		c.sent()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil", err)
		}
		got = c.sent()
		if len(got) != 1 {
			t.Fatalf("at shutdown sent %v, want a goodbye", got)
		}
		if _, ttl := records(t, got[0]); ttl != 0 {
			t.Errorf("TTL %d at shutdown, want 0", ttl)
		}
	})
}

func TestNew(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Errorf("New without a name = nil error")
	}
}

// A socket that cannot be opened is reported once and retried.
func TestListenFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		tries := 0
		r, _ := New(Options{
			Name: func() string { return "alice" },
			Interfaces: func() ([]Interface, error) {
				return []Interface{{Name: "wlan0", Up: true, Addrs: []netip.Addr{lan}}}, nil
			},
			listen: func(string) (conn, error) {
				mu.Lock()
				defer mu.Unlock()
				tries++
				return nil, errors.New("address in use")
			},
		})
		ctx, cancel := context.WithTimeout(t.Context(), 12*time.Second)
		defer cancel()
		if err := r.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if tries != 3 {
			t.Errorf("listen tried %d times in 12 s, want 3 (every 5 s)", tries)
		}
	})
}

// With a Watcher, the responder looks at the interfaces only when they
// change (an address DHCP gave, seen at once) and at the name every
// Interval; while nothing changes it does nothing, allocation included.
func TestRunWatched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		ifs := []Interface{{Index: 2, Name: "wlan0", Up: true, Addrs: []netip.Addr{lan}}}
		w := netifs.NewWatcher(netifs.WatchOptions{
			List: func(func(string) bool) ([]Interface, error) {
				mu.Lock()
				defer mu.Unlock()
				return append([]Interface(nil), ifs...), nil
			},
			Fallback: 10*time.Minute + 2500*time.Millisecond,
		})
		start := time.Now()
		conns := map[string]*fakeConn{}
		name := "alice"
		r, err := New(Options{
			Name:  func() string { mu.Lock(); defer mu.Unlock(); return name },
			Watch: w,
			Interfaces: func() ([]Interface, error) {
				t.Error("Interfaces called with a Watcher")
				return nil, nil
			},
			listen: func(ifname string) (conn, error) {
				mu.Lock()
				defer mu.Unlock()
				c := newFakeConn()
				conns[ifname] = c
				return c, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		var wg sync.WaitGroup
		wg.Go(func() { w.Run(ctx) })
		wg.Go(func() { r.Run(ctx) })
		defer wg.Wait()
		defer cancel()
		synctest.Wait()
		time.Sleep(2 * time.Second)
		mu.Lock()
		c := conns["wlan0"]
		mu.Unlock()
		if c == nil || len(c.sent()) != 2 {
			t.Fatalf("not announced on wlan0: %v", conns)
		}

		// A quiet minute: no work, no allocation, nothing sent.
		allocs := testing.AllocsPerRun(1, func() {
			time.Sleep(time.Minute)
			synctest.Wait()
		})
		if allocs > 2 || len(c.sent()) != 0 {
			t.Errorf("a quiet minute: %v allocations, sent %v", allocs, c.sent())
		}

		// Renamed: seen at the next Interval.
		mu.Lock()
		name = "alice2"
		mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := c.sent(); len(got) < 2 {
			t.Fatalf("after rename sent %v, want a goodbye and an announcement", got)
		}
		time.Sleep(2 * time.Second)
		c.sent()

		// The watcher publishes a new address (its next look, between
		// two of the responder's ticks): announced at once.
		other := netip.MustParseAddr("192.168.1.77")
		mu.Lock()
		ifs[0].Addrs = []netip.Addr{other}
		mu.Unlock()
		time.Sleep(time.Until(start.Add(10*time.Minute + 2500*time.Millisecond + time.Millisecond)))
		synctest.Wait()
		got := c.sent()
		if len(got) == 0 {
			t.Fatal("new address not announced within 1 ms of the watcher seeing it")
		}
		if a, _ := records(t, got[len(got)-1]); len(a) != 1 || a[0] != other.String() {
			t.Errorf("announced %v, want %v", a, other)
		}
	})
}
