//go:build linux && lab

package peerlab

import (
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

// TestCallQuality: a call between the two Pis' phones shows on both in
// `peerline calls --json` with its media both ways, no loss and an
// estimated MOS of a clean link (≥ 4), while live and for 24 h after it
// ended, with the state changing 10 s after the last packet.
func TestCallQuality(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Call(ctx, phoneA, phoneB, "sip:b@10.7.1.1", 4*time.Second)
	requireCall(t, r, err, "sip:a@10.4.1.1")
	hungUp := time.Now()

	check := func(node *Node, peer int) control.CallInfo {
		t.Helper()
		node.peerline = peerlineBin
		var calls []control.CallInfo
		if err := node.cli(ctx, &calls, "calls", "--json"); err != nil {
			t.Fatal(err)
		}
		if len(calls) != 1 {
			t.Fatalf("node %s: peerline calls = %+v, want the one call", node.Name, calls)
		}
		c := calls[0]
		t.Logf("node %s: call %d %s, %v long, sent %d received %d, loss %.2f%%, jitter %.2f ms, RTT %v, MOS %.2f (min %.2f)",
			node.Name, c.ID, c.State, c.LastPacket.Sub(c.Since).Round(time.Millisecond), c.Sent.Packets, c.Received.Packets,
			c.Received.LossPercent, float64(c.Received.Jitter)/1e6, rttOf(c), c.MOS, c.Received.MinMOS)
		if c.Peer != peer || c.Sent.Packets < 100 || c.Received.Packets < 100 {
			t.Errorf("node %s: call %+v, want media both ways with peer %d", node.Name, c, peer)
		}
		if c.Received.LossPercent > 1 || c.Sent.LossPercent > 1 {
			t.Errorf("node %s: loss %.2f%% received, %.2f%% sent on a clean link", node.Name, c.Received.LossPercent, c.Sent.LossPercent)
		}
		if c.MOS < 4 || c.Received.MOS < 4 || c.Sent.MOS < 4 {
			t.Errorf("node %s: MOS %.2f (received %.2f, sent %.2f), want ≥ 4 on a clean link", node.Name, c.MOS, c.Received.MOS, c.Sent.MOS)
		}
		if d := c.LastPacket.Sub(c.Since); d < 3*time.Second || d > 10*time.Second {
			t.Errorf("node %s: call lasted %v, want about the 4 s talked", node.Name, d)
		}
		return c
	}
	if c := check(n.A, 7); c.State != control.CallLive && time.Since(hungUp) < 9*time.Second {
		t.Errorf("node A: state %q %v after hanging up, want live for 10 s", c.State, time.Since(hungUp))
	}
	check(n.B, 4)

	// Ended 10 s after the last packet (and at most a 5 s sample later).
	deadline := time.Now().Add(20 * time.Second)
	for {
		var calls []control.CallInfo
		if err := n.A.cli(ctx, &calls, "calls", "--json"); err != nil {
			t.Fatal(err)
		}
		if len(calls) == 1 && calls[0].State == control.CallEnded {
			t.Logf("call ended in the list %v after hanging up", time.Since(hungUp).Round(time.Second))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("call still %+v 20 s after hanging up, want ended", calls)
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
	check(n.A, 7)
}

func rttOf(c control.CallInfo) time.Duration {
	if c.RTT == nil {
		return 0
	}
	return time.Duration(*c.RTT)
}

