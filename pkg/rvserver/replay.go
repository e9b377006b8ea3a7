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
// the most (of a sample of keys; or of the requesting key, once it holds
// its share), and the
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
	max, perKey int
	window      time.Duration
	maxFloors   int
	times       map[nonce]time.Time        // the request's own time
	keys        map[nodekey.Key]*keyNonces // per key, in arrival order
	floors      map[nodekey.Key]time.Time  // per key: refuse requests at or before
	floor       time.Time                  // every key: refuse at or before
	evicted     uint64                     // nonces forgotten to make room
	lastFrom    owner                      // whose nonce was forgotten last
}

// keyNonces are one key's remembered nonces, oldest first.
type keyNonces struct {
	q    []nonce
	head int
}

func (k *keyNonces) len() int { return len(k.q) - k.head }

func (k *keyNonces) front() nonce { return k.q[k.head] }

func (k *keyNonces) pop() {
	k.head++
	if k.head > len(k.q)/2 && k.head > 16 { // reuse the array's front
		k.q = k.q[:copy(k.q, k.q[k.head:])]
		k.head = 0
	}
}

// replaySample is how many keys a full cache looks at to find the busiest.
// Finding it exactly would cost a heap update on every request, on the
// server's hottest path; forgetting a nonce of a key that is merely busy
// costs that key nothing either (its floor stays in the past), so a
// sample is enough.
const replaySample = 8

func newReplayCache(size, perKey int, window time.Duration) *replayCache {
	return &replayCache{
		max: size, perKey: perKey, window: window, maxFloors: max(size/4, 1),
		times: map[nonce]time.Time{}, keys: map[nodekey.Key]*keyNonces{}, floors: map[nodekey.Key]time.Time{},
	}
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
	if k := c.keys[key]; k != nil {
		c.expire(key, k, now.Add(-c.window))
	}
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
	if k := c.keys[key]; k != nil && k.len() >= c.perKey {
		c.forget(key, k)
	}
	for len(c.times) >= c.max {
		c.forgetBusiest()
	}
	k := c.keys[key] // forgetting may have dropped it
	if k == nil {
		k = &keyNonces{}
		c.keys[key] = k
	}
	k.q = append(k.q, n)
	c.times[n] = t
}

// forgetBusiest forgets the oldest nonce of the key holding the most among
// a sample of keys.
func (c *replayCache) forgetBusiest() {
	var busiest nodekey.Key
	var most *keyNonces
	seen := 0
	for key, k := range c.keys {
		if most == nil || k.len() > most.len() {
			busiest, most = key, k
		}
		if seen++; seen == replaySample {
			break
		}
	}
	c.forget(busiest, most)
}

// forget drops key's oldest nonce to make room, raising its floor.
func (c *replayCache) forget(key nodekey.Key, k *keyNonces) {
	n := k.front()
	k.pop()
	t := c.times[n]
	delete(c.times, n)
	if k.len() == 0 {
		delete(c.keys, key)
	}
	c.evicted++
	c.lastFrom = keyOwner(key)
	if f, ok := c.floors[key]; ok || len(c.floors) < c.maxFloors {
		if t.After(f) {
			c.floors[key] = t
		}
		return
	}
	if t.After(c.floor) {
		c.floor = t
	}
}

// expire forgets key's nonces whose time can no longer pass the time
// check. A key's nonces come in nearly their time order; one that came
// late leaves a little late.
func (c *replayCache) expire(key nodekey.Key, k *keyNonces, cutoff time.Time) {
	for k.len() > 0 && c.times[k.front()].Before(cutoff) {
		delete(c.times, k.front())
		k.pop()
	}
	if k.len() == 0 {
		delete(c.keys, key)
	}
}

// sweep expires every key's old nonces and drops floors that no request
// could be below any more.
func (c *replayCache) sweep(now time.Time) {
	cutoff := now.Add(-c.window)
	for key, k := range c.keys {
		c.expire(key, k, cutoff)
	}
	for key, f := range c.floors {
		if f.Before(cutoff) {
			delete(c.floors, key)
		}
	}
}

func (c *replayCache) len() int { return len(c.times) }
