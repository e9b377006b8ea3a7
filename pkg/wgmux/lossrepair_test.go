package wgmux

import (
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
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

// TestUnansweredSince: an initiation that goes nowhere shows as unanswered
// from when it left, and the handshake that completes clears it.
func TestUnansweredSince(t *testing.T) {
	a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
	hole := mustListen(t)
	t.Cleanup(func() { hole.Close() })
	a.pair(t, b, hole.LocalAddr().String())
	b.pair(t, a, "")
	bind := a.mux.Bind(b.key.Public())
	if !bind.UnansweredSince().IsZero() {
		t.Fatal("unanswered before any initiation")
	}
	before := time.Now()
	go func() { a.tuns[b.key.Public()].Outbound <- tuntest.Ping(b.addr, a.addr) }()
	deadline := time.Now().Add(3 * time.Second)
	for bind.UnansweredSince().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("the initiation to nowhere never showed as unanswered")
		}
		time.Sleep(5 * time.Millisecond)
	}
	since := bind.UnansweredSince()
	if since.Before(before) {
		t.Errorf("unanswered since %v, before the initiation left (%v)", since, before)
	}
	time.Sleep(resendAfter + 100*time.Millisecond) // its resend goes nowhere too
	if got := bind.UnansweredSince(); !got.Equal(since) {
		t.Errorf("the resend moved UnansweredSince from %v to %v", since, got)
	}
	if err := a.devs[b.key.Public()].IpcSet("public_key=" + b.key.Public().Hex() + "\nendpoint=" + b.udp().String() + "\n"); err != nil {
		t.Fatal(err)
	}
	if _, ok := pingWithin(t, a, b, device.RekeyTimeout+2*time.Second); !ok {
		t.Fatal("no handshake after the endpoint was fixed")
	}
	if got := bind.UnansweredSince(); !got.IsZero() {
		t.Errorf("unanswered since %v after the handshake completed", got)
	}
}

// TestLostConfirmation: a starts a handshake with nothing to send, and its
// keepalive, which confirms the new key to b, is lost. b has data: it must
// not wait for WireGuard's 5 s retry (the keepalive went twice).
func TestLostConfirmation(t *testing.T) {
	a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
	const session = 0xc0f
	r := newCrossingRelay(t, session, a.udp(), b.udp())
	r.mu.Lock()
	r.dropFrom, r.dropN, r.dropType = a.udp(), 1, msgTransport
	r.mu.Unlock()
	a.mux.AddRelay(b.key.Public(), session, r.addr)
	b.mux.AddRelay(a.key.Public(), session, r.addr)
	a.pair(t, b, RelayEndpoint(session, r.addr))
	b.pair(t, a, RelayEndpoint(session, r.addr))

	a.devs[b.key.Public()].LookupPeer(device.NoisePublicKey(b.key.Public())).SendKeepalive()
	deadline := time.Now().Add(3 * time.Second)
	for {
		st, err := a.devs[b.key.Public()].IpcGet()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(st, "last_handshake_time_sec=0\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a's handshake did not complete")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // a's keepalive leaves
	d, ok := pingWithin(t, b, a, device.RekeyTimeout-time.Second)
	t.Logf("b's first packet %v after a's handshake completed", d)
	if !ok {
		t.Fatal("b could not send: its key was never confirmed")
	}
	if n := a.mux.Stats().ConfirmDoubled.Load(); n != 1 {
		t.Errorf("a doubled %d key-confirming messages, want 1", n)
	}
}
