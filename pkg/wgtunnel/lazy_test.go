package wgtunnel

import (
	"testing"
	"time"
)

func TestShouldPark(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	never := time.Time{}
	tests := []struct {
		name                           string
		now, woke, handshake, rx, read time.Time
		want                           bool
	}{
		{"just woke, nobody answered", at(10 * time.Second), t0, never, t0, t0, false},
		{"nobody answered since waking", at(parkNever), t0, never, t0, t0, true},
		{"an old session from before waking is no answer", at(parkNever), t0, at(-time.Hour), t0, t0, true},
		{"nobody answered, but packets came in lately", at(parkNever), t0, never, at(parkNever - time.Second), t0, false},
		{"session alive", at(time.Minute), t0, at(10 * time.Second), at(10 * time.Second), t0, false},
		{"session expired but packets came in lately", at(sessionLife + time.Minute), t0, at(time.Second), at(sessionLife), t0, false},
		{"session expired and quiet", at(sessionLife + parkIdle), t0, at(time.Second), at(sessionLife), t0, true},
		{"session not yet expired, quiet", at(sessionLife - time.Second), t0, at(time.Millisecond), at(time.Millisecond), t0, false},
		{"nobody answered, but the phone side just sent a packet", at(time.Minute), t0, never, t0, at(time.Minute - time.Second), false},
		{"session expired and quiet, but the phone side just sent a packet", at(sessionLife + parkIdle), t0, at(time.Second), at(sessionLife), at(sessionLife + parkIdle - time.Second), false},
	}
	for _, tt := range tests {
		if got := shouldPark(tt.now, tt.woke, tt.handshake, tt.rx, tt.read); got != tt.want {
			t.Errorf("%s: shouldPark = %v, want %v", tt.name, got, tt.want)
		}
	}
}
