package dhcpd

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/peerline/peerline/pkg/numplan"
)

func newTestTable(static ...int) *table {
	return newTable(slog.New(slog.DiscardHandler), static, provURL, t0)
}

func TestOfferCarriesLineOptions(t *testing.T) {
	tb := newTestTable()
	r, ok := tb.handle(discover(t, mac(1)), t0, okEnsure)
	if !ok {
		t.Fatal("DISCOVER: no reply")
	}
	d := mustParse(t, r)
	gw := net.IPv4(10, 0, 1, 2).To4()
	checks := []struct {
		name      string
		got, want string
	}{
		{"type", d.MessageType().String(), dhcpv4.MessageTypeOffer.String()},
		{"yiaddr", d.YourIPAddr.String(), "10.0.1.1"},
		{"mask", net.IP(d.SubnetMask()).String(), "255.255.255.252"},
		{"router", ipsString(d.Router()), gw.String()},
		{"server id", d.ServerIdentifier().String(), gw.String()},
		{"dns", ipsString(d.DNS()), gw.String()},
		{"ntp", ipsString(d.NTPServers()), gw.String()},
		{"option 66", d.TFTPServerName(), "http://10.0.1.2"},
		{"lease", d.IPAddressLeaseTime(0).String(), LeaseTime.String()},
		{"xid", d.TransactionID.String(), r.msg.TransactionID.String()},
		{"dst", r.dst.String(), "255.255.255.255"},
		{"src", r.src.String(), "10.0.1.2"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("OFFER %s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if tb.byMAC[hw(mac(1))] != nil {
		t.Error("DISCOVER alone created a binding; want only an offer until REQUEST")
	}
}

func ipsString(ips []net.IP) string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return strings.Join(s, ",")
}

// TestProtocol runs message sequences from one client against a table
// where mac(100) is bound to line 1 and checks each reply.
func TestProtocol(t *testing.T) {
	type step struct {
		pkt     func(t *testing.T) []byte
		want    dhcpv4.MessageType // 0: no reply
		wantYI  string
		wantDst string
	}
	a := mac(1)
	tests := []struct {
		name      string
		steps     []step
		wantBound int // line a is bound to afterwards, 0 none
	}{
		{"discover request", []step{
			{func(t *testing.T) []byte { return discover(t, a) }, dhcpv4.MessageTypeOffer, "10.0.2.1", "255.255.255.255"},
			{func(t *testing.T) []byte { return selecting(t, a, phoneAddr(2), gateway(2)) }, dhcpv4.MessageTypeAck, "10.0.2.1", "255.255.255.255"},
		}, 2},
		{"request for another address is NAKed", []step{
			{func(t *testing.T) []byte { return discover(t, a) }, dhcpv4.MessageTypeOffer, "10.0.2.1", ""},
			{func(t *testing.T) []byte { return selecting(t, a, phoneAddr(9), gateway(2)) }, dhcpv4.MessageTypeNak, "0.0.0.0", "255.255.255.255"},
		}, 0},
		{"request for a bound phone's address is NAKed", []step{
			{func(t *testing.T) []byte { return discover(t, a) }, dhcpv4.MessageTypeOffer, "10.0.2.1", ""},
			{func(t *testing.T) []byte { return selecting(t, a, phoneAddr(1), netip.Addr{}) }, dhcpv4.MessageTypeNak, "", ""},
		}, 0},
		{"client chose another server", []step{
			{func(t *testing.T) []byte { return discover(t, a) }, dhcpv4.MessageTypeOffer, "10.0.2.1", ""},
			{func(t *testing.T) []byte {
				return selecting(t, a, netip.MustParseAddr("192.168.1.50"), netip.MustParseAddr("192.168.1.1"))
			}, 0, "", ""},
		}, 0},
		{"renewing is unicast", []step{
			{func(t *testing.T) []byte { return discover(t, a) }, dhcpv4.MessageTypeOffer, "10.0.2.1", ""},
			{func(t *testing.T) []byte { return selecting(t, a, phoneAddr(2), gateway(2)) }, dhcpv4.MessageTypeAck, "", ""},
			{func(t *testing.T) []byte { return renewing(t, a, phoneAddr(2)) }, dhcpv4.MessageTypeAck, "10.0.2.1", "10.0.2.1"},
		}, 2},
		{"init-reboot with unknown MAC gets its free line back", []step{
			{func(t *testing.T) []byte { return selecting(t, a, phoneAddr(7), netip.Addr{}) }, dhcpv4.MessageTypeAck, "10.0.7.1", ""},
		}, 7},
		{"init-reboot with unknown MAC asking for a bound line: silent", []step{
			{func(t *testing.T) []byte { return selecting(t, a, phoneAddr(1), netip.Addr{}) }, 0, "", ""},
		}, 0},
		{"release keeps the line", []step{
			{func(t *testing.T) []byte { return selecting(t, a, phoneAddr(2), netip.Addr{}) }, dhcpv4.MessageTypeAck, "", ""},
			{func(t *testing.T) []byte {
				return msg(t, dhcpv4.MessageTypeRelease, a, dhcpv4.WithClientIP(phoneAddr(2).AsSlice()))
			}, 0, "", ""},
			{func(t *testing.T) []byte { return discover(t, a) }, dhcpv4.MessageTypeOffer, "10.0.2.1", ""},
		}, 2},
		{"decline frees and quarantines the line", []step{
			{func(t *testing.T) []byte { return selecting(t, a, phoneAddr(2), netip.Addr{}) }, dhcpv4.MessageTypeAck, "", ""},
			{func(t *testing.T) []byte {
				return msg(t, dhcpv4.MessageTypeDecline, a, dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(phoneAddr(2).AsSlice())))
			}, 0, "", ""},
			{func(t *testing.T) []byte { return discover(t, a) }, dhcpv4.MessageTypeOffer, "10.0.3.1", ""},
		}, 0},
		{"inform from a hand-configured phone", []step{
			{func(t *testing.T) []byte {
				return msg(t, dhcpv4.MessageTypeInform, a, dhcpv4.WithClientIP(phoneAddr(5).AsSlice()))
			}, dhcpv4.MessageTypeAck, "0.0.0.0", "10.0.5.1"},
		}, 0},
		{"inform from outside the plan: silent", []step{
			{func(t *testing.T) []byte {
				return msg(t, dhcpv4.MessageTypeInform, a, dhcpv4.WithClientIP(net.IPv4(192, 168, 1, 9)))
			}, 0, "", ""},
		}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tb := newTestTable()
			if err := tb.add(&binding{MAC: hw(mac(100)), Line: 1, Bound: t0, LastSeen: t0}); err != nil {
				t.Fatal(err)
			}
			now := t0
			for i, st := range tt.steps {
				now = now.Add(time.Second)
				r, ok := tb.handle(st.pkt(t), now, okEnsure)
				if st.want == 0 {
					if ok {
						t.Fatalf("step %d: got %s, want no reply", i, r.msg.MessageType())
					}
					continue
				}
				if !ok {
					t.Fatalf("step %d: no reply, want %s", i, st.want)
				}
				d := mustParse(t, r)
				if d.MessageType() != st.want {
					t.Fatalf("step %d: got %s, want %s", i, d.MessageType(), st.want)
				}
				if st.wantYI != "" && d.YourIPAddr.String() != st.wantYI {
					t.Errorf("step %d: yiaddr = %s, want %s", i, d.YourIPAddr, st.wantYI)
				}
				if st.wantDst != "" && r.dst.String() != st.wantDst {
					t.Errorf("step %d: sent to %s, want %s", i, r.dst, st.wantDst)
				}
			}
			got := 0
			if b := tb.byMAC[hw(a)]; b != nil {
				got = b.Line
			}
			if got != tt.wantBound {
				t.Errorf("afterwards %s is bound to line %d, want %d", a, got, tt.wantBound)
			}
			if b := tb.byLine[1]; b == nil || b.MAC != hw(mac(100)) {
				t.Errorf("the other phone lost line 1: %+v", b)
			}
		})
	}
}

func TestNextFreeSkipsStatic(t *testing.T) {
	tb := newTestTable(1, 2, 4)
	var got []int
	for i := range 3 {
		got = append(got, bindPhone(t, tb, mac(i), t0))
	}
	if want := []int{3, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("lines = %v, want %v (1, 2, 4 are static)", got, want)
	}
	// A client asking for a static line's address by INIT-REBOOT is not
	// given it.
	if r, ok := tb.handle(selecting(t, mac(9), phoneAddr(2), netip.Addr{}), t0, okEnsure); ok {
		t.Errorf("REQUEST for static line 2: got %s, want silence", r.msg.MessageType())
	}
}

func TestEnsureFailureAnswersNothing(t *testing.T) {
	tb := newTestTable()
	fail := func(int) error { return errors.New("no netlink") }
	if _, ok := tb.handle(discover(t, mac(1)), t0, fail); ok {
		t.Fatal("DISCOVER answered although EnsureLine failed")
	}
	if len(tb.offers) != 0 || len(tb.byMAC) != 0 {
		t.Errorf("failed EnsureLine left offers=%d bindings=%d, want none", len(tb.offers), len(tb.byMAC))
	}
	if tb.stats.EnsureFail != 1 {
		t.Errorf("EnsureFail = %d, want 1", tb.stats.EnsureFail)
	}
	if got := bindPhone(t, tb, mac(1), t0.Add(time.Second)); got != 1 {
		t.Errorf("after EnsureLine recovers: line %d, want 1", got)
	}
}

func TestOfferExpires(t *testing.T) {
	tb := newTestTable()
	if _, ok := tb.handle(discover(t, mac(1)), t0, okEnsure); !ok {
		t.Fatal("no offer")
	}
	if got := tb.expire(t0.Add(offerTTL / 2)); len(got) != 0 {
		t.Fatalf("expire before TTL freed %v", got)
	}
	if got := tb.expire(t0.Add(offerTTL + time.Second)); !slices.Equal(got, []int{1}) {
		t.Fatalf("expire after TTL = %v, want [1]", got)
	}
	if got := bindPhone(t, tb, mac(2), t0.Add(2*offerTTL)); got != 1 {
		t.Errorf("line after expired offer = %d, want 1", got)
	}
}

func TestFullTableAndReclaim(t *testing.T) {
	tb := newTestTable(254)
	// 253 phones, the one on line 17 silent for the longest.
	for s := 1; s <= 253; s++ {
		seen := t0.Add(-time.Duration(s) * time.Hour)
		if s == 17 {
			seen = t0.Add(-ReclaimAfter - 48*time.Hour)
		}
		if s == 40 {
			seen = t0.Add(-ReclaimAfter - 24*time.Hour)
		}
		if err := tb.add(&binding{MAC: hw(mac(1000 + s)), Line: s, Bound: seen, LastSeen: seen}); err != nil {
			t.Fatal(err)
		}
	}
	newcomer := mac(1)
	if got := bindPhone(t, tb, newcomer, t0); got != 17 {
		t.Fatalf("newcomer got line %d, want 17 (silent longest, over 30 days)", got)
	}
	if tb.byMAC[hw(mac(1017))] != nil {
		t.Error("reclaimed binding still present")
	}
	if got := bindPhone(t, tb, mac(2), t0); got != 40 {
		t.Fatalf("second newcomer got line %d, want 40", got)
	}
	// Nothing is silent for 30 days any more: the table is full.
	if r, ok := tb.handle(discover(t, mac(3)), t0, okEnsure); ok {
		t.Fatalf("full table answered %s", r.msg.MessageType())
	}
	if tb.stats.TableFull != 1 {
		t.Errorf("TableFull = %d, want 1", tb.stats.TableFull)
	}
	// Known phones are still served.
	r, ok := tb.handle(discover(t, mac(1100)), t0, okEnsure)
	if !ok || r.msg.YourIPAddr.String() != "10.0.100.1" {
		t.Errorf("known phone on a full table: ok=%v reply=%v, want offer of 10.0.100.1", ok, r.msg)
	}
}

func TestRateLimitNewMACs(t *testing.T) {
	tb := newTestTable()
	served := func(from, n int, now time.Time) int {
		k := 0
		for i := range n {
			if _, ok := tb.handle(discover(t, mac(from+i)), now, okEnsure); ok {
				k++
			}
		}
		return k
	}
	if got := served(0, 30, t0); got != newMACBurst {
		t.Errorf("burst of 30 new MACs at once: served %d, want %d", got, newMACBurst)
	}
	if tb.stats.RateLimited != 30-newMACBurst {
		t.Errorf("RateLimited = %d, want %d", tb.stats.RateLimited, 30-newMACBurst)
	}
	// One second later, newMACRate more.
	if got := served(100, 30, t0.Add(time.Second)); got != newMACRate {
		t.Errorf("one second later: served %d, want %d", got, newMACRate)
	}
	// Known MACs (offered ones here) are never limited.
	if got := served(0, newMACBurst, t0.Add(time.Second)); got != newMACBurst {
		t.Errorf("already offered MACs: served %d, want %d", got, newMACBurst)
	}
}

// TestFlood sends 10 000 random MACs (DISCOVER then REQUEST, a scripted
// attacker) at a table with three phones, then checks that the table
// stayed bounded and the phones keep their lines.
func TestFlood(t *testing.T) {
	tb := newTestTable()
	phones := []net.HardwareAddr{mac(1), mac(2), mac(3)}
	for _, p := range phones {
		bindPhone(t, tb, p, t0)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	now := t0
	for i := range 10000 {
		// 100 packets per second: twenty times the new-MAC rate.
		now = now.Add(10 * time.Millisecond)
		m := make(net.HardwareAddr, 6)
		for j := range m {
			m[j] = byte(rng.Uint32())
		}
		m[0] &^= 1
		if r, ok := tb.handle(discover(t, m), now, okEnsure); ok {
			tb.handle(selecting(t, m, addrOf(r.msg.YourIPAddr), r.src), now, okEnsure)
		}
		tb.expire(now)
		if n := len(tb.byMAC) + len(tb.offers); n > 254 {
			t.Fatalf("after %d MACs: %d bindings+offers, want <= 254", i, n)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("flood: %d bound, %d rate limited, %d table full; heap growth %d bytes", len(tb.byMAC), tb.stats.RateLimited, tb.stats.TableFull, growth)
	if growth > 1<<20 {
		t.Errorf("heap grew %d bytes during the flood, want < 1 MiB", growth)
	}
	if len(tb.byMAC) != 254 || tb.stats.TableFull == 0 || tb.stats.RateLimited == 0 {
		t.Errorf("want a full table, table-full and rate-limit counts: bound=%d full=%d limited=%d",
			len(tb.byMAC), tb.stats.TableFull, tb.stats.RateLimited)
	}
	for i, p := range phones {
		r, ok := tb.handle(discover(t, p), now, okEnsure)
		if want := phoneAddr(i + 1).String(); !ok || r.msg.YourIPAddr.String() != want {
			t.Errorf("phone %s after flood: ok=%v yiaddr=%v, want %s", p, ok, r.msg, want)
		}
	}
}

func TestMalformedCountedByReason(t *testing.T) {
	good := discover(t, mac(1))
	with := func(f func(b []byte)) []byte { b := slices.Clone(good); f(b); return b }
	tests := []struct {
		name   string
		pkt    []byte
		reason string
	}{
		{"empty", nil, reasonParse},
		{"short", good[:100], reasonParse},
		{"bad cookie", with(func(b []byte) { b[236] = 0 }), reasonParse},
		{"reply op", with(func(b []byte) { b[0] = 2 }), reasonOp},
		{"token ring", with(func(b []byte) { b[1] = 6 }), reasonHType},
		{"hlen 16", with(func(b []byte) { b[2] = 16 }), reasonHType},
		{"zero MAC", discover(t, net.HardwareAddr{0, 0, 0, 0, 0, 0}), reasonMAC},
		{"multicast MAC", discover(t, net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}), reasonMAC},
		{"relayed", discover(t, mac(1), dhcpv4.WithGatewayIP(net.IPv4(10, 9, 9, 1))), reasonRelayed},
		{"bootp", with(func(b []byte) { b[240] = 0xff }), reasonNoType},
		{"offer from a client", msg(t, dhcpv4.MessageTypeOffer, mac(1)), reasonWrongType},
	}
	tb := newTestTable()
	bindPhone(t, tb, mac(1), t0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tb.malformed[tt.reason]
			if r, ok := tb.handle(tt.pkt, t0, okEnsure); ok {
				t.Fatalf("malformed packet answered: %v", r.msg)
			}
			if got := tb.malformed[tt.reason]; got != before+1 {
				t.Errorf("malformed[%q] = %d, want %d (all: %v)", tt.reason, got, before+1, tb.malformed)
			}
		})
	}
	if b := tb.byLine[1]; b == nil || b.MAC != hw(mac(1)) || len(tb.byMAC) != 1 {
		t.Errorf("malformed packets changed the table: %+v", tb.bindings())
	}
}

func TestIdentify(t *testing.T) {
	tests := []struct {
		ua, vc        string
		vendor, model string
	}{
		{"", "Grandstream GXP1610 dslforum.org", "Grandstream", "GXP1610"},
		{"", "HT500 dslforum.org", "Grandstream", "HT500"},
		{"", "yealink", "Yealink", ""},
		{"", "Yealink SIP-T19P", "Yealink", "SIP-T19P"},
		{"", "udhcp 1.35.0", "udhcp 1.35.0", ""},
		{"", "", "", ""},
		{"Grandstream Model HW GXP1610 SW 1.0.7.13 DevId c074ad112233", "whatever", "Grandstream", "GXP1610"},
		{"Grandstream Model HW GXP2200 V2.2A SW 1.0.1.33 DevId 000b82462d97", "", "Grandstream", "GXP2200"},
		{"Yealink SIP-T19P 31.72.0.75 00:15:65:12:34:56", "yealink", "Yealink", "SIP-T19P"},
		{"yealink SIP-T18 18.0.0.80 00:15:65:27:3e:05", "", "Yealink", "SIP-T18"},
		{"curl/8.0", "Grandstream GXP1610 dslforum.org", "Grandstream", "GXP1610"},
	}
	for _, tt := range tests {
		v, m := identify(tt.ua, tt.vc)
		if v != tt.vendor || m != tt.model {
			t.Errorf("identify(%q, %q) = %q, %q, want %q, %q", tt.ua, tt.vc, v, m, tt.vendor, tt.model)
		}
	}
}

func TestCorruptLeasesMovedAside(t *testing.T) {
	for _, content := range []string{
		"{not json",
		`{"version":1,"leases":[{"mac":"00:0b:82:00:00:01","line":3},{"mac":"00:0b:82:00:00:02","line":3}]}`,
		`{"version":1,"leases":[{"mac":"zz","line":3}]}`,
		`{"version":7,"leases":[]}`,
	} {
		dir := t.TempDir()
		path := filepath.Join(dir, LeasesFile)
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := New(Options{Port: "eth0", StateDir: dir, Lines: &fakeLines{}, Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatalf("New with corrupt file %q: %v", content, err)
		}
		if got := s.Lines(); len(got) != 0 {
			t.Errorf("corrupt %q: Lines() = %v, want none", content, got)
		}
		bad, err := os.ReadFile(path + ".bad-" + "1772366400")
		if err != nil || string(bad) != content {
			t.Errorf("corrupt %q: moved-aside file = %q, %v; want the original content", content, bad, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("corrupt %q: %s still exists (%v)", content, path, err)
		}
	}
}

func TestLoadDropsBindingsOfStaticLines(t *testing.T) {
	dir := t.TempDir()
	content := `{"version":1,"leases":[{"mac":"00:0b:82:00:00:01","line":3},{"mac":"00:0b:82:00:00:02","line":4}]}`
	if err := os.WriteFile(filepath.Join(dir, LeasesFile), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Port: "eth0", StateDir: dir, Lines: &fakeLines{}, Static: []int{4}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Lines(); !slices.Equal(got, []int{3}) {
		t.Errorf("Lines() = %v, want [3] (4 is static now)", got)
	}
}

// startServer runs a Server on a fake socket; stop cancels it and checks
// Run returned nil.
func startServer(t *testing.T, dir string, lines *fakeLines, now func() time.Time) (*Server, *fakeConn, func()) {
	t.Helper()
	conn := newFakeConn()
	s, err := New(Options{
		Port: "eth0", StateDir: dir, Lines: lines, ProvisionURL: provURL, Now: now,
		Log:    slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Listen: func(string) (net.PacketConn, error) { return conn, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	return s, conn, func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func TestServerLifecycle(t *testing.T) {
	dir := t.TempDir()
	lines := &fakeLines{}
	clock := t0
	now := func() time.Time { return clock }
	s, conn, stop := startServer(t, dir, lines, now)
	ctx := t.Context()

	bind := func(m net.HardwareAddr) int {
		t.Helper()
		rep := conn.exchange(t, discover(t, m, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("Grandstream GXP1610 dslforum.org"))))
		if rep.dst.String() != "255.255.255.255:68" {
			t.Errorf("OFFER sent to %s, want 255.255.255.255:68", rep.dst)
		}
		d, err := dhcpv4.FromBytes(rep.b)
		if err != nil {
			t.Fatal(err)
		}
		line, _ := numplan.LocalPhone(addrOf(d.YourIPAddr))
		rep = conn.exchange(t, selecting(t, m, phoneAddr(line), gateway(line)))
		if d, _ := dhcpv4.FromBytes(rep.b); d == nil || d.MessageType() != dhcpv4.MessageTypeAck {
			t.Fatalf("REQUEST: got %v, want ACK", d)
		}
		return line
	}
	for i := 1; i <= 3; i++ {
		if got := bind(mac(i)); got != i {
			t.Fatalf("phone %d got line %d", i, got)
		}
	}
	if got := lines.ensuredLines(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("EnsureLine calls = %v, want [1 2 3] (once per line)", got)
	}
	s.NoteUserAgent(2, "Grandstream Model HW GXP1610 SW 1.0.7.13 DevId 000b82000002")
	// The note is asynchronous: wait (bounded) until the run loop took it.
	var ph []Phone
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		var err error
		ph, err = s.Phones(ctx)
		if err != nil || len(ph) != 3 {
			t.Fatalf("Phones = %v, %v", ph, err)
		}
		if ph[1].UserAgent != "" || time.Now().After(deadline) {
			break
		}
	}
	if p := ph[1]; p.Line != 2 || p.MAC != mac(2).String() || p.Vendor != "Grandstream" || p.Model != "GXP1610" ||
		p.Addr != phoneAddr(2) || !p.Bound.Equal(t0) || p.UserAgent == "" {
		t.Errorf("Phones()[1] = %+v", p)
	}
	if m, line, ok := s.LineOf(ctx, netip.MustParseAddr("10.0.3.1")); !ok || line != 3 || m.String() != mac(3).String() {
		t.Errorf("LineOf(10.0.3.1) = %v, %d, %v", m, line, ok)
	}
	if _, _, ok := s.LineOf(ctx, netip.MustParseAddr("10.0.3.2")); ok {
		t.Error("LineOf(10.0.3.2) found a phone; 10.0.s.2 is the Pi")
	}

	// Forget line 2: RemoveLine is called, lines 1 and 3 stay, and the
	// next new phone takes line 2.
	if err := s.Forget(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := s.Forget(ctx, 2); !errors.Is(err, ErrNoPhone) {
		t.Errorf("second Forget(2) = %v, want ErrNoPhone", err)
	}
	if !slices.Equal(lines.removedLines(), []int{2}) {
		t.Errorf("RemoveLine calls = %v, want [2]", lines.removedLines())
	}
	if got := bind(mac(4)); got != 2 {
		t.Errorf("new phone after Forget(2) got line %d, want 2", got)
	}
	if got := bind(mac(3)); got != 3 {
		t.Errorf("phone 3 after Forget(2) got line %d, want 3", got)
	}
	st, err := s.Stats(ctx)
	if err != nil || st.Bound != 3 {
		t.Errorf("Stats = %+v, %v", st, err)
	}
	stop()
	if _, err := s.Phones(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Phones after stop = %v, want ErrClosed", err)
	}

	// Restart on the same directory a week later: same lines.
	clock = t0.Add(7 * 24 * time.Hour)
	s2, conn2, stop2 := startServer(t, dir, &fakeLines{}, now)
	defer stop2()
	if got := s2.Lines(); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("Lines() after restart = %v, want [1 2 3]", got)
	}
	conn = conn2
	for i, want := range map[int]int{1: 1, 4: 2, 3: 3} {
		if got := bind(mac(i)); got != want {
			t.Errorf("after restart phone %d got line %d, want %d", i, got, want)
		}
	}
	ph, _ = s2.Phones(ctx)
	if len(ph) != 3 || ph[0].Vendor != "Grandstream" || !ph[0].LastSeen.Equal(clock) {
		t.Errorf("Phones after restart = %+v", ph)
	}
}
