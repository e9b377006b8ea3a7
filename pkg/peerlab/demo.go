package peerlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/supervisor"
)

// DemoOptions configure RunDemo.
type DemoOptions struct {
	Peerlined string
	// Talk is how long each call lasts.
	Talk time.Duration
	Log  *slog.Logger
}

// Demo is the outcome of RunDemo.
type Demo struct {
	Net            *Network
	Call, CallBack *CallResult
	// Status is each node's status after the calls, A then B.
	Status []*supervisor.Status
}

// ErrDemoFailed is returned when a call connected but something it should
// show (audio, caller address) was wrong; the summary says what.
var ErrDemoFailed = errors.New("demo failed")

// RunDemo builds the two-Pi network in l, calls from A to B, calls back
// from B to the address its phone showed, and prints a summary to out.
func RunDemo(ctx context.Context, l *lab.Lab, out io.Writer, opts DemoOptions) (*Demo, error) {
	if opts.Talk == 0 {
		opts.Talk = 3 * time.Second
	}
	step := func(format string, args ...any) { fmt.Fprintf(out, "· "+format+"\n", args...) }
	t0 := time.Now()
	step("building two simulated Pis, their phones and an Internet bridge")
	n, err := Build(ctx, l, Options{Peerlined: opts.Peerlined})
	if err != nil {
		return nil, err
	}
	step("both peerlined daemons ready (%.1f s): A knows B as peer %d, B knows A as peer %d",
		time.Since(t0).Seconds(), n.A.Config.Peers[0].Index, n.B.Config.Peers[0].Index)
	phoneA, phoneB, err := n.StartPhones(ctx)
	if err != nil {
		return nil, err
	}
	d := &Demo{Net: n}
	uri := fmt.Sprintf("sip:b@%s", n.A.AddrOf(n.B))
	step("phone A (%s at A) dials %s", n.A.PhoneAddr(), uri)
	d.Call, err = Call(ctx, phoneA, phoneB, uri, opts.Talk)
	if err != nil {
		return d, err
	}
	back := d.Call.CallerSeenAs
	step("phone B showed the caller as %s; calling back that address", back)
	d.CallBack, err = Call(ctx, phoneB, phoneA, back, opts.Talk)
	if err != nil {
		return d, err
	}
	step("waiting for both daemons' counters to include the calls")
	ended := time.Now()
	for _, node := range []*Node{n.A, n.B} {
		st, err := node.StatusSince(ctx, ended)
		if err != nil {
			return d, err
		}
		d.Status = append(d.Status, st)
	}
	ok := d.Summary(out)
	if !ok {
		return d, ErrDemoFailed
	}
	return d, nil
}

// Summary prints what the demo showed and reports whether all was right.
func (d *Demo) Summary(out io.Writer) bool {
	n := d.Net
	ok := true
	check := func(good bool) string {
		if good {
			return "ok"
		}
		ok = false
		return "WRONG"
	}
	fmt.Fprintln(out)
	fmt.Fprintln(out, "peerline demo")
	for i, node := range []*Node{n.A, n.B} {
		for _, p := range d.Status[i].Peers {
			fmt.Fprintf(out, "  Pi %s tunnel to %s (peer %d): %s\n", node.Name, p.Name, p.Index, describePath(p))
		}
	}
	wantSeen := fmt.Sprintf("sip:a@%s", n.B.AddrOf(n.A))
	wantSeenBack := fmt.Sprintf("sip:b@%s", n.A.AddrOf(n.B))
	for i, c := range []*CallResult{d.Call, d.CallBack} {
		title := "call"
		want := wantSeen
		if i == 1 {
			title, want = "call-back", wantSeenBack
		}
		fmt.Fprintf(out, "  %s: phone %s dialled %s\n", title, c.Caller.Node.Name, c.Dialled)
		fmt.Fprintf(out, "    callee showed the caller as %-22s %s (want %s)\n", c.CallerSeenAs, check(c.CallerSeenAs == want), want)
		fmt.Fprintf(out, "    set-up %d ms; RTP sent %d / received %d packets at the caller\n",
			c.Setup.Milliseconds(), c.CallerStats.TxPackets, c.CallerStats.RxPackets)
		fmt.Fprintf(out, "    %s heard %v %s\n", c.Callee.Node.Name, c.CalleeHeard, verdict(c.CalleeErr, &ok))
		fmt.Fprintf(out, "    %s heard %v %s\n", c.Caller.Node.Name, c.CallerHeard, verdict(c.CallerErr, &ok))
	}
	if ok {
		fmt.Fprintln(out, "verdict: PASS — calls and call-back connected, audio arrived both ways")
	} else {
		fmt.Fprintln(out, "verdict: FAIL — see WRONG above")
	}
	return ok
}

func verdict(err error, ok *bool) string {
	if err == nil {
		return "ok"
	}
	*ok = false
	return "WRONG: " + err.Error()
}

func describePath(p supervisor.PeerStatus) string {
	var b strings.Builder
	if p.Endpoint != "" {
		fmt.Fprintf(&b, "direct to %s", p.Endpoint)
	} else {
		b.WriteString("no endpoint")
	}
	if p.LastHandshake != nil {
		fmt.Fprintf(&b, ", handshake %.1f s ago", time.Since(*p.LastHandshake).Seconds())
	} else {
		b.WriteString(", no handshake yet")
	}
	fmt.Fprintf(&b, ", %d bytes in / %d out", p.RxBytes, p.TxBytes)
	if p.Rewrite != nil {
		r := p.Rewrite
		fmt.Fprintf(&b, "; rewriter out %d packets (%d SIP rewritten), in %d (%d SIP rewritten)",
			r.Outbound.Packets, r.Outbound.SIPRewritten, r.Inbound.Packets, r.Inbound.SIPRewritten)
	}
	return b.String()
}
