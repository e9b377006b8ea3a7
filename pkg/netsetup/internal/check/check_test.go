package check

import (
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
)

func TestNames(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		nsOK, lnOK bool
	}{
		{"plain", "pl-7", true, true},
		{"veth", "veth0", true, true},
		{"15 bytes", "abcdefghijklmno", true, true},
		{"16 bytes", "abcdefghijklmnop", true, false},
		{"empty", "", false, false},
		{"dot", ".", false, false},
		{"dotdot", "..", false, false},
		{"slash", "a/b", false, false},
		{"colon", "eth0:1", true, false},
		{"space", "a b", false, false},
		{"newline", "a\n", false, false},
		{"vlan dot", "eth0.100", true, true},
		{"long ns", strings.Repeat("n", 256), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := NamespaceName(tt.in); (err == nil) != tt.nsOK {
				t.Errorf("NamespaceName(%q) = %v, want ok %v", tt.in, err, tt.nsOK)
			}
			if err := LinkName(tt.in); (err == nil) != tt.lnOK {
				t.Errorf("LinkName(%q) = %v, want ok %v", tt.in, err, tt.lnOK)
			}
		})
	}
}

func TestPrefixes(t *testing.T) {
	tests := []struct {
		name          string
		in            netip.Prefix
		addrOK, dstOK bool
	}{
		{"address", netip.MustParsePrefix("169.254.7.2/30"), true, false},
		{"network", netip.MustParsePrefix("10.7.0.0/16"), true, true},
		{"default", netip.MustParsePrefix("0.0.0.0/0"), true, true},
		{"v6", netip.MustParsePrefix("fd00::/64"), true, true},
		{"4in6", netip.MustParsePrefix("::ffff:10.0.0.1/128"), false, false},
		{"zero", netip.Prefix{}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := AddrPrefix(tt.in); (err == nil) != tt.addrOK {
				t.Errorf("AddrPrefix(%v) = %v, want ok %v", tt.in, err, tt.addrOK)
			}
			if err := RouteDst(tt.in); (err == nil) != tt.dstOK {
				t.Errorf("RouteDst(%v) = %v, want ok %v", tt.in, err, tt.dstOK)
			}
		})
	}
}

func TestGateway(t *testing.T) {
	v4 := netip.MustParsePrefix("0.0.0.0/0")
	tests := []struct {
		name string
		gw   netip.Addr
		ok   bool
	}{
		{"none", netip.Addr{}, true},
		{"v4", netip.MustParseAddr("169.254.7.1"), true},
		{"v6 for v4", netip.MustParseAddr("fe80::1"), false},
		{"4in6", netip.MustParseAddr("::ffff:169.254.7.1"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Gateway(v4, tt.gw); (err == nil) != tt.ok {
				t.Errorf("Gateway(%v, %v) = %v, want ok %v", v4, tt.gw, err, tt.ok)
			}
		})
	}
}

func TestSysctl(t *testing.T) {
	tests := []struct {
		key string
		ok  bool
	}{
		{"net/ipv4/ip_forward", true},
		{"net/ipv4/conf/eth0.100/rp_filter", true},
		{"net.ipv4.ip_forward", false},
		{"/net/ipv4/ip_forward", false},
		{"net/../kernel/panic", false},
		{"kernel/panic", false},
		{"net/", false},
		{"", false},
	}
	for _, tt := range tests {
		if err := SysctlKey(tt.key); (err == nil) != tt.ok {
			t.Errorf("SysctlKey(%q) = %v, want ok %v", tt.key, err, tt.ok)
		}
	}
	if err := SysctlValue(" "); err == nil {
		t.Errorf("SysctlValue(\" \") = nil, want an error")
	}
	if err := MTU(0); err != nil {
		t.Errorf("MTU(0) = %v, want nil", err)
	}
	if err := MTU(67); err == nil {
		t.Errorf("MTU(67) = nil, want an error")
	}
}

func TestText(t *testing.T) {
	dst := netip.MustParsePrefix("0.0.0.0/0")
	gw := netip.MustParseAddr("169.254.7.1")
	tests := []struct{ got, want string }{
		{Where("", "plv7"), "plv7"},
		{Where("pl-7", "veth0"), "pl-7/veth0"},
		{Route("", netip.MustParsePrefix("10.7.0.0/16"), "plv7", netip.Addr{}), "10.7.0.0/16 dev plv7"},
		{Route("pl-7", dst, "veth0", gw), "pl-7 0.0.0.0/0 via 169.254.7.1 dev veth0"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// TestBegin: a failed check refuses the call, naming it, with the first
// failure, and leaves the lock alone; passing checks take the lock until
// unlock.
func TestBegin(t *testing.T) {
	var mu sync.Mutex
	first, second := errors.New("first"), errors.New("second")
	unlock, err := Begin(&mu, "link up pl-7/x", nil, first, second)
	if unlock != nil || !errors.Is(err, first) || errors.Is(err, second) || err.Error() != "link up pl-7/x: first" {
		t.Errorf("Begin with failed checks = %v; want %q wrapping only the first", err, "link up pl-7/x: first")
	}
	if !mu.TryLock() {
		t.Fatal("a refused call left the lock taken")
	}
	mu.Unlock()
	unlock, err = Begin(&mu, "link up pl-7/veth0", nil, nil)
	if err != nil {
		t.Fatalf("Begin with passing checks = %v", err)
	}
	if mu.TryLock() {
		t.Fatal("Begin did not take the lock")
	}
	unlock()
	if !mu.TryLock() {
		t.Fatal("unlock did not release the lock")
	}
	if err := VethPeer(true); err == nil {
		t.Error("VethPeer(true) = nil, want the root namespace refused")
	}
	if err := VethPeer(false); err != nil {
		t.Errorf("VethPeer(false) = %v, want nil", err)
	}
}
