package wgmux

import (
	"bytes"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/nodekey"
)

// TestEarlyRelay: a's first initiation comes through the relay before b
// knows the session (b's copy of the introduction is processed later, as
// after a join when b's tunnel is still being made). Kept, it is answered
// as soon as b registers the session, long before a's 5 s retry.
func TestEarlyRelay(t *testing.T) {
	a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
	const session = 0xea51
	srv := relayServer(t, session, a.udp(), b.udp())
	a.mux.AddRelay(b.key.Public(), session, srv)
	a.pair(t, b, RelayEndpoint(session, srv))
	b.pair(t, a, "")

	pkt := tuntest.Ping(b.addr, a.addr)
	start := time.Now()
	a.tuns[b.key.Public()].Outbound <- pkt
	deadline := time.Now().Add(3 * time.Second)
	for b.mux.Stats().EarlyRelay.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a's relayed initiation never reached b's mux")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // b's introduction is late
	b.mux.AddRelay(a.key.Public(), session, srv)
	select {
	case got := <-b.tuns[a.key.Public()].Inbound:
		if !bytes.Equal(got, pkt) {
			t.Fatal("got a different packet")
		}
	case <-time.After(2500 * time.Millisecond):
		t.Fatalf("the packet did not arrive within 2.5 s of the session (early %d, delivered %d, bad relay %d): the early initiation was lost",
			b.mux.Stats().EarlyRelay.Load(), b.mux.Stats().EarlyDelivered.Load(), b.mux.Stats().BadRelay.Load())
	}
	t.Logf("first packet after %v", time.Since(start))
	if n := b.mux.Stats().EarlyDelivered.Load(); n != 1 {
		t.Errorf("early messages delivered = %d, want 1", n)
	}
}

func TestTakeEarly(t *testing.T) {
	srv := netip.MustParseAddrPort("203.0.113.10:3478")
	other := netip.MustParseAddrPort("203.0.113.66:3478")
	m := New(mustListen(t), nodekey.Key{}, slog.New(slog.DiscardHandler))
	defer m.Close()
	msg := []byte{msgInitiation, 0, 0, 0}
	if !m.parkEarly(1, srv, msg) || !m.parkEarly(1, other, msg) || !m.parkEarly(2, srv, msg) {
		t.Fatal("parkEarly refused a message")
	}
	now := time.Now()
	tests := []struct {
		name    string
		session uint64
		server  netip.AddrPort
		at      time.Time
		want    int
	}{
		{"not from the session's server", 3, srv, now, 0},
		{"the session's, from its server only", 1, srv, now, 1},
		{"taken once", 1, srv, now, 0},
		{"expired", 2, srv, now.Add(earlyFor), 0},
	}
	for _, tt := range tests {
		m.mu.Lock()
		got := m.takeEarlyLocked(tt.session, tt.server, tt.at)
		m.mu.Unlock()
		if len(got) != tt.want {
			t.Errorf("%s: takeEarly(%d, %v) = %d messages, want %d", tt.name, tt.session, tt.server, len(got), tt.want)
		}
	}
	for i := range 3 * earlyMax {
		m.parkEarly(uint64(100+i), srv, msg)
	}
	if len(m.early) > earlyMax {
		t.Errorf("%d early messages kept, want at most %d", len(m.early), earlyMax)
	}
	if m.early[len(m.early)-1].session != uint64(100+3*earlyMax-1) {
		t.Error("the newest early message was not kept")
	}
}
