package rvclient_test

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rvclient"
)

func TestRegistered(t *testing.T) {
	srv := startServer(t)
	p := startClient(t, srv, nil)
	deadline := time.Now().Add(5 * time.Second)
	for !p.c.Registered(time.Now()) {
		if time.Now().After(deadline) {
			t.Fatal("not registered 5 s after Run started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	last := p.c.LastRegistered()
	if d := time.Since(last); d < 0 || d > 5*time.Second {
		t.Errorf("LastRegistered = %v, %v ago", last, d)
	}
	// Three refreshes (20 s each) missed: no longer registered.
	if p.c.Registered(last.Add(61 * time.Second)) {
		t.Errorf("still registered 61 s after the last confirmation")
	}
	if p.c.Server() != srv {
		t.Errorf("Server() = %+v, want %+v", p.c.Server(), srv)
	}

	// A server that never answers: never registered.
	dead, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	a := dead.LocalAddr().(*net.UDPAddr).AddrPort()
	q := startClient(t, rvclient.Server{Addrs: [2]netip.AddrPort{a, a}, Key: srv.Key}, func(nodekey.Key) bool { return false })
	time.Sleep(200 * time.Millisecond)
	if q.c.Registered(time.Now()) || !q.c.LastRegistered().IsZero() {
		t.Errorf("registered with a server that never answered")
	}
}
