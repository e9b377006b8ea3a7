package wgmux

import (
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// TestLostHandshakeMessage: the first handshake loses one message on the
// relay. The Bind's resend (of the initiation, or of the response when the
// initiation comes again) completes it in about resendAfter, not after
// WireGuard's 5 s retry.
func TestLostHandshakeMessage(t *testing.T) {
	for _, tt := range []struct {
		name     string
		dropType byte
		fromB    bool // the dropped message is b's (the response)
	}{
		{"initiation lost", msgInitiation, false},
		{"response lost", msgResponse, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
			const session = 0x105e
			r := newCrossingRelay(t, session, a.udp(), b.udp())
			r.mu.Lock()
			r.dropFrom, r.dropN, r.dropType = a.udp(), 1, tt.dropType
			if tt.fromB {
				r.dropFrom = b.udp()
			}
			r.mu.Unlock()
			a.mux.AddRelay(b.key.Public(), session, r.addr)
			b.mux.AddRelay(a.key.Public(), session, r.addr)
			a.pair(t, b, RelayEndpoint(session, r.addr))
			b.pair(t, a, RelayEndpoint(session, r.addr))

			d, ok := pingWithin(t, a, b, device.RekeyTimeout-time.Second)
			sa, sb := a.mux.Stats(), b.mux.Stats()
			t.Logf("first packet after %v; initiations resent %d, responses resent %d", d, sa.InitiationResent.Load(), sb.ResponseResent.Load())
			if !ok {
				t.Fatalf("no packet within %v: the lost message waited for WireGuard's retry", device.RekeyTimeout-time.Second)
			}
			if sa.InitiationResent.Load() != 1 {
				t.Errorf("a resent %d initiations, want 1", sa.InitiationResent.Load())
			}
			if want := map[bool]uint64{false: 0, true: 1}[tt.fromB]; sb.ResponseResent.Load() != want {
				t.Errorf("b resent %d responses, want %d", sb.ResponseResent.Load(), want)
			}
		})
	}
}
