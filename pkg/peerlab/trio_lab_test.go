//go:build linux && lab

package peerlab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// eventTransfer is baresip 1.0's event for a REFER received in a call; its
// Param is the Refer-To URI, which the phone calls at once.
const eventTransfer = "TRANSFER"

// trioTimeout bounds each three-Pi test, network and phones included.
const trioTimeout = 90 * time.Second

// newTrio builds the three-Pi network for a test that must finish within
// timeout; the lab goes away with the test.
func newTrio(t *testing.T, timeout time.Duration) (context.Context, *Trio) {
	t.Helper()
	l := newLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	t.Cleanup(cancel)
	start := time.Now()
	tr, err := BuildTrio(ctx, l, TrioOptions{Peerlined: peerlinedBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("three Pis up and paired in %v", time.Since(start).Round(time.Millisecond))
	return ctx, tr
}

// sipURI is user's phone at addr.
func sipURI(user string, addr netip.Addr) string { return "sip:" + user + "@" + addr.String() }

// waitPhoneEvent polls p's events until pick finds one, for at most
// within. Unlike Phone.WaitEvent it can tell calls apart (by account or by
// call id), which a phone with two calls needs.
func waitPhoneEvent(ctx context.Context, p *Phone, within time.Duration, what string, pick func(lab.Event) bool) (lab.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		evs := p.Events()
		for _, ev := range evs {
			if pick(ev) {
				return ev, nil
			}
		}
		select {
		case <-ctx.Done():
			return lab.Event{}, fmt.Errorf("phone %s: no %s within %v; its events: %s", p.URI(), what, within, describeEvents(evs))
		case <-tick.C:
		}
	}
}

// describeEvents lists events with what tells them apart, for a failure
// message.
func describeEvents(evs []lab.Event) string {
	if len(evs) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(evs))
	for _, ev := range evs {
		s := ev.Type
		if ev.Direction != "" || ev.PeerURI != "" {
			s += fmt.Sprintf("(%s %s", ev.Direction, ev.PeerURI)
			if ev.Param != "" {
				s += " " + ev.Param
			}
			s += ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// conferenceLeg is one of the two calls the bridging phone makes: its own
// account, whose received audio goes into the aubridge device Play and
// whose microphone is the aubridge device Source.
type conferenceLeg struct {
	User, Play, Source string
}

// account is the leg's line in baresip's accounts syntax: its own AOR at
// the phone's one address, and audio devices of its own instead of the
// phone's tone file and null speaker.
func (leg conferenceLeg) account(addr netip.Addr) string {
	return fmt.Sprintf("<%s>;regint=0;audio_player=aubridge,%s;audio_source=aubridge,%s", sipURI(leg.User, addr), leg.Play, leg.Source)
}

// TestConference is a three-way conference made on a phone: A's phone
// calls B's phone through one tunnel and C's phone through another, and
// bridges the two calls itself. baresip 1.0 has no mixer, so the bridge is
// two accounts of one baresip at A's one address, crossed over aubridge
// devices: what the leg to B receives is the microphone of the leg to C and
// the other way round. B's phone plays 440 Hz and C's 1000 Hz; B must hear
// 1000 Hz and C 440 Hz, which only happens while both calls are up and the
// media of each peer crosses A's phone into the other peer's tunnel.
func TestConference(t *testing.T) {
	ctx, tr := newTrio(t, trioTimeout)
	const hzB, hzC = 440, 1000
	phoneB, err := tr.B.StartPhone(ctx, tr.Lab, "b", hzB)
	if err != nil {
		t.Fatal(err)
	}
	phoneC, err := tr.C.StartPhone(ctx, tr.Lab, "c", hzC)
	if err != nil {
		t.Fatal(err)
	}
	// The account StartPhone makes plays silence and is not used: the legs
	// are accounts of their own, added while baresip runs.
	phoneA, err := tr.A.StartPhone(ctx, tr.Lab, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	legs := []struct {
		conferenceLeg
		callee *Phone
		node   *Node
	}{
		{conferenceLeg{User: "ab", Play: "fromb", Source: "fromc"}, phoneB, tr.B},
		{conferenceLeg{User: "ac", Play: "fromc", Source: "fromb"}, phoneC, tr.C},
	}
	var established []lab.Event
	for _, leg := range legs {
		aor := sipURI(leg.User, tr.A.PhoneAddr())
		if out, err := phoneA.Command(ctx, "uanew", leg.account(tr.A.PhoneAddr())); err != nil {
			t.Fatalf("adding the conference leg %s to A's phone: %v (%s)", aor, err, out)
		}
		// dial places the call from the current account.
		if out, err := phoneA.Command(ctx, "uafind", aor); err != nil {
			t.Fatalf("selecting %s on A's phone: %v (%s)", aor, err, out)
		}
		uri := sipURI(strings.ToLower(leg.node.Name), tr.A.AddrOf(leg.node))
		if err := phoneA.Dial(ctx, uri); err != nil {
			t.Fatal(err)
		}
		ev, err := waitPhoneEvent(ctx, phoneA, 15*time.Second, "established call from "+aor, func(ev lab.Event) bool {
			return ev.Type == lab.EventCallEstablished && ev.AccountAOR == aor
		})
		if err != nil {
			t.Fatalf("A's leg %s to %s: %v", aor, uri, err)
		}
		if ev.PeerURI != uri {
			t.Errorf("A's leg %s: peer %q, want %q", aor, ev.PeerURI, uri)
		}
		established = append(established, ev)
		in, err := leg.callee.WaitIncoming(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The callee shows A by its own index for A's node.
		if want := sipURI(leg.User, leg.node.AddrOf(tr.A)); in.PeerURI != want {
			t.Errorf("%s's phone showed A's leg %s as %q, want %q", leg.node.Name, aor, in.PeerURI, want)
		}
		if _, err := leg.callee.WaitEstablished(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if established[0].CallID == established[1].CallID {
		t.Fatalf("A's two legs are one call (%s)", established[0].CallID)
	}
	select {
	case <-time.After(4 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	// Both legs still up after the talk: no leg closed before the other's
	// audio had time to cross.
	for _, ev := range phoneA.Events() {
		if ev.Type == lab.EventCallClosed {
			t.Fatalf("A's call %s to %s closed during the conference (%s); both must be up at once", ev.CallID, ev.PeerURI, ev.Param)
		}
	}
	for _, p := range []*Phone{phoneB, phoneC} {
		if err := p.Hangup(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := p.WaitClosed(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, leg := range legs {
		aor := sipURI(leg.User, tr.A.PhoneAddr())
		if _, err := waitPhoneEvent(ctx, phoneA, 10*time.Second, "close of "+aor, func(ev lab.Event) bool {
			return ev.Type == lab.EventCallClosed && ev.AccountAOR == aor
		}); err != nil {
			t.Error(err)
		}
	}
	// Each callee hears the other one's tone, and nothing but it: A's
	// phone plays nothing of its own.
	for _, c := range []struct {
		listener *Phone
		wantHz   float64
		from     string
	}{{phoneB, hzC, "C"}, {phoneC, hzB, "B"}} {
		a, err := heard(ctx, c.listener, c.wantHz)
		if err != nil {
			t.Errorf("%s's phone should hear %s's %.0f Hz through A's phone: %v (measured %v)", c.listener.Node.Name, c.from, c.wantHz, err, a)
			continue
		}
		t.Logf("%s's phone heard %v: %s's tone, bridged by A's phone", c.listener.Node.Name, a, c.from)
	}
}

// TestTransfer is a blind transfer with REFER across tunnels: A's phone
// calls B's phone, B's phone transfers A to a target, A's phone follows the
// REFER and calls the target, and the two talk with audio checked both
// ways.
//
// "to B's own line" is the harness check: a target B writes as its own
// 10.0.s.1, which the rewriter maps today. "to C" is the third-node case:
// B writes C's address in its own numbering, which means nothing (or
// another node) at A unless the rewriter maps it into A's numbering on the
// way.
func TestTransfer(t *testing.T) {
	t.Run("to B's own line", func(t *testing.T) {
		testTransfer(t, "transfer-own-line", func(tr *Trio) (target *Node, referTo string) {
			return tr.B, sipURI("b", tr.B.PhoneAddr())
		})
	})
	t.Run("to C", func(t *testing.T) {
		testTransfer(t, "transfer-third-node", func(tr *Trio) (target *Node, referTo string) {
			return tr.C, sipURI("c", tr.B.AddrOf(tr.C))
		})
	})
}

// testTransfer runs one transfer; target says which node's phone B sends
// A's phone to, and the Refer-To B's phone writes for it. The REFER, as B's
// phone sent it and as A's received it, is checked against the golden file
// test/sipp/golden/<golden>.txt.
func testTransfer(t *testing.T, golden string, target func(*Trio) (*Node, string)) {
	labtest.RequireTools(t, "tcpdump")
	ctx, tr := newTrio(t, trioTimeout)
	phoneA, err := tr.A.StartPhone(ctx, tr.Lab, "a", 1000)
	if err != nil {
		t.Fatal(err)
	}
	phoneB, err := tr.B.StartPhone(ctx, tr.Lab, "b", 440)
	if err != nil {
		t.Fatal(err)
	}
	// 700 Hz: apart from A's and B's tones by more than CheckTone's
	// tolerance, and low enough for sox's rough estimate (1600 Hz reads
	// 1496).
	phoneC, err := tr.C.StartPhone(ctx, tr.Lab, "c", 700)
	if err != nil {
		t.Fatal(err)
	}
	targetNode, referTo := target(tr)
	targetPhone := map[*Node]*Phone{tr.B: phoneB, tr.C: phoneC}[targetNode]
	user := strings.ToLower(targetNode.Name)
	// What A's phone must dial: the target in A's numbering.
	wantDial := sipURI(user, tr.A.AddrOf(targetNode))
	// What the target's phone must show: A in the target's numbering.
	wantSeen := sipURI("a", targetNode.AddrOf(tr.A))

	// A's phone port, to read the INVITE it sent after the REFER.
	capPath := filepath.Join(tr.Lab.Dir(), "transfer-phoneA.pcap")
	capA, err := tr.A.PhoneHost.Capture(ctx, "eth0", capPath, "udp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { capA.Stop() })
	capB, err := tr.B.PhoneHost.Capture(ctx, "eth0", filepath.Join(tr.Lab.Dir(), "transfer-phoneB.pcap"), "udp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { capB.Stop() })

	first := sipURI("b", tr.A.AddrOf(tr.B))
	if err := phoneA.Dial(ctx, first); err != nil {
		t.Fatal(err)
	}
	call1, err := phoneA.WaitEstablished(ctx)
	if err != nil {
		t.Fatalf("A's call to %s: %v", first, err)
	}
	if _, err := phoneB.WaitIncoming(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := phoneB.WaitEstablished(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}

	transferAt := time.Now()
	if out, err := phoneB.Command(ctx, "transfer", referTo); err != nil {
		t.Fatalf("B's phone transferring A to %s: %v (%s)", referTo, err, out)
	}
	xfer, err := waitPhoneEvent(ctx, phoneA, 10*time.Second, "REFER (TRANSFER event)", func(ev lab.Event) bool {
		return ev.Type == eventTransfer
	})
	if err != nil {
		t.Fatalf("B's phone sent REFER to %s, A's phone never acted on it: %v", referTo, err)
	}
	// The new call is any event of a call other than the first; it ends
	// as established or closed.
	isCall2 := func(ev lab.Event) bool { return ev.CallID != "" && ev.CallID != call1.CallID }
	end, err := waitPhoneEvent(ctx, phoneA, 40*time.Second, "outcome of the call the REFER asked for", func(ev lab.Event) bool {
		return isCall2(ev) && (ev.Type == lab.EventCallEstablished || ev.Type == lab.EventCallClosed)
	})
	dialled := "(no new call)"
	for _, ev := range phoneA.Events() {
		if isCall2(ev) && ev.PeerURI != "" {
			dialled = ev.PeerURI
			break
		}
	}
	invites := invitesFrom(t, capA, tr.A.PhoneAddr(), transferAt)
	if err := capB.Stop(); err != nil {
		t.Logf("stopping B's capture: %v", err)
	}
	title := fmt.Sprintf("baresip on phone B blind-transfers phone A to %s (A numbers B %d and C %d; B numbers A %d and C %d): the REFER as B's phone sent it and as A's phone received it",
		referTo, tr.A.AddrOf(tr.B).As4()[1], tr.A.AddrOf(tr.C).As4()[1], tr.B.AddrOf(tr.A).As4()[1], tr.B.AddrOf(tr.C).As4()[1])
	checkGolden(t, filepath.Join(sippDir, "golden", golden+".txt"), referGolden(t, title, capB.Path(), capA.Path(), tr))
	t.Logf("B's phone wrote Refer-To %s; A's phone was referred to %q, dialled %s, request lines %q", referTo, xfer.Param, dialled, invites)
	if err != nil || end.Type != lab.EventCallEstablished || dialled != wantDial {
		outcome := fmt.Sprintf("%s %s", end.Type, end.Param)
		if err != nil {
			outcome = err.Error()
		}
		t.Fatalf("B transferred A with Refer-To %s (%s's phone in B's numbering); A's phone was referred to %q and dialled %s (INVITE request lines on A's phone port: %q); outcome: %s; want a call to %s (%s's phone in A's numbering), established",
			referTo, targetNode.Name, xfer.Param, dialled, invites, outcome, wantDial, targetNode.Name)
	}
	// For the transfer to B's own line, the call before the REFER was
	// B's first incoming call, already taken above.
	inCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	in, err := targetPhone.WaitIncoming(inCtx)
	cancel()
	if err != nil {
		t.Fatalf("A's phone is in a call with %s, but %s's phone saw no call: %v", dialled, targetNode.Name, err)
	}
	t.Logf("%s's phone showed the transferred caller as %s", targetNode.Name, in.PeerURI)
	if in.PeerURI != wantSeen {
		t.Errorf("%s's phone showed the transferred caller as %q, want %q", targetNode.Name, in.PeerURI, wantSeen)
	}
	// B's phone leaves the first call once A's new call is up.
	if _, err := waitPhoneEvent(ctx, phoneA, 10*time.Second, "close of the transferred call", func(ev lab.Event) bool {
		return ev.Type == lab.EventCallClosed && ev.CallID == call1.CallID
	}); err != nil {
		t.Error(err)
	}
	select {
	case <-time.After(3 * time.Second):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
	if err := phoneA.Hangup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := waitPhoneEvent(ctx, phoneA, 10*time.Second, "close of the new call", func(ev lab.Event) bool {
		return ev.Type == lab.EventCallClosed && ev.CallID == end.CallID
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := waitPhoneEvent(ctx, targetPhone, 10*time.Second, "close of the new call", func(ev lab.Event) bool {
		return ev.Type == lab.EventCallClosed && ev.Direction == "incoming" && ev.CallID == in.CallID
	}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		listener, speaker *Phone
	}{{targetPhone, phoneA}, {phoneA, targetPhone}} {
		a, err := heard(ctx, c.listener, c.speaker.ToneHz)
		if err != nil {
			t.Errorf("%s's phone after the transfer: %v (measured %v)", c.listener.Node.Name, err, a)
			continue
		}
		t.Logf("%s's phone heard %v from %s's", c.listener.Node.Name, a, c.speaker.Node.Name)
	}
}

// cseqNumber is a REFER's CSeq number, which baresip starts at random;
// baresipInstance is the address of a baresip object that it puts in its
// Contact user parts, different every run.
var (
	cseqNumber      = regexp.MustCompile(`(?im)^(CSeq[ \t]*:[ \t]*)\d+`)
	baresipInstance = regexp.MustCompile(`-0x[0-9a-f]+@`)
)

// referGolden renders the first REFER B's phone sent (from its capture) and
// the first A's phone received (from its), normalized for a golden file.
func referGolden(t *testing.T, title, capB, capA string, tr *Trio) string {
	t.Helper()
	first := func(path string, pick func(lab.Datagram) bool) string {
		ds, err := lab.ReadDatagrams(path)
		if err != nil {
			t.Fatalf("reading %s: %v", path, err)
		}
		for _, d := range ds {
			if pick(d) && strings.HasPrefix(string(d.Payload), "REFER ") {
				text := cseqNumber.ReplaceAllString(lab.NormalizeSIP(d.Payload), "${1}<cseq>")
				return baresipInstance.ReplaceAllString(text, "-<instance>@")
			}
		}
		t.Errorf("no REFER in %s", path)
		return ""
	}
	sent := first(capB, func(d lab.Datagram) bool { return d.Src.Addr() == tr.B.PhoneAddr() })
	got := first(capA, func(d lab.Datagram) bool { return d.Dst.Addr() == tr.A.PhoneAddr() })
	return fmt.Sprintf("# %s\n\n=== B's phone sent\n%s\n=== A's phone received\n%s", title, sent, got)
}

// invitesFrom returns the request lines of the INVITEs A's phone sent
// since t, as captured on its port.
func invitesFrom(t *testing.T, c *lab.Capture, from netip.Addr, since time.Time) []string {
	t.Helper()
	// A retransmission may still be in flight.
	time.Sleep(100 * time.Millisecond)
	if err := c.Stop(); err != nil {
		t.Logf("stopping the capture: %v", err)
	}
	all, err := lab.ReadDatagrams(c.Path())
	if err != nil {
		t.Logf("reading %s: %v", c.Path(), err)
		return nil
	}
	var lines []string
	for _, d := range all {
		if d.Src.Addr() != from || d.Time.Before(since) || !strings.HasPrefix(string(d.Payload), "INVITE ") {
			continue
		}
		line, _, _ := strings.Cut(string(d.Payload), "\r\n")
		if len(lines) == 0 || lines[len(lines)-1] != line {
			lines = append(lines, line)
		}
	}
	return lines
}

func TestValidTrioIndex(t *testing.T) {
	for _, tc := range []struct {
		name    string
		idx     [3][3]int
		wantErr bool
	}{
		{"default", DefaultTrioIndex, false},
		{"same index at two nodes", [3][3]int{{0, 1, 2}, {1, 0, 2}, {1, 2, 0}}, false},
		{"one node numbers both peers alike", [3][3]int{{0, 7, 7}, {4, 0, 5}, {3, 6, 0}}, true},
		{"zero", [3][3]int{{0, 7, 9}, {0, 0, 5}, {3, 6, 0}}, true},
		{"wire range", [3][3]int{{0, 7, 9}, {4, 0, 5}, {3, 254, 0}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := validTrioIndex(tc.idx); (err != nil) != tc.wantErr {
				t.Errorf("validTrioIndex(%v) = %v, want error %v", tc.idx, err, tc.wantErr)
			}
		})
	}
}
