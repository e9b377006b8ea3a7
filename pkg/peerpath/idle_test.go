package peerpath

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// TestIdleLazy: with tunnels that send WireGuard's keepalive only with
// data (pkg/wgtunnel's, which then park), an idle peer, direct or relayed,
// stays online on its path for ten minutes on the path manager's probes
// alone, with no forced handshake, at no more than the idle goal of 0.8
// packets per 10 s from each end; and a packet then still crosses. Also
// when one probe, answer or relayed datagram in four to one end is lost.
func TestIdleLazy(t *testing.T) {
	for _, tc := range []struct {
		path  Path
		kind  natKind
		lossy bool
	}{{PathDirect, portRestricted, false}, {PathRelay, symmetric, false}, {PathDirect, portRestricted, true}, {PathRelay, symmetric, true}} {
		name := string(tc.path)
		if tc.lossy {
			name += "/lossy"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newSimWorld(t, 1)
				w.lazy = true
				a, _ := w.site(1, tc.kind, nil)
				b, _ := w.site(2, tc.kind, nil)
				time.Sleep(5 * time.Second)
				w.pair(a, b)
				settle(t, a, b, 10*time.Second, settled(tc.path))
				time.Sleep(10 * time.Second) // past the punching
				var n atomic.Int64
				dropped := func() int64 { return n.Load() / 4 }
				if tc.lossy {
					drop := func(b []byte, _ netip.AddrPort) bool {
						if b[0] != rendezvous.Magic {
							return false
						}
						switch rendezvous.Type(b[2]) {
						case rendezvous.TypeProbe, rendezvous.TypeProbeReply, rendezvous.TypeRelay:
							return n.Add(1)%4 == 0
						}
						return false
					}
					a.dropIn.Store(&drop)
				}
				const window = 10 * time.Minute
				sa, sb := a.sent.Load(), b.sent.Load()
				ha, hb := a.tunnel(b).rehandshakes(), b.tunnel(a).rehandshakes()
				for end := time.Now().Add(window); time.Now().Before(end); time.Sleep(time.Second) {
					for _, st := range []Status{a.status(b), b.status(a)} {
						if !st.Online || st.Path != tc.path {
							t.Fatalf("idle for %v: %+v, want online on the %s path", window-time.Until(end), st, tc.path)
						}
					}
				}
				per10 := func(n int64) float64 { return float64(n) / float64(window/(10*time.Second)) }
				ca, cb := per10(a.sent.Load()-sa), per10(b.sent.Load()-sb)
				if ca > 0.8 || cb > 0.8 {
					t.Errorf("idle %s tunnel: %.2f and %.2f packets per 10 s, want at most 0.8", tc.path, ca, cb)
				}
				if a.tunnel(b).rehandshakes() != ha || b.tunnel(a).rehandshakes() != hb {
					t.Error("a new handshake was forced on an idle tunnel")
				}
				t.Logf("dropped: %d", dropped())
				flows(t, a, b)
				flows(t, b, a)
				t.Logf("idle %s: %.2f and %.2f packets per 10 s", tc.path, ca, cb)
			})
		})
	}
}

func TestProbeIfQuiet(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	peerAt := netip.MustParseAddrPort("198.51.100.2:40001")
	never := time.Time{}
	tests := []struct {
		name              string
		path              Path
		heard, probed     time.Duration // before now; -1: never
		punching, probeIt bool
	}{
		{"direct, heard lately", PathDirect, quietProbe - time.Second, -1, false, false},
		{"direct, quiet", PathDirect, quietProbe, -1, false, true},
		{"direct, quiet, probed lately", PathDirect, quietProbe + 5*time.Second, 5 * time.Second, false, false},
		{"direct, quiet, probed a while ago", PathDirect, quietProbe + quietProbeEvery, quietProbeEvery, false, true},
		{"direct, gone (offline: looked for through the servers instead)", PathDirect, onlineFor, -1, false, false},
		{"direct, never heard", PathDirect, -1, -1, false, false},
		{"direct, quiet, still punching", PathDirect, quietProbe, -1, true, false},
		{"relayed (probed when quiet by tick)", PathRelay, quietProbe, -1, false, false},
		{"no path", PathNone, quietProbe, -1, false, false},
	}
	for _, tt := range tests {
		e := &recEnv{probes: map[netip.AddrPort][12]byte{}}
		now := t0.Add(time.Hour)
		ago := func(d time.Duration) time.Time {
			if d < 0 {
				return never
			}
			return now.Add(-d)
		}
		p := &peer{path: tt.path, direct: peerAt, lastAlive: ago(tt.heard), quietProbed: ago(tt.probed)}
		if tt.punching {
			p.punchUntil = now.Add(time.Second)
		}
		p.probeIfQuiet(e, now)
		got := e.take()
		want := ""
		if tt.probeIt {
			want = "0s probe " + peerAt.String()
		}
		if got != want {
			t.Errorf("%s: probeIfQuiet sent %q, want %q", tt.name, got, want)
		}
	}
}

// TestQuietInPhase: the two ends of a direct path probe each other about
// together every directProbeEvery, so each hears the other only about once
// a minute, which is onlineFor: here the peer's probe comes every 61 s and
// the answers to our own scheduled probes are lost. Through tick: the
// quiet path is probed before the peer counts as gone, and with that
// answer lost too, probed again, and the peer never shows offline.
func TestQuietInPhase(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	peerAt := netip.MustParseAddrPort("198.51.100.2:40001")
	e := &recEnv{probes: map[netip.AddrPort][12]byte{}, initiating: true}
	tun := &recTunnel{e: e}
	p := &peer{key: nodekey.Key{1}, tunnel: tun, path: PathDirect, direct: peerAt, endpoint: peerAt.String(), keepaliveOn: true,
		candidates: []netip.AddrPort{peerAt}}
	lost := false
	quiet := 0
	for d := time.Duration(0); d <= 10*time.Minute; d += tick {
		now := t0.Add(d)
		e.now = d
		if d%(directProbeEvery+time.Second) == 0 {
			p.probed(e, &probeIn{p: rendezvous.Probe{}, from: peerAt, at: now}) // the peer's own probe
		}
		p.tick(e, now)
		e.take()
		if p.quietProbed.Equal(now) {
			// A quiet probe: every other answer is lost.
			quiet++
			if lost = !lost; !lost {
				p.probed(e, &probeIn{p: rendezvous.Probe{Reply: true, TxID: e.probes[peerAt]}, from: peerAt, at: now.Add(20 * time.Millisecond)})
			}
		}
		if st := p.status(now); !st.Online || st.Path != PathDirect {
			t.Fatalf("at %v: %+v, want online on the direct path", d, st)
		}
	}
	t.Logf("%d quiet probes in 10 minutes", quiet)
}
