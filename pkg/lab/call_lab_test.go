//go:build linux && lab

package lab_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/lab"
	"github.com/peerline/peerline/pkg/labtest"
)

// TestDirectCall places a real call between two baresip phones on a veth
// pair, without peerline: A (1000 Hz) calls B (440 Hz, auto-answer), then B
// calls back the caller ID it saw, and A answers by hand. Each side must
// receive the other's tone.
func TestDirectCall(t *testing.T) {
	labtest.RequireRoot(t)
	labtest.RequireTools(t, "baresip", "sox")
	l := labtest.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Second)
	defer cancel()

	ha := newHost(t, l, "phoneA")
	hb := newHost(t, l, "phoneB")
	check(t, l.Veth(ha, "eth0", hb, "eth0"))
	check(t, ha.Addr("eth0", "10.0.1.1/30"))
	check(t, hb.Addr("eth0", "10.0.1.2/30"))
	toneA := filepath.Join(l.Dir(), "tone-1000.wav")
	toneB := filepath.Join(l.Dir(), "tone-440.wav")
	check(t, lab.Tone(toneA, 1000, 60))
	check(t, lab.Tone(toneB, 440, 60))

	start := time.Now()
	a, err := l.Phone(ctx, ha, lab.PhoneOpts{Addr: "10.0.1.1", User: "a", TonePath: toneA})
	check(t, err)
	b, err := l.Phone(ctx, hb, lab.PhoneOpts{Addr: "10.0.1.2", User: "b", TonePath: toneB, AutoAnswer: true})
	check(t, err)
	t.Logf("phones started in %v", time.Since(start).Round(time.Millisecond))

	// Call 1: A → B, B auto-answers.
	start = time.Now()
	check(t, a.Dial(ctx, "sip:b@10.0.1.2"))
	_, err = a.WaitEstablished(ctx)
	check(t, err)
	t.Logf("call A→B established in %v", time.Since(start).Round(time.Millisecond))
	in, err := b.WaitIncoming(ctx)
	check(t, err)
	if in.PeerURI != "sip:a@10.0.1.1" {
		t.Errorf("B saw the caller as %q, want sip:a@10.0.1.1", in.PeerURI)
	}
	_, err = b.WaitEstablished(ctx)
	check(t, err)
	sleep(t, ctx, 3*time.Second)
	check(t, a.Hangup(ctx))
	_, err = a.WaitClosed(ctx)
	check(t, err)
	_, err = b.WaitClosed(ctx)
	check(t, err)
	requireTone(t, ctx, b, 1000)
	requireTone(t, ctx, a, 440)
	logStats(t, ctx, a)
	logStats(t, ctx, b)

	// Call 2: B calls back the address it saw; A answers by hand.
	start = time.Now()
	check(t, b.Dial(ctx, in.PeerURI))
	inA, err := a.WaitIncoming(ctx)
	check(t, err)
	if inA.Type != lab.EventCallIncoming || inA.PeerURI != "sip:b@10.0.1.2" {
		t.Errorf("A's incoming call = %s from %q, want %s from sip:b@10.0.1.2", inA.Type, inA.PeerURI, lab.EventCallIncoming)
	}
	check(t, a.Answer(ctx))
	_, err = b.WaitEstablished(ctx)
	check(t, err)
	t.Logf("call B→A established in %v (including the answer command)", time.Since(start).Round(time.Millisecond))
	_, err = a.WaitEstablished(ctx)
	check(t, err)
	sleep(t, ctx, 2*time.Second)
	check(t, b.Hangup(ctx))
	_, err = a.WaitClosed(ctx)
	check(t, err)
	_, err = b.WaitClosed(ctx)
	check(t, err)
	requireTone(t, ctx, a, 440)
	requireTone(t, ctx, b, 1000)
	logStats(t, ctx, b)
	if recs, _ := a.Recordings(); len(recs) != 2 {
		t.Errorf("A has %d recordings %v, want 2", len(recs), recs)
	}
}

func requireTone(t *testing.T, ctx context.Context, p *lab.Phone, hz float64) {
	t.Helper()
	rec, err := p.LastRecording(ctx)
	check(t, err)
	audio, err := lab.AnalyzeWAV(rec)
	check(t, err)
	t.Logf("%s received %v (%s)", p.URI(), audio, filepath.Base(rec))
	if err := lab.CheckTone(audio, hz); err != nil {
		t.Errorf("%s: %v", p.URI(), err)
	}
}

func logStats(t *testing.T, ctx context.Context, p *lab.Phone) {
	t.Helper()
	st, err := p.LastCallStats(ctx)
	check(t, err)
	t.Logf("%s call stats: %+v", p.URI(), st)
	if st.RxPackets == 0 || st.TxPackets == 0 || st.RxErrors != 0 {
		t.Errorf("%s: RTP summary %+v, want packets both ways and no errors", p.URI(), st)
	}
}

func sleep(t *testing.T, ctx context.Context, d time.Duration) {
	t.Helper()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		t.Fatal(ctx.Err())
	}
}

func newHost(t *testing.T, l *lab.Lab, name string) *lab.Host {
	t.Helper()
	h, err := l.Host(name)
	check(t, err)
	return h
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
