// Package callstats turns what the tunnels' rewriters measure on RTP into
// calls: when each started and ended, how it sounded (loss, jitter and an
// estimated MOS), and the last 24 hours of it, with each peer's round trip
// over the same day.
//
// The per-packet work stays in the rewriter (pkg/rewrite), which counts
// every RTP flow it maps anyway (one hash lookup and a few additions per
// packet, no allocation): packets, loss from sequence numbers (RFC 3550
// A.1/A.3, wrap, reordering and restarts included) and interarrival jitter
// (RFC 3550 §6.4.1/A.8, with the clock rate from the payload type or the
// call's SDP). The supervisor hands a Tracker those cumulative counters
// and each peer's RTT every status interval (5 s), and Tracker.Update
// decides, in pure code:
//
//   - a call is a flow (local phone address and port ↔ remote phone address
//     and port, both directions) with media in the last EndAfter; it ends
//     when neither direction had a packet for EndAfter (default 10 s), and
//     a later packet on the same flow starts a new call;
//   - the interval's loss is the growth of lost over the growth of
//     expected packets, its jitter the rewriter's current estimate;
//   - each interval gets an estimated MOS from a simplified ITU-T G.107
//     E-model (RFactor, MOS): R = 93.2 − Id − Ie,eff with one-way delay =
//     RTT/2 + one packet + jitter buffer (2 × jitter, at least a packet),
//     the codec's Ie and Bpl from G.113 by payload type, random loss, no
//     advantage factor; MOS = 1 + 0.035 R + 7·10⁻⁶ R (R − 60)(100 − R);
//   - an ended call is kept 24 h (at most maxEnded of them) with its
//     summary and its quality trace (at most 360 points however long the
//     call was); each peer's RTT is kept a point a minute for 24 h.
//
// Memory is bounded for 253 peers: 1440 × 8 bytes of RTT per peer (2.9 MB
// at most) and, per call, 360 × 32 bytes of trace (5.8 MB for maxEnded
// calls at most; a short call holds a few hundred bytes).
//
// The quality that matters is the Received direction: the peer's media as
// it arrives here, after the Internet, which is what the local phone plays.
// Sent is measured between the local phone and this node, before the
// Internet; its MOS says only whether the phone's own side is clean.
package callstats

import (
	"cmp"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Stream is one direction of a flow as the rewriter counts it, cumulative
// since the rewriter first saw the flow.
type Stream struct {
	Packets uint64
	// Expected is what the sequence numbers say was sent; Lost is Expected
	// less the packets received (negative when duplicates outnumber
	// losses).
	Expected    uint64
	Lost        int64
	Jitter      time.Duration
	PayloadType uint8
	ClockRate   uint32
	// First and Last are the first and latest packets; zero when none.
	First, Last time.Time
}

// Flow is one RTP flow through a peer's tunnel, both directions.
type Flow struct {
	Line int
	// Local is the local phone's media address and port, Remote the other
	// phone's as this node's phones dial it (10.i.s.p).
	Local, Remote netip.AddrPort
	// Sent is local to remote, Received remote to local.
	Sent, Received Stream
}

// Peer is one peer's tunnel at a sample: its round trip (0 when unknown)
// and the flows through it.
type Peer struct {
	Index int
	Name  string
	RTT   time.Duration
	Flows []Flow
}

// Call is one call, live or ended.
type Call struct {
	// ID is unique for the Tracker's life.
	ID       uint64
	Peer     int
	PeerName string
	Line     int
	Local    netip.AddrPort
	Remote   netip.AddrPort
	// Start is the call's first packet either way, LastPacket its latest.
	Start, LastPacket time.Time
	// Ended is set once no packet came for EndAfter; the call ended at
	// LastPacket.
	Ended bool
	// RTT is the peer's latest round trip during the call.
	RTT            time.Duration
	Sent, Received Quality
}

// Quality is one direction of a call.
type Quality struct {
	Packets     uint64
	Expected    uint64
	Lost        int64
	LossPercent float64
	// Jitter is the latest estimate, MaxJitter the worst sampled.
	Jitter, MaxJitter time.Duration
	PayloadType       uint8
	ClockRate         uint32
	// MOS is the estimate over the call so far (its loss, its mean
	// jitter, the latest RTT); MinMOS the worst sampled interval. Both
	// are 0 while no packet was counted this way.
	MOS, MinMOS float64
}

// QualityPoint is the received direction of a call over one interval (or
// several merged, for long calls).
type QualityPoint struct {
	Time        time.Time
	LossPercent float64
	Jitter      time.Duration
	RTT         time.Duration
	MOS         float64
	Packets     uint64
}

// RTTPoint is a peer's round trip at a time.
type RTTPoint struct {
	Time time.Time
	RTT  time.Duration
}

// Limits. A day of history, as the console's charts show.
const (
	// Keep is how long ended calls and RTT points are kept.
	Keep = 24 * time.Hour
	// maxEnded bounds the ended calls kept: 500 calls in a day is more
	// than a household makes.
	maxEnded = 500
	// rttStep is the spacing of the RTT history.
	rttStep   = time.Minute
	rttPoints = int(Keep / rttStep)
	// DefaultEndAfter is how long a call may be silent before it counts
	// as ended: longer than any gap in the media of a held call's
	// keep-alive or of comfort noise, shorter than a redial.
	DefaultEndAfter = 10 * time.Second
)

type flowKey struct {
	peer          int
	local, remote netip.AddrPort
}

// call is a call and what the tracker needs to follow it.
type call struct {
	Call
	// base is the flow's counters when the call began (the rewriter's are
	// cumulative over every call the flow carried); prev those at the
	// latest sample.
	base, prev Flow
	// Per direction: the sum of sampled jitter and the number of samples
	// it covers, for the call's mean jitter.
	jitterSum [2]time.Duration
	jitterN   [2]int
	trace     qualityTrace
}

// Tracker follows the calls. Update is the only writer; the accessors may
// be called from any goroutine.
type Tracker struct {
	endAfter time.Duration

	mu sync.Mutex // guards the following
	// live calls by flow, ended calls oldest first.
	live  map[flowKey]*call
	ended []*call
	// last is every flow's counters at the latest sample, to tell a new
	// call on a flow the rewriter still tracks from its first call.
	last   map[flowKey]Flow
	rtt    map[int]*rttRing
	peerAt map[int]time.Time // latest sample that listed the peer
	nextID uint64
}

// NewTracker returns a Tracker that ends a call after endAfter without
// media (DefaultEndAfter when 0).
func NewTracker(endAfter time.Duration) *Tracker {
	if endAfter <= 0 {
		endAfter = DefaultEndAfter
	}
	return &Tracker{
		endAfter: endAfter,
		live:     map[flowKey]*call{},
		last:     map[flowKey]Flow{},
		rtt:      map[int]*rttRing{},
		peerAt:   map[int]time.Time{},
		nextID:   1,
	}
}

// Update takes a sample of every peer's flows at now. It decides which
// calls began, continued and ended, records the interval's quality and
// drops what is older than Keep.
func (t *Tracker) Update(now time.Time, peers []Peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	seen := make(map[flowKey]bool, len(t.live))
	for _, p := range peers {
		t.peerAt[p.Index] = now
		t.sampleRTTLocked(now, p)
		for _, f := range p.Flows {
			k := flowKey{p.Index, f.Local, f.Remote}
			seen[k] = true
			t.flowLocked(now, k, p, f)
			t.last[k] = f
		}
	}
	// A flow the rewriter stopped listing (it expires quiet flows, or
	// the tunnel went) ended at its last packet.
	for k, c := range t.live {
		if !seen[k] {
			t.endLocked(k, c)
		}
	}
	for k := range t.last {
		if !seen[k] {
			delete(t.last, k)
		}
	}
	t.pruneLocked(now)
}

func (t *Tracker) flowLocked(now time.Time, k flowKey, p Peer, f Flow) {
	last := lastPacket(f)
	c := t.live[k]
	if c != nil && regressed(c.prev, f) {
		// The rewriter forgot the flow and counts afresh.
		c.base, c.prev = Flow{}, Flow{}
	}
	if c == nil {
		if last.IsZero() || now.Sub(last) > t.endAfter {
			return // quiet since before this tracker saw it: no call
		}
		base := t.last[k]
		if regressed(base, f) {
			base = Flow{}
		}
		c = &call{
			Call: Call{ID: t.nextID, Peer: p.Index, PeerName: p.Name, Line: f.Line, Local: f.Local, Remote: f.Remote,
				Start: firstPacket(base, f)},
			base: base, prev: base,
		}
		t.nextID++
		t.live[k] = c
	}
	c.PeerName = p.Name
	if p.RTT > 0 {
		c.RTT = p.RTT
	}
	c.LastPacket = last
	t.intervalLocked(now, c, f)
	c.prev = f
	if now.Sub(last) > t.endAfter {
		t.endLocked(k, c)
	}
}

// intervalLocked records the quality of the interval from c.prev to f.
func (t *Tracker) intervalLocked(now time.Time, c *call, f Flow) {
	for dir, s := range []Stream{f.Sent, f.Received} {
		base, prev := streamOf(c.base, dir), streamOf(c.prev, dir)
		q := &c.Sent
		if dir == 1 {
			q = &c.Received
		}
		q.Packets = s.Packets - base.Packets
		q.Expected = s.Expected - base.Expected
		q.Lost = s.Lost - base.Lost
		q.LossPercent = LossPercent(q.Expected, q.Lost)
		q.PayloadType, q.ClockRate = s.PayloadType, s.ClockRate
		if s.Packets == prev.Packets {
			continue // nothing this way in the interval (hold, one-way)
		}
		q.Jitter = s.Jitter
		q.MaxJitter = max(q.MaxJitter, s.Jitter)
		c.jitterSum[dir] += s.Jitter
		c.jitterN[dir]++
		meanJitter := c.jitterSum[dir] / time.Duration(c.jitterN[dir])
		q.MOS = Estimate(s.PayloadType, c.RTT, meanJitter, q.LossPercent)
		dExp := s.Expected - prev.Expected
		loss := LossPercent(dExp, s.Lost-prev.Lost)
		mos := Estimate(s.PayloadType, c.RTT, s.Jitter, loss)
		if q.MinMOS == 0 || mos < q.MinMOS {
			q.MinMOS = mos
		}
		if dir == 1 {
			c.trace.add(qpoint{t: now.UnixNano(), loss: float32(loss), mos: float32(mos),
				jitter: micros(s.Jitter), rtt: micros(c.RTT), expected: dExp})
		}
	}
}

func (t *Tracker) endLocked(k flowKey, c *call) {
	delete(t.live, k)
	c.Ended = true
	t.ended = append(t.ended, c)
	if len(t.ended) > maxEnded {
		t.ended = slices.Delete(t.ended, 0, len(t.ended)-maxEnded)
	}
}

func (t *Tracker) sampleRTTLocked(now time.Time, p Peer) {
	if p.RTT <= 0 {
		return
	}
	r := t.rtt[p.Index]
	if r == nil {
		r = &rttRing{}
		t.rtt[p.Index] = r
	}
	if l, ok := r.last(); ok && now.Sub(time.Unix(int64(l.t), 0)) < rttStep {
		return
	}
	r.push(rttPoint{t: uint32(now.Unix()), rtt: micros(p.RTT)}, rttPoints)
}

func (t *Tracker) pruneLocked(now time.Time) {
	cut := now.Add(-Keep)
	n := 0
	for n < len(t.ended) && t.ended[n].LastPacket.Before(cut) {
		n++
	}
	t.ended = slices.Delete(t.ended, 0, n)
	for i, at := range t.peerAt {
		if at.Before(cut) {
			delete(t.peerAt, i)
			delete(t.rtt, i)
		}
	}
}

// Calls returns the live calls, then those that ended in the last 24 h,
// newest first within each.
func (t *Tracker) Calls() []Call {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Call, 0, len(t.live)+len(t.ended))
	for _, c := range t.live {
		out = append(out, c.Call)
	}
	slices.SortFunc(out, func(a, b Call) int {
		return cmp.Or(b.Start.Compare(a.Start), cmp.Compare(b.ID, a.ID))
	})
	for _, c := range slices.Backward(t.ended) {
		out = append(out, c.Call)
	}
	return out
}

// History returns the quality trace of call id, oldest first; false when
// no such call is kept.
func (t *Tracker) History(id uint64) ([]QualityPoint, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.live {
		if c.ID == id {
			return c.trace.points(), true
		}
	}
	for _, c := range t.ended {
		if c.ID == id {
			return c.trace.points(), true
		}
	}
	return nil, false
}

// PeerRTT returns peer's round trips since since (at most the last 24 h),
// oldest first.
func (t *Tracker) PeerRTT(peer int, since time.Time) []RTTPoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	r := t.rtt[peer]
	if r == nil {
		return []RTTPoint{}
	}
	return r.points(since)
}

// LossPercent is lost as a percentage of expected, never below 0 (more
// duplicates than losses is no loss) nor above 100.
func LossPercent(expected uint64, lost int64) float64 {
	if expected == 0 || lost <= 0 {
		return 0
	}
	return min(100, 100*float64(lost)/float64(expected))
}

func streamOf(f Flow, dir int) Stream {
	if dir == 0 {
		return f.Sent
	}
	return f.Received
}

// regressed reports whether the counters of f are below those of prev in
// either direction: the rewriter dropped the flow and began it again.
func regressed(prev, f Flow) bool {
	return f.Sent.Packets < prev.Sent.Packets || f.Received.Packets < prev.Received.Packets ||
		f.Sent.Expected < prev.Sent.Expected || f.Received.Expected < prev.Received.Expected
}

func lastPacket(f Flow) time.Time {
	if f.Sent.Last.After(f.Received.Last) {
		return f.Sent.Last
	}
	return f.Received.Last
}

// firstPacket is the first packet after base. For a new flow it is the
// stream's first; for a later call on a flow the rewriter still tracks (a
// phone that reuses its media port) the rewriter has no such time, so it is
// estimated from the packets since base at one per frame, 20 ms, and never
// put before base's latest packet.
func firstPacket(base, f Flow) time.Time {
	if base.Sent.Packets == 0 && base.Received.Packets == 0 {
		switch {
		case f.Sent.First.IsZero():
			return f.Received.First
		case f.Received.First.IsZero() || f.Sent.First.Before(f.Received.First):
			return f.Sent.First
		}
		return f.Received.First
	}
	n := max(f.Sent.Packets-base.Sent.Packets, f.Received.Packets-base.Received.Packets)
	start := lastPacket(f)
	if n > 1 {
		start = start.Add(-time.Duration(n-1) * 20 * time.Millisecond)
	}
	if b := lastPacket(base); start.Before(b) {
		start = b
	}
	return start
}

func micros(d time.Duration) uint32 {
	return uint32(min(max(d/time.Microsecond, 0), 1<<32-1))
}
