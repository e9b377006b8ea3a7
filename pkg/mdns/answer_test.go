package mdns

import (
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const host = "alice.local."

var (
	lan    = netip.MustParseAddr("192.168.1.23")
	ula    = netip.MustParseAddr("fd12:3456:789a::23")
	mcSrc  = netip.MustParseAddrPort("192.168.1.50:5353")
	legSrc = netip.MustParseAddrPort("192.168.1.50:41234")
)

func query(id uint16, qs ...dns.Question) []byte {
	m := &dns.Msg{Question: qs}
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func q(name string, t uint16, class uint16) dns.Question {
	return dns.Question{Name: name, Qtype: t, Qclass: class}
}

func TestAnswer(t *testing.T) {
	in := uint16(dns.ClassINET)
	known := func() []byte {
		m := &dns.Msg{Question: []dns.Question{q(host, dns.TypeA, in)}}
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: host, Rrtype: dns.TypeA, Class: in, Ttl: 100}, A: lan.AsSlice()}}
		b, _ := m.Pack()
		return b
	}
	knownStale := func() []byte {
		m := &dns.Msg{Question: []dns.Question{q(host, dns.TypeA, in)}}
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: host, Rrtype: dns.TypeA, Class: in, Ttl: 30}, A: lan.AsSlice()}}
		b, _ := m.Pack()
		return b
	}
	response := func() []byte {
		b, _ := Announcement(host, []netip.Addr{lan}, 120e9)
		return b
	}
	tests := []struct {
		name    string
		msg     []byte
		src     netip.AddrPort
		addrs   []netip.Addr
		ok      bool
		unicast bool
		wantA   []string // answers, "A 192.168.1.23"
		id      uint16
		ttl     uint32
		flush   bool
	}{
		{"A multicast", query(0, q(host, dns.TypeA, in)), mcSrc, []netip.Addr{lan, ula}, true, false, []string{"A 192.168.1.23"}, 0, 120, true},
		{"AAAA", query(0, q(host, dns.TypeAAAA, in)), mcSrc, []netip.Addr{lan, ula}, true, false, []string{"AAAA fd12:3456:789a::23"}, 0, 120, true},
		{"ANY", query(0, q(host, dns.TypeANY, in)), mcSrc, []netip.Addr{lan, ula}, true, false, []string{"A 192.168.1.23", "AAAA fd12:3456:789a::23"}, 0, 120, true},
		{"case-insensitive", query(0, q("ALICE.Local.", dns.TypeA, in)), mcSrc, []netip.Addr{lan}, true, false, []string{"A 192.168.1.23"}, 0, 120, true},
		{"QU bit asks for unicast", query(0, q(host, dns.TypeA, in|classUnicast)), mcSrc, []netip.Addr{lan}, true, true, []string{"A 192.168.1.23"}, 0, 120, true},
		{"legacy unicast: ID, question, short TTL, no flush", query(4242, q(host, dns.TypeA, in)), legSrc, []netip.Addr{lan}, true, true, []string{"A 192.168.1.23"}, 4242, 10, false},
		{"two questions, one ours", query(0, q("bob.local.", dns.TypeA, in), q(host, dns.TypeA, in)), mcSrc, []netip.Addr{lan}, true, false, []string{"A 192.168.1.23"}, 0, 120, true},
		{"AAAA but only IPv4", query(0, q(host, dns.TypeAAAA, in)), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"other name", query(0, q("bob.local.", dns.TypeA, in)), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"suffix is not the name", query(0, q("xalice.local.", dns.TypeA, in)), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"other type", query(0, q(host, dns.TypeTXT, in)), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"other class", query(0, q(host, dns.TypeA, dns.ClassCHAOS)), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"no addresses (public uplink)", query(0, q(host, dns.TypeA, in)), mcSrc, nil, false, false, nil, 0, 0, false},
		{"a response is not answered", response(), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"known answer suppressed", known(), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"known answer past half its TTL", knownStale(), mcSrc, []netip.Addr{lan}, true, false, []string{"A 192.168.1.23"}, 0, 120, true},
		{"garbage", []byte("hello, this is not DNS at all"), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"short", []byte{0, 0, 0}, mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
		{"no question", query(0), mcSrc, []netip.Addr{lan}, false, false, nil, 0, 0, false},
	}
	for _, tt := range tests {
		r, ok := Answer(tt.msg, tt.src, host, tt.addrs)
		if ok != tt.ok {
			t.Errorf("%s: Answer() ok = %v, want %v", tt.name, ok, tt.ok)
			continue
		}
		if !ok {
			continue
		}
		if r.Unicast != tt.unicast {
			t.Errorf("%s: unicast = %v, want %v", tt.name, r.Unicast, tt.unicast)
		}
		var m dns.Msg
		if err := m.Unpack(r.Msg); err != nil {
			t.Fatalf("%s: reply does not parse: %v", tt.name, err)
		}
		if !m.Response || !m.Authoritative || m.Id != tt.id {
			t.Errorf("%s: reply header %+v, want an authoritative response with ID %d", tt.name, m.MsgHdr, tt.id)
		}
		if tt.id != 0 && (len(m.Question) != 1 || m.Question[0].Name != host) {
			t.Errorf("%s: legacy reply question %v, want the query's", tt.name, m.Question)
		}
		if tt.id == 0 && len(m.Question) != 0 {
			t.Errorf("%s: multicast reply carries questions %v", tt.name, m.Question)
		}
		var got []string
		for _, rr := range m.Answer {
			switch a := rr.(type) {
			case *dns.A:
				got = append(got, "A "+a.A.String())
			case *dns.AAAA:
				got = append(got, "AAAA "+a.AAAA.String())
			}
			h := rr.Header()
			if h.Ttl != tt.ttl || (h.Class&classCacheFlush != 0) != tt.flush || h.Class&^classCacheFlush != dns.ClassINET {
				t.Errorf("%s: %v: TTL %d class %#x, want TTL %d flush %v", tt.name, rr, h.Ttl, h.Class, tt.ttl, tt.flush)
			}
		}
		if len(got) != len(tt.wantA) {
			t.Errorf("%s: answers %v, want %v", tt.name, got, tt.wantA)
			continue
		}
		for i := range got {
			if got[i] != tt.wantA[i] {
				t.Errorf("%s: answers %v, want %v", tt.name, got, tt.wantA)
			}
		}
	}
}

func TestAnnouncement(t *testing.T) {
	for _, ttl := range []uint32{120, 0} {
		b, err := Announcement(host, []netip.Addr{lan, ula}, 1e9*time.Duration(ttl))
		if err != nil {
			t.Fatal(err)
		}
		var m dns.Msg
		if err := m.Unpack(b); err != nil || !m.Response || len(m.Answer) != 2 || len(m.Question) != 0 {
			t.Fatalf("announcement = %v, %v", m, err)
		}
		for _, rr := range m.Answer {
			if rr.Header().Ttl != ttl || rr.Header().Class != dns.ClassINET|classCacheFlush {
				t.Errorf("announcement record %v, want TTL %d with cache flush", rr, ttl)
			}
		}
	}
}

func TestLabel(t *testing.T) {
	tests := []struct{ in, want string }{
		{"alice", "alice"},
		{"Alice's Pi", "alice-s-pi"},
		{"  --Bob  ", "bob"},
		{"<script>", "script"},
		{"", "peerline"},
		{"ÄÖÜ", "peerline"},
		{"a.b.local", "a-b-local"},
		{"x" + string(make([]byte, 100)), "x"},
		{"abcdefghij0123456789abcdefghij0123456789abcdefghij0123456789abcdefgh", "abcdefghij0123456789abcdefghij0123456789abcdefghij0123456789abc"},
	}
	for _, tt := range tests {
		if got := Label(tt.in); got != tt.want {
			t.Errorf("Label(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := Label(tt.in); len(got) > 63 {
			t.Errorf("Label(%q) is %d bytes", tt.in, len(got))
		}
	}
}

func TestPrivate(t *testing.T) {
	tests := []struct {
		a    string
		want bool
	}{
		{"192.168.1.2", true}, {"10.1.2.3", true}, {"172.16.0.1", true}, {"172.32.0.1", false},
		{"10.254.1.1", false}, {"10.255.1.1", false}, {"203.0.113.5", false}, {"fd00::1", true},
		{"2001:db8::1", false}, {"fe80::1", false}, {"127.0.0.1", false}, {"::ffff:192.168.1.2", true},
	}
	for _, tt := range tests {
		if got := Private(netip.MustParseAddr(tt.a)); got != tt.want {
			t.Errorf("Private(%s) = %v, want %v", tt.a, got, tt.want)
		}
	}
}
