//go:build linux && lab

package peerlab

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

// TestSecondDaemonRefused: a second peerlined started on a running Pi with
// the same config (a second start by hand, say) exits at once, naming the
// running one's pid and saying to stop it first, and the running one keeps
// its control socket, its status and its tunnel.
func TestSecondDaemonRefused(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	node := n.A
	first, err := node.Status()
	if err != nil {
		t.Fatal(err)
	}
	// Bounded: a second daemon that took no lock would run until killed.
	runCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	out, err := node.Host.Run(runCtx, peerlinedBin, "-config", node.ConfigPath)
	if err == nil || runCtx.Err() != nil {
		t.Fatalf("second peerlined: err %v, ctx %v; want it to exit at once with an error\n%s", err, runCtx.Err(), out)
	}
	want := "another peerlined with this prefix is running (pid " + strconv.Itoa(first.PID)
	if !strings.Contains(out, want) || !strings.Contains(out, "stop it first (systemctl stop peerlined)") {
		t.Errorf("second peerlined said %q; want %q and what to do", out, want)
	}
	var st control.Status
	if err := control.Call(ctx, control.SocketPath(node.Config.RunDir), control.CmdStatus, nil, &st); err != nil {
		t.Fatalf("the running daemon's control socket after the refused start: %v", err)
	}
	if !st.Ready || len(st.Peers) != 1 || !st.Peers[0].Up {
		t.Errorf("the running daemon after the refused start: ready %v, peers %+v; want ready with its tunnel up", st.Ready, st.Peers)
	}
	after, err := node.Status()
	if err != nil || after.PID != first.PID || !after.Ready {
		t.Errorf("status.json after the refused start: %+v, %v; want pid %d, ready", after, err, first.PID)
	}
}
