package callstats

import (
	"context"
	"math"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var (
	t0      = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	alice   = netip.MustParseAddrPort("10.0.1.1:5004")
	bob     = netip.MustParseAddrPort("10.7.2.1:5004")
	carol   = netip.MustParseAddrPort("10.9.1.1:5004")
	frame   = 20 * time.Millisecond
	perTick = uint64(5 * time.Second / frame) // packets a stream sends in 5 s
)

// media is a flow the test moves forward: both directions send a packet a
// frame, and recvLost of every 100 received are lost.
type media struct {
	f        Flow
	recvLost int
}

func newMedia(local, remote netip.AddrPort) *media {
	return &media{f: Flow{Line: int(local.Addr().As4()[2]), Local: local, Remote: remote}}
}

// send adds n packets each way ending at end.
func (m *media) send(n uint64, end time.Time) Flow {
	for _, s := range []*Stream{&m.f.Sent, &m.f.Received} {
		if s.First.IsZero() {
			s.First = end.Add(-time.Duration(n-1) * frame)
		}
		s.Last = end
		s.Expected += n
		s.Packets += n
		s.Jitter = 2 * time.Millisecond
	}
	lost := n * uint64(m.recvLost) / 100
	m.f.Received.Packets -= lost
	m.f.Received.Lost += int64(lost)
	return m.f
}

func peer(i int, rtt time.Duration, flows ...Flow) Peer {
	return Peer{Index: i, Name: "bob", RTT: rtt, Flows: flows}
}

func TestCallLifecycle(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	m := newMedia(alice, bob)
	now := t0
	// Three samples of a clean call.
	for range 3 {
		now = now.Add(5 * time.Second)
		tr.Update(now, []Peer{peer(7, 40*time.Millisecond, m.send(perTick, now))})
	}
	calls := tr.Calls()
	if len(calls) != 1 {
		t.Fatalf("Calls() = %d calls, want 1: %+v", len(calls), calls)
	}
	c := calls[0]
	if c.Ended || c.Peer != 7 || c.Line != 1 || c.Local != alice || c.Remote != bob {
		t.Errorf("call = %+v, want live peer 7 line 1 %v ↔ %v", c, alice, bob)
	}
	if c.Received.Packets != 3*perTick || c.Received.Lost != 0 || c.Received.MOS < 4.3 {
		t.Errorf("received = %+v, want %d packets, no loss, MOS ≥ 4.3", c.Received, 3*perTick)
	}
	if want := t0.Add(5*time.Second - time.Duration(perTick-1)*frame); !c.Start.Equal(want) {
		t.Errorf("Start = %v, want %v", c.Start, want)
	}
	// Media stops: still live within EndAfter, ended after it.
	last := now
	now = now.Add(5 * time.Second)
	tr.Update(now, []Peer{peer(7, 40*time.Millisecond, m.f)})
	if c := tr.Calls()[0]; c.Ended {
		t.Fatalf("call ended 5 s after its last packet, want live until 10 s")
	}
	now = now.Add(6 * time.Second)
	tr.Update(now, []Peer{peer(7, 40*time.Millisecond, m.f)})
	c = tr.Calls()[0]
	if !c.Ended || !c.LastPacket.Equal(last) {
		t.Fatalf("11 s after the last packet: call = %+v, want ended at %v", c, last)
	}
	// Ended calls stay through the day, then go.
	tr.Update(last.Add(Keep-time.Minute), nil)
	if n := len(tr.Calls()); n != 1 {
		t.Fatalf("%d calls a minute before a day had passed, want 1", n)
	}
	tr.Update(last.Add(Keep+time.Second), nil)
	if n := len(tr.Calls()); n != 0 {
		t.Fatalf("%d calls after a day, want 0", n)
	}
	if _, ok := tr.History(c.ID); ok {
		t.Errorf("History(%d) still kept after a day", c.ID)
	}
}

// A phone that reuses its media port makes a second call on a flow the
// rewriter still counts from the first: the second call counts from where
// the first stopped.
func TestCallReusedFlow(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	m := newMedia(alice, bob)
	now := t0
	for range 4 {
		now = now.Add(5 * time.Second)
		tr.Update(now, []Peer{peer(7, 0, m.send(perTick, now))})
	}
	firstEnd := now
	for range 3 {
		now = now.Add(5 * time.Second)
		tr.Update(now, []Peer{peer(7, 0, m.f)})
	}
	m.recvLost = 10
	for range 2 {
		now = now.Add(5 * time.Second)
		tr.Update(now, []Peer{peer(7, 0, m.send(perTick, now))})
	}
	calls := tr.Calls()
	if len(calls) != 2 {
		t.Fatalf("Calls() = %d calls, want 2", len(calls))
	}
	second, first := calls[0], calls[1]
	if second.Ended || !first.Ended || second.ID == first.ID {
		t.Fatalf("calls = %+v, want a live one then an ended one", calls)
	}
	if first.Received.Packets != 4*perTick || first.Received.Lost != 0 {
		t.Errorf("first call received %+v, want %d packets none lost", first.Received, 4*perTick)
	}
	if second.Received.Expected != 2*perTick || second.Received.Lost != int64(2*perTick/10) || math.Abs(second.Received.LossPercent-10) > 0.01 {
		t.Errorf("second call received %+v, want %d expected, 10%% lost", second.Received, 2*perTick)
	}
	if !second.Start.After(firstEnd) {
		t.Errorf("second call Start = %v, want after the first's end %v", second.Start, firstEnd)
	}
	if second.Received.MOS >= first.Received.MOS || second.Received.MOS > 3.5 {
		t.Errorf("MOS with 10%% loss = %.2f, without = %.2f; want clearly worse", second.Received.MOS, first.Received.MOS)
	}
}

func TestCallFlowGone(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	m := newMedia(alice, bob)
	tr.Update(t0, []Peer{peer(7, 0, m.send(perTick, t0))})
	// The tunnel went, taking its rewriter's flows with it.
	tr.Update(t0.Add(5*time.Second), nil)
	c := tr.Calls()
	if len(c) != 1 || !c[0].Ended || !c[0].LastPacket.Equal(t0) {
		t.Fatalf("Calls() = %+v, want one ended at %v", c, t0)
	}
}

func TestCallRewriterRestarted(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	m := newMedia(alice, bob)
	now := t0
	for range 3 {
		now = now.Add(5 * time.Second)
		tr.Update(now, []Peer{peer(7, 0, m.send(perTick, now))})
	}
	// The rewriter forgot the flow and counts afresh mid-call.
	m2 := newMedia(alice, bob)
	now = now.Add(5 * time.Second)
	tr.Update(now, []Peer{peer(7, 0, m2.send(10, now))})
	c := tr.Calls()
	if len(c) != 1 || c[0].Ended || c[0].Received.Packets != 10 || c[0].Received.Lost != 0 {
		t.Fatalf("Calls() = %+v, want one live call with 10 packets, no loss", c)
	}
}

func TestCallNotBeforeTracker(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	m := newMedia(alice, bob)
	m.send(perTick, t0)
	// First seen a minute after its last packet: it ended before the
	// tracker was there to see it.
	tr.Update(t0.Add(time.Minute), []Peer{peer(7, 0, m.f)})
	if c := tr.Calls(); len(c) != 0 {
		t.Fatalf("Calls() = %+v, want none", c)
	}
}

func TestCallOneWay(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	f := Flow{Line: 1, Local: alice, Remote: carol,
		Received: Stream{Packets: 50, Expected: 50, PayloadType: 0, ClockRate: 8000, First: t0.Add(-time.Second), Last: t0}}
	tr.Update(t0, []Peer{peer(9, 0, f)})
	c := tr.Calls()
	if len(c) != 1 || c[0].Sent.Packets != 0 || c[0].Sent.MOS != 0 || c[0].Received.MOS == 0 {
		t.Fatalf("early media one way: Calls() = %+v, want received MOS only", c)
	}
	if !c[0].Start.Equal(t0.Add(-time.Second)) {
		t.Errorf("Start = %v, want %v", c[0].Start, t0.Add(-time.Second))
	}
}

func TestCallsOrder(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	a, b := newMedia(alice, bob), newMedia(netip.MustParseAddrPort("10.0.2.1:5004"), carol)
	tr.Update(t0, []Peer{peer(7, 0, a.send(perTick, t0))})
	tr.Update(t0.Add(5*time.Second), []Peer{peer(7, 0, a.send(perTick, t0.Add(5*time.Second))), peer(9, 0, b.send(perTick, t0.Add(5*time.Second)))})
	c := tr.Calls()
	if len(c) != 2 || c[0].Peer != 9 || c[1].Peer != 7 {
		t.Fatalf("Calls() peers = %v, want newest first [9 7]", c)
	}
}

func TestEndedBounded(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	now := t0
	for k := range maxEnded + 20 {
		m := newMedia(alice, netip.AddrPortFrom(bob.Addr(), uint16(1000+k)))
		tr.Update(now, []Peer{peer(7, 0, m.send(10, now))})
		now = now.Add(time.Second)
		tr.Update(now, nil)
	}
	c := tr.Calls()
	if len(c) != maxEnded {
		t.Fatalf("%d ended calls kept, want %d", len(c), maxEnded)
	}
	if c[0].Remote.Port() != uint16(1000+maxEnded+19) {
		t.Errorf("newest kept = %v, want port %d", c[0].Remote, 1000+maxEnded+19)
	}
}

func TestLossTrace(t *testing.T) {
	tr := NewTracker(10 * time.Second)
	m := newMedia(alice, bob)
	now := t0
	for k := range 6 {
		m.recvLost = 0
		if k == 3 {
			m.recvLost = 4
		}
		now = now.Add(5 * time.Second)
		tr.Update(now, []Peer{peer(7, 50*time.Millisecond, m.send(perTick, now))})
	}
	c := tr.Calls()[0]
	h, ok := tr.History(c.ID)
	if !ok || len(h) != 6 {
		t.Fatalf("History(%d) = %d points, %v; want 6", c.ID, len(h), ok)
	}
	for k, p := range h {
		wantLoss := 0.0
		if k == 3 {
			wantLoss = 4
		}
		if math.Abs(p.LossPercent-wantLoss) > 0.01 || p.RTT != 50*time.Millisecond || p.Packets != perTick {
			t.Errorf("point %d = %+v, want loss %v%%, RTT 50ms, %d packets", k, p, wantLoss, perTick)
		}
	}
	if h[3].MOS >= h[2].MOS {
		t.Errorf("MOS at 4%% loss %.2f, clean %.2f: want lower", h[3].MOS, h[2].MOS)
	}
	if math.Abs(c.Received.MinMOS-h[3].MOS) > 1e-6 {
		t.Errorf("MinMOS = %.3f, want the lossy interval's %.3f", c.Received.MinMOS, h[3].MOS)
	}
	if c.Received.MOS <= c.Received.MinMOS || c.Received.MOS >= h[2].MOS {
		t.Errorf("call MOS %.3f, want between worst %.3f and clean %.3f", c.Received.MOS, c.Received.MinMOS, h[2].MOS)
	}
}

func TestTraceBounded(t *testing.T) {
	var q qualityTrace
	// A day-long call sampled every 5 s.
	const n = 24 * 3600 / 5
	for k := range n {
		loss := float32(0)
		if k%2 == 1 {
			loss = 2
		}
		q.add(qpoint{t: int64(k), loss: loss, mos: 4, expected: 250})
	}
	p := q.points()
	if len(p) > maxTrace || len(p) < maxTrace/2 {
		t.Fatalf("a day-long call keeps %d points, want %d..%d", len(p), maxTrace/2, maxTrace)
	}
	var total uint64
	for k, x := range p {
		total += x.Packets
		if k > 0 && !x.Time.After(p[k-1].Time) {
			t.Fatalf("point %d at %v not after %v", k, x.Time, p[k-1].Time)
		}
		// Alternate clean and 2% intervals merge to 1%.
		if k < len(p)-1 && math.Abs(x.LossPercent-1) > 1e-4 {
			t.Fatalf("point %d loss %v, want 1 (mean of 0 and 2)", k, x.LossPercent)
		}
	}
	if total != n*250 {
		t.Errorf("points cover %d packets, want %d", total, n*250)
	}
	if last := p[len(p)-1].Time; last != time.Unix(0, n-1).UTC() {
		t.Errorf("last point at %v, want the last sample", last)
	}
}

// Memory stays bounded for a full node: 253 peers with an RTT every sample
// for more than a day keep 1440 points each.
func TestRTTBounded(t *testing.T) {
	tr := NewTracker(0)
	var peers []Peer
	for i := 1; i <= 253; i++ {
		peers = append(peers, Peer{Index: i, RTT: time.Duration(i) * time.Millisecond})
	}
	now := t0
	for now.Before(t0.Add(Keep + 2*time.Hour)) {
		tr.Update(now, peers)
		now = now.Add(20 * time.Second)
	}
	for i := 1; i <= 253; i++ {
		r := tr.rtt[i]
		if len(r.p) != rttPoints || cap(r.p) > 2*rttPoints {
			t.Fatalf("peer %d keeps %d RTT points (cap %d), want %d", i, len(r.p), cap(r.p), rttPoints)
		}
	}
	pts := tr.PeerRTT(7, time.Time{})
	if len(pts) != rttPoints || pts[0].RTT != 7*time.Millisecond {
		t.Fatalf("PeerRTT(7) = %d points, first %+v", len(pts), pts[0])
	}
	for k := 1; k < len(pts); k++ {
		if d := pts[k].Time.Sub(pts[k-1].Time); d < rttStep {
			t.Fatalf("RTT points %d and %d %v apart, want ≥ %v", k-1, k, d, rttStep)
		}
	}
	if first := pts[0].Time; first.Before(now.Add(-Keep - rttStep)) {
		t.Errorf("oldest RTT point %v, more than a day before %v", first, now)
	}
	if got := tr.PeerRTT(7, now.Add(-time.Hour)); len(got) < 59 || len(got) > 61 {
		t.Errorf("PeerRTT(7, last hour) = %d points, want 60", len(got))
	}
	// A peer no sample lists for a day is forgotten.
	tr.Update(now.Add(Keep+time.Minute), peers[:1])
	if len(tr.rtt) != 1 {
		t.Errorf("%d peers' RTT kept after the others went a day ago, want 1", len(tr.rtt))
	}
}

// Sampled every 5 s as the supervisor does, a call ends within EndAfter
// plus a sample of its last packet, on the clock its packets are timed by.
func TestSampledEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		m := newMedia(alice, bob)
		sending := true
		tr := NewTracker(10 * time.Second)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			tick := time.NewTicker(5 * time.Second)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				mu.Lock()
				if sending {
					m.send(perTick, time.Now())
				}
				f := m.f
				mu.Unlock()
				tr.Update(time.Now(), []Peer{peer(7, 30*time.Millisecond, f)})
			}
		}()

		time.Sleep(31 * time.Second)
		synctest.Wait()
		c := tr.Calls()
		if len(c) != 1 || c[0].Ended || c[0].Received.Packets != 6*perTick {
			t.Fatalf("after 30 s: %+v, want one live call with %d packets", c, 6*perTick)
		}
		mu.Lock()
		sending = false
		mu.Unlock()
		stopped := time.Now().Add(-time.Second) // the 30 s sample's packets
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if c := tr.Calls(); c[0].Ended {
			t.Fatalf("call ended %v after its last packet, want live until 10 s", time.Since(stopped))
		}
		time.Sleep(5 * time.Second)
		synctest.Wait()
		c = tr.Calls()
		if !c[0].Ended || !c[0].LastPacket.Equal(stopped) {
			t.Fatalf("15 s after media stopped: %+v, want ended at %v", c[0], stopped)
		}
		cancel()
		<-done
	})
}
