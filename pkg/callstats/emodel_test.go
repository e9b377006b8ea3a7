package callstats

import (
	"math"
	"testing"
	"time"
)

func TestMOS(t *testing.T) {
	tests := []struct {
		r, want float64
	}{
		{-5, 1},
		{0, 1},
		{math.NaN(), 1},
		{50, 2.58},   // G.107 Annex B: "many users dissatisfied"
		{60, 3.10},   // "nearly all users dissatisfied" boundary
		{70, 3.60},   // "some users dissatisfied"
		{80, 4.02},   // "satisfied"
		{93.2, 4.41}, // the best narrowband call
		{100, 4.5},
		{120, 4.5},
	}
	for _, tt := range tests {
		if got := MOS(tt.r); math.Abs(got-tt.want) > 0.01 {
			t.Errorf("MOS(%v) = %.3f, want %.2f", tt.r, got, tt.want)
		}
	}
}

func TestRFactor(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name  string
		delay time.Duration
		loss  float64
		codec Codec
		want  float64
	}{
		{"no delay no loss G.711", 0, 0, codecG711, 93.2},
		{"40 ms G.711", 40 * ms, 0, codecG711, 93.2 - 0.96},
		// Past the knee: 0.024·200 + 0.11·22.7 = 7.297.
		{"200 ms G.711", 200 * ms, 0, codecG711, 93.2 - 7.297},
		// Ie,eff = 95·1/(1+25.1) = 3.640.
		{"1% loss G.711", 0, 1, codecG711, 93.2 - 3.640},
		// Ie,eff = 95·5/(5+25.1) = 15.781.
		{"5% loss G.711", 0, 5, codecG711, 93.2 - 15.781},
		// Ie,eff = 11 + 84·2/(2+19) = 19.0.
		{"2% loss G.729", 0, 2, codecG729, 93.2 - 19.0},
		{"negative loss is none", 0, -3, codecG711, 93.2},
		{"all lost", 0, 100, codecG711, 93.2 - 95*100/125.1},
		{"over 100% clamped", 0, 250, codecG711, 93.2 - 95*100/125.1},
	}
	for _, tt := range tests {
		if got := RFactor(tt.delay, tt.loss, tt.codec); math.Abs(got-tt.want) > 0.001 {
			t.Errorf("%s: RFactor(%v, %v, %s) = %.3f, want %.3f", tt.name, tt.delay, tt.loss, tt.codec.Name, got, tt.want)
		}
	}
}

func TestDelay(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		rtt, jitter, want time.Duration
		codec             Codec
	}{
		// A packet to fill and a packet of buffer, at least.
		{0, 0, 40 * ms, codecG711},
		{100 * ms, 2 * ms, 90 * ms, codecG711},
		// The buffer follows jitter once it exceeds a packet.
		{100 * ms, 30 * ms, 50*ms + 20*ms + 60*ms, codecG711},
		{0, 0, 60 * ms, codecG723},
	}
	for _, tt := range tests {
		if got := Delay(tt.rtt, tt.jitter, tt.codec); got != tt.want {
			t.Errorf("Delay(%v, %v, %s) = %v, want %v", tt.rtt, tt.jitter, tt.codec.Name, got, tt.want)
		}
	}
}

func TestEstimate(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name         string
		pt           uint8
		rtt, jitter  time.Duration
		loss         float64
		minMOS, maxM float64
	}{
		{"LAN G.711", 0, 1 * ms, 1 * ms, 0, 4.3, 4.45},
		{"clean Internet G.711", 8, 60 * ms, 3 * ms, 0, 4.3, 4.45},
		{"1% loss", 0, 60 * ms, 3 * ms, 1, 4.1, 4.3},
		{"5% loss", 0, 60 * ms, 5 * ms, 5, 3.6, 3.9},
		{"satellite", 0, 600 * ms, 5 * ms, 0, 3.0, 3.7},
		{"G.729 clean", 18, 60 * ms, 3 * ms, 0, 3.9, 4.2},
		{"20% loss", 0, 100 * ms, 20 * ms, 20, 1.5, 2.6},
		{"dynamic payload type rated as G.711", 96, 1 * ms, 1 * ms, 0, 4.3, 4.45},
	}
	for _, tt := range tests {
		got := Estimate(tt.pt, tt.rtt, tt.jitter, tt.loss)
		if got < tt.minMOS || got > tt.maxM {
			t.Errorf("%s: Estimate(%d, %v, %v, %v) = %.2f, want %.1f..%.2f", tt.name, tt.pt, tt.rtt, tt.jitter, tt.loss, got, tt.minMOS, tt.maxM)
		}
	}
	// Worse never scores better.
	for loss := 0.0; loss < 50; loss++ {
		if a, b := Estimate(0, 50*ms, 2*ms, loss), Estimate(0, 50*ms, 2*ms, loss+1); b > a {
			t.Fatalf("MOS rose with loss %v%% → %v%%: %.3f → %.3f", loss, loss+1, a, b)
		}
	}
	for rtt := time.Duration(0); rtt < 2*time.Second; rtt += 10 * ms {
		if a, b := Estimate(0, rtt, 2*ms, 0), Estimate(0, rtt+10*ms, 2*ms, 0); b > a {
			t.Fatalf("MOS rose with RTT %v: %.3f → %.3f", rtt, a, b)
		}
	}
}

func TestLossPercent(t *testing.T) {
	tests := []struct {
		name     string
		expected uint64
		lost     int64
		want     float64
	}{
		{"nothing expected", 0, 0, 0},
		{"nothing lost", 500, 0, 0},
		{"duplicates outnumber losses", 500, -3, 0},
		{"one in a thousand", 1000, 1, 0.1},
		{"half", 200, 100, 50},
		{"more lost than expected (wrapped counters)", 10, 20, 100},
	}
	for _, tt := range tests {
		if got := LossPercent(tt.expected, tt.lost); got != tt.want {
			t.Errorf("%s: LossPercent(%d, %d) = %v, want %v", tt.name, tt.expected, tt.lost, got, tt.want)
		}
	}
}
