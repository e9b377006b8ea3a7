package callstats

import "time"

// rttRing is one peer's round trips, a point a minute for a day: a ring of
// fixed capacity that grows as points come (a peer paired an hour ago
// holds 60) and then overwrites its oldest.
type rttRing struct {
	p     []rttPoint
	start int // index of the oldest point once the ring is full
}

// rttPoint is 8 bytes: 1440 of them for each of 253 peers is 2.9 MB.
type rttPoint struct {
	t   uint32 // Unix seconds (until 2106)
	rtt uint32 // microseconds
}

func (r *rttRing) push(p rttPoint, capacity int) {
	if len(r.p) < capacity {
		r.p = append(r.p, p)
		return
	}
	r.p[r.start] = p
	r.start = (r.start + 1) % len(r.p)
}

func (r *rttRing) last() (rttPoint, bool) {
	if len(r.p) == 0 {
		return rttPoint{}, false
	}
	return r.p[(r.start+len(r.p)-1)%len(r.p)], true
}

// points returns the points at or after since, oldest first.
func (r *rttRing) points(since time.Time) []RTTPoint {
	out := make([]RTTPoint, 0, len(r.p))
	for k := range r.p {
		p := r.p[(r.start+k)%len(r.p)]
		t := time.Unix(int64(p.t), 0).UTC()
		if t.Before(since) {
			continue
		}
		out = append(out, RTTPoint{Time: t, RTT: time.Duration(p.rtt) * time.Microsecond})
	}
	return out
}

// qualityTrace is one call's quality over its whole length in at most
// maxTrace points: a point per sample while it fits, then every two
// neighbouring points merge into one (their mean, weighted by the packets
// each covered) and each new point covers twice the time. A ten-minute call
// keeps every 10 s sample; a day-long one a point every 5 minutes.
type qualityTrace struct {
	p []qpoint
	// span is how many samples a point covers now; pending is the point
	// being filled while span > 1.
	span    int
	pending qpoint
	npend   int
}

// qpoint is a QualityPoint, compactly: 32 bytes.
type qpoint struct {
	t        int64   // Unix nanoseconds of the sample ending the interval
	loss     float32 // percent, over the interval
	mos      float32
	jitter   uint32 // microseconds
	rtt      uint32 // microseconds
	expected uint64 // packets the interval covered, the weight in merges
}

const maxTrace = 360

func (q *qualityTrace) add(p qpoint) {
	if q.span == 0 {
		q.span = 1
	}
	q.pending = merge(q.pending, p, q.npend > 0)
	q.npend++
	if q.npend < q.span {
		return
	}
	q.p = append(q.p, q.pending)
	q.pending, q.npend = qpoint{}, 0
	if len(q.p) < maxTrace {
		return
	}
	for k := range len(q.p) / 2 {
		q.p[k] = merge(q.p[2*k], q.p[2*k+1], true)
	}
	q.p = q.p[:len(q.p)/2]
	q.span *= 2
}

// merge combines two consecutive points: the later time, loss and MOS
// weighted by packets (equally when neither covered any), the worse
// jitter and round trip.
func merge(a, b qpoint, haveA bool) qpoint {
	if !haveA {
		return b
	}
	wa, wb := float64(a.expected), float64(b.expected)
	if wa+wb == 0 {
		wa, wb = 1, 1
	}
	mean := func(x, y float32) float32 { return float32((float64(x)*wa + float64(y)*wb) / (wa + wb)) }
	return qpoint{
		t:        max(a.t, b.t),
		loss:     mean(a.loss, b.loss),
		mos:      mean(a.mos, b.mos),
		jitter:   max(a.jitter, b.jitter),
		rtt:      max(a.rtt, b.rtt),
		expected: a.expected + b.expected,
	}
}

// points returns the trace, including a partly filled last point.
func (q *qualityTrace) points() []QualityPoint {
	all := q.p
	if q.npend > 0 {
		all = append(all[:len(all):len(all)], q.pending)
	}
	out := make([]QualityPoint, len(all))
	for k, p := range all {
		out[k] = QualityPoint{
			Time:        time.Unix(0, p.t).UTC(),
			LossPercent: float64(p.loss),
			Jitter:      time.Duration(p.jitter) * time.Microsecond,
			RTT:         time.Duration(p.rtt) * time.Microsecond,
			MOS:         float64(p.mos),
			Packets:     p.expected,
		}
	}
	return out
}
