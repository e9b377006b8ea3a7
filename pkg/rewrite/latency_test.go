package rewrite

import (
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	for i := range latencyBuckets {
		low := latencyLow(i)
		if got := latencyBucket(int64(low)); got != i {
			t.Fatalf("latencyBucket(latencyLow(%d) = %d) = %d", i, low, got)
		}
		if i+1 < latencyBuckets {
			high := latencyLow(i + 1)
			if high <= low {
				t.Fatalf("latencyLow(%d) = %d, not above latencyLow(%d) = %d", i+1, high, i, low)
			}
			if got := latencyBucket(int64(high - 1)); got != i {
				t.Fatalf("latencyBucket(%d) = %d, want %d", high-1, got, i)
			}
			// 12.5 % wide at most: what the p99 goal of 2 µs needs.
			if i >= latencySub && float64(high-low) > 0.125*float64(low) {
				t.Fatalf("bucket %d is [%d, %d): wider than 12.5 %%", i, low, high)
			}
		}
	}
	for _, ns := range []int64{-5, 0, 7, 1 << 50} {
		if b := latencyBucket(ns); b < 0 || b >= latencyBuckets {
			t.Errorf("latencyBucket(%d) = %d, out of range", ns, b)
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	d := &Device{}
	h := &d.latency[outbound]
	h.record(1000, 98) // bucket [960, 1024)
	h.record(2000, 1)  // bucket [1920, 2048)
	h.record(50000, 1)
	hist := d.Latency().Outbound
	if hist.Packets() != 100 {
		t.Fatalf("Packets() = %d, want 100", hist.Packets())
	}
	for _, tt := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 992}, {0.98, 992}, {0.99, 1984}, {1, 49152 + 4096/2}, {0, 992}} {
		if got := hist.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	if got, want := hist.Sum(), time.Duration(98*992+1984+51200); got != want {
		t.Errorf("Sum() = %v, want %v", got, want)
	}
	if got := (Histogram{}).Quantile(0.99); got != 0 {
		t.Errorf("empty Quantile = %v, want 0", got)
	}
	later := hist.Add(hist)
	if got := later.Sub(hist); got.Packets() != 100 || got.Quantile(0.99) != 1984 {
		t.Errorf("(h+h)-h = %+v, want h", got)
	}
}

// TestDeviceLatency times batches with a clock that moves 700 ns per
// reading: every sampled batch took 700 ns, and only one in
// latencySampleEvery is timed.
func TestDeviceLatency(t *testing.T) {
	d := Wrap(&repeatTUN{pkt: rtpLocalA}, bobAtAlice, nil)
	var clock int64
	d.clock = func() int64 { clock += 700; return clock }
	bufs := [][]byte{make([]byte, 2048)}
	sizes := make([]int, 1)
	const batches = 50 * latencySampleEvery
	for range batches {
		_, _ = d.Read(bufs, sizes, testOffset)
	}
	w := Wrap(&discardTUN{}, bobAtAlice, nil)
	w.clock = d.clock
	buf := make([]byte, 0, 2048)
	for range batches {
		buf = append(buf[:0], rtpWire...)
		_, _ = w.Write([][]byte{buf}, 0)
	}
	for name, h := range map[string]Histogram{"Read": d.Latency().Outbound, "Write": w.Latency().Inbound} {
		if n := h.Packets(); n != batches/latencySampleEvery {
			t.Errorf("%s: %d packets timed, want %d", name, n, batches/latencySampleEvery)
		}
		if p := h.Quantile(0.99); p < 640 || p > 768 {
			t.Errorf("%s: p99 %v, want the 700 ns each batch took", name, p)
		}
	}
	// The control: on other batches, as many, two readings with nothing
	// between them, which this clock makes 700 ns apart too.
	for name, h := range map[string]Histogram{"Read": d.Latency().ControlOutbound, "Write": w.Latency().ControlInbound} {
		if n := h.Packets(); n != batches/latencySampleEvery {
			t.Errorf("%s: %d packets in the control, want %d", name, n, batches/latencySampleEvery)
		}
		if p := h.Quantile(0.99); p < 640 || p > 768 {
			t.Errorf("%s: control p99 %v, want the 700 ns between two readings", name, p)
		}
	}
	if n := d.Latency().Inbound.Packets() + w.Latency().Outbound.Packets() + d.Latency().ControlInbound.Packets() + w.Latency().ControlOutbound.Packets(); n != 0 {
		t.Errorf("%d packets timed in the direction not used", n)
	}
}
