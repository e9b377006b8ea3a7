package peerpath

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

// The decisions on their own: a peer fed events with their times, acting
// on a recorder, as tailscale's TestRouterStates drives its router against
// a fake OS. No network, no goroutine, no clock: the transcript of what
// the decisions did is compared with text.

type recEnv struct {
	now        time.Duration // since the test's start, for the transcript
	log        []string
	initiating bool
	nat        string                      // ownNAT; "" is "cone"
	probes     map[netip.AddrPort][12]byte // the last TxID sent to each
}

func (e *recEnv) add(format string, args ...any) {
	e.log = append(e.log, fmt.Sprintf("%v ", e.now)+fmt.Sprintf(format, args...))
}

func (e *recEnv) take() string {
	s := strings.Join(e.log, "\n")
	e.log = nil
	return s
}

func (e *recEnv) logger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func (e *recEnv) sendProbe(peer nodekey.Key, to netip.AddrPort, session uint64, p rendezvous.Probe) {
	kind := "probe"
	switch {
	case p.Bye:
		kind = "bye"
	case p.Reply:
		kind = "answer"
	}
	if session != 0 {
		e.add("%s via relay %d@%s", kind, session, to)
		return
	}
	e.probes[to] = p.TxID
	e.add("%s %s", kind, to)
}

func (e *recEnv) addRelay(peer nodekey.Key, session uint64, server netip.AddrPort) {
	e.add("relay %d@%s", session, server)
}

func (e *recEnv) initiates(nodekey.Key) bool { return e.initiating }
func (e *recEnv) ownNAT() string {
	if e.nat == "" {
		return "cone"
	}
	return e.nat
}
func (e *recEnv) haveServers() bool { return true }
func (e *recEnv) connect(*peer)     { e.add("connect") }
func (e *recEnv) reregister()       { e.add("reregister") }

// recTunnel is a tunnel whose counters the test sets.
type recTunnel struct {
	e      *recEnv
	rx, tx uint64
}

func (t *recTunnel) SetEndpoint(ep string) error { t.e.add("endpoint %s", ep); return nil }
func (t *recTunnel) StartKeepalive() error       { t.e.add("keepalive"); return nil }
func (t *recTunnel) Rehandshake() error          { t.e.add("rehandshake"); return nil }
func (t *recTunnel) Status() (wgtunnel.Status, error) {
	return wgtunnel.Status{RxBytes: t.rx, TxBytes: t.tx}, nil
}

// TestDecisions walks one peer through an introduction, punching, a
// direct path, a stalled session, and a direct path that dies.
func TestDecisions(t *testing.T) {
	var (
		t0     = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
		server = netip.MustParseAddrPort("203.0.113.1:3478")
		wan    = netip.MustParseAddrPort("198.51.100.2:40001")
		lan    = netip.MustParseAddrPort("192.168.2.2:51820")
		key    = nodekey.Key{1}
	)
	e := &recEnv{initiating: true, probes: map[netip.AddrPort][12]byte{}}
	tun := &recTunnel{e: e}
	p := &peer{key: key, tunnel: tun}
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	run := func(from, to time.Duration) { // ticks, as Run gives them
		for d := from; d <= to; d += tick {
			e.now = d
			p.tick(e, at(d))
		}
	}
	answer := func(to netip.AddrPort, d time.Duration) {
		p.probed(e, &probeIn{p: rendezvous.Probe{Reply: true, TxID: e.probes[to]}, from: to, at: at(d)})
	}
	step := func(name, want string) {
		t.Helper()
		if got := e.take(); got != want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", name, got, want)
		}
	}

	p.introduced(e, &intro{Introduction: rvclient.Introduction{Peer: key, Endpoints: [2]netip.AddrPort{wan, wan}, Local: []netip.AddrPort{lan}, Session: 7}, server: server}, at(0))
	// The relay at once (the first packet does not wait), the handshake
	// (this end initiates), and probes to every candidate.
	step("introduced", `0s relay 7@203.0.113.1:3478
0s endpoint relay:0000000000000007@203.0.113.1:3478
0s keepalive
0s probe 198.51.100.2:40001
0s probe 192.168.2.2:51820`)
	if st := p.status(at(0)); st.Path != PathNone || st.Online {
		t.Errorf("before any answer: %+v", st)
	}

	run(100*time.Millisecond, 200*time.Millisecond)
	step("punching, every 150 ms (at the ticks)", `200ms probe 198.51.100.2:40001
200ms probe 192.168.2.2:51820`)

	answer(wan, 220*time.Millisecond)
	step("a probe answered", `200ms endpoint 198.51.100.2:40001`)
	// The answer that moved the path measured it (sent at 200 ms,
	// answered at 220 ms): a call keeping the tunnel busy sends no probe
	// that would measure it later (TestCallQuality's metric found none).
	if st := p.status(at(250 * time.Millisecond)); st.Path != PathDirect || !st.Online || st.RTT != 20*time.Millisecond {
		t.Errorf("after the answer: %+v, want direct, online, rtt 20ms", st)
	}

	// Past the punch window: the direct path alone, probed once a minute.
	run(300*time.Millisecond, 4*time.Second)
	e.take()

	// A call: an INVITE out every 500 ms, nothing decrypted back, while
	// the path answers every probe: a stalled session, mended by a new
	// handshake.
	for d := 5 * time.Second; d <= 7200*time.Millisecond; d += tick {
		if d%(500*time.Millisecond) == 0 {
			tun.tx += 600
		}
		n := len(e.log)
		e.now = d
		p.tick(e, at(d))
		for _, l := range e.log[n:] {
			if strings.HasSuffix(l, " probe "+wan.String()) {
				answer(wan, d+20*time.Millisecond)
			}
		}
	}
	// The existing stall probes (each answered), and sessionStall after
	// the first unanswered INVITE, a new handshake.
	step("the path answers, the session does not", `5s probe 198.51.100.2:40001
5.9s probe 198.51.100.2:40001
6.5s rehandshake
6.8s probe 198.51.100.2:40001`)
	if st := p.status(at(7200 * time.Millisecond)); !st.Stalled || !st.Online || st.Reason != ReasonStalled {
		t.Errorf("not mended by the handshake: %+v", st)
	}
	tun.rx += 92 // the handshake's response, at last
	run(7300*time.Millisecond, 7600*time.Millisecond)
	if st := p.status(at(7600 * time.Millisecond)); st.Stalled || !st.Online || st.Path != PathDirect {
		t.Errorf("mended: %+v", st)
	}
	e.take()

	// The path dies: data out, the probe unanswered.
	tun.tx += 600
	run(10*time.Second, 10*time.Second+stallAfter+stallProbe+2*tick)
	// Probed at once (nothing came in for long) and again half-way (at
	// the next check), both unanswered stallProbe later: offline, on the
	// relay, servers asked again.
	step("the direct path dies", `10s probe 198.51.100.2:40001
10.3s probe 198.51.100.2:40001
10.5s reregister
10.5s endpoint relay:0000000000000007@203.0.113.1:3478
10.5s connect`)
	if st := p.status(at(12 * time.Second)); st.Online || !st.Silent || !strings.Contains(st.Reason, "not answering") {
		t.Errorf("after the unanswered probe: %+v", st)
	}
}

// TestStaleConnectEnd: the answer to a Connect that an earlier pairing of
// the same key started arrives after the peer was removed and paired
// again. It must not touch the new peer: in CI (TestPairingLoss) the new
// peer had found its path from an early introduction, had asked no
// server, and the old answer indexed its empty connecting flags and
// brought the daemon down.
func TestStaleConnectEnd(t *testing.T) {
	priv, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	k := priv.Public()
	m := &Manager{peers: map[nodekey.Key]*peer{}, log: slog.New(slog.DiscardHandler)}
	old := &peer{key: k, connecting: []bool{true}}
	m.peers[k] = old
	fresh := &peer{key: k}
	m.peers[k] = fresh // removed and paired again
	m.handleEvent(event{connEnd: &connEnd{peer: k, p: old, server: 0}})
	if len(fresh.connecting) != 0 {
		t.Fatalf("the new peer's connecting flags changed: %v", fresh.connecting)
	}
	fresh.connecting = []bool{true, true}
	m.handleEvent(event{connEnd: &connEnd{peer: k, p: fresh, server: 1}})
	m.handleEvent(event{connEnd: &connEnd{peer: k, p: fresh, server: 5}}) // a server list that shrank
	if fresh.connecting[0] != true || fresh.connecting[1] != false {
		t.Fatalf("connecting %v, want [true false]", fresh.connecting)
	}
}
