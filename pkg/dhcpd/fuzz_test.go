package dhcpd

import (
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// FuzzHandle feeds arbitrary bytes to the table as packets from the phone
// port. Properties: no panic; bindings plus offers never exceed the lines;
// the bindings of MACs other than the packet's are unchanged; a reply, if
// any, is a BOOTREPLY to the packet's MAC that encodes and parses again.
func FuzzHandle(f *testing.F) {
	seeds := [][]byte{
		discover(f, mac(50)),
		discover(f, mac(1)),
		selecting(f, mac(50), phoneAddr(4), gateway(4)),
		selecting(f, mac(1), phoneAddr(2), gateway(1)),
		selecting(f, mac(51), phoneAddr(9), netip.Addr{}),
		renewing(f, mac(2), phoneAddr(2)),
		msg(f, dhcpv4.MessageTypeRelease, mac(3), dhcpv4.WithClientIP(phoneAddr(3).AsSlice())),
		msg(f, dhcpv4.MessageTypeDecline, mac(2), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(phoneAddr(2).AsSlice()))),
		msg(f, dhcpv4.MessageTypeInform, mac(7), dhcpv4.WithClientIP(phoneAddr(7).AsSlice())),
		discover(f, mac(1), dhcpv4.WithGatewayIP(net.IPv4(10, 9, 9, 1))),
		discover(f, mac(52), dhcpv4.WithOption(dhcpv4.OptClassIdentifier("Grandstream GXP1610 dslforum.org")),
			dhcpv4.WithOption(dhcpv4.OptHostName("GXP1610\x00\xff"))),
		{},
		{1, 1, 6, 0},
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		tb := newTestTable(5)
		for i := 1; i <= 3; i++ {
			if err := tb.add(&binding{MAC: hw(mac(i)), Line: i, Bound: t0, LastSeen: t0}); err != nil {
				t.Fatal(err)
			}
		}
		before := map[hwaddr]binding{}
		for m, b := range tb.byMAC {
			before[m] = *b
		}
		r, ok := tb.handle(pkt, t0, okEnsure)
		if n := len(tb.byMAC) + len(tb.offers); n > 254 {
			t.Fatalf("%d bindings+offers", n)
		}
		var sender hwaddr
		if d, err := dhcpv4.FromBytes(pkt); err == nil && len(d.ClientHWAddr) == 6 {
			sender = hw(d.ClientHWAddr)
		}
		for m, b := range before {
			if m == sender {
				continue
			}
			if got := tb.byMAC[m]; got == nil || *got != b || tb.byLine[b.Line] != got {
				t.Fatalf("binding of %s changed by a packet from %s: %+v -> %+v", m, sender, b, got)
			}
		}
		if !ok {
			return
		}
		d, err := dhcpv4.FromBytes(r.msg.ToBytes())
		if err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if d.OpCode != dhcpv4.OpcodeBootReply || hw(d.ClientHWAddr) != sender {
			t.Fatalf("reply op %v to %s, want BOOTREPLY to %s", d.OpCode, d.ClientHWAddr, sender)
		}
	})
}

// BenchmarkHandleDiscover measures a DISCOVER from a known phone (the path
// a retrying or rebooting phone takes) and from new MACs (rate limiter,
// free-line search, offer).
func BenchmarkHandleDiscover(b *testing.B) {
	b.Run("known", func(b *testing.B) {
		tb := newTestTable()
		bindPhone(b, tb, mac(1), t0)
		pkt := discover(b, mac(1))
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := tb.handle(pkt, t0, okEnsure); !ok {
				b.Fatal("no offer")
			}
		}
	})
	b.Run("new", func(b *testing.B) {
		pkts := make([][]byte, 200)
		for i := range pkts {
			pkts[i] = discover(b, mac(i+1))
		}
		tb := newTestTable()
		now := t0
		i := 0
		b.ReportAllocs()
		for b.Loop() {
			if i == len(pkts) {
				b.StopTimer()
				tb = newTestTable()
				i = 0
				b.StartTimer()
			}
			// A second apart: the rate limiter always has a token.
			now = now.Add(1e9)
			if _, ok := tb.handle(pkts[i], now, okEnsure); !ok {
				b.Fatal("no offer")
			}
			i++
		}
	})
	b.Run("malformed", func(b *testing.B) {
		tb := newTestTable()
		pkt := discover(b, mac(1))
		pkt[0] = 2
		b.ReportAllocs()
		for b.Loop() {
			tb.handle(pkt, t0, okEnsure)
		}
	})
}
