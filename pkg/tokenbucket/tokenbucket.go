// Package tokenbucket is the rate limit every service of the Pi uses
// against floods (new DHCP clients, NTP sources, rendezvous nodes): a token
// bucket driven by the caller's clock, so tests can use a fake one, and
// small enough to keep one per source.
package tokenbucket

import "time"

// Bucket holds tokens that refill at a rate up to a burst; the owner
// passes rate and burst on each call so that a table of buckets stores
// only what differs between them. Not safe for concurrent use.
type Bucket struct {
	Tokens float64
	// Last is when Tokens was last refilled.
	Last time.Time
}

// Full is a bucket holding burst tokens at now.
func Full(burst float64, now time.Time) Bucket { return Bucket{Tokens: burst, Last: now} }

// Take refills the bucket for the time since the last call and takes cost
// tokens if there are enough. A clock that steps back refills nothing.
func (b *Bucket) Take(now time.Time, rate, burst, cost float64) bool {
	if dt := now.Sub(b.Last); dt > 0 {
		b.Tokens = min(burst, b.Tokens+dt.Seconds()*rate)
		b.Last = now
	}
	if b.Tokens < cost {
		return false
	}
	b.Tokens -= cost
	return true
}
