//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// BenchmarkIdleKeepalive measures what an idle tunnel costs on the wire,
// for issue 3's "keepalive cost ≤ 1 packet per 10 s per idle tunnel": it
// pairs two Pis (behind port-restricted routers, which go direct, and
// behind symmetric ones, which are relayed), lets no phone send anything,
// and counts every UDP datagram on Pi A's uplink for IDLE_WINDOW (default
// 150 s; a Go duration or seconds). It writes bench/out/keepalive.json.
//
// The window starts when both nodes agree on the path and A has stopped
// punching, so it measures the steady state a paired Pi spends its nights
// in. (A tunnel relayed for a reason that may pass probes its direct
// candidates every 20 s for two minutes after an introduction; behind
// symmetric NATs, the case measured here, it probes every 2 minutes from
// the start. The window's last 60 s are also reported on their own.)
func BenchmarkIdleKeepalive(b *testing.B) {
	natBins(b)
	window := idleWindow(b)
	cases := []struct {
		path string
		c    natCase
	}{
		{"direct", natCase{a: lab.PortRestricted, b: lab.PortRestricted, policy: lab.InputDrop}},
		{"relay", natCase{a: lab.Symmetric, b: lab.Symmetric, policy: lab.InputDrop}},
	}
	var results []idleResult
	for _, kc := range cases {
		r := benchIdle(b, kc.c, kc.path, window)
		results = append(results, r)
		b.Logf("%s", r.summary())
		fmt.Fprintf(os.Stderr, "%s\n", r.summary())
	}
	benchOut(b, "keepalive.json", map[string]any{
		"window_s":                         window.Seconds(),
		"one_way_delay_ms":                 benchDelay.Delay.Milliseconds(),
		"goal_tunnel_packets_sent_per_10s": idleGoal,
		"cases":                            results,
	})
}

// idleGoal is issue 3's bound on what one idle tunnel may send per 10 s.
const idleGoal = 1.0

// lastWindow is the tail of the window reported on its own: for a relayed
// tunnel, the part furthest from the introduction.
const lastWindow = 60 * time.Second

func idleWindow(b *testing.B) time.Duration {
	s := os.Getenv("IDLE_WINDOW")
	if s == "" {
		return 150 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		n, aerr := strconv.Atoi(s)
		if aerr != nil {
			b.Fatalf("IDLE_WINDOW=%q: want a duration such as 150s or a number of seconds", s)
		}
		d = time.Duration(n) * time.Second
	}
	if d < 10*time.Second {
		b.Fatalf("IDLE_WINDOW=%q: want at least 10 s, or the rates mean nothing", s)
	}
	return d
}

// idleResult is one case of keepalive.json. Tunnel packets are those A
// sends to the peer or for it (probes and their answers, WireGuard, relay
// frames, connects and introductions); node packets are its registrations
// with the rendezvous server (register, cookie), which it pays once
// however many tunnels it has.
type idleResult struct {
	Path        string  `json:"path"`
	WantPath    string  `json:"expected_path"`
	PathReason  string  `json:"path_reason,omitempty"`
	PathAtEnd   string  `json:"path_at_end"`
	NATA        string  `json:"nat_a"`
	NATB        string  `json:"nat_b"`
	InputPolicy string  `json:"input_policy"`
	WindowS     float64 `json:"window_s"`
	// SettleToWindowS is how long after SettledPath the window began
	// (waiting for A's punching to end); IntroToWindowS how long after
	// the last introduction (the server's punch to A) it began.
	SettleToWindowS float64 `json:"settle_to_window_start_s"`
	IntroToWindowS  float64 `json:"introduction_to_window_start_s"`
	Phase           string  `json:"phase"`

	TunnelSent           float64 `json:"tunnel_packets_sent_per_10s"`
	TunnelReceived       float64 `json:"tunnel_packets_received_per_10s"`
	TunnelSentLast       float64 `json:"tunnel_packets_sent_per_10s_last60s"`
	TunnelReceivedLast   float64 `json:"tunnel_packets_received_per_10s_last60s"`
	NodeSent             float64 `json:"node_registration_packets_sent_per_10s"`
	NodeReceived         float64 `json:"node_registration_packets_received_per_10s"`
	NodeSentLast         float64 `json:"node_registration_packets_sent_per_10s_last60s"`
	OtherSent            int     `json:"other_packets_sent"`
	OtherReceived        int     `json:"other_packets_received"`
	TunnelWithinGoal     bool    `json:"tunnel_sent_within_goal"`
	TunnelLastWithinGoal bool    `json:"tunnel_sent_last60s_within_goal"`
	// ByKind is keyed "peer:<kind>" or "server:<kind>": whom A exchanged
	// the datagram with, and what it was (relay/<kind> for what a relay
	// frame carried).
	ByKind map[string]*idleKind `json:"by_kind"`
}

type idleKind struct {
	Scope          string  `json:"scope"`
	Sent           int     `json:"sent"`
	Received       int     `json:"received"`
	SentPer10s     float64 `json:"sent_per_10s"`
	ReceivedPer10s float64 `json:"received_per_10s"`
	// SentAt and ReceivedAt are seconds into the window, so the report
	// can tell the intervals; at most maxTimes of each.
	SentAt     []float64 `json:"sent_at_s,omitempty"`
	ReceivedAt []float64 `json:"received_at_s,omitempty"`
}

const maxTimes = 100

func (r idleResult) summary() string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s (%s×%s, input %s): path %s (%s), at end %s; window %.0f s from %.1f s after settle, %.1f s after the introduction\n",
		r.WantPath, r.NATA, r.NATB, r.InputPolicy, r.Path, r.PathReason, r.PathAtEnd, r.WindowS, r.SettleToWindowS, r.IntroToWindowS)
	fmt.Fprintf(&s, "  %s\n", r.Phase)
	fmt.Fprintf(&s, "  per tunnel: sent %.2f / 10 s (last 60 s %.2f), received %.2f / 10 s (last 60 s %.2f); goal ≤ %.0f sent: %v (last 60 s: %v)\n",
		r.TunnelSent, r.TunnelSentLast, r.TunnelReceived, r.TunnelReceivedLast, idleGoal, r.TunnelWithinGoal, r.TunnelLastWithinGoal)
	fmt.Fprintf(&s, "  per node: registration sent %.2f / 10 s (last 60 s %.2f), received %.2f / 10 s; other sent %d, received %d\n",
		r.NodeSent, r.NodeSentLast, r.NodeReceived, r.OtherSent, r.OtherReceived)
	keys := make([]string, 0, len(r.ByKind))
	for k := range r.ByKind {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		c := r.ByKind[k]
		fmt.Fprintf(&s, "  %-28s %-6s sent %3d (%.2f/10 s) received %3d (%.2f/10 s) sent at %v\n",
			k, c.Scope, c.Sent, c.SentPer10s, c.Received, c.ReceivedPer10s, c.SentAt)
	}
	return s.String()
}

// benchIdle builds one NAT pair, captures Pi A's uplink from before the
// invite, and measures an idle window once the path has settled.
func benchIdle(b *testing.B, c natCase, want string, window time.Duration) idleResult {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), window+4*time.Minute)
	defer cancel()
	l := newLab(b)
	defer l.Close()
	pcap := filepath.Join(b.TempDir(), "keepalive-"+c.String()+"-piA.pcap")
	var capA *lab.Capture
	n, err := Build(ctx, l, Options{Peerlined: peerlinedBin, NAT: &NATOptions{
		A: c.a, B: c.b, Policy: c.policy, Impairment: benchDelay,
		Rendezvousd: rendezvousdBin, Peerline: peerlineBin,
		// From before the invite: the introduction's time is read off
		// the capture, as is the end of punching.
		beforePairing: func(n *Network) error {
			var err error
			capA, err = n.A.Host.Capture(ctx, uplinkDev, pcap, "udp")
			return err
		},
	}})
	if err != nil {
		b.Fatalf("%s: %v", c, err)
	}
	defer capA.Stop()
	path, reason, err := n.SettledPath(ctx, 30*time.Second)
	if err != nil {
		b.Fatalf("%s: %v", c, err)
	}
	settled := time.Now()
	if path != want {
		// Measured all the same: the figures are then for the path it took.
		b.Errorf("%s: path %s (%s), want %s", c, path, reason, want)
	}
	self, server := piLANA.Addr(), vpsAddr.Addr()
	start, err := waitPunchOver(ctx, pcap, self, server, settled)
	if err != nil {
		b.Fatalf("%s: %v", c, err)
	}
	end := start.Add(window)
	// A second more, so that what was sent at the window's end has been
	// written by tcpdump.
	select {
	case <-ctx.Done():
		b.Fatalf("%s: %v before the window ended", c, ctx.Err())
	case <-time.After(time.Until(end) + time.Second):
	}
	pathEnd, _, _, err := n.A.PeerPath()
	if err != nil {
		b.Errorf("%s: path at the window's end: %v", c, err)
	}
	if err := capA.Stop(); err != nil {
		// tcpdump ends on SIGTERM with a status; the file is complete.
		b.Logf("%s: stopping tcpdump: %v", c, err)
	}
	dgs, err := lab.ReadDatagrams(pcap)
	if err != nil {
		b.Fatalf("%s: %v", c, err)
	}
	r := analyzeIdle(dgs, self, server, start, end)
	r.Path, r.WantPath, r.PathReason, r.PathAtEnd = path, want, reason, pathEnd
	r.NATA, r.NATB, r.InputPolicy = string(c.a), string(c.b), string(c.policy)
	r.SettleToWindowS = start.Sub(settled).Seconds()
	r.IntroToWindowS = math.NaN()
	if intro, ok := lastIntroduction(dgs, self, server, start); ok {
		r.IntroToWindowS = start.Sub(intro).Seconds()
	}
	r.Phase = idlePhase(path, r.IntroToWindowS, window)
	if math.IsNaN(r.IntroToWindowS) {
		// JSON has no NaN; the phase text says no introduction was seen.
		r.IntroToWindowS = -1
	}
	return r
}

// idlePhase says which of the path manager's probing phases the window
// covers, in words for the JSON and the log.
func idlePhase(path string, introToStart float64, window time.Duration) string {
	if math.IsNaN(introToStart) {
		return "no introduction seen in the capture before the window"
	}
	if path != "relay" {
		return fmt.Sprintf("direct: steady state (probe every 60 s, WireGuard keepalive every 25 s); the window starts %.0f s after the introduction", introToStart)
	}
	return fmt.Sprintf("relay behind symmetric NATs: direct candidates probed every 2 min, WireGuard keepalive every 25 s through the relay; the window starts %.0f s after the introduction and its last 60 s begin %.0f s after it",
		introToStart, introToStart+window.Seconds()-lastWindow.Seconds())
}

// waitPunchOver waits until A has stopped punching and returns when the
// idle window starts: at settle, or just after A's last punching probe if
// that came later. Punching is told from the steady state by its rhythm:
// a probe to an address probed less than a second before (every 150 ms),
// where steady probes are 20 s or more apart.
func waitPunchOver(ctx context.Context, pcap string, self, server netip.Addr, settled time.Time) (time.Time, error) {
	const quiet = 2 * time.Second
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		// The file is still being written: a cut last record is
		// expected; what was read before it is complete.
		dgs, err := lab.ReadDatagrams(pcap)
		if err != nil && len(dgs) == 0 {
			err = fmt.Errorf("reading the capture while waiting for punching to end: %w", err)
		} else {
			err = nil
		}
		last, burst := lastPunchProbe(dgs, self, server)
		if err == nil && (!burst || time.Since(last) >= quiet) {
			if burst && last.After(settled) {
				return last.Add(time.Millisecond), nil
			}
			return settled, nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return time.Time{}, err
			}
			return time.Time{}, fmt.Errorf("A still punching (last probe burst %v ago): %w", time.Since(last).Round(time.Millisecond), ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// lastPunchProbe returns the time of the last direct probe A sent to an
// address it had probed less than a second before.
func lastPunchProbe(dgs []lab.Datagram, self, server netip.Addr) (time.Time, bool) {
	prev := map[netip.AddrPort]time.Time{}
	var last time.Time
	found := false
	for _, d := range dgs {
		if d.Src.Addr() != self || d.Dst.Addr() == server || idleKindOf(d.Payload) != rendezvous.TypeProbe.String() {
			continue
		}
		if p, ok := prev[d.Dst]; ok && d.Time.Sub(p) < time.Second {
			last, found = d.Time, true
		}
		prev[d.Dst] = d.Time
	}
	return last, found
}

// lastIntroduction is when A last got a punch message (the server's
// introduction to the peer) before t.
func lastIntroduction(dgs []lab.Datagram, self, server netip.Addr, t time.Time) (time.Time, bool) {
	var at time.Time
	for _, d := range dgs {
		if d.Dst.Addr() == self && d.Src.Addr() == server && d.Time.Before(t) && idleKindOf(d.Payload) == rendezvous.TypePunch.String() {
			at = d.Time
		}
	}
	return at, !at.IsZero()
}

// Scopes of a datagram: whom A pays it for.
const (
	scopeTunnel = "tunnel"
	scopeNode   = "node"
	scopeOther  = "other"
)

// idleKindOf names a datagram on A's tunnel socket: a rendezvous message
// by its type, a WireGuard message by its type (a transport message with
// no payload is a keepalive), a relay frame by what it carries.
func idleKindOf(b []byte) string {
	if rendezvous.IsRendezvous(b) {
		t, err := rendezvous.ParseHeader(b)
		if err != nil {
			return "rendezvous-malformed"
		}
		if t != rendezvous.TypeRelay {
			return t.String()
		}
		_, inner, err := rendezvous.ParseRelay(b)
		if err != nil {
			return "relay/malformed"
		}
		return "relay/" + idleKindOf(inner)
	}
	// WireGuard: a little-endian 32-bit type, 1..4 (reserved bytes zero).
	if len(b) < 4 || b[1] != 0 || b[2] != 0 || b[3] != 0 {
		return "other"
	}
	switch b[0] {
	case 1:
		return "wg-initiation"
	case 2:
		return "wg-response"
	case 3:
		return "wg-cookie"
	case 4:
		// Header 16 bytes and the 16-byte tag of an empty payload.
		if len(b) == 32 {
			return "wg-keepalive"
		}
		return "wg-data"
	}
	return "other"
}

// idleScope says whom A pays for a datagram of kind exchanged with the
// server or the peer: registrations are the node's; anything that serves
// the one peer (probes and their answers, WireGuard, relay frames, the
// connect and the introduction it brings) is the tunnel's.
func idleScope(kind string, withServer bool) string {
	if withServer {
		switch {
		case slices.Contains(nodeKinds, kind):
			return scopeNode
		case strings.HasPrefix(kind, "relay/") && !strings.HasSuffix(kind, "malformed"),
			slices.Contains(introKinds, kind):
			return scopeTunnel
		}
		return scopeOther
	}
	if slices.Contains(peerKinds, kind) || strings.HasPrefix(kind, "wg-") {
		return scopeTunnel
	}
	return scopeOther
}

var (
	nodeKinds = []string{rendezvous.TypeRegister.String(), rendezvous.TypeRegisterReply.String(),
		rendezvous.TypeCookie.String(), rendezvous.TypeUnregister.String(), rendezvous.TypeUnregisterReply.String()}
	introKinds = []string{rendezvous.TypeConnect.String(), rendezvous.TypeConnectReply.String(),
		rendezvous.TypeIncoming.String(), rendezvous.TypePunch.String()}
	peerKinds = []string{rendezvous.TypeProbe.String(), rendezvous.TypeProbeReply.String(), rendezvous.TypeBye.String()}
)

// analyzeIdle counts the datagrams A sent and received in (from, to].
func analyzeIdle(dgs []lab.Datagram, self, server netip.Addr, from, to time.Time) idleResult {
	win := to.Sub(from)
	lastFrom := to.Add(-min(lastWindow, win))
	r := idleResult{WindowS: win.Seconds(), ByKind: map[string]*idleKind{}}
	type tally struct{ sent, recv, sentLast, recvLast int }
	scopes := map[string]*tally{scopeTunnel: {}, scopeNode: {}, scopeOther: {}}
	for _, d := range dgs {
		if !d.Time.After(from) || d.Time.After(to) {
			continue
		}
		var sent bool
		var remote netip.Addr
		switch self {
		case d.Src.Addr():
			sent, remote = true, d.Dst.Addr()
		case d.Dst.Addr():
			remote = d.Src.Addr()
		default:
			continue
		}
		kind := idleKindOf(d.Payload)
		where := "peer"
		if remote == server {
			where = "server"
		}
		scope := idleScope(kind, remote == server)
		k := r.ByKind[where+":"+kind]
		if k == nil {
			k = &idleKind{Scope: scope}
			r.ByKind[where+":"+kind] = k
		}
		at := math.Round(d.Time.Sub(from).Seconds()*10) / 10
		last := d.Time.After(lastFrom)
		t := scopes[scope]
		if sent {
			k.Sent++
			t.sent++
			if last {
				t.sentLast++
			}
			if len(k.SentAt) < maxTimes {
				k.SentAt = append(k.SentAt, at)
			}
		} else {
			k.Received++
			t.recv++
			if last {
				t.recvLast++
			}
			if len(k.ReceivedAt) < maxTimes {
				k.ReceivedAt = append(k.ReceivedAt, at)
			}
		}
	}
	per10 := func(n int, d time.Duration) float64 {
		return math.Round(float64(n)/d.Seconds()*10*1000) / 1000
	}
	for _, k := range r.ByKind {
		k.SentPer10s, k.ReceivedPer10s = per10(k.Sent, win), per10(k.Received, win)
	}
	lastDur := to.Sub(lastFrom)
	tun, node, other := scopes[scopeTunnel], scopes[scopeNode], scopes[scopeOther]
	r.TunnelSent, r.TunnelReceived = per10(tun.sent, win), per10(tun.recv, win)
	r.TunnelSentLast, r.TunnelReceivedLast = per10(tun.sentLast, lastDur), per10(tun.recvLast, lastDur)
	r.NodeSent, r.NodeReceived = per10(node.sent, win), per10(node.recv, win)
	r.NodeSentLast = per10(node.sentLast, lastDur)
	r.OtherSent, r.OtherReceived = other.sent, other.recv
	r.TunnelWithinGoal = r.TunnelSent <= idleGoal
	r.TunnelLastWithinGoal = r.TunnelSentLast <= idleGoal
	return r
}
