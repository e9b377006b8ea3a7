package rvclient_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
	"github.com/peerline/peerline/pkg/rvserver"
)

// startServer runs a real server on two loopback ports.
func startServer(t *testing.T) rvclient.Server {
	t.Helper()
	s, err := rvserver.New(rvserver.Config{StateDir: t.TempDir()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*net.UDPConn
	var srv rvclient.Server
	for i := range conns {
		if conns[i], err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
			t.Fatal(err)
		}
		srv.Addrs[i] = conns[i].LocalAddr().(*net.UDPAddr).AddrPort()
	}
	srv.Key = s.PublicKey()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx, conns) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return srv
}

type peer struct {
	c      *rvclient.Client
	addr   netip.AddrPort
	mu     sync.Mutex
	relay  [][]byte
	intros []rvclient.Introduction
	joins  [][]byte
}

func startClient(t *testing.T, srv rvclient.Server, accept func(nodekey.Key) bool) *peer {
	t.Helper()
	k, _ := nodekey.Generate()
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{addr: pc.LocalAddr().(*net.UDPAddr).AddrPort()}
	p.c, err = rvclient.New(pc, k, srv, rvclient.Options{
		Accept: func(k nodekey.Key, _ []byte) bool { return accept(k) },
		Local:  func() []netip.AddrPort { return []netip.AddrPort{netip.MustParseAddrPort("192.168.1.2:51820")} },
		OnRelay: func(_ uint64, b []byte) {
			p.mu.Lock()
			p.relay = append(p.relay, slices.Clone(b))
			p.mu.Unlock()
		},
		OnIntroduction: func(in rvclient.Introduction) {
			p.mu.Lock()
			p.intros = append(p.intros, in)
			p.mu.Unlock()
		},
		OnInviteJoin: func(id [rendezvous.InviteIDLen]byte, box []byte) {
			p.mu.Lock()
			p.joins = append(p.joins, append(id[:len(id):len(id)], box...))
			p.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("client Run: %v", err)
		}
		pc.Close()
	})
	return p
}

func TestClientEndToEnd(t *testing.T) {
	srv := startServer(t)
	var a, b *peer
	a = startClient(t, srv, func(k nodekey.Key) bool { return k == b.c.PublicKey() })
	b = startClient(t, srv, func(k nodekey.Key) bool { return k == a.c.PublicKey() })
	stranger := startClient(t, srv, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()

	eim, maps, err := a.c.ClassifyMapping(ctx)
	if err != nil || !eim || maps != [2]netip.AddrPort{a.addr, a.addr} {
		t.Fatalf("ClassifyMapping = %v, %v, %v; want true and %s twice (no NAT)", eim, maps, err, a.addr)
	}
	if _, err := b.c.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := stranger.c.Register(ctx, 0); err != nil {
		t.Fatal(err)
	}

	in, err := a.c.Connect(ctx, b.c.PublicKey())
	if err != nil {
		t.Fatalf("a.Connect(b): %v", err)
	}
	if in.Endpoints[0] != b.addr || in.Session == 0 || !slices.Equal(in.Local, []netip.AddrPort{netip.MustParseAddrPort("192.168.1.2:51820")}) {
		t.Errorf("introduction = %+v; want b at %s with its LAN endpoint from the box", in, b.addr)
	}

	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	if in, err := stranger.c.Connect(sctx, b.c.PublicKey()); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("stranger.Connect(b) = %+v, %v; want no introduction", in, err)
	}

	// Relay both ways.
	waitRelay := func(p *peer, want string) {
		t.Helper()
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			p.mu.Lock()
			got := slices.ContainsFunc(p.relay, func(b []byte) bool { return string(b) == want })
			p.mu.Unlock()
			if got {
				return
			}
		}
		t.Errorf("relayed %q never arrived", want)
	}
	if err := a.c.SendRelay(in.Session, []byte("wg a->b")); err != nil {
		t.Fatal(err)
	}
	waitRelay(b, "wg a->b")
	b.mu.Lock()
	bIntros := slices.Clone(b.intros)
	b.mu.Unlock()
	if len(bIntros) == 0 || bIntros[0].Peer != a.c.PublicKey() {
		t.Fatalf("b's introductions = %+v; want one to a", bIntros)
	}
	if err := b.c.SendRelay(bIntros[0].Session, []byte("wg b->a")); err != nil {
		t.Fatal(err)
	}
	waitRelay(a, "wg b->a")

	if err := a.c.Unregister(ctx); err != nil {
		t.Errorf("Unregister: %v", err)
	}
}
