package console

import (
	"net/netip"
	"testing"
)

func TestWanted(t *testing.T) {
	for _, tc := range []struct {
		addr            string
		private, public bool
	}{
		{"192.168.1.50", true, true},
		{"10.20.0.5", true, true},
		{"172.16.3.4", true, true},
		{"fd12:3456::5", true, true},
		{"198.51.100.7", false, true},
		{"2001:db8::5", false, true},
		{"fe80::1", false, false},
		{"169.254.1.1", false, false},
		{"127.0.0.1", false, false},
		{"::1", false, false},
		{"10.255.1.2", false, false},
		{"10.254.1.2", false, false},
		{"224.0.0.251", false, false},
		{"::ffff:192.168.1.5", true, true},
	} {
		a := netip.MustParseAddr(tc.addr)
		if got := Wanted(a, false); got != tc.private {
			t.Errorf("Wanted(%s, false) = %v, want %v", a, got, tc.private)
		}
		if got := Wanted(a, true); got != tc.public {
			t.Errorf("Wanted(%s, true) = %v, want %v", a, got, tc.public)
		}
	}
}
