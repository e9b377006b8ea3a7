//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/privacy"
)

// TestAnonymousFromPeer is issue 18 item 5 for peers: B's phone calls A's
// line 1 as sip:anonymous@… (an anonymous From URI). With A's policy for
// B at refuse, A's rewriter answers 433 and A's phone never rings; at
// redirect to A's second line, the caller gets a 302 to that line as B's
// node numbers it, follows it, and the call connects there with audio both
// ways; at accept it connects to line 1. Each policy comes by a config
// reload, for the next call.
func TestAnonymousFromPeer(t *testing.T) {
	l := newLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	n, err := Build(ctx, l, Options{
		Peerlined: peerlinedBin,
		HandsetsA: []string{gxp1610, gxp1610},
		HandsetsB: []string{t19p},
	})
	if err != nil {
		t.Fatal(err)
	}
	h1, h2, hb := n.A.Handsets[0], n.A.Handsets[1], n.B.Handsets[0]
	// Each phone's user is its line, as a provisioned account's is: the
	// 302 names line N's phone sip:N@…, and baresip answers 404 to a
	// user it is not.
	line1, err := n.A.StartHandsetPhone(ctx, l, h1, fmt.Sprint(h1.Line), 1000)
	if err != nil {
		t.Fatal(err)
	}
	line2, err := n.A.StartHandsetPhone(ctx, l, h2, fmt.Sprint(h2.Line), 700)
	if err != nil {
		t.Fatal(err)
	}
	caller, err := n.B.StartHandsetPhone(ctx, l, hb, "anonymous", 440)
	if err != nil {
		t.Fatal(err)
	}
	uri := fmt.Sprintf("sip:%d@%s", h1.Line, n.B.HandsetAddrOf(n.A, h1))
	callerAtA := "sip:anonymous@" + n.A.HandsetAddrOf(n.B, hb).String()
	t.Logf("A's lines %d and %d, B's caller on line %d dials %s", h1.Line, h2.Line, hb.Line, uri)

	setPolicy := func(r privacy.Rule) {
		t.Helper()
		n.A.Config.Anonymous = privacy.Policy{Peers: map[string]privacy.Rule{n.B.Config.Name: r}}
		if err := n.A.writeConfig(); err != nil {
			t.Fatal(err)
		}
		before := reloads(t, n.A)
		if err := syscall.Kill(n.A.Daemon.Pid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		if err := n.A.waitFor(ctx, 10*time.Second, "config not reloaded", func() (bool, string) {
			got := reloads(t, n.A)
			return got > before, ""
		}); err != nil {
			t.Fatal(err)
		}
	}
	rang := func(p *Phone) int {
		k := 0
		for _, ev := range p.Events() {
			if ev.Direction == "incoming" && (ev.Type == lab.EventCallIncoming || ev.Type == lab.EventCallEstablished) {
				k++
			}
		}
		return k
	}

	t.Run("refuse", func(t *testing.T) {
		setPolicy(privacy.Rule{Action: privacy.Refuse})
		start := time.Now()
		if err := caller.Dial(ctx, uri); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		ev, err := caller.WaitClosed(wctx)
		took := time.Since(start)
		if err != nil || !strings.Contains(ev.Param, "433") {
			t.Fatalf("anonymous call under refuse: closed after %v with %q, %v; want a 433", took, ev.Param, err)
		}
		t.Logf("anonymous call refused after %v: %s", took.Round(time.Millisecond), ev.Param)
		time.Sleep(500 * time.Millisecond)
		if k := rang(line1) + rang(line2); k != 0 {
			t.Errorf("A's phones took %d calls, want none", k)
		}
		st, err := n.A.StatusSince(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Peers) != 1 || st.Peers[0].Rewrite == nil {
			t.Fatalf("A's status has no rewriter counters: %+v", st.Peers)
		}
		in := st.Peers[0].Rewrite.Inbound
		if in.SIPAnonymousRefused < 1 || in.SIPRefusals["anonymous-refused"] != in.SIPAnonymousRefused || in.SIPAnonymousACK < 1 {
			t.Errorf("A's rewriter counted %d refused (%v), %d ACKs; want the call refused and its ACK absorbed",
				in.SIPAnonymousRefused, in.SIPRefusals, in.SIPAnonymousACK)
		}
	})

	t.Run("redirect", func(t *testing.T) {
		setPolicy(privacy.Rule{Action: privacy.Redirect, Line: h2.Line})
		r, err := Call(ctx, caller, line2, uri, 3*time.Second)
		requireCall(t, r, err, callerAtA)
		if k := rang(line1); k != 0 {
			t.Errorf("line 1 took %d calls, want none", k)
		}
		st, err := n.A.StatusSince(ctx, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if in := st.Peers[0].Rewrite.Inbound; in.SIPAnonymousRedirected < 1 || in.SIPRefusals["anonymous-redirected"] < 1 {
			t.Errorf("A's rewriter counted %d redirected (%v), want the call", in.SIPAnonymousRedirected, in.SIPRefusals)
		}
	})

	t.Run("accept", func(t *testing.T) {
		setPolicy(privacy.Rule{Action: privacy.Accept})
		r, err := Call(ctx, caller, line1, uri, 3*time.Second)
		requireCall(t, r, err, callerAtA)
	})
}

// reloads counts the configs the node's daemon has taken so far, from its
// log.
func reloads(t *testing.T, n *Node) int {
	t.Helper()
	b, err := os.ReadFile(n.daemonLog())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "config reloaded")
}
