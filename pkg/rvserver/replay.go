package rvserver

import (
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

type nonce = [rendezvous.NonceLen]byte

// replayCache remembers the nonces of accepted requests for as long as
// their timestamps could still pass the time check (the request's time
// within window of the server's clock), so that a request is accepted at
// most once.
//
// It is bounded, and never refuses a fresh request for lack of room: a
// full cache would otherwise let one busy key stop the server answering
// anyone. Room is made by forgetting the oldest nonce of the key that holds
// the most (or of the requesting key, once it holds its share), and the
// key's floor is raised to that nonce's time: from then on that key's
// requests must be newer than the floor. A replay of a forgotten nonce is
// therefore still refused, and the only cost falls on the key that made
// the most requests, whose late stragglers are refused too. Its honest
// requests carry the current time (clients take the server's clock from
// its Cookie), well after any floor.
//
// Floors are bounded too (maxFloors); beyond that, a forgotten nonce
// raises the one floor every key shares. That needs more keys each making
// requests within one window than the cache has room for nonces, and it
// still refuses replays rather than accept them. The server's mu guards
// the cache.
type replayCache struct {
	window    time.Duration
	maxFloors int
	l         *ledger[nonce]
	times     map[nonce]time.Time       // the request's own time
	floors    map[nodekey.Key]time.Time // per key: refuse requests at or before
	floor     time.Time                 // every key: refuse at or before
	evicted   uint64                    // nonces forgotten to make room
	lastFrom  owner                     // whose nonce was forgotten last
}

func newReplayCache(size, perKey int, window time.Duration) *replayCache {
	c := &replayCache{window: window, maxFloors: max(size/4, 1), times: map[nonce]time.Time{}, floors: map[nodekey.Key]time.Time{}}
	c.l = newLedger(size, perKey, 0, func(n nonce, from owner, _ evictReason) {
		t := c.times[n]
		delete(c.times, n)
		c.evicted++
		c.lastFrom = from
		k := nodekey.Key(from.id)
		if f, ok := c.floors[k]; ok || len(c.floors) < c.maxFloors {
			if t.After(f) {
				c.floors[k] = t
			}
			return
		}
		if t.After(c.floor) {
			c.floor = t
		}
	})
	return c
}

// replayVerdict is what the cache says of a request.
type replayVerdict uint8

const (
	replayFresh replayVerdict = iota
	// replaySeen: this nonce was accepted before.
	replaySeen
	// replayStale: not newer than its key's floor, so it may be a replay
	// of a nonce forgotten to make room.
	replayStale
)

// check says whether a request from key with nonce n, sealed at t, may be
// accepted. It changes nothing: the caller adds it once it has passed the
// other limits, so a refused request takes no room.
func (c *replayCache) check(key nodekey.Key, n nonce, t, now time.Time) replayVerdict {
	c.expire(now)
	if _, ok := c.times[n]; ok {
		return replaySeen
	}
	if f, ok := c.floors[key]; (ok && !t.After(f)) || !t.After(c.floor) {
		return replayStale
	}
	return replayFresh
}

// add records an accepted request; check must have said replayFresh.
func (c *replayCache) add(key nodekey.Key, n nonce, t time.Time) {
	c.l.add(n, keyOwner(key))
	c.times[n] = t
}

// expire forgets nonces (and floors) whose time can no longer pass the
// time check. Nonces leave in the order they came, which is nearly their
// time order; one that came late leaves a little late.
func (c *replayCache) expire(now time.Time) {
	cutoff := now.Add(-c.window)
	for n, ok := c.l.oldest(); ok && c.times[n].Before(cutoff); n, ok = c.l.oldest() {
		c.l.remove(n)
		delete(c.times, n)
	}
}

// sweep also drops floors that no request could be below any more.
func (c *replayCache) sweep(now time.Time) {
	c.expire(now)
	cutoff := now.Add(-c.window)
	for k, f := range c.floors {
		if f.Before(cutoff) {
			delete(c.floors, k)
		}
	}
}

func (c *replayCache) len() int { return c.l.len() }
