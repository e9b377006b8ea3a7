package netsim

import (
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const hop = 10 * time.Millisecond

// arrive waits until what was sent has arrived and been handled.
func arrive() {
	time.Sleep(hop)
	synctest.Wait()
}

// inbox records what a socket receives.
type inbox struct {
	mu   sync.Mutex
	from []netip.AddrPort
}

func (in *inbox) h(b []byte, from netip.AddrPort) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.from = append(in.from, from)
}

func (in *inbox) take() []netip.AddrPort {
	in.mu.Lock()
	defer in.mu.Unlock()
	f := in.from
	in.from = nil
	return f
}

func listen(t *testing.T, n *Network, addr string, nat *NAT) (*Conn, *inbox) {
	t.Helper()
	in := &inbox{}
	c, err := n.Listen(netip.MustParseAddrPort(addr), nat, in.h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, in
}

var (
	server  = netip.MustParseAddrPort("203.0.113.1:3478")
	server2 = netip.MustParseAddrPort("203.0.113.1:3479")
	other   = netip.MustParseAddrPort("203.0.113.2:3478")
)

// TestNATKinds: what each kind of NAT maps and lets in, per RFC 4787: the
// inside sends to server and server2; then server2 and other (which the
// inside never sent to) answer to the mapping server saw.
func TestNATKinds(t *testing.T) {
	for _, tc := range []struct {
		name       string
		m          Mapping
		f          Filtering
		samePort   bool // server and server2 see one mapping
		fromServer bool // server2 reaches the mapping server saw
		fromOther  bool // other does
	}{
		{"full cone", MapEndpointIndependent, FilterEndpointIndependent, true, true, true},
		{"restricted cone", MapEndpointIndependent, FilterAddressDependent, true, true, false},
		{"port restricted", MapEndpointIndependent, FilterAddressAndPortDependent, true, true, false},
		{"symmetric", MapAddressAndPortDependent, FilterAddressAndPortDependent, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := New(hop)
				nat := n.NewNAT(netip.MustParseAddr("198.51.100.1"), tc.m, tc.f)
				inside, got := listen(t, n, "192.168.1.2:51820", nat)
				s1, in1 := listen(t, n, server.String(), nil)
				s2, in2 := listen(t, n, server2.String(), nil)
				o, _ := listen(t, n, other.String(), nil)
				inside.WriteTo([]byte("x"), server)
				inside.WriteTo([]byte("x"), server2)
				arrive()
				f1, f2 := in1.take(), in2.take()
				if len(f1) != 1 || len(f2) != 1 {
					t.Fatalf("servers got %v and %v", f1, f2)
				}
				if f1[0].Addr() != nat.WAN() {
					t.Errorf("server saw %v, want the NAT's WAN address %v", f1[0], nat.WAN())
				}
				if (f1[0] == f2[0]) != tc.samePort {
					t.Errorf("mappings %v and %v; same port want %v", f1[0], f2[0], tc.samePort)
				}
				s1.WriteTo([]byte("y"), f1[0])
				arrive()
				if g := got.take(); len(g) != 1 || g[0] != server {
					t.Errorf("answer from the server it sent to: got %v", g)
				}
				s2.WriteTo([]byte("y"), f1[0])
				o.WriteTo([]byte("y"), f1[0])
				arrive()
				g := got.take()
				has := func(a netip.AddrPort) bool {
					for _, x := range g {
						if x == a {
							return true
						}
					}
					return false
				}
				if has(server2) != tc.fromServer || has(other) != tc.fromOther {
					t.Errorf("let in %v; want server2 %v, other %v", g, tc.fromServer, tc.fromOther)
				}
			})
		})
	}
}

// TestRebinding: after Flush or ChangeWAN, the old mapping is gone and the
// next datagram out gets a new one.
func TestRebinding(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(hop)
		nat := n.NewNAT(netip.MustParseAddr("198.51.100.1"), MapEndpointIndependent, FilterEndpointIndependent)
		inside, got := listen(t, n, "192.168.1.2:51820", nat)
		s, in := listen(t, n, server.String(), nil)
		seen := func() netip.AddrPort {
			t.Helper()
			inside.WriteTo([]byte("x"), server)
			arrive()
			f := in.take()
			if len(f) != 1 {
				t.Fatalf("server got %v", f)
			}
			return f[0]
		}
		old := seen()
		for _, change := range []func(){nat.Flush, func() { nat.ChangeWAN(netip.MustParseAddr("198.51.100.9")) }} {
			change()
			s.WriteTo([]byte("y"), old)
			arrive()
			if g := got.take(); len(g) != 0 {
				t.Errorf("the forgotten mapping %v still lets in %v", old, g)
			}
			now := seen()
			if now == old {
				t.Errorf("mapping %v after the change, the same as before", now)
			}
			old = now
		}
		if old.Addr() != netip.MustParseAddr("198.51.100.9") {
			t.Errorf("mapping %v after ChangeWAN", old)
		}
	})
}

// TestLANAndBlock: hosts behind one NAT reach each other on the LAN but not
// through the NAT's WAN address (no hairpin); a host on another LAN is not
// reachable by its private address; Block drops what it matches; a
// closed socket refuses writes.
func TestLANAndBlock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(hop)
		nat := n.NewNAT(netip.MustParseAddr("198.51.100.1"), MapEndpointIndependent, FilterEndpointIndependent)
		nat2 := n.NewNAT(netip.MustParseAddr("198.51.100.2"), MapEndpointIndependent, FilterEndpointIndependent)
		a, _ := listen(t, n, "192.168.1.2:51820", nat)
		_, inB := listen(t, n, "192.168.1.3:51820", nat)
		c, _ := listen(t, n, "192.168.2.2:51820", nat2)
		s, inS := listen(t, n, server.String(), nil)
		a.WriteTo([]byte("x"), netip.MustParseAddrPort("192.168.1.3:51820"))
		arrive()
		if g := inB.take(); len(g) != 1 || g[0] != a.LocalAddr() {
			t.Errorf("on the LAN: got %v, want one from %v", g, a.LocalAddr())
		}
		// b's mapping, then a to it through the WAN address: dropped.
		b := n.conns[netip.MustParseAddrPort("192.168.1.3:51820")]
		b.WriteTo([]byte("x"), server)
		arrive()
		mb := inS.take()[0]
		a.WriteTo([]byte("x"), mb)
		c.WriteTo([]byte("x"), netip.MustParseAddrPort("192.168.1.3:51820"))
		arrive()
		if g := inB.take(); len(g) != 0 {
			t.Errorf("hairpin or another LAN's private address got through: %v", g)
		}
		n.Block(func(from, to netip.AddrPort) bool { return to == server })
		a.WriteTo([]byte("x"), server)
		arrive()
		if g := inS.take(); len(g) != 0 {
			t.Errorf("blocked, yet the server got %v", g)
		}
		if n.Dropped() != 3 {
			t.Errorf("Dropped() = %d, want 3", n.Dropped())
		}
		s.Close()
		if err := s.WriteTo([]byte("x"), mb); err != ErrClosed {
			t.Errorf("write on a closed socket: %v, want ErrClosed", err)
		}
	})
}

// TestAcceptInput: two hosts behind port-restricted routers punch towards
// each other's mappings. If each sends before the other's first datagram
// arrives, both get through; if one's arrives first at a router that
// accepts input, that router holds it, the host behind it gets a new port
// towards the sender, and neither gets anything through, for as long as
// either keeps sending. A router that drops input holds nothing, and the
// late host still gets through. After both were quiet for the router's
// unreplied timeout, punching together works again; a shorter silence, or
// a router that keeps its entries longer, does not.
func TestAcceptInput(t *testing.T) {
	for _, tc := range []struct {
		name        string
		accept      bool
		bLate       time.Duration
		unreplied   time.Duration // 0: the default
		quiet       time.Duration // after the first attempt, then both together
		wantThrough bool
	}{
		{"together", true, 0, 0, 0, true},
		{"late, accepting", true, 2 * hop, 0, 0, false},
		{"late, dropping", false, 2 * hop, 0, 0, true},
		{"late, accepting, quiet 29 s", true, 2 * hop, 0, 29 * time.Second, false},
		{"late, accepting, quiet 31 s", true, 2 * hop, 0, 31 * time.Second, true},
		{"late, accepting 60 s, quiet 35 s", true, 2 * hop, time.Minute, 35 * time.Second, false},
		{"late, accepting 60 s, quiet 65 s", true, 2 * hop, time.Minute, 65 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := New(hop)
				natA := n.NewNAT(netip.MustParseAddr("198.51.100.1"), MapEndpointIndependent, FilterAddressAndPortDependent)
				natB := n.NewNAT(netip.MustParseAddr("198.51.100.2"), MapEndpointIndependent, FilterAddressAndPortDependent)
				if tc.accept {
					natA.AcceptInput()
					natB.AcceptInput()
					if tc.unreplied != 0 {
						natA.SetUnrepliedTimeout(tc.unreplied)
						natB.SetUnrepliedTimeout(tc.unreplied)
					}
				}
				a, gotA := listen(t, n, "192.168.1.2:51820", natA)
				b, gotB := listen(t, n, "192.168.2.2:51820", natB)
				_, srv := listen(t, n, server.String(), nil)
				a.WriteTo([]byte("r"), server)
				b.WriteTo([]byte("r"), server)
				arrive()
				var mapA, mapB netip.AddrPort
				for _, f := range srv.take() {
					if f.Addr() == natA.WAN() {
						mapA = f
					} else {
						mapB = f
					}
				}
				// Punch: a now, b after bLate, then both again.
				a.WriteTo([]byte("p"), mapB)
				time.Sleep(tc.bLate)
				b.WriteTo([]byte("p"), mapA)
				arrive()
				time.Sleep(hop)
				a.WriteTo([]byte("p"), mapB)
				b.WriteTo([]byte("p"), mapA)
				arrive()
				if tc.quiet > 0 {
					gotA.take()
					gotB.take()
					time.Sleep(tc.quiet)
					// Meanwhile both kept their mappings towards the
					// server, as registrations do.
					a.WriteTo([]byte("r"), server)
					b.WriteTo([]byte("r"), server)
					arrive()
					a.WriteTo([]byte("p"), mapB)
					b.WriteTo([]byte("p"), mapA)
					arrive()
					time.Sleep(hop)
					a.WriteTo([]byte("p"), mapB)
					b.WriteTo([]byte("p"), mapA)
					arrive()
				}
				through := len(gotA.take()) > 0 && len(gotB.take()) > 0
				if through != tc.wantThrough {
					t.Errorf("both got through: %v, want %v", through, tc.wantThrough)
				}
			})
		})
	}
}
