package peerlab

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/peerline/peerline/pkg/lab"
)

// Phone is a node's softphone and the tone it plays.
type Phone struct {
	*lab.Phone
	Node   *Node
	ToneHz float64
}

// ToneSeconds is the length of the tone files. baresip hangs up when its
// audio file ends, so it must outlast every call the demo places.
const ToneSeconds = 120

// StartPhone starts an auto-answering baresip on n's phone host, playing a
// tone of hz, with SIP user user.
func (n *Node) StartPhone(ctx context.Context, l *lab.Lab, user string, hz float64) (*Phone, error) {
	return n.startPhoneOn(ctx, l, n.PhoneHost, n.PhoneAddr(), user, hz)
}

func (n *Node) startPhoneOn(ctx context.Context, l *lab.Lab, host *lab.Host, addr netip.Addr, user string, hz float64) (*Phone, error) {
	tone := filepath.Join(l.Dir(), fmt.Sprintf("tone-%s-%s-%.0f.wav", n.Name, user, hz))
	if err := lab.Tone(tone, hz, ToneSeconds); err != nil {
		return nil, err
	}
	// The phone outlives ctx too; the lab closes it before the daemons.
	p, err := l.Phone(context.WithoutCancel(ctx), host, lab.PhoneOpts{
		Addr:       addr.String(),
		User:       user,
		TonePath:   tone,
		AutoAnswer: true,
	})
	if err != nil {
		return nil, err
	}
	// OnClose hooks run last-registered first: the phone quits (and its BYE
	// gets an answer) while the daemons and their tunnels are still up.
	if err := l.OnClose(p.Close); err != nil {
		return nil, err
	}
	return &Phone{Phone: p, Node: n, ToneHz: hz}, nil
}

// StartPhones starts the demo's phones: A's plays 1000 Hz, B's 440 Hz, so
// each recording tells which side it came from.
func (n *Network) StartPhones(ctx context.Context) (a, b *Phone, err error) {
	if a, err = n.A.StartPhone(ctx, n.Lab, "a", 1000); err != nil {
		return nil, nil, err
	}
	if b, err = n.B.StartPhone(ctx, n.Lab, "b", 440); err != nil {
		return nil, nil, err
	}
	return a, b, nil
}

// CallResult is what one call showed.
type CallResult struct {
	Caller, Callee *Phone
	// Dialled is the URI the caller dialled.
	Dialled string
	// CallerSeenAs is the caller as the callee's phone showed it: the
	// address a call-back goes to.
	CallerSeenAs string
	// CallerName is the caller's display name as the callee's phone
	// showed it.
	CallerName string
	// CalleeSeenAs is the callee as the caller's phone showed it.
	CalleeSeenAs string
	// Setup is from dialling to the caller's phone reporting the call
	// established.
	Setup time.Duration
	// CalleeHeard and CallerHeard measure what each side received.
	CalleeHeard, CallerHeard lab.Audio
	// CalleeErr and CallerErr say what is wrong with each recording.
	CalleeErr, CallerErr error
	// CallerStats and CalleeStats are baresip's RTP counts.
	CallerStats, CalleeStats lab.CallStats
}

// OK reports whether audio arrived right in both directions.
func (r *CallResult) OK() bool { return r.CalleeErr == nil && r.CallerErr == nil }

// Call dials uri from caller, lets the call run for talk while both phones
// play their tones, hangs up from the caller and measures what each side
// recorded. An error means the call itself failed; bad audio is reported in
// the result.
func Call(ctx context.Context, caller, callee *Phone, uri string, talk time.Duration) (*CallResult, error) {
	r := &CallResult{Caller: caller, Callee: callee, Dialled: uri}
	ctx, cancel := context.WithTimeout(ctx, talk+30*time.Second)
	defer cancel()
	start := time.Now()
	if err := caller.Dial(ctx, uri); err != nil {
		return r, fmt.Errorf("dialling %s: %w", uri, err)
	}
	established, err := caller.WaitEstablished(ctx)
	if err != nil {
		return r, fmt.Errorf("call from %s to %s not established: %w", caller.URI(), uri, err)
	}
	r.Setup = time.Since(start)
	r.CalleeSeenAs = established.PeerURI
	incoming, err := callee.WaitIncoming(ctx)
	if err != nil {
		return r, fmt.Errorf("%s never saw the call: %w", callee.URI(), err)
	}
	r.CallerSeenAs, r.CallerName = incoming.PeerURI, incoming.PeerName
	if _, err := callee.WaitEstablished(ctx); err != nil {
		return r, fmt.Errorf("callee %s: %w", callee.URI(), err)
	}
	select {
	case <-time.After(talk):
	case <-ctx.Done():
		return r, ctx.Err()
	}
	if err := caller.Hangup(ctx); err != nil {
		return r, fmt.Errorf("hanging up: %w", err)
	}
	if _, err := caller.WaitClosed(ctx); err != nil {
		return r, err
	}
	if _, err := callee.WaitClosed(ctx); err != nil {
		return r, fmt.Errorf("callee did not see the hang-up: %w", err)
	}
	r.CalleeHeard, r.CalleeErr = heard(ctx, callee, caller.ToneHz)
	r.CallerHeard, r.CallerErr = heard(ctx, caller, callee.ToneHz)
	r.CallerStats, _ = caller.LastCallStats(ctx)
	r.CalleeStats, _ = callee.LastCallStats(ctx)
	return r, nil
}

func heard(ctx context.Context, p *Phone, wantHz float64) (lab.Audio, error) {
	path, err := p.LastRecording(ctx)
	if err != nil {
		return lab.Audio{}, err
	}
	a, err := lab.AnalyzeWAV(path)
	if err != nil {
		return a, err
	}
	return a, lab.CheckTone(a, wantHz)
}
