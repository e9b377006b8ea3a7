package tokenbucket

import (
	"testing"
	"time"
)

func TestTake(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := Full(2, t0)
	steps := []struct {
		at   time.Duration
		cost float64
		want bool
	}{
		{0, 1, true},
		{0, 1, true},
		{0, 1, false},                      // burst used up
		{500 * time.Millisecond, 1, true},  // rate 2/s: one token back
		{500 * time.Millisecond, 1, false}, // no time passed
		{-time.Second, 1, false},           // a clock stepping back refills nothing
		{10 * time.Second, 3, false},       // never more than burst
		{10 * time.Second, 2, true},
	}
	for i, s := range steps {
		if got := b.Take(t0.Add(s.at), 2, 2, s.cost); got != s.want {
			t.Errorf("step %d (t+%v, cost %v) = %v, want %v", i, s.at, s.cost, got, s.want)
		}
	}
}
