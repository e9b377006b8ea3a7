//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// lazyTimers shortens pkg/wgtunnel's lazy timers in a daemon built with
// the test hook (testhook.go): the keepalive goes off 2 s after the last
// data, and a device parks once its last handshake is 8 s old and nothing
// came in for 2 s. WireGuard's own constants inside wireguard-go are not
// shortened, so each park drops a session both ends still hold.
const lazyTimers = "parkCheck=250ms,parkNever=3s,parkIdle=2s,sessionLife=8s,keepaliveIdle=2s"

// TestLazyIdleCall: two paired Pis, both online, make a call, then idle:
// both devices park, while each still shows the other online on its path
// (the path manager's probes). A call placed then, from A, from B, and
// from A while B's phone sends to A's at the same instant (both ends wake
// at once), connects with audio both ways; its set-up time is logged next
// to a call on awake tunnels. Behind two NATs, 20 ms each way. `peerline peers` and `wg show` are logged as
// they show a parked online peer.
func TestLazyIdleCall(t *testing.T) {
	labtest.RequireRoot(t)
	bin := filepath.Join(t.TempDir(), "peerlined-testhook")
	l := newLab(t)
	natBins(t)
	if out, err := exec.Command("go", "build", "-tags", "peerline_testhook", "-o", bin, "github.com/peerline/peerline/cmd/peerlined").CombinedOutput(); err != nil {
		t.Fatalf("building peerlined with the test hook: %v\n%s", err, out)
	}
	t.Setenv("PEERLINE_TESTHOOK_LAZY", lazyTimers)
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	const oneWay = 20 * time.Millisecond
	n, err := Build(ctx, l, Options{Peerlined: bin, NAT: &NATOptions{
		A: lab.PortRestricted, B: lab.PortRestricted, Policy: lab.InputDrop,
		Impairment:  lab.Impairment{Delay: oneWay},
		Rendezvousd: rendezvousdBin, Peerline: peerlineBin,
	}})
	if err != nil {
		t.Fatal(err)
	}
	path, reason := waitPath(t, ctx, n, 20*time.Second)
	t.Logf("path %s (%s), %v each way", path, reason, oneWay)
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	uriB, uriA := "sip:b@"+n.A.AddrOf(n.B).String(), "sip:a@"+n.B.AddrOf(n.A).String()
	awake, err := Call(ctx, phoneA, phoneB, uriB, 2*time.Second)
	requireCall(t, awake, err, uriA)
	t.Logf("a call on awake tunnels: set-up %v", awake.Setup)

	// waitParked waits until each node's device for the other is parked
	// and the other still shows online on a path.
	waitParked := func(what string) {
		t.Helper()
		start := time.Now()
		for _, node := range []*Node{n.A, n.B} {
			err := node.waitFor(ctx, 60*time.Second, what+": "+node.Name+"'s device for its peer never parked while the peer showed online", func() (bool, string) {
				st, err := node.Status()
				if err != nil || len(st.Peers) == 0 || !st.Updated.After(start) {
					return false, fmt.Sprint("no fresh status ", err)
				}
				p := st.Peers[0]
				if p.Parked && (!p.Online || p.Path == "") {
					t.Errorf("%s: %s shows its parked peer offline (online %v, path %q, %s); want it online on its path", what, node.Name, p.Online, p.Path, p.PathReason)
				}
				return p.Parked && p.Online && p.Path != "", fmt.Sprintf("parked %v, online %v, path %q", p.Parked, p.Online, p.Path)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("%s: both parked %v after the call", what, time.Since(start).Round(100*time.Millisecond))
	}
	waitParked("after the first call")
	if out, err := n.A.Host.Run(ctx, peerlineBin, "-socket", filepath.Join(n.A.Config.RunDir, "control.sock"), "peers"); err == nil {
		t.Logf("peerline peers at A, B parked:\n%s", out)
		if !strings.Contains(out, "yes") {
			t.Errorf("peerline peers at A does not show the parked B online:\n%s", out)
		}
	} else {
		t.Errorf("peerline peers: %v: %s", err, out)
	}
	st, err := n.A.Status()
	if err != nil || len(st.Peers) == 0 {
		t.Fatalf("A's status: %v", err)
	}
	dev := fmt.Sprintf("%s%d", n.A.Config.Prefix, st.Peers[0].Index)
	if out, err := n.A.Host.Run(ctx, "wg", "show", dev); err == nil {
		t.Logf("wg show %s at A, B parked:\n%s", dev, out)
		if !strings.Contains(out, "endpoint:") || !strings.Contains(out, "latest handshake:") {
			t.Errorf("wg show of the parked device lacks its endpoint or handshake:\n%s", out)
		}
	} else {
		t.Logf("wg show %s: %v: %s", dev, err, out)
	}

	setups := map[string][]time.Duration{}
	for round := range 3 {
		for _, tc := range []struct {
			name           string
			caller, callee *Phone
			uri, seen      string
			both           bool
		}{
			{"from A", phoneA, phoneB, uriB, uriA, false},
			{"from B", phoneB, phoneA, uriA, uriB, false},
			{"from A while B sends", phoneA, phoneB, uriB, uriA, true},
		} {
			if tc.both {
				// B's phone sends to A's phone as A dials: the first packet
				// into each parked TUN at the same instant.
				go n.B.PhoneHost.Run(ctx, "ping", "-c", "3", "-i", "0.2", "-W", "1", n.B.AddrOf(n.A).String())
			}
			r, err := Call(ctx, tc.caller, tc.callee, tc.uri, 2*time.Second)
			requireCall(t, r, err, tc.seen)
			t.Logf("round %d: a call %s with both devices parked: set-up %v (on awake tunnels %v)", round, tc.name, r.Setup, awake.Setup)
			setups[tc.name] = append(setups[tc.name], r.Setup)
			waitParked("after the call " + tc.name)
		}
	}
	for name, d := range setups {
		slices.Sort(d)
		t.Logf("call %s, both devices parked: set-up median %v (min %v, max %v); on awake tunnels %v",
			name, d[len(d)/2].Round(time.Millisecond), d[0].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond), awake.Setup.Round(time.Millisecond))
	}
}
