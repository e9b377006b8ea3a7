package rvflood_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
	"github.com/peerline/peerline/pkg/rvserver"
	"github.com/peerline/peerline/pkg/rvserver/rvflood"
)

// TestFloodLoopback floods an in-process server on loopback (Linux routes
// all of 127/8 to lo, so the flood comes from three /24s of its own) while
// a probe pair on 127.0.0.1 registers, is introduced and relays. No root:
// only loopback sockets.
func TestFloodLoopback(t *testing.T) {
	s, err := rvserver.New(rvserver.Config{StateDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UDPConn
	srv := rvclient.Server{Key: s.PublicKey()}
	for i := range conns {
		if conns[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		srv.Addrs[i] = conns[i].LocalAddr().(*net.UDPAddr).AddrPort()
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, conns) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()

	listen := func(ip string) net.PacketConn {
		t.Helper()
		pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(ip), 0)))
		if err != nil {
			t.Skipf("cannot bind %s on loopback: %v", ip, err)
		}
		t.Cleanup(func() { pc.Close() })
		return pc
	}
	probeCtx, stopProbe := context.WithCancel(ctx)
	p, errc, err := rvflood.NewProbe(probeCtx, listen("127.0.0.1"), listen("127.0.0.1"), srv, nil)
	if err != nil {
		t.Fatal(err)
	}
	p.Fetch = func(ctx context.Context, id [rendezvous.InviteIDLen]byte) ([]byte, error) {
		return rvclient.GetInvite(ctx, srv.Addrs[0], id, nil)
	}
	var floodConns []net.PacketConn
	for _, ip := range []string{"127.0.1.1", "127.0.2.1", "127.0.3.1"} {
		floodConns = append(floodConns, listen(ip))
	}
	results := make(chan rvflood.ProbeResult, 1)
	go func() { results <- p.Run(probeCtx, 300*time.Millisecond, 5*time.Second) }()
	const maxPackets = 20000
	fr, err := rvflood.Run(ctx, rvflood.Options{
		Server: srv.Addrs[0], ServerKey: srv.Key, Conns: floodConns,
		Keys: 256, Rate: 8000, MaxPackets: maxPackets, Duration: 3 * time.Second,
	})
	stopProbe()
	pr := <-results
	for range 2 {
		if err := <-errc; err != nil {
			t.Errorf("probe client: %v", err)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	t.Logf("flood: %+v", fr)
	t.Logf("server: %+v", st)
	if fr.Sent == 0 || fr.Sent > maxPackets || fr.Cookies == 0 || fr.Replies[rendezvous.TypeRegisterReply.String()] == 0 {
		t.Errorf("flood sent %d (bound %d), got %d cookies and replies %v; want it to have reached the server", fr.Sent, maxPackets, fr.Cookies, fr.Replies)
	}
	tries, ok, _ := pr.Totals()
	for kind, op := range pr.Ops {
		if op.Tries == 0 || op.OK != op.Tries {
			t.Errorf("probe %s: %d of %d succeeded during the flood (%q)", kind, op.OK, op.Tries, op.Errors)
		}
	}
	if tries == 0 || ok != tries {
		t.Errorf("legitimate operations: %d of %d", ok, tries)
	}
}
