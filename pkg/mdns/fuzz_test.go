package mdns

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/miekg/dns"
)

// FuzzAnswer feeds hostile datagrams to Answer. Properties: it never
// panics; it answers only queries, only for host, only with the given
// addresses, with a reply that parses and is no bigger than the records
// need; a legacy (non-5353) source always gets a unicast reply.
func FuzzAnswer(f *testing.F) {
	in := uint16(dns.ClassINET)
	for _, b := range [][]byte{
		query(0, q(host, dns.TypeA, in)),
		query(7, q(host, dns.TypeAAAA, in|classUnicast)),
		query(0, q(host, dns.TypeANY, in), q("bob.local.", dns.TypeA, in)),
		query(0, q("xalice.local.", dns.TypeA, in)),
		[]byte("hello, this is not DNS at all"),
		{0, 0, 0},
	} {
		f.Add(b, uint16(5353))
		f.Add(b, uint16(40000))
	}
	if b, err := Announcement(host, []netip.Addr{lan}, 0); err == nil {
		f.Add(b, uint16(5353))
	}
	addrs := []netip.Addr{lan, ula}
	f.Fuzz(func(t *testing.T, b []byte, port uint16) {
		src := netip.AddrPortFrom(netip.MustParseAddr("192.168.1.50"), port)
		r, ok := Answer(b, src, host, addrs)
		if !ok {
			return
		}
		var qm dns.Msg
		if err := qm.Unpack(b); err != nil || qm.Response {
			t.Fatalf("answered something that is not a query: %v", err)
		}
		if port != Port && !r.Unicast {
			t.Fatalf("legacy query from port %d answered by multicast", port)
		}
		var m dns.Msg
		if err := m.Unpack(r.Msg); err != nil {
			t.Fatalf("reply does not parse: %v", err)
		}
		if !m.Response || len(m.Answer) == 0 || len(m.Answer) > len(addrs) {
			t.Fatalf("reply %v", m)
		}
		for _, rr := range m.Answer {
			if rr.Header().Name != host && !dns.IsSubDomain(host, rr.Header().Name) {
				t.Fatalf("answer for %q", rr.Header().Name)
			}
			var a netip.Addr
			switch x := rr.(type) {
			case *dns.A:
				a, _ = netip.AddrFromSlice(x.A.To4())
			case *dns.AAAA:
				a, _ = netip.AddrFromSlice(x.AAAA)
			default:
				t.Fatalf("answer of type %T", rr)
			}
			if !slices.Contains(addrs, a) {
				t.Fatalf("answered address %v, not ours", a)
			}
		}
		if len(r.Msg) > 512 {
			t.Fatalf("reply of %d bytes for two records", len(r.Msg))
		}
	})
}
