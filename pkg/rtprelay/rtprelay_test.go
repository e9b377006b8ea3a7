package rtprelay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

func udp(t testing.TB) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addr(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

func send(t testing.TB, from *net.UDPConn, to netip.AddrPort, msg string) {
	t.Helper()
	if _, err := from.WriteToUDPAddrPort([]byte(msg), to); err != nil {
		t.Fatal(err)
	}
}

func recv(t testing.TB, c *net.UDPConn) (string, netip.AddrPort) {
	t.Helper()
	buf := make([]byte, MaxPacket)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, src, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("waiting for a relayed packet: %v", err)
	}
	return string(buf[:n]), src
}

func noPacket(t testing.TB, c *net.UDPConn) {
	t.Helper()
	buf := make([]byte, MaxPacket)
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, src, err := c.ReadFromUDPAddrPort(buf); err == nil {
		t.Fatalf("got %q from %v, want nothing", buf[:n], src)
	}
}

func start(t *testing.T, r *Relay) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var err error
	done := false
	stop = func() error {
		if !done {
			cancel()
			err, done = <-errc, true
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// A phone and a provider behind a NAT: the provider's SDP names one
// address, its packets come from another (the NAT's mapping). The relay
// sends to the SDP address until the provider's first packet, then only to
// where that came from, and drops a third party's packets.
func TestRelayLatches(t *testing.T) {
	phone, provider, providerSDP, stranger := udp(t), udp(t), udp(t), udp(t)
	r := New(udp(t), udp(t), time.Minute, nil)
	r.SetDest(Local, addr(phone))
	r.SetDest(Remote, addr(providerSDP))
	stop := start(t, r)

	send(t, phone, r.Addr(Local), "p1")
	if got, src := recv(t, providerSDP); got != "p1" || src != r.Addr(Remote) {
		t.Fatalf("before latching the provider's SDP address got %q from %v, want p1 from %v", got, src, r.Addr(Remote))
	}
	send(t, provider, r.Addr(Remote), "r1")
	if got, _ := recv(t, phone); got != "r1" {
		t.Fatalf("phone got %q, want r1", got)
	}
	send(t, phone, r.Addr(Local), "p2")
	if got, _ := recv(t, provider); got != "p2" {
		t.Fatalf("after latching the provider got %q, want p2", got)
	}
	noPacket(t, providerSDP)

	send(t, stranger, r.Addr(Remote), "evil")
	noPacket(t, phone)
	// A new SDP cannot move a latched side.
	r.SetDest(Remote, addr(stranger))
	send(t, phone, r.Addr(Local), "p3")
	if got, _ := recv(t, provider); got != "p3" {
		t.Fatalf("provider got %q, want p3", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	st := r.Stats()
	if st.Forwarded != [2]uint64{3, 1} || st.Foreign != [2]uint64{0, 1} ||
		st.Latched[Local] != addr(phone) || st.Latched[Remote] != addr(provider) {
		t.Errorf("Stats = %+v, want 3 and 1 forwarded, 1 foreign on remote, latched to phone and provider", st)
	}
}

func TestRelayNoDest(t *testing.T) {
	phone := udp(t)
	r := New(udp(t), udp(t), time.Minute, nil)
	stop := start(t, r)
	send(t, phone, r.Addr(Local), "p1")
	deadline := time.Now().Add(2 * time.Second)
	for r.Stats().NoDest[Local] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("Stats = %+v, want 1 packet without destination", r.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	stop()
}

func TestRelayIdle(t *testing.T) {
	r := New(udp(t), udp(t), 100*time.Millisecond, nil)
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	select {
	case err := <-done:
		if !errors.Is(err, ErrIdle) {
			t.Fatalf("Run = %v, want ErrIdle", err)
		}
	case <-time.After(5 * time.Second):
		r.Close()
		t.Fatal("an idle relay is still running after 5 s")
	}
	// Its sockets are closed.
	if _, err := r.legs[Local].conn.WriteToUDPAddrPort([]byte("x"), r.Addr(Remote)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("write on an ended relay's socket = %v, want net.ErrClosed", err)
	}
}

func TestPoolBounded(t *testing.T) {
	p := &Pool{
		Listen:    net.ListenPacket,
		LocalAddr: netip.MustParseAddr("127.0.0.1"), RemoteAddr: netip.MustParseAddr("127.0.0.1"),
		PortLo: 41000, PortHi: 41999, Max: 2,
	}
	a, err := p.Open()
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Open()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Open(); !errors.Is(err, ErrFull) {
		t.Fatalf("third Open = %v, want ErrFull", err)
	}
	for _, r := range []*Relay{a, b} {
		for _, s := range []Side{Local, Remote} {
			if port := r.Addr(s).Port(); port%2 != 0 || port < 41000 || port > 41999 {
				t.Errorf("%s port %d: want an even port in 41000-41999", s, port)
			}
		}
	}
	a.Close()
	a.Close()
	if p.InUse() != 1 {
		t.Errorf("InUse = %d after one Close (twice), want 1", p.InUse())
	}
	c, err := p.Open()
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	c.Close()
	b.Close()
	if p.InUse() != 0 {
		t.Errorf("InUse = %d, want 0", p.InUse())
	}
}

// setupPair returns a running relay with a phone and a provider latched.
func setupPair(t testing.TB) (r *Relay, phone, provider *net.UDPConn, stop func()) {
	phone, provider = udp(t), udp(t)
	r = New(udp(t), udp(t), time.Minute, nil)
	r.SetDest(Local, addr(phone))
	r.SetDest(Remote, addr(provider))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	return r, phone, provider, func() { cancel(); <-done }
}

// Forwarding a packet, and everything around it, allocates nothing.
func TestRelayAllocs(t *testing.T) {
	r, phone, provider, stop := setupPair(t)
	defer stop()
	pkt := make([]byte, 172)
	buf := make([]byte, MaxPacket)
	dst := r.Addr(Local)
	// Latch both sides first (one allocation each).
	send(t, phone, dst, "x")
	recv(t, provider)
	send(t, provider, r.Addr(Remote), "y")
	recv(t, phone)
	allocs := testing.AllocsPerRun(200, func() {
		phone.WriteToUDPAddrPort(pkt, dst)
		provider.ReadFromUDPAddrPort(buf)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per relayed packet, want 0", allocs)
	}
}

// BenchmarkRelay measures one phone packet relayed to the provider and
// read there (172 bytes: G.711 20 ms with its RTP header).
func BenchmarkRelay(b *testing.B) {
	r, phone, provider, stop := setupPair(b)
	defer stop()
	pkt := make([]byte, 172)
	buf := make([]byte, MaxPacket)
	dst := r.Addr(Local)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		if _, err := phone.WriteToUDPAddrPort(pkt, dst); err != nil {
			b.Fatal(err)
		}
		if _, _, err := provider.ReadFromUDPAddrPort(buf); err != nil {
			b.Fatal(err)
		}
	}
}
