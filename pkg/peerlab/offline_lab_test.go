//go:build linux && lab

package peerlab

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/control"
)

// TestPeerOffline: a call shows in `peerline calls` with its media figures;
// then B shuts down, A shows it offline at once (B said bye), and a call
// from A's phone to B fails with 480 instead of ringing.
func TestPeerOffline(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Call(ctx, phoneA, phoneB, "sip:b@10.7.1.1", 3*time.Second)
	requireCall(t, r, err, "sip:a@10.4.1.1")
	n.A.peerline = peerlineBin
	var calls []control.CallInfo
	if err := n.A.cli(ctx, &calls, "calls", "--json"); err != nil {
		t.Fatal(err)
	}
	if len(calls) == 0 || calls[0].Peer != 7 || calls[0].Received.Packets < 50 || calls[0].Sent.Packets < 50 {
		t.Errorf("peerline calls = %+v, want the call to peer 7 with media both ways", calls)
	}

	if err := n.B.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	err = n.A.waitFor(ctx, 10*time.Second, "B still online after it stopped", func() (bool, string) {
		st, err := n.A.StatusSince(ctx, time.Now())
		if err != nil {
			return false, err.Error()
		}
		return !st.Peers[0].Online, st.Peers[0].PathReason
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("A shows B offline %v after B stopped", time.Since(stopped).Round(time.Millisecond))
	// The rewriter hears of it within 250 ms.
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	if err := phoneA.Dial(ctx, "sip:b@10.7.1.1"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ev, err := phoneA.WaitClosed(wctx)
	took := time.Since(start)
	if err != nil || !strings.Contains(ev.Param, "480") {
		t.Fatalf("call to the offline peer: closed after %v with %q, %v; want a 480", took, ev.Param, err)
	}
	t.Logf("call to the offline peer ended after %v: %s", took.Round(time.Millisecond), ev.Param)
}

// TestPeerVanishes: B's Pi loses power (its link goes down: no bye). A's
// next call to B must fail with 480 instead of ringing: A's rewriter sends
// the INVITE, the path manager finds the path dead (a probe unanswered) and
// calls B offline, and the phone's INVITE retransmission gets the 480.
func TestPeerVanishes(t *testing.T) {
	ctx, n := newNetwork(t, 2*time.Minute)
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Call(ctx, phoneA, phoneB, "sip:b@10.7.1.1", 2*time.Second)
	requireCall(t, r, err, "sip:a@10.4.1.1")
	if _, err := n.B.Host.Run(ctx, "ip", "link", "set", uplinkDev, "down"); err != nil {
		t.Fatal(err)
	}
	// Power went a moment before the call, not with it. A may already
	// have noticed, if it sent anything since (a late RTCP packet).
	time.Sleep(time.Second)
	n.A.peerline = peerlineBin
	var st control.Status
	if err := n.A.cli(ctx, &st, "status", "--json"); err == nil && len(st.Peers) == 1 {
		t.Logf("before the call A shows B online %v (%s)", st.Peers[0].Online, st.Peers[0].PathReason)
	}
	start := time.Now()
	if err := phoneA.Dial(ctx, "sip:b@10.7.1.1"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ev, err := phoneA.WaitClosed(wctx)
	took := time.Since(start)
	if err != nil || !strings.Contains(ev.Param, "480") {
		t.Fatalf("call to the vanished peer: closed after %v with %q, %v; want a 480", took, ev.Param, err)
	}
	t.Logf("call to the vanished peer ended after %v: %s", took.Round(time.Millisecond), ev.Param)
	if err := n.A.cli(ctx, &st, "status", "--json"); err != nil {
		t.Fatal(err)
	}
	if p := st.Peers[0]; p.Online || !strings.Contains(p.PathReason, "not answering") {
		t.Errorf("A's status of B: online %v, %q; want offline, not answering", p.Online, p.PathReason)
	}
}
