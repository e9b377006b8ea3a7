package numplan

import (
	"net/netip"
	"testing"
)

func TestMapTable(t *testing.T) {
	tests := []struct {
		name string
		in   string
		peer uint8
		dir  Direction
		want string
	}{
		{"local line leaves as sender", "10.0.1.1", 7, Outbound, "10.255.1.1"},
		{"local gateway leaves as sender", "10.0.3.2", 7, Outbound, "10.255.3.2"},
		{"peer line leaves as receiver", "10.7.2.1", 7, Outbound, "10.254.2.1"},
		{"other peer unchanged outbound", "10.8.2.1", 7, Outbound, "10.8.2.1"},
		{"non 10/8 unchanged", "198.51.100.1", 7, Outbound, "198.51.100.1"},
		{"sender arrives as peer", "10.255.1.1", 4, Inbound, "10.4.1.1"},
		{"receiver arrives as local", "10.254.2.1", 4, Inbound, "10.0.2.1"},
		{"local address inbound unchanged", "10.0.2.1", 4, Inbound, "10.0.2.1"},
		{"peer address inbound unchanged", "10.4.2.1", 4, Inbound, "10.4.2.1"},
		{"hold address unchanged", "0.0.0.0", 4, Inbound, "0.0.0.0"},
		{"reserved peer index never maps", "10.255.1.1", 254, Inbound, "10.255.1.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := MapAddr(netip.MustParseAddr(tt.in), tt.peer, tt.dir)
			if got.String() != tt.want {
				t.Errorf("MapAddr(%s, %d, %v) = %s, want %s", tt.in, tt.peer, tt.dir, got, tt.want)
			}
		})
	}
}

func TestPrefixes(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
	}{
		{"line prefix", LinePrefix(3).String(), "10.0.3.0/30"},
		{"line gateway", LineGateway(3).String(), "10.0.3.2"},
		{"phone", Phone(7, 2).String(), "10.7.2.1"},
		{"node prefix", NodePrefix(7).String(), "10.7.0.0/16"},
		{"wire receiver", WirePrefixes[0].String(), "10.254.0.0/16"},
		{"wire sender", WirePrefixes[1].String(), "10.255.0.0/16"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %s, want %s", tt.name, tt.got, tt.want)
		}
	}
	if !LinePrefix(3).Contains(Phone(0, 3)) || !LinePrefix(3).Contains(LineGateway(3)) {
		t.Errorf("LinePrefix(3) must hold the phone and its gateway")
	}
}

func TestValid(t *testing.T) {
	for _, i := range []int{0, 254, 255, -1, 256} {
		if ValidNode(i) {
			t.Errorf("ValidNode(%d) = true, want false", i)
		}
	}
	for _, i := range []int{1, 253} {
		if !ValidNode(i) {
			t.Errorf("ValidNode(%d) = false, want true", i)
		}
	}
	for _, s := range []int{0, 255} {
		if ValidLine(s) {
			t.Errorf("ValidLine(%d) = true, want false", s)
		}
	}
}

// roundTrip carries an address as node A sees it to node B (which calls A
// j) through A's tunnel i, then back again: what a call and its call-back do.
func roundTrip(a [4]byte, i, j uint8) (atB, back [4]byte) {
	w, _ := ToWire(a, i)
	atB, _ = FromWire(w, j)
	w2, _ := ToWire(atB, j)
	back, _ = FromWire(w2, i)
	return atB, back
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name       string
		a          string
		i, j       uint8
		wantAtB    string
		wantReturn string
	}{
		{"caller's own line is shown as A at B", "10.0.1.1", 7, 4, "10.4.1.1", "10.0.1.1"},
		{"dialled line is B's local line", "10.7.2.1", 7, 4, "10.0.2.1", "10.7.2.1"},
		{"third node passes through", "10.9.1.1", 7, 4, "10.9.1.1", "10.9.1.1"},
	}
	for _, tt := range tests {
		atB, back := roundTrip(netip.MustParseAddr(tt.a).As4(), tt.i, tt.j)
		if got := netip.AddrFrom4(atB).String(); got != tt.wantAtB {
			t.Errorf("%s: at B = %s, want %s", tt.name, got, tt.wantAtB)
		}
		if got := netip.AddrFrom4(back).String(); got != tt.wantReturn {
			t.Errorf("%s: back at A = %s, want %s", tt.name, got, tt.wantReturn)
		}
	}
}

// FuzzRoundTrip proves that local->wire->local and back is the identity for
// every address a tunnel speaks for: this node's lines (10.0/16), the peer's
// lines (10.i/16) and anything outside 10/8. A third node's address 10.k
// (k != 0, i) passes a hop unchanged and would name something else at the
// peer, so the map must leave it alone rather than pretend to translate it.
func FuzzRoundTrip(f *testing.F) {
	f.Add(byte(10), byte(0), byte(1), byte(1), byte(7), byte(4))
	f.Add(byte(10), byte(7), byte(2), byte(1), byte(7), byte(4))
	f.Add(byte(10), byte(9), byte(1), byte(1), byte(7), byte(7))
	f.Add(byte(192), byte(0), byte(2), byte(1), byte(1), byte(253))
	f.Fuzz(func(t *testing.T, a0, a1, a2, a3, i, j byte) {
		if !ValidNode(int(i)) || !ValidNode(int(j)) {
			return
		}
		a := [4]byte{a0, a1, a2, a3}
		if a0 == 10 && a1 != 0 && a1 != i {
			if w, changed := ToWire(a, i); changed || w != a {
				t.Fatalf("ToWire(%v, %d) = %v, %v: a third node's address must pass unchanged", a, i, w, changed)
			}
			return
		}
		if _, back := roundTrip(a, i, j); back != a {
			t.Fatalf("round trip of %v via i=%d j=%d = %v", a, i, j, back)
		}
	})
}

func BenchmarkToWire(b *testing.B) {
	a := [4]byte{10, 0, 1, 1}
	for b.Loop() {
		a, _ = ToWire(a, 7)
		a, _ = FromWire(a, 7)
		a[1] = 0
	}
}

func TestLocalPhone(t *testing.T) {
	for _, tt := range []struct {
		addr string
		line int
		ok   bool
	}{
		{"10.0.1.1", 1, true},
		{"10.0.254.1", 254, true},
		{"::ffff:10.0.7.1", 7, true},
		{"10.0.0.1", 0, false},   // no line 0
		{"10.0.255.1", 0, false}, // nor 255
		{"10.0.1.2", 0, false},   // the Pi's side of the line
		{"10.4.1.1", 0, false},   // a peer's phone
		{"192.168.1.1", 0, false},
		{"fe80::1", 0, false},
	} {
		s, ok := LocalPhone(netip.MustParseAddr(tt.addr))
		if s != tt.line || ok != tt.ok {
			t.Errorf("LocalPhone(%s) = %d, %v; want %d, %v", tt.addr, s, ok, tt.line, tt.ok)
		}
	}
}
