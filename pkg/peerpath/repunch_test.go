package peerpath

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
)

// TestLatePunchAcceptingRouters: two Pis behind port-restricted routers
// that accept input to themselves (netsim's AcceptInput, the lab's -accept
// pairs) get their introduction at once, but one acts on it late, as a
// busy Pi building tunnels did in the lab (19-47 ms). The early end's
// first probe reaches the late end's router before the late end sent
// anything: the router holds it, the late end's probes leave from another
// port, and the first punch fails. The pair must still end direct, within
// one quiet period after the failed punch (the routers' unreplied entries
// expire only when neither end sends to the other) plus a punch.
func TestLatePunchAcceptingRouters(t *testing.T) {
	for _, tc := range []struct {
		late      time.Duration
		unreplied time.Duration // 0: Linux's default
		within    time.Duration // after the pairing
	}{
		{19 * time.Millisecond, 0, punchWindow + repunchQuiet[0] + 5*time.Second},
		{30 * time.Millisecond, 0, punchWindow + repunchQuiet[0] + 5*time.Second},
		{50 * time.Millisecond, 0, punchWindow + repunchQuiet[0] + 5*time.Second},
		// A router that keeps unreplied entries 60 s (OpenWrt): the
		// second quiet period outlasts it.
		{30 * time.Millisecond, time.Minute, 2*punchWindow + repunchQuiet[0] + repunchQuiet[1] + 10*time.Second},
	} {
		t.Run(fmt.Sprintf("late %v, routers keep %v", tc.late, tc.unreplied), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newSimWorld(t, 1)
				a, natA := w.site(1, portRestricted, nil)
				b, natB := w.site(2, portRestricted, nil)
				for _, nat := range []interface {
					AcceptInput()
					SetUnrepliedTimeout(time.Duration)
				}{natA, natB} {
					nat.AcceptInput()
					if tc.unreplied != 0 {
						nat.SetUnrepliedTimeout(tc.unreplied)
					}
				}
				time.Sleep(5 * time.Second) // both registered
				// a is busy while the pairing's tunnels are built: what
				// the server sends it is handled late.
				busyUntil := time.Now().Add(2 * time.Second)
				server := w.servers[0].addrs
				late := func(_ []byte, from netip.AddrPort) time.Duration {
					if (from == server[0] || from == server[1]) && time.Now().Before(busyUntil) {
						return tc.late
					}
					return 0
				}
				a.delayIn.Store(&late)
				start := time.Now()
				w.pair(a, b)
				// The relay at once; the first punch fails.
				settle(t, a, b, time.Second, func(s Status) bool { return s.Online && s.Path == PathRelay })
				st := settle(t, a, b, tc.within, settled(PathDirect))
				settle(t, b, a, 2*time.Second, settled(PathDirect))
				t.Logf("direct %v after the pairing (%s)", time.Since(start).Round(time.Millisecond), st.Reason)
				flows(t, a, b)
				flows(t, b, a)
			})
		})
	}
}

// TestBusyManagerPunchesAtOnce: the introduction reaches both ends at once,
// but one end's manager is held up (its tunnel's SetEndpoint, a UAPI call,
// takes tens of milliseconds on a busy Pi) before it punches. The first
// probes leave from the socket's reader as the introduction arrives, so
// the first punch works behind routers that accept input, without waiting
// for a punch again.
func TestBusyManagerPunchesAtOnce(t *testing.T) {
	for _, slow := range []time.Duration{19 * time.Millisecond, 47 * time.Millisecond} {
		t.Run(fmt.Sprint(slow), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				w := newSimWorld(t, 1)
				a, natA := w.site(1, portRestricted, nil)
				b, natB := w.site(2, portRestricted, nil)
				natA.AcceptInput()
				natB.AcceptInput()
				time.Sleep(5 * time.Second) // both registered
				// Both tunnels exist (on no path yet) before the
				// introduction comes; a's manager is then slow.
				a.add(b)
				b.add(a)
				a.slowTunnel.Store(int64(slow))
				start := time.Now()
				st := settle(t, a, b, punchWindow+time.Second, settled(PathDirect))
				settle(t, b, a, time.Second, settled(PathDirect))
				t.Logf("direct %v after the pairing (%s)", time.Since(start).Round(time.Millisecond), st.Reason)
				a.slowTunnel.Store(0)
				flows(t, a, b)
				flows(t, b, a)
			})
		})
	}
}

// TestOnOurLAN: a peer's LAN addresses are probed unless both public
// addresses are known and differ.
func TestOnOurLAN(t *testing.T) {
	ap := netip.MustParseAddrPort
	own := netip.MustParseAddr("198.51.100.1")
	for _, tc := range []struct {
		name string
		eps  [2]netip.AddrPort
		own  netip.Addr
		want bool
	}{
		{"same public address", [2]netip.AddrPort{ap("198.51.100.1:40001"), ap("198.51.100.1:40001")}, own, true},
		{"another site", [2]netip.AddrPort{ap("198.51.100.2:40001"), ap("198.51.100.2:40001")}, own, false},
		{"another site, symmetric", [2]netip.AddrPort{ap("198.51.100.2:40001"), ap("198.51.100.2:40002")}, own, false},
		{"own address unknown", [2]netip.AddrPort{ap("198.51.100.2:40001"), ap("198.51.100.2:40001")}, netip.Addr{}, true},
		{"peer's address unknown", [2]netip.AddrPort{}, own, true},
		{"one server saw the same", [2]netip.AddrPort{ap("198.51.100.2:40001"), ap("198.51.100.1:40001")}, own, true},
	} {
		in := &intro{}
		in.Endpoints = tc.eps
		if got := onOurLAN(in, tc.own); got != tc.want {
			t.Errorf("%s: onOurLAN = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestRepunchSymmetricAfterFailure: a punch window failed while a NAT
// class was unknown (the pair went quiet to punch again), and the next
// introduction's window ends with both NATs symmetric, where no punch can
// work and no ask is made. The pair must not stay quiet for good: the slow
// upgrade rounds resume.
func TestRepunchSymmetricAfterFailure(t *testing.T) {
	var (
		t0     = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
		server = netip.MustParseAddrPort("203.0.113.1:3478")
		wan    = netip.MustParseAddrPort("198.51.100.2:40001")
		wan2   = netip.MustParseAddrPort("198.51.100.2:40002")
		key    = nodekey.Key{1}
	)
	e := &recEnv{initiating: true, probes: map[netip.AddrPort][12]byte{}}
	p := &peer{key: key, tunnel: &recTunnel{e: e}}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	run := func(from, to time.Duration) {
		for d := from; d <= to; d += tick {
			e.now = d
			p.tick(e, at(d))
		}
	}
	// Own NAT class unknown yet: the first window fails, and the pair
	// goes quiet until it punches again.
	e.nat = "unknown"
	p.introduced(e, &intro{Introduction: rvclient.Introduction{Peer: key, Endpoints: [2]netip.AddrPort{wan, wan2}, Session: 7}, server: server}, at(0))
	run(tick, punchWindow+tick)
	if !p.quiet() || p.rp.askAt.IsZero() {
		t.Fatalf("after the first failed window: quiet %v, ask at %v; want quiet and an ask", p.quiet(), p.rp.askAt)
	}
	// The fresh introduction comes; by then this end knows its NAT maps
	// per destination, as the peer's does.
	e.nat = "symmetric"
	second := 10 * time.Second
	p.introduced(e, &intro{Introduction: rvclient.Introduction{Peer: key, Endpoints: [2]netip.AddrPort{wan, wan2}, Session: 8}, server: server}, at(second))
	end := second + repunchWindow
	run(second+tick, end+tick)
	e.take()
	if p.quiet() {
		t.Errorf("after a window with both NATs symmetric: still quiet (failed %d)", p.rp.failed)
	}
	run(end+2*tick, end+upgradeSlowly+time.Second)
	if log := e.take(); !strings.Contains(log, "probe "+wan.String()) {
		t.Errorf("no upgrade probe within %v of the window's end; sent:\n%s", upgradeSlowly+time.Second, log)
	}
	if strings.Contains(p.reason, "punching again at") {
		t.Errorf("reason %q tells of a punch again that will not come", p.reason)
	}
}

// recBind records the handshake copies a peer sends along with probes.
type recBind struct{ e *recEnv }

func (b *recBind) HoldInitiations(time.Duration) {}
func (b *recBind) ResendHeld(string, time.Duration) (bool, error) {
	return false, nil
}
func (b *recBind) CopyInitiation(to []netip.AddrPort, _ time.Duration) int {
	b.e.add("initiation copy %v", to)
	return len(to)
}

// TestFirstRoundCarriesInitiation: the probes the socket's reader sent as
// the introduction arrived are the punch's first round. As any round's,
// they carry the first handshake's copy (the end that initiates), and
// their answers count.
func TestFirstRoundCarriesInitiation(t *testing.T) {
	var (
		t0     = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
		server = netip.MustParseAddrPort("203.0.113.1:3478")
		wan    = netip.MustParseAddrPort("198.51.100.2:40001")
		lan    = netip.MustParseAddrPort("192.168.2.2:51820")
		key    = nodekey.Key{1}
	)
	for _, initiating := range []bool{true, false} {
		e := &recEnv{initiating: initiating, probes: map[netip.AddrPort][12]byte{}}
		p := &peer{key: key, tunnel: &recTunnel{e: e}, bind: &recBind{e: e}}
		in := &intro{Introduction: rvclient.Introduction{Peer: key, Endpoints: [2]netip.AddrPort{wan, wan}, Local: []netip.AddrPort{lan}, Session: 7}, server: server}
		in.atOnce = []sentAtOnce{{id: [12]byte{1}, to: wan}, {id: [12]byte{2}, to: lan}}
		in.atOnceAt = t0.Add(-2 * time.Millisecond)
		p.introduced(e, in, t0)
		log := e.take()
		copied := strings.Contains(log, "initiation copy [198.51.100.2:40001 192.168.2.2:51820]")
		if copied != initiating {
			t.Errorf("initiating %v: first round carries the initiation %v, want %v; did:\n%s", initiating, copied, initiating, log)
		}
		if strings.Contains(log, "probe ") {
			t.Errorf("initiating %v: probes sent again on the event; did:\n%s", initiating, log)
		}
		p.probed(e, &probeIn{p: rendezvous.Probe{Reply: true, TxID: [12]byte{1}}, from: wan, at: t0.Add(18 * time.Millisecond)})
		if st := p.status(t0.Add(20 * time.Millisecond)); st.Path != PathDirect || st.RTT != 20*time.Millisecond {
			t.Errorf("initiating %v: after the answer to the reader's probe: %+v, want direct, rtt 20ms", initiating, st)
		}
	}
}

// TestOffLANNotProbed: the LAN addresses of a peer at another site
// (intro.offLAN, decided as the introduction arrives) are neither probed
// nor kept as candidates; the zero value probes them.
func TestOffLANNotProbed(t *testing.T) {
	var (
		server = netip.MustParseAddrPort("203.0.113.1:3478")
		wan    = netip.MustParseAddrPort("198.51.100.2:40001")
		lan    = netip.MustParseAddrPort("192.168.2.2:51820")
		key    = nodekey.Key{1}
	)
	for _, offLAN := range []bool{false, true} {
		e := &recEnv{initiating: true, probes: map[netip.AddrPort][12]byte{}}
		p := &peer{key: key, tunnel: &recTunnel{e: e}}
		in := &intro{Introduction: rvclient.Introduction{Peer: key, Endpoints: [2]netip.AddrPort{wan, wan}, Local: []netip.AddrPort{lan}, Session: 7}, server: server, offLAN: offLAN}
		p.introduced(e, in, time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
		log := e.take()
		if probed := strings.Contains(log, "probe "+lan.String()); probed == offLAN {
			t.Errorf("offLAN %v: LAN address probed %v; did:\n%s", offLAN, probed, log)
		}
		if !strings.Contains(log, "probe "+wan.String()) {
			t.Errorf("offLAN %v: public address not probed; did:\n%s", offLAN, log)
		}
		want := []netip.AddrPort{wan, lan}
		if offLAN {
			want = want[:1]
		}
		if !slices.Equal(p.candidates, want) {
			t.Errorf("offLAN %v: candidates %v, want %v", offLAN, p.candidates, want)
		}
	}
}
