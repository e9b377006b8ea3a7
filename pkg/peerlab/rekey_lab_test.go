//go:build linux && lab

package peerlab

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

// TestRekeyCrossing: two idle paired Pis rekey at the same instant, as two
// Pis whose keepalives are locked in phase do when their keys expire, and
// their handshake initiations cross on a path with 20 ms each way; a call
// placed at that moment must connect within 1 s of a normal call's set-up
// on the same network (issue 14.2). Without the crossed-handshake guard
// (PEERLINE_LAB_NOCROSSGUARD=1 builds peerlined without it) the call waits
// for WireGuard's 5 s retry and this test fails.
//
// WireGuard's rekey constants (120/180 s) cannot be shortened, so the
// daemons are built with a test hook (pkg/wgtunnel testhook.go, tag
// peerline_testhook) that expires both tunnels' keys at one wall-clock
// instant, exactly as the reject-after time does: the next keepalive then
// starts a handshake on both ends.
func TestRekeyCrossing(t *testing.T) {
	labtest.RequireRoot(t)
	// Before the lab, so that it is removed after the lab's cleanup has
	// run the daemon's -cleanup.
	bin := filepath.Join(t.TempDir(), "peerlined-testhook")
	l := newLab(t)
	natBins(t)
	tags := "peerline_testhook"
	if os.Getenv("PEERLINE_LAB_NOCROSSGUARD") != "" {
		tags += ",peerline_nocrossguard"
		t.Log("peerlined built WITHOUT the crossed-handshake guard: this run is expected to fail")
	}
	if out, err := exec.Command("go", "build", "-tags", tags, "-o", bin, "github.com/peerline/peerline/cmd/peerlined").CombinedOutput(); err != nil {
		t.Fatalf("building peerlined with the test hook: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
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
	t.Logf("path %s (%s)", path, reason)
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	uri := "sip:b@" + n.A.AddrOf(n.B).String()
	normal, err := Call(ctx, phoneA, phoneB, uri, 2*time.Second)
	requireCall(t, normal, err, "sip:a@"+n.B.AddrOf(n.A).String())

	// The two daemons rekey together; the instants they wake at differ
	// by scheduling, so a try whose initiations did not cross (one
	// arrived before the other left) is repeated.
	for try := 1; ; try++ {
		// WireGuard refuses an initiation whose timestamp is not newer
		// than the last one's (2^24 ns steps); a rekey comes minutes
		// after a handshake, not a few milliseconds.
		time.Sleep(time.Second)
		at := time.Now().Add(500 * time.Millisecond)
		for _, node := range []*Node{n.A, n.B} {
			f := wgtunnel.TestHookFile(node.Daemon.Pid())
			if err := os.WriteFile(f, []byte(strconv.FormatInt(at.UnixNano(), 10)), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(f) })
		}
		for _, node := range []*Node{n.A, n.B} {
			if err := syscall.Kill(node.Daemon.Pid(), syscall.SIGUSR2); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(time.Until(at))
		r, err := Call(ctx, phoneA, phoneB, uri, 2*time.Second)
		crossedA, crossedB := crossings(t, n.A, at), crossings(t, n.B, at)
		t.Logf("try %d: crossings logged A %d, B %d; call set-up %v (normal %v)", try, crossedA, crossedB, setup(r), normal.Setup)
		if crossedA == 0 || crossedB == 0 {
			if err != nil {
				t.Fatalf("the call after a rekey that did not cross failed: %v", err)
			}
			if try == 5 {
				t.Fatal("in 5 tries the two rekeys never crossed: the test cannot show anything")
			}
			continue
		}
		requireCall(t, r, err, "sip:a@"+n.B.AddrOf(n.A).String())
		if d := r.Setup - normal.Setup; d > time.Second {
			for _, node := range []*Node{n.A, n.B} {
				t.Logf("%s's log since the rekey:\n%s", node.Name, logSince(t, node, at))
			}
			t.Fatalf("the call placed as the handshakes crossed took %v to set up, %v more than a normal call's %v (want at most 1 s more)",
				r.Setup, d, normal.Setup)
		}
		return
	}
}

func setup(r *CallResult) time.Duration {
	if r == nil {
		return 0
	}
	return r.Setup
}

// crossings counts the mux's "handshake initiations crossed" lines the
// node logged since at.
func crossings(t *testing.T, node *Node, at time.Time) int {
	t.Helper()
	return strings.Count(logSince(t, node, at), "handshake initiations crossed")
}

// logSince is the daemon's log from at on (lines carry slog's time=).
func logSince(t *testing.T, node *Node, at time.Time) string {
	t.Helper()
	s, err := node.Daemon.Log()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for line := range strings.Lines(s) {
		ts, _, ok := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !ok {
			continue
		}
		when, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil || when.Before(at.Add(-100*time.Millisecond)) {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}
