package rewrite

import (
	"sync/atomic"
	"time"
)

// What the rewriter adds to a packet's trip, measured inside it: the time
// from a batch entering Device (the inner device's Read returned; Write was
// called) to leaving it (Read returns; the inner device's Write is called),
// on the Device's monotonic clock. Every packet of a batch waits for the
// whole batch, so a batch counts once per packet with that time.
//
// A lab comparison of a tunnel with and without the rewriter cannot resolve
// this: two runs' p99 on a shared machine differ by hundreds of µs either
// way, while the rewriter's work is in the hundreds of ns. Measuring it
// where it happens costs one clock reading per batch, which is already
// made for the flood limit and RTP timing, and one more at the end; so that
// the RTP path stays cheap, only one batch in latencySampleEvery takes the
// second reading. The histogram is atomic counters in fixed buckets: no
// allocation, no lock.
//
// What the interval holds: no waiting for packets (Read's first reading is
// taken after the inner device's Read returned; Write's last before the
// inner Write), no channel and no system call; outbound and inbound do the
// same work on an RTP packet (check, map in place, count, the flow's
// figures). It does hold the locks of the slow path and of the RTP flow
// tables, the closing clock reading (about 30 ns warm), and whatever the
// machine does to the thread meanwhile: interrupts, the thread being
// switched out, caches emptied by other programs.
//
// On a loaded machine the last is most of it. Warm and alone (the Device
// benchmarks) the RTP path's interval is about 100 ns; in the lab at 50
// calls its median was 450-550 ns. BenchmarkDevice{Read,Write}RTPCold
// gives that median back in-process: 50 flows in turn, a system call just
// before (on the lab's kernel, page-table isolation without PCID, each
// system call and interrupt empties the TLB) and the caches swept between
// packets. There the time goes on reaching memory: every page of code and
// data the path touches costs a page-table walk, every cache line a miss,
// and the atomic operations (counts, the flow table's lock) wait for theirs
// in turn. So the path is kept small in memory: its code in one file
// (hotpath.go), what a direction writes on one cache line (hotDir), a flow
// in two (rtpFlow). The controls show what the machine does to an
// interval that touches next to no memory: in the lab at 50 calls (load
// 4-14 on 2 CPUs) the empty interval's p99 (observeControl) was 0.3-0.7 µs
// and that of a 500 ns busy wait after each wake-up (peerlab's
// benchSpinControl) 0.6-1.1 µs, while the RTP path's was 1.6-3.2 µs
// inbound and 1.9-11 µs outbound. So the thread being stopped does not
// explain that tail; the likely rest is the path waiting on memory as
// above (not measured directly: the lab's VM exposes no TLB or cache
// counters), more often on the way out, whose interval starts straight
// after the TUN's system call. The Go collector is not it: with GOGC=off
// the outbound p99 was 4.9 and 8.7 µs.
const latencySampleEvery = 16

// Latency buckets: exact below 8 ns, then 8 per power of two (12.5 %
// apart), up to 2^40 ns (18 min) in the last.
const (
	latencySub     = 8
	latencyOctaves = 38
	latencyBuckets = latencySub + latencyOctaves*latencySub
)

// latencyHist is one direction's histogram.
type latencyHist struct {
	n [latencyBuckets]atomic.Uint64
	_ [64]byte
}

// latencyLow is the least time in bucket i.
func latencyLow(i int) uint64 {
	if i < latencySub {
		return uint64(i)
	}
	e := i/latencySub + 2
	return uint64(latencySub+i%latencySub) << (e - 3)
}

// Latency is what the rewriter added to packets, per direction: a sample
// of one batch in latencySampleEvery.
type Latency struct {
	Outbound Histogram `json:"outbound"`
	Inbound  Histogram `json:"inbound"`
	// ControlOutbound and ControlInbound are the control (observeControl):
	// the same sampling and clock readings around nothing.
	ControlOutbound Histogram `json:"control_outbound"`
	ControlInbound  Histogram `json:"control_inbound"`
}

// Histogram is the sampled packets by their time in the rewriter.
type Histogram struct {
	// Buckets are the non-empty buckets in order: Packets took at least
	// LowNs, and less than the next bucket's LowNs would be (buckets are
	// 12.5 % wide).
	Buckets []LatencyBucket `json:"buckets,omitempty"`
}

// LatencyBucket is one bucket of a Histogram.
type LatencyBucket struct {
	LowNs   uint64 `json:"low_ns"`
	Packets uint64 `json:"packets"`
}

// Latency returns the histograms so far.
func (d *Device) Latency() Latency {
	var l Latency
	for dir, h := range []*Histogram{&l.Outbound, &l.Inbound} {
		h.Buckets = d.latency[dir].buckets()
	}
	for dir, h := range []*Histogram{&l.ControlOutbound, &l.ControlInbound} {
		if c := d.control[dir].Load(); c != nil {
			h.Buckets = c.buckets()
		}
	}
	return l
}

// buckets returns h's non-empty buckets.
func (h *latencyHist) buckets() []LatencyBucket {
	var b []LatencyBucket
	for i := range latencyBuckets {
		if n := h.n[i].Load(); n != 0 {
			b = append(b, LatencyBucket{LowNs: latencyLow(i), Packets: n})
		}
	}
	return b
}

// Packets is how many packets the histogram holds.
func (h Histogram) Packets() uint64 {
	var n uint64
	for _, b := range h.Buckets {
		n += b.Packets
	}
	return n
}

// Quantile returns the time under which the share q (0 to 1) of the
// packets stayed, as the middle of the bucket it falls in; 0 for an empty
// histogram.
func (h Histogram) Quantile(q float64) time.Duration {
	total := h.Packets()
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = min(max(rank, 1), total)
	var seen uint64
	for _, b := range h.Buckets {
		seen += b.Packets
		if seen >= rank {
			return bucketMid(b.LowNs)
		}
	}
	return 0
}

// Sum is the total time of the histogram's packets, each counted at the
// middle of its bucket.
func (h Histogram) Sum() time.Duration {
	var sum uint64
	for _, b := range h.Buckets {
		sum += b.Packets * uint64(bucketMid(b.LowNs))
	}
	return time.Duration(sum)
}

// bucketMid is the middle of the bucket starting at low.
func bucketMid(low uint64) time.Duration {
	i := latencyBucket(int64(low))
	if i < latencySub {
		return time.Duration(low)
	}
	return time.Duration((low + latencyLow(i+1)) / 2)
}

// Add returns the histogram of h's packets and o's.
func (h Histogram) Add(o Histogram) Histogram { return h.combine(o, 1) }

// Sub returns the packets of h that were not in an earlier reading o of
// the same histogram: what happened between the two.
func (h Histogram) Sub(o Histogram) Histogram { return h.combine(o, -1) }

func (h Histogram) combine(o Histogram, sign int) Histogram {
	var n [latencyBuckets]int64
	for _, b := range h.Buckets {
		n[latencyBucket(int64(b.LowNs))] += int64(b.Packets)
	}
	for _, b := range o.Buckets {
		n[latencyBucket(int64(b.LowNs))] += int64(sign) * int64(b.Packets)
	}
	var out Histogram
	for i, c := range n {
		if c > 0 {
			out.Buckets = append(out.Buckets, LatencyBucket{LowNs: latencyLow(i), Packets: uint64(c)})
		}
	}
	return out
}
