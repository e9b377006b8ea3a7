//go:build linux && lab

package mdns

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// The Pi answers "alice.local" with its address on the home LAN, to a
// laptop there asking as a legacy resolver (dig-style, from a random port)
// or as a real mDNS querier (port 5353, answer to the group); it answers
// nothing on its public uplink (wan0, the other Pi's only link) and nothing
// on a tunnel's link (pl-7), whatever is asked.
func TestResolveOnLAN(t *testing.T) {
	l := labtest.New(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	host := func(name string) *lab.Host {
		h, err := l.Host(name)
		must(err)
		return h
	}
	bridge := func(name string) *lab.Bridge {
		b, err := l.Bridge(name)
		must(err)
		return b
	}
	attach := func(b *lab.Bridge, h *lab.Host, ifname, cidr string) {
		_, err := b.Attach(h, ifname, cidr)
		must(err)
	}
	pi, laptop, peer := host("pi"), host("laptop"), host("peer")
	pub, stranger := host("pubpi"), host("stranger")
	home, tunnel, inet := bridge("home"), bridge("tunnel"), bridge("inet")
	attach(home, pi, "wlan0", "192.168.50.2/24")
	attach(home, laptop, "eth0", "192.168.50.9/24")
	attach(tunnel, pi, "pl-7", "192.168.77.1/24")
	attach(tunnel, peer, "eth0", "192.168.77.2/24")
	attach(inet, pub, "wan0", "203.0.113.2/24")
	attach(inet, stranger, "eth0", "203.0.113.9/24")

	serve := func(h *lab.Host, name string) {
		r, err := New(Options{
			Name:     func() string { return name },
			Skip:     func(ifname string) bool { return strings.HasPrefix(ifname, "pl") },
			Interval: 200 * time.Millisecond,
			Interfaces: func() ([]Interface, error) {
				return lab.In(h, func() ([]Interface, error) { return listInterfaces(nil) })
			},
			listen: func(ifname string) (conn, error) {
				return lab.In(h, func() (conn, error) { return listen(ifname) })
			},
			Log: labtest.Logger(t),
		})
		must(err)
		labtest.Serve(t, r.Run)
	}
	serve(pi, "Alice")
	serve(pub, "pubpi")
	time.Sleep(500 * time.Millisecond)

	// A legacy query, as `dig -p 5353 @224.0.0.251 alice.local` sends.
	legacy := func(h *lab.Host, ifname, name string) []netip.Addr {
		t.Helper()
		pc, err := lab.In(h, func() (*net.UDPConn, error) {
			return net.ListenUDP("udp4", &net.UDPAddr{})
		})
		must(err)
		defer pc.Close()
		ifi, err := lab.In(h, func() (*net.Interface, error) { return net.InterfaceByName(ifname) })
		must(err)
		must(ipv4.NewPacketConn(pc).SetMulticastInterface(ifi))
		return ask(t, pc, name, dns.ClassINET, 0x1234)
	}
	if got := legacy(laptop, "eth0", "alice.local."); len(got) != 1 || got[0] != netip.MustParseAddr("192.168.50.2") {
		t.Errorf("laptop resolving alice.local (legacy) = %v, want [192.168.50.2]", got)
	}
	if got := legacy(laptop, "eth0", "bob.local."); len(got) != 0 {
		t.Errorf("laptop resolving bob.local = %v, want nothing", got)
	}
	if got := legacy(peer, "eth0", "alice.local."); len(got) != 0 {
		t.Errorf("through the tunnel's link alice.local = %v, want nothing", got)
	}
	if got := legacy(stranger, "eth0", "pubpi.local."); len(got) != 0 {
		t.Errorf("on the public uplink pubpi.local = %v, want nothing", got)
	}

	// A real mDNS querier: from port 5353, in the group, reading the
	// multicast answer.
	pc, err := lab.In(laptop, func() (conn, error) { return listen("eth0") })
	must(err)
	defer pc.Close()
	mc := pc.(*udpConn).c
	if got := ask(t, mc, "ALICE.local.", dns.ClassINET, 0); len(got) != 1 || got[0] != netip.MustParseAddr("192.168.50.2") {
		t.Errorf("laptop resolving ALICE.local (mDNS) = %v, want [192.168.50.2]", got)
	}
}

// ask sends a query for name's A record to the group from pc and returns
// the addresses answered within 2 s (from any responder).
func ask(t *testing.T, pc *net.UDPConn, name string, class uint16, id uint16) []netip.Addr {
	t.Helper()
	m := &dns.Msg{Question: []dns.Question{{Name: name, Qtype: dns.TypeA, Qclass: class}}}
	m.Id = id
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteToUDPAddrPort(b, MulticastAddr); err != nil {
		t.Fatalf("sending the query: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	pc.SetReadDeadline(time.Now().Add(2 * time.Second))
	var out []netip.Addr
	buf := make([]byte, 9000)
	for ctx.Err() == nil {
		n, _, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		var r dns.Msg
		if r.Unpack(buf[:n]) != nil || !r.Response {
			continue
		}
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok && strings.EqualFold(a.Hdr.Name, name) {
				addr, _ := netip.AddrFromSlice(a.A.To4())
				out = append(out, addr)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
	return out
}
