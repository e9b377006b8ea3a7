//go:build linux && lab

package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/sys/unix"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// TestPeerRulesInKernel loads PeerRules into a namespace standing for peer
// 7's, between a "tunnel" host that sends whatever a hostile peer could
// put through its rewriter and a "phones" host that holds every address a
// peer might aim at. Only the peer's own phones (10.7.s.p) may reach our
// configured phone, and only by UDP and ping (SIP to the Pi's side of the
// line reaches the phone too, as a call-back to a registered phone does); the rewriter drops the
// spoofed sources before this, so here the rules are checked alone.
func TestPeerRulesInKernel(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "nft")
	l := labtest.New(t)
	tunnel, peerNS, phones := host(t, l, "tunnel"), host(t, l, "peer"), host(t, l, "phones")
	must(t, l.Veth(tunnel, "eth0", peerNS, "pl7"))
	must(t, l.Veth(peerNS, "veth0", phones, "eth0"))
	must(t, tunnel.Addr("eth0", "192.0.2.1/30"))
	must(t, peerNS.Addr("pl7", "192.0.2.2/30"))
	must(t, peerNS.Addr("veth0", "169.254.7.2/30"))
	must(t, phones.Addr("eth0", "169.254.7.1/30"))
	// Our phone on line 1, and what a peer must not reach: the Pi's line
	// address, another host in the line's plan, the uplink LAN's router.
	for _, a := range []string{"10.0.1.1/32", "10.0.1.2/32", "10.0.1.5/32", "10.0.0.1/32", "10.0.2.1/32"} {
		must(t, phones.Addr("eth0", a))
	}
	must(t, tunnel.Route("10.0.0.0/16", "via", "192.0.2.2"))
	must(t, peerNS.Route("10.0.0.0/16", "via", "169.254.7.1"))
	must(t, peerNS.Route("10.7.0.0/16", "via", "192.0.2.1"))
	must(t, phones.Route("10.0.0.0/8", "via", "169.254.7.2"))
	for _, h := range []*lab.Host{peerNS, phones} {
		for _, k := range []string{"net.ipv4.conf.all.rp_filter", "net.ipv4.conf.default.rp_filter"} {
			must(t, h.Sysctl(k, "0"))
		}
	}
	must(t, peerNS.Sysctl("net.ipv4.ip_forward", "1"))
	loader := Loader{Do: func(_ string, fn func() error) error { return peerNS.Do(fn) }}
	must(t, loader.Load("peer", Peer{Index: 7, Tunnel: "pl7", ToPhones: "veth0", Lines: []int{1}}))

	capture, err := phones.Capture(t.Context(), "eth0", l.Dir()+"/phones.pcap", "ip", "and", "dst", "net", "10.0.0.0/16")
	must(t, err)
	// What comes back out of the namespace towards the peer: the reset
	// that refuses SIP over TCP.
	back, err := tunnel.Capture(t.Context(), "eth0", l.Dir()+"/tunnel.pcap", "tcp")
	must(t, err)
	fd, err := lab.In(tunnel, func() (int, error) {
		return unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	})
	must(t, err)
	defer unix.Close(fd)
	addr := netip.MustParseAddr
	send := func(pkt []byte) {
		t.Helper()
		if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: [4]byte(pkt[16:20])}); err != nil {
			t.Fatal(err)
		}
	}
	peerPhone := addr("10.7.1.1")
	send(udp(peerPhone, addr("10.0.1.1"), 1)) // the control: a call's SIP or RTP
	send(echo(peerPhone, addr("10.0.1.1")))
	send(tcpSYN(peerPhone, addr("10.0.1.1"), 80))   // the phone's web page
	send(tcpSYN(peerPhone, addr("10.0.1.1"), 5060)) // SIP over TCP
	for _, spoof := range []string{"10.0.2.1", "10.0.1.2", "10.9.1.1", "192.0.2.1"} {
		send(udp(addr(spoof), addr("10.0.1.1"), 2))
	}
	for _, dst := range []string{"10.0.1.2", "10.0.1.5", "10.0.0.1", "10.0.2.1"} {
		// udp is SIP's port: the Pi's side of line 1 (10.0.1.2) takes it
		// for the line's phone (a call-back to a registered phone).
		send(udp(peerPhone, addr(dst), 3))
		send(echo(peerPhone, addr(dst)))
	}
	// Any other port of the Pi is not.
	rtp := udp(peerPhone, addr("10.0.1.2"), 4)
	rtp[20], rtp[21], rtp[22], rtp[23] = 0x27, 0x10, 0x27, 0x10 // 10000 > 10000
	send(rtp)
	time.Sleep(500 * time.Millisecond)
	must(t, capture.Stop())
	must(t, back.Stop())
	var resets []string
	for _, p := range tcpSegments(t, back.Path()) {
		if p.RST {
			resets = append(resets, fmt.Sprintf("%v:%d > %v:%d RST", p.src, p.SrcPort, p.dst, p.DstPort))
		}
	}
	// Both SYNs are refused at once, so that a phone set to TCP stops
	// waiting (it would otherwise wait about 40 s).
	if want := []string{"10.0.1.1:80 > 10.7.1.1:40000 RST", "10.0.1.1:5060 > 10.7.1.1:40000 RST"}; !slices.Equal(resets, want) {
		t.Errorf("resets back into the tunnel:\n%s\nwant\n%s", strings.Join(resets, "\n"), strings.Join(want, "\n"))
	}
	got := ipPackets(t, capture.Path())
	if want := []string{"10.7.1.1 > 10.0.1.1 UDP", "10.7.1.1 > 10.0.1.1 ICMPv4", "10.7.1.1 > 10.0.1.1 UDP"}; !slices.Equal(got, want) {
		t.Errorf("what reached the phones' side:\n%s\nwant only\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// The loader's own view: List shows the table, a flush changes it,
	// Delete removes it and List then says so.
	listed, err := loader.List("peer")
	if err != nil || !strings.Contains(listed, "policy drop") {
		t.Fatalf("List = %q, %v, want the ruleset", listed, err)
	}
	if out, err := peerNS.Run(t.Context(), "nft", "flush", "table", "inet", Table); err != nil {
		t.Fatalf("nft flush: %v %s", err, out)
	}
	if again, err := loader.List("peer"); err != nil || again == listed {
		t.Errorf("List after a flush = %v, same as before %v; the daemon could not tell", err, again == listed)
	}
	must(t, loader.Delete("peer"))
	must(t, loader.Delete("peer"))
	if _, err := loader.List("peer"); !errors.Is(err, ErrNoTable) {
		t.Errorf("List after Delete = %v, want ErrNoTable", err)
	}
}

func host(t *testing.T, l *lab.Lab, name string) *lab.Host {
	t.Helper()
	h, err := l.Host(name)
	must(t, err)
	return h
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ipv4(src, dst netip.Addr, proto byte, payload []byte) []byte {
	p := make([]byte, 20, 20+len(payload))
	p[0], p[8], p[9] = 0x45, 64, proto
	binary.BigEndian.PutUint16(p[2:], uint16(20+len(payload)))
	s, d := src.As4(), dst.As4()
	copy(p[12:], s[:])
	copy(p[16:], d[:])
	return append(p, payload...)
}

func udp(src, dst netip.Addr, tag byte) []byte {
	return ipv4(src, dst, unix.IPPROTO_UDP, []byte{0x13, 0xc4, 0x13, 0xc4, 0, 9, 0, 0, tag})
}

func echo(src, dst netip.Addr) []byte {
	m := []byte{8, 0, 0, 0, 0, 7, 0, 1}
	binary.BigEndian.PutUint16(m[2:], ^checksum(m))
	return ipv4(src, dst, unix.IPPROTO_ICMP, m)
}

// tcpSYN is a SYN with a valid checksum: the kernel answers a bad one
// with nothing, not even a reset.
func tcpSYN(src, dst netip.Addr, port uint16) []byte {
	seg := make([]byte, 20)
	binary.BigEndian.PutUint16(seg[0:], 40000)
	binary.BigEndian.PutUint16(seg[2:], port)
	seg[12], seg[13] = 5<<4, 0x02
	binary.BigEndian.PutUint16(seg[14:], 1024)
	s, d := src.As4(), dst.As4()
	pseudo := append(append(append([]byte{}, s[:]...), d[:]...), 0, unix.IPPROTO_TCP, 0, byte(len(seg)))
	binary.BigEndian.PutUint16(seg[16:], ^checksum(append(pseudo, seg...)))
	return ipv4(src, dst, unix.IPPROTO_TCP, seg)
}

type tcpSegment struct {
	src, dst netip.Addr
	*layers.TCP
}

// tcpSegments lists the TCP segments of a pcap file.
func tcpSegments(t *testing.T, path string) []tcpSegment {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	must(t, err)
	var out []tcpSegment
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		must(t, err)
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp, ok2 := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ok && ok2 {
			out = append(out, tcpSegment{netip.AddrFrom4([4]byte(ip.SrcIP.To4())), netip.AddrFrom4([4]byte(ip.DstIP.To4())), tcp})
		}
	}
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return uint16(sum)
}

// ipPackets lists the IPv4 packets of a pcap file as "src > dst proto".
func ipPackets(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	must(t, err)
	var out []string
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return out
		}
		must(t, err)
		p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)
		if ip, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			out = append(out, fmt.Sprintf("%v > %v %v", ip.SrcIP, ip.DstIP, ip.Protocol))
		}
	}
}
