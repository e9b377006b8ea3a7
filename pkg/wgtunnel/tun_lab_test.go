//go:build linux && lab

package wgtunnel

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/peerline/peerline/pkg/labtest"
)

// TestPlainTUN: the TUN tunnels use (createTUN) has the asked MTU, hands
// the kernel's packets over one at a time, delivers packets written to it
// (the kernel answers a ping written into it), allocates nothing per
// packet, and its link goes away with Close.
func TestPlainTUN(t *testing.T) {
	labtest.RequireRoot(t)
	l := labtest.New(t)
	h, err := l.Host("tun")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var td tun.Device
	if err := h.Do(func() error {
		var err error
		td, err = createTUN("pltun0", 1380)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer td.Close()
	if out, err := h.Run(ctx, "ip", "link", "show", "pltun0"); err != nil || !strings.Contains(out, "mtu 1380") {
		t.Fatalf("ip link show pltun0 = %q, %v; want mtu 1380", out, err)
	}
	if td.BatchSize() != 1 {
		t.Errorf("BatchSize() = %d, want 1", td.BatchSize())
	}
	for _, args := range [][]string{{"addr", "add", "192.0.2.1/24", "dev", "pltun0"}, {"link", "set", "pltun0", "up"}} {
		if err := h.IP(args...); err != nil {
			t.Fatal(err)
		}
	}
	// A Read that would wait for a packet that never comes fails the test
	// instead of hanging it.
	if err := td.File().SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	const offset = 16 // as wireguard-go reads: room for its header
	bufs, sizes := [][]byte{make([]byte, offset+2048)}, []int{0}
	read := func(want func(pkt []byte) bool) []byte {
		t.Helper()
		for range 20 {
			n, err := td.Read(bufs, sizes, offset)
			if err != nil || n != 1 {
				t.Fatalf("Read = %d, %v", n, err)
			}
			if pkt := bufs[0][offset : offset+sizes[0]]; want(pkt) {
				return pkt
			}
		}
		t.Fatal("no such packet among the first 20 read")
		return nil
	}
	// The kernel's packets come out of Read: a datagram sent into the
	// TUN's subnet.
	c, err := h.ListenPacket("udp4", "192.0.2.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	peer := netip.MustParseAddr("192.0.2.2")
	if _, err := c.WriteTo([]byte("hello"), netipUDP(peer, 9)); err != nil {
		t.Fatal(err)
	}
	pkt := read(func(p []byte) bool { return len(p) >= 20 && p[9] == 17 })
	if dst := netip.AddrFrom4([4]byte(pkt[16:20])); dst != peer || !strings.HasSuffix(string(pkt), "hello") {
		t.Errorf("read packet to %v ending %q, want the UDP datagram to %v", dst, pkt[len(pkt)-5:], peer)
	}
	// Written packets reach the kernel: it answers a ping.
	ping := echoRequest(netip.MustParseAddr("192.0.2.1"), peer, 1)
	wbuf := append(make([]byte, offset), ping...)
	if n, err := td.Write([][]byte{wbuf}, offset); n != 1 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	read(func(p []byte) bool { return len(p) >= 21 && p[9] == 1 && p[20] == 0 }) // ICMP echo reply
	wbufs := [][]byte{wbuf}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := td.Write(wbufs, offset); err != nil {
			t.Fatal(err)
		}
		if _, err := td.Read(bufs, sizes, offset); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a Write and a Read allocate %v times, want 0", allocs)
	}
	if err := td.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-td.Events(); ok {
		t.Error("Events still open after Close")
	}
	if out, err := h.Run(ctx, "ip", "link", "show", "pltun0"); err == nil {
		t.Errorf("link still there after Close: %s", out)
	}
}

func netipUDP(a netip.Addr, port uint16) *net.UDPAddr {
	return net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, port))
}

// echoRequest is an IPv4 ICMP echo request from src to dst. (tuntest.Ping
// gets the ICMP checksum wrong, and the kernel drops its pings.)
func echoRequest(dst, src netip.Addr, seq uint16) []byte {
	pkt := make([]byte, 28)
	pkt[0] = 0x45
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[8], pkt[9] = 64, 1 // TTL, ICMP
	copy(pkt[12:16], src.AsSlice())
	copy(pkt[16:20], dst.AsSlice())
	binary.BigEndian.PutUint16(pkt[10:], inetChecksum(pkt[:20]))
	pkt[20] = 8                                  // echo request
	binary.BigEndian.PutUint16(pkt[24:], 0x706c) // identifier
	binary.BigEndian.PutUint16(pkt[26:], seq)
	binary.BigEndian.PutUint16(pkt[22:], inetChecksum(pkt[20:]))
	return pkt
}

// inetChecksum is RFC 1071's.
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
