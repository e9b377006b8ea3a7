package mdns

import (
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/peerline/peerline/pkg/numplan"
)

// Wire constants (RFC 6762).
const (
	// Port and group of multicast DNS.
	Port = 5353
	// hostTTL is the TTL of address records: RFC 6762 §10 recommends
	// 120 s for records with a host name.
	hostTTL = 120
	// legacyTTL caps the TTL in answers to legacy unicast queries (§6.7).
	legacyTTL = 10
	// classCacheFlush is the top bit of the rrclass of a unique record in a
	// multicast response (§10.2); classUnicast the same bit in a question,
	// asking for a unicast answer (§5.4).
	classCacheFlush = 1 << 15
	classUnicast    = 1 << 15
	// maxMessage is the largest datagram read; mDNS messages over the
	// Ethernet MTU are rare and never needed for our one name.
	maxMessage = 9000
)

// MulticastAddr is the IPv4 mDNS group and port.
var MulticastAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 251}), Port)

// Reply is what to send for a query: the packed message, and whether it
// goes to the querier alone (unicast) rather than to the group.
type Reply struct {
	Msg     []byte
	Unicast bool
}

// Answer decides the reply to the datagram b from src, for the host name
// host (fully qualified, "alice.local.") whose addresses are addrs. It is
// pure, and holds for hostile input: anything that is not a well-formed
// standard query asking for host's A, AAAA or ANY record in class IN gets
// no reply (ok false).
//
// Rules (RFC 6762): responses are never answered (§6); a query from a port
// other than 5353 is a legacy unicast query (§6.7) and gets a unicast
// reply carrying its ID and question, TTL at most 10 s, no cache-flush
// bit; a query with the QU bit gets a unicast reply (§5.4); otherwise the
// reply is multicast. Records the query lists as known answers with at
// least half their TTL left are not repeated (§7.1).
func Answer(b []byte, src netip.AddrPort, host string, addrs []netip.Addr) (Reply, bool) {
	if len(b) < 12 || len(b) > maxMessage || len(addrs) == 0 {
		return Reply{}, false
	}
	var q dns.Msg
	if err := q.Unpack(b); err != nil {
		return Reply{}, false
	}
	if q.Response || q.Opcode != dns.OpcodeQuery || q.Rcode != 0 || len(q.Question) == 0 {
		return Reply{}, false
	}
	legacy := src.Port() != Port
	unicast := legacy
	var want4, want6 bool
	var question []dns.Question
	for _, qq := range q.Question {
		if !strings.EqualFold(qq.Name, host) || qq.Qclass&^classUnicast != dns.ClassINET {
			continue
		}
		switch qq.Qtype {
		case dns.TypeA:
			want4 = true
		case dns.TypeAAAA:
			want6 = true
		case dns.TypeANY:
			want4, want6 = true, true
		default:
			continue
		}
		if qq.Qclass&classUnicast != 0 {
			unicast = true
		}
		if nq := (dns.Question{Name: qq.Name, Qtype: qq.Qtype, Qclass: dns.ClassINET}); !slices.Contains(question, nq) && len(question) < 3 {
			question = append(question, nq)
		}
	}
	if !want4 && !want6 {
		return Reply{}, false
	}
	ttl := uint32(hostTTL)
	if legacy {
		ttl = legacyTTL
	}
	var answers []dns.RR
	for _, a := range addrs {
		var rr dns.RR
		switch {
		case a.Is4() && want4:
			rr = &dns.A{Hdr: header(host, dns.TypeA, ttl, legacy), A: a.AsSlice()}
		case a.Is6() && !a.Is4In6() && want6:
			rr = &dns.AAAA{Hdr: header(host, dns.TypeAAAA, ttl, legacy), AAAA: a.AsSlice()}
		default:
			continue
		}
		if !known(q.Answer, rr) {
			answers = append(answers, rr)
		}
	}
	if len(answers) == 0 {
		return Reply{}, false
	}
	r := &dns.Msg{Answer: answers}
	r.Response, r.Authoritative = true, true
	if legacy {
		// A legacy resolver matches the reply to its query by ID and
		// question.
		r.Id, r.Question = q.Id, question
	}
	out, err := r.Pack()
	if err != nil {
		return Reply{}, false
	}
	return Reply{Msg: out, Unicast: unicast}, true
}

// Announcement is the unsolicited response announcing host's addrs (RFC
// 6762 §8.3), or with ttl 0 the goodbye that withdraws them (§10.1).
func Announcement(host string, addrs []netip.Addr, ttl time.Duration) ([]byte, error) {
	r := &dns.Msg{}
	r.Response, r.Authoritative = true, true
	secs := uint32(ttl / time.Second)
	for _, a := range addrs {
		if a.Is4() {
			r.Answer = append(r.Answer, &dns.A{Hdr: header(host, dns.TypeA, secs, false), A: a.AsSlice()})
		} else if a.Is6() {
			r.Answer = append(r.Answer, &dns.AAAA{Hdr: header(host, dns.TypeAAAA, secs, false), AAAA: a.AsSlice()})
		}
	}
	return r.Pack()
}

func header(host string, t uint16, ttl uint32, legacy bool) dns.RR_Header {
	class := uint16(dns.ClassINET)
	if !legacy {
		// The name is ours alone: caches drop other addresses for it.
		class |= classCacheFlush
	}
	return dns.RR_Header{Name: host, Rrtype: t, Class: class, Ttl: ttl}
}

// known reports whether the querier already holds rr with at least half
// its TTL left (known-answer suppression).
func known(known []dns.RR, rr dns.RR) bool {
	for _, k := range known {
		h := k.Header()
		if h.Rrtype != rr.Header().Rrtype || !strings.EqualFold(h.Name, rr.Header().Name) || h.Ttl < rr.Header().Ttl/2 {
			continue
		}
		switch k := k.(type) {
		case *dns.A:
			if k.A.Equal(rr.(*dns.A).A) {
				return true
			}
		case *dns.AAAA:
			if k.AAAA.Equal(rr.(*dns.AAAA).AAAA) {
				return true
			}
		}
	}
	return false
}

// Label turns a node name into the host label it answers for: lower case,
// letters, digits and hyphens, at most 63 bytes; "peerline" when nothing
// is left.
func Label(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			b.WriteRune(r)
			dash = false
		default:
			if !dash && b.Len() > 0 {
				b.WriteByte('-')
				dash = true
			}
		}
		if b.Len() >= 63 {
			break
		}
	}
	s := strings.Trim(b.String(), "-")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-")
	}
	if s == "" {
		return "peerline"
	}
	return s
}

// Private reports whether a is an address the responder may give out: a
// private IPv4 address (RFC 1918) or an IPv6 unique local one (RFC 4193),
// never the tunnels' wire ranges 10.254/16 and 10.255/16.
func Private(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range numplan.WirePrefixes {
		if p.Contains(a) {
			return false
		}
	}
	return a.IsPrivate()
}
