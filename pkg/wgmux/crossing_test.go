package wgmux

import (
	"bytes"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

func TestCrossGuard(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	relay := pathKey{addr: netip.MustParseAddrPort("203.0.113.10:3478"), session: 42}
	direct := pathKey{addr: netip.MustParseAddrPort("198.51.100.2:51820")}
	other := pathKey{addr: netip.MustParseAddrPort("198.51.100.2:40000")}
	type step struct {
		op   string // "out", "resp", "in", "release"
		idx  uint32
		path pathKey // "out": where ours went; "in": where the peer's came from
		at   time.Time
		want crossVerdict // for "in"
		// for "resp": whether it answers ours
		answers bool
	}
	tests := []struct {
		name  string
		wins  bool
		steps []step
	}{
		{"no initiation of ours: deliver", true, []step{
			{op: "in", path: relay, at: ms(0), want: deliver},
		}},
		{"winner holds the peer's while ours flies", true, []step{
			{op: "out", idx: 7, path: relay, at: ms(0)},
			{op: "in", path: relay, at: ms(3), want: holdBack},
			{op: "resp", idx: 7, answers: true},
			// Answered: the next initiation is a fresh handshake.
			{op: "in", path: relay, at: ms(10), want: deliver},
		}},
		{"loser answers the winner's", false, []step{
			{op: "out", idx: 7, path: direct, at: ms(0)},
			{op: "in", path: direct, at: ms(3), want: yieldTo},
			// Its own is abandoned: no response answers it any more,
			// and a later initiation is no crossing.
			{op: "resp", idx: 7, answers: false},
			{op: "in", path: direct, at: ms(20), want: deliver},
		}},
		{"ours older than the hold is not in flight", true, []step{
			{op: "out", idx: 7, path: relay, at: ms(0)},
			{op: "in", path: relay, at: t0.Add(crossHold), want: deliver},
		}},
		{"the peer's from elsewhere than ours went: deliver", true, []step{
			{op: "out", idx: 7, path: direct, at: ms(0)},
			{op: "in", path: other, at: ms(3), want: deliver},
			{op: "resp", idx: 7, answers: false},
		}},
		{"a copy sent direct counts as where ours went", true, []step{
			{op: "out", idx: 7, path: relay, at: ms(0)},
			{op: "out", idx: 7, path: direct, at: ms(40)},
			{op: "in", path: direct, at: ms(50), want: holdBack},
			{op: "in", path: relay, at: ms(60), want: holdBack},
		}},
		{"a copy sent after the answer is not in flight", true, []step{
			{op: "out", idx: 7, path: relay, at: ms(0)},
			{op: "resp", idx: 7, answers: true},
			{op: "out", idx: 7, path: direct, at: ms(300)},
			{op: "in", path: direct, at: ms(310), want: deliver},
		}},
		{"a response to another index does not answer ours", true, []step{
			{op: "out", idx: 7, path: relay, at: ms(0)},
			{op: "resp", idx: 8, answers: false},
			{op: "in", path: relay, at: ms(5), want: holdBack},
		}},
		{"a retransmission replaces the one before", true, []step{
			{op: "out", idx: 7, path: relay, at: ms(0)},
			{op: "out", idx: 9, path: direct, at: ms(5000)},
			{op: "resp", idx: 7, answers: false},
			// The retry went only direct.
			{op: "in", path: relay, at: ms(5001), want: deliver},
			{op: "out", idx: 11, path: direct, at: ms(10000)},
			{op: "in", path: direct, at: ms(10001), want: holdBack},
			{op: "resp", idx: 11, answers: true},
		}},
		{"released: ours is abandoned", true, []step{
			{op: "out", idx: 7, path: relay, at: ms(0)},
			{op: "in", path: relay, at: ms(1), want: holdBack},
			{op: "release"},
			{op: "resp", idx: 7, answers: false},
			{op: "in", path: relay, at: ms(1200), want: deliver},
		}},
		{"second copy of the peer's is held as well", true, []step{
			{op: "out", idx: 7, path: relay, at: ms(0)},
			{op: "in", path: relay, at: ms(1), want: holdBack},
			{op: "in", path: relay, at: ms(2), want: holdBack},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := crossGuard{wins: tt.wins}
			for i, s := range tt.steps {
				switch s.op {
				case "out":
					g.initiationOut(s.idx, s.path, s.at)
				case "resp":
					if got := g.responseIn(s.idx); got != s.answers {
						t.Fatalf("step %d: responseIn(%d) = %v, want %v", i, s.idx, got, s.answers)
					}
				case "in":
					v, at := g.initiationIn(s.path, s.at)
					if v != s.want {
						t.Fatalf("step %d: initiationIn(%v, +%v) = %v, want %v", i, s.path, s.at.Sub(t0), v, s.want)
					}
					if v == holdBack && at.Sub(g.ownAt) != crossHold {
						t.Fatalf("step %d: held until %v after ours, want %v", i, at.Sub(g.ownAt), crossHold)
					}
				case "release":
					g.released()
				}
			}
		})
	}
}

// TestWinnerAgreesWithInitiator: the end that wins a crossing is the one
// that starts the first handshake, so the two guards never disagree.
func TestWinnerAgreesWithInitiator(t *testing.T) {
	for range 50 {
		a, err := nodekey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		b, err := nodekey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		pa, pb := a.Public(), b.Public()
		if winsCrossing(pa, pb) != wgtunnel.InitiatesFirst(pa, pb) {
			t.Fatalf("winsCrossing(%v, %v) disagrees with InitiatesFirst", pa, pb)
		}
		if winsCrossing(pa, pb) == winsCrossing(pb, pa) {
			t.Fatalf("both or neither of %v, %v win", pa, pb)
		}
	}
}

// crossingRelay is relayServer that, once armed, holds the first handshake
// initiation it sees until the other side's arrives, then forwards both:
// the two initiations cross in flight, every time. The responses that
// follow take responseDelay more, as over any real path: on loopback an
// answer can otherwise overtake the processing of the initiation it
// crossed, which no path longer than a few hundred metres allows.
type crossingRelay struct {
	addr    netip.AddrPort
	mu      sync.Mutex
	armed   bool
	held    []byte
	heldTo  netip.AddrPort
	crossed chan struct{}
	// delayUntil: responses until then are delayed by responseDelay.
	delayUntil time.Time
	// dropFrom: the next dropN initiations from there are lost.
	dropFrom netip.AddrPort
	dropN    int
	// dropType is the message type dropped (0: initiations).
	dropType byte
}

const responseDelay = 50 * time.Millisecond

func newCrossingRelay(t *testing.T, session uint64, x, y netip.AddrPort) *crossingRelay {
	t.Helper()
	c := mustListen(t)
	t.Cleanup(func() { c.Close() })
	r := &crossingRelay{addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), crossed: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			id, payload, err := rendezvous.ParseRelay(buf[:n])
			if err != nil || id != session {
				continue
			}
			to := x
			if from == x {
				to = y
			}
			r.mu.Lock()
			if from == r.dropFrom && r.dropN > 0 && len(payload) > 0 && payload[0] == max(r.dropType, msgInitiation) {
				r.dropN--
				r.mu.Unlock()
				continue
			}
			if r.armed && len(payload) == initiationLen && payload[0] == msgInitiation {
				if r.held == nil {
					r.held, r.heldTo = append([]byte(nil), buf[:n]...), to
					r.mu.Unlock()
					continue
				}
				if r.heldTo != to {
					c.WriteToUDPAddrPort(r.held, r.heldTo)
					r.armed, r.held = false, nil
					r.delayUntil = time.Now().Add(time.Second)
					r.crossed <- struct{}{}
				}
			}
			if len(payload) == responseLen && payload[0] == msgResponse && time.Now().Before(r.delayUntil) {
				r.mu.Unlock()
				msg := append([]byte(nil), buf[:n]...)
				time.AfterFunc(responseDelay, func() { c.WriteToUDPAddrPort(msg, to) })
				continue
			}
			r.mu.Unlock()
			c.WriteToUDPAddrPort(buf[:n], to)
		}
	}()
	return r
}

func (r *crossingRelay) arm() {
	r.mu.Lock()
	r.armed = true
	r.mu.Unlock()
}

// pingWithin sends a ping from a to b every 100 ms until it comes out of
// b's device, and returns how long that took (false after limit).
func pingWithin(t *testing.T, a, b *node, limit time.Duration) (time.Duration, bool) {
	t.Helper()
	pkt := tuntest.Ping(b.addr, a.addr)
	start := time.Now()
	for time.Since(start) < limit {
		select {
		case a.tuns[b.key.Public()].Outbound <- pkt:
		case <-time.After(limit):
			t.Fatal("the packet did not enter the tunnel")
		}
		select {
		case got := <-b.tuns[a.key.Public()].Inbound:
			if !bytes.Equal(got, pkt) {
				t.Fatal("got a different packet")
			}
			return time.Since(start), true
		case <-time.After(100 * time.Millisecond):
		}
	}
	return time.Since(start), false
}

// expireAndSend makes the device's keys unusable for sending, as
// WireGuard's reject-after time does after idle, and sends a keepalive,
// which then starts a handshake: a rekey now.
func expireAndSend(t *testing.T, d *device.Device, peer nodekey.Key) {
	p := d.LookupPeer(device.NoisePublicKey(peer))
	if p == nil {
		t.Fatal("no such peer on the device")
	}
	p.ExpireCurrentKeypairs()
	p.SendKeepalive()
}

// TestCrossedHandshake drives two tunnels into a rekey whose initiations
// cross in flight (through a relay, which takes the same path through the
// mux as direct datagrams plus the relay's), then sends a packet each way.
// With the guard both arrive within a round trip or two; without it, as
// the package doc says, nothing passes until WireGuard's 5 s retry.
func TestCrossedHandshake(t *testing.T) {
	for _, guard := range []bool{true, false} {
		name := "guard"
		if !guard {
			name = "no guard"
			if testing.Short() {
				continue // waits for WireGuard's 5 s retry
			}
		}
		t.Run(name, func(t *testing.T) {
			prev := crossGuardOff.Load()
			crossGuardOff.Store(!guard)
			t.Cleanup(func() { crossGuardOff.Store(prev) })

			a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
			const session = 0x5eed
			r := newCrossingRelay(t, session, a.udp(), b.udp())
			a.mux.AddRelay(b.key.Public(), session, r.addr)
			b.mux.AddRelay(a.key.Public(), session, r.addr)
			a.pair(t, b, RelayEndpoint(session, r.addr))
			b.pair(t, a, RelayEndpoint(session, r.addr))
			ping(t, a, b)
			ping(t, b, a)
			// WireGuard's initiation timestamps are rounded to 2^24 ns;
			// one in the same step as the last is refused as a replay.
			// A rekey comes minutes after the last handshake.
			time.Sleep(50 * time.Millisecond)

			r.arm()
			var wg sync.WaitGroup
			for _, x := range []struct {
				n    *node
				peer *node
			}{{a, b}, {b, a}} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					expireAndSend(t, x.n.devs[x.peer.key.Public()], x.peer.key.Public())
				}()
			}
			wg.Wait()
			select {
			case <-r.crossed:
			case <-time.After(3 * time.Second):
				t.Fatal("the two initiations never crossed at the relay")
			}
			winner, loser := a, b
			if !winsCrossing(a.key.Public(), b.key.Public()) {
				winner, loser = b, a
			}
			// Well under WireGuard's 5 s retry, and generous for a
			// loaded machine: with the guard it takes milliseconds.
			const bound = 2500 * time.Millisecond
			d1, ok1 := pingWithin(t, winner, loser, bound)
			d2, ok2 := pingWithin(t, loser, winner, bound)
			t.Logf("after the crossing: winner→loser %v (%v), loser→winner %v (%v)", d1, ok1, d2, ok2)
			ws, ls := winner.mux.Stats(), loser.mux.Stats()
			t.Logf("winner crossed %d dropped %d released %d; loser crossed %d",
				ws.Crossed.Load(), ws.CrossDropped.Load(), ws.CrossReleased.Load(), ls.Crossed.Load())
			if ws.Crossed.Load() != 1 || ls.Crossed.Load() != 1 {
				t.Errorf("crossings seen: winner %d, loser %d; want 1 each", ws.Crossed.Load(), ls.Crossed.Load())
			}
			if guard {
				if !ok1 || !ok2 {
					t.Fatalf("with the guard, a packet waited for WireGuard's retry (%v, %v)", d1, d2)
				}
				if ws.CrossDropped.Load() != 1 || ws.CrossReleased.Load() != 0 {
					t.Errorf("winner dropped %d and released %d held initiations, want 1 and 0",
						ws.CrossDropped.Load(), ws.CrossReleased.Load())
				}
				return
			}
			if ok1 && ok2 {
				t.Fatal("without the guard the crossed handshake completed at once: the guard's premise (docs/handshake-crossing.md) no longer holds for this wireguard-go")
			}
			// And WireGuard's own retry does repair it, later.
			if _, ok := pingWithin(t, winner, loser, 8*time.Second); !ok {
				t.Fatal("WireGuard's retry did not repair the crossed handshake")
			}
		})
	}
}

// TestCrossedInitiationLost: our initiation crossed the peer's but was lost
// on the way. Its resend (lossrepair.go) completes our handshake; if that
// is lost too, the held one is delivered after crossHold and the peer's
// handshake completes. Both long before WireGuard's 5 s retry.
func TestCrossedInitiationLost(t *testing.T) {
	for _, tt := range []struct {
		name                      string
		lost                      int
		crossed, resent, released uint64
		min, max                  time.Duration
	}{
		{"resend arrives", 1, 1, 1, 0, resendAfter / 2, crossHold},
		// b resends its own too, which a holds as well.
		{"resend lost too", 2, 2, 1, 1, crossHold / 2, 4 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
			if !winsCrossing(a.key.Public(), b.key.Public()) {
				a, b = b, a // a is the winner
			}
			const session = 0x1057
			r := newCrossingRelay(t, session, a.udp(), b.udp())
			r.mu.Lock()
			r.dropFrom, r.dropN = a.udp(), tt.lost
			r.mu.Unlock()
			a.mux.AddRelay(b.key.Public(), session, r.addr)
			b.mux.AddRelay(a.key.Public(), session, r.addr)
			a.pair(t, b, RelayEndpoint(session, r.addr))
			b.pair(t, a, RelayEndpoint(session, r.addr))

			// a's initiation leaves (and is lost), then b's arrives.
			go func() { a.tuns[b.key.Public()].Outbound <- tuntest.Ping(b.addr, a.addr) }()
			deadline := time.Now().Add(3 * time.Second)
			for a.mux.Bind(b.key.Public()).crossOwnAt().IsZero() {
				if time.Now().After(deadline) {
					t.Fatal("a sent no initiation")
				}
				time.Sleep(5 * time.Millisecond)
			}
			d, ok := pingWithin(t, b, a, 4*time.Second)
			s := a.mux.Stats()
			t.Logf("b's first packet after %v; a crossed %d, resent %d, released %d", d, s.Crossed.Load(), s.InitiationResent.Load(), s.CrossReleased.Load())
			if !ok || d < tt.min || d > tt.max {
				t.Fatalf("b's packet after %v (arrived %v), want between %v and %v", d, ok, tt.min, tt.max)
			}
			// At least tt.crossed: on a loaded machine b's own resend
			// (also after resendAfter) can reach a before a's resend is
			// answered, and is held as a crossing too (seen in a fresh-root
			// run: crossed 2, resent 1, released 0, packet after 402 ms).
			if s.Crossed.Load() < tt.crossed || s.InitiationResent.Load() != tt.resent || s.CrossReleased.Load() != tt.released {
				t.Errorf("a crossed %d resent %d released %d, want at least %d, %d, %d",
					s.Crossed.Load(), s.InitiationResent.Load(), s.CrossReleased.Load(), tt.crossed, tt.resent, tt.released)
			}
		})
	}
}

// TestInitiationFromElsewhere: our initiation went to an address where
// the peer no longer is; the peer's, from its new address, is answered at
// once rather than held as a crossing.
func TestInitiationFromElsewhere(t *testing.T) {
	a, b := newNode(t, "10.9.0.1"), newNode(t, "10.9.0.2")
	if !winsCrossing(a.key.Public(), b.key.Public()) {
		a, b = b, a
	}
	hole := mustListen(t) // the peer's old address
	t.Cleanup(func() { hole.Close() })
	a.pair(t, b, hole.LocalAddr().String())
	b.pair(t, a, a.udp().String())
	go func() { a.tuns[b.key.Public()].Outbound <- tuntest.Ping(b.addr, a.addr) }()
	deadline := time.Now().Add(3 * time.Second)
	for a.mux.Bind(b.key.Public()).crossOwnAt().IsZero() {
		if time.Now().After(deadline) {
			t.Fatal("a sent no initiation")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, ok := pingWithin(t, b, a, 4*time.Second); !ok {
		t.Fatal("b's packet did not arrive")
	}
	if s := a.mux.Stats(); s.Crossed.Load() != 0 {
		t.Errorf("a counted %d crossings, want 0", s.Crossed.Load())
	}
}
