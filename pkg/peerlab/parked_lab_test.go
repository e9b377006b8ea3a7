//go:build linux && lab

package peerlab

import (
	"fmt"
	"testing"
	"time"
)

// TestParkedPeerComesBack: A starts while B is switched off, so A's device
// for B never gets an answer and parks (status "parked"); B then starts,
// its handshake wakes A's device, and a call from A to B goes through with
// audio both ways.
func TestParkedPeerComesBack(t *testing.T) {
	ctx, n := newNetwork(t, 3*time.Minute)
	if err := n.B.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.A.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := n.A.Start(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := n.A.waitFor(ctx, 90*time.Second, "A's device for the switched-off B never parked", func() (bool, string) {
		st, err := n.A.Status()
		if err != nil || len(st.Peers) == 0 {
			return false, fmt.Sprint(err)
		}
		return st.Peers[0].Parked, fmt.Sprintf("parked %v, online %v", st.Peers[0].Parked, st.Peers[0].Online)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("A's device for the switched-off B parked %v after A started", time.Since(start).Round(time.Second))
	if err := n.B.Start(ctx); err != nil {
		t.Fatal(err)
	}
	err = n.A.waitFor(ctx, 30*time.Second, "B never came online at A", func() (bool, string) {
		st, err := n.A.StatusSince(ctx, time.Now())
		if err != nil {
			return false, err.Error()
		}
		return st.Peers[0].Online && !st.Peers[0].Parked, fmt.Sprintf("online %v, parked %v", st.Peers[0].Online, st.Peers[0].Parked)
	})
	if err != nil {
		t.Fatal(err)
	}
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Call(ctx, phoneA, phoneB, "sip:b@10.7.1.1", 2*time.Second)
	requireCall(t, r, err, "sip:a@10.4.1.1")
}
