package wgmux

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// node is a test node: a mux on loopback and one WireGuard device per peer,
// each with a channel TUN, so the whole path runs without root.
type node struct {
	key  nodekey.Key
	mux  *Mux
	devs map[nodekey.Key]*device.Device
	tuns map[nodekey.Key]*tuntest.ChannelTUN
	addr netip.Addr // tunnel address of this node
}

func newNode(t *testing.T, addr string) *node {
	t.Helper()
	k, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	m, err := Listen("127.0.0.1:0", k, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.Run(ctx) }()
	n := &node{key: k, mux: m, devs: map[nodekey.Key]*device.Device{}, tuns: map[nodekey.Key]*tuntest.ChannelTUN{},
		addr: netip.MustParseAddr(addr)}
	t.Cleanup(func() {
		for _, d := range n.devs {
			d.Close()
		}
		cancel()
		<-done
	})
	return n
}

func (n *node) udp() netip.AddrPort {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), n.mux.Port())
}

// pair adds a device on n for peer, sending to endpoint ("" for none).
func (n *node) pair(t *testing.T, peer *node, endpoint string) {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), n.mux.Bind(peer.key.Public()), device.NewLogger(device.LogLevelSilent, ""))
	cfg := fmt.Sprintf("private_key=%s\npublic_key=%s\nallowed_ip=%s/32\n", n.key.Hex(), peer.key.Public().Hex(), peer.addr)
	if endpoint != "" {
		cfg += "endpoint=" + endpoint + "\n"
	}
	if err := dev.IpcSet(cfg); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	n.devs[peer.key.Public()] = dev
	n.tuns[peer.key.Public()] = ct
}

// ping sends an ICMP packet from a into the tunnel to b and waits for it
// to come out of b's device for a.
func ping(t *testing.T, a, b *node) {
	t.Helper()
	pkt := tuntest.Ping(b.addr, a.addr)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case a.tuns[b.key.Public()].Outbound <- pkt:
		case <-deadline:
			t.Fatalf("%s → %s: packet did not enter the tunnel", a.addr, b.addr)
		}
		select {
		case got := <-b.tuns[a.key.Public()].Inbound:
			if !bytes.Equal(got, pkt) {
				t.Fatalf("%s → %s: got a different packet", a.addr, b.addr)
			}
			return
		case <-time.After(300 * time.Millisecond):
			// The first packets wait for the handshake; send again.
		case <-deadline:
			t.Fatalf("%s → %s: packet did not arrive", a.addr, b.addr)
		}
	}
}

func endpointOf(t *testing.T, d *device.Device) string {
	t.Helper()
	s, err := d.IpcGet()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "endpoint="); ok {
			return v
		}
	}
	return ""
}

// TestDirectSeveralPeers: one node talks to two peers over one socket;
// each peer's packets reach only its own device, in both directions, and a
// peer with no configured endpoint is found by its initiation.
func TestDirectSeveralPeers(t *testing.T) {
	a, b, c := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2"), newNode(t, "10.9.0.3")
	a.pair(t, b, b.udp().String())
	a.pair(t, c, c.udp().String())
	b.pair(t, a, "") // learns a's endpoint from a's initiation
	c.pair(t, a, a.udp().String())
	for range 3 {
		ping(t, a, b)
		ping(t, b, a)
		ping(t, c, a)
		ping(t, a, c)
	}
	if got := endpointOf(t, b.devs[a.key.Public()]); got != a.udp().String() {
		t.Errorf("b's endpoint for a = %q, want %q", got, a.udp())
	}
	if s := a.mux.Stats(); s.NoDevice.Load() != 0 || s.QueueFull.Load() != 0 {
		t.Errorf("a dropped packets: no device %d, queue full %d", s.NoDevice.Load(), s.QueueFull.Load())
	}
}

// TestInitiationSender checks the static key read from a real initiation,
// and that one for another node's key is not read.
func TestInitiationSender(t *testing.T) {
	a, b, stranger := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2"), newNode(t, "10.9.0.3")
	// Capture a's initiation on a plain socket instead of b's mux.
	sink, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	a.pair(t, b, sink.LocalAddr().String())
	go func() { a.tuns[b.key.Public()].Outbound <- tuntest.Ping(b.addr, a.addr) }()
	sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := sink.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg := buf[:n]
	if len(msg) != initiationLen || msg[0] != msgInitiation {
		t.Fatalf("first datagram is %d bytes, type %d; want an initiation", len(msg), msg[0])
	}
	if k, ok := b.mux.initRd.sender(msg); !ok || k != a.key.Public() {
		t.Fatalf("b read sender %v %v, want a", k, ok)
	}
	if _, ok := stranger.mux.initRd.sender(msg); ok {
		t.Fatal("a node the initiation was not for read its sender")
	}
	for i := range msg {
		bad := append([]byte(nil), msg...)
		bad[i] ^= 1
		if i >= initiationLen-16 {
			continue // mac2 is not checked here; WireGuard checks it under load
		}
		if k, ok := b.mux.initRd.sender(bad); ok {
			t.Fatalf("changing byte %d still gave sender %v", i, k)
		}
	}
}

// relayServer forwards relay datagrams between two registered addresses,
// as rendezvousd does for one session.
func relayServer(t *testing.T, session uint64, x, y netip.AddrPort) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			id, _, err := rendezvous.ParseRelay(buf[:n])
			if err != nil || id != session {
				continue
			}
			to := x
			if from == x {
				to = y
			}
			c.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	return c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// TestRelayThenDirect: both sides start relayed; then one side is told the
// direct address and the other roams to it by itself, with no packet lost
// to the switch.
func TestRelayThenDirect(t *testing.T) {
	a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
	const session = 0x1234abcd
	srv := relayServer(t, session, a.udp(), b.udp())
	a.mux.AddRelay(b.key.Public(), session, srv)
	b.mux.AddRelay(a.key.Public(), session, srv)
	a.pair(t, b, RelayEndpoint(session, srv))
	b.pair(t, a, RelayEndpoint(session, srv))
	ping(t, a, b)
	ping(t, b, a)
	if got := endpointOf(t, b.devs[a.key.Public()]); got != RelayEndpoint(session, srv) {
		t.Fatalf("b's endpoint = %q, want the relay", got)
	}
	if err := a.devs[b.key.Public()].IpcSet(fmt.Sprintf("public_key=%s\nendpoint=%s\n", b.key.Public().Hex(), b.udp())); err != nil {
		t.Fatal(err)
	}
	ping(t, a, b)
	if got := endpointOf(t, b.devs[a.key.Public()]); got != a.udp().String() {
		t.Errorf("b did not roam to direct: endpoint %q", got)
	}
	ping(t, b, a)
}

func TestEndpointStrings(t *testing.T) {
	srv := netip.MustParseAddrPort("198.51.100.1:3478")
	s := RelayEndpoint(42, srv)
	m := New(mustListen(t), nodekey.Key{}, slog.New(slog.DiscardHandler))
	defer m.Close()
	b := m.Bind(nodekey.Key{1})
	if _, err := b.ParseEndpoint(s); err == nil {
		t.Fatal("a relay endpoint without AddRelay parsed")
	}
	m.AddRelay(nodekey.Key{1}, 42, srv)
	ep, err := b.ParseEndpoint(s)
	if err != nil || ep.DstToString() != s {
		t.Fatalf("ParseEndpoint(%q) = %v, %v", s, ep, err)
	}
	// A session id already given to another peer is not taken over.
	m.AddRelay(nodekey.Key{2}, 42, srv)
	if _, err := m.Bind(nodekey.Key{2}).ParseEndpoint(s); err == nil {
		t.Fatal("a second peer took over a relay session")
	}
}

func mustListen(t *testing.T) *net.UDPConn {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestPendingEndpoint: a device whose peer's path is not known yet holds
// its handshake; once the path is set, the held initiation goes out at once
// instead of WireGuard's 5 s retry.
func TestPendingEndpoint(t *testing.T) {
	a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
	a.pair(t, b, PendingEndpoint)
	b.pair(t, a, "")
	pkt := tuntest.Ping(b.addr, a.addr)
	a.tuns[b.key.Public()].Outbound <- pkt
	bind := a.mux.Bind(b.key.Public())
	deadline := time.Now().Add(2 * time.Second)
	for bind.held.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("no initiation was held for the pending endpoint")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := a.devs[b.key.Public()].IpcSet(fmt.Sprintf("public_key=%s\nendpoint=%s\n", b.key.Public().Hex(), b.udp())); err != nil {
		t.Fatal(err)
	}
	sent, err := bind.ResendHeld(b.udp().String(), 4*time.Second)
	if err != nil || !sent {
		t.Fatalf("ResendHeld = %v, %v", sent, err)
	}
	// The handshake completes on the held initiation: the packet staged
	// before the path was known arrives, well before a 5 s retry would.
	select {
	case got := <-b.tuns[a.key.Public()].Inbound:
		if !bytes.Equal(got, pkt) {
			t.Fatal("got a different packet")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the packet staged while the path was pending did not arrive")
	}
	if sent, _ := bind.ResendHeld(b.udp().String(), 4*time.Second); sent {
		t.Error("an initiation was resent twice")
	}
}

// TestCopyInitiation: a's first handshake goes to a relay that loses it;
// the copy sent straight to b completes the handshake (b answers where the
// copy came from), long before WireGuard's 5 s retry.
func TestCopyInitiation(t *testing.T) {
	a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
	hole := mustListen(t) // a relay that forwards nothing
	t.Cleanup(func() { hole.Close() })
	srv := hole.LocalAddr().(*net.UDPAddr).AddrPort()
	const session = 0x77
	a.mux.AddRelay(b.key.Public(), session, srv)
	a.pair(t, b, RelayEndpoint(session, srv))
	b.pair(t, a, "")
	bind := a.mux.Bind(b.key.Public())
	if n := bind.CopyInitiation([]netip.AddrPort{b.udp()}, 4*time.Second); n != 0 {
		t.Fatalf("copied %d initiations before any was sent", n)
	}
	pkt := tuntest.Ping(b.addr, a.addr)
	a.tuns[b.key.Public()].Outbound <- pkt
	deadline := time.Now().Add(2 * time.Second)
	for {
		if n := bind.CopyInitiation([]netip.AddrPort{b.udp(), b.udp()}, 4*time.Second); n > 0 {
			if n != 1 {
				t.Fatalf("CopyInitiation sent %d copies to one address", n)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no initiation went to the relay")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case got := <-b.tuns[a.key.Public()].Inbound:
		if !bytes.Equal(got, pkt) {
			t.Fatal("got a different packet")
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the handshake did not complete on the direct copy")
	}
	if got := endpointOf(t, a.devs[b.key.Public()]); got != b.udp().String() {
		t.Errorf("a's endpoint = %q, want b's direct address (roamed to the response)", got)
	}
	if n := bind.CopyInitiation([]netip.AddrPort{b.udp()}, 4*time.Second); n != 0 {
		t.Errorf("the same initiation was copied to b again (%d)", n)
	}
}
