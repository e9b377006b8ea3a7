package dhcpd

import "time"

// New MACs may take lines at newMACRate per second with bursts of
// newMACBurst: a switch full of phones powering up together is served in a
// few seconds, while a flood of random MACs cannot make the server do
// unbounded work (each new MAC costs an EnsureLine). Known MACs are never
// limited.
const (
	newMACRate  = 5
	newMACBurst = 10
)

// tokenBucket is a token bucket driven by the caller's clock, so tests can
// use a fake one. Not safe for concurrent use.
type tokenBucket struct {
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func (b *tokenBucket) allow(now time.Time) bool {
	if dt := now.Sub(b.last); dt > 0 {
		b.tokens = min(b.burst, b.tokens+dt.Seconds()*b.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
