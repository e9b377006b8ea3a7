package ntpd

import (
	"net/netip"
	"time"

	"github.com/peerline/peerline/pkg/tokenbucket"
)

// limiter is a token bucket per source address. A phone asks a few times
// at boot and then every few minutes; a source beyond burst answers at
// rate per second is a flood or a loop, and answering it helps nobody.
// The map is bounded: when it is full, idle entries go first, and a new
// source that still finds no room is refused until some entry idles out.
// Owned by the server's run goroutine.
type limiter struct {
	burst   float64
	rate    float64 // tokens per second
	max     int
	buckets map[netip.Addr]*tokenbucket.Bucket
}

func newLimiter(burst, rate float64, max int) *limiter {
	return &limiter{burst: burst, rate: rate, max: max, buckets: make(map[netip.Addr]*tokenbucket.Bucket)}
}

func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	b, ok := l.buckets[a]
	if !ok {
		if len(l.buckets) >= l.max {
			l.evictIdle(now)
			if len(l.buckets) >= l.max {
				return false
			}
		}
		full := tokenbucket.Full(l.burst, now)
		b = &full
		l.buckets[a] = b
	}
	return b.Take(now, l.rate, l.burst, 1)
}

// evictIdle drops every source whose bucket has refilled: forgetting it
// changes nothing, as it would start full anyway.
func (l *limiter) evictIdle(now time.Time) {
	refill := time.Duration(l.burst / l.rate * float64(time.Second))
	for a, b := range l.buckets {
		if now.Sub(b.Last) >= refill {
			delete(l.buckets, a)
		}
	}
}
