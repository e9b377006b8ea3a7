package rvserver

import (
	"container/list"
	"crypto/cipher"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// keyCache keeps the derived node↔server AEAD of recently authenticated
// nodes, so a known node costs no X25519. Only keys that opened a message
// are put in, so junk with random sender keys cannot flush it. Bounded,
// least recently used out first. The server's mu guards it.
type keyCache struct {
	max int
	m   map[nodekey.Key]*list.Element
	l   *list.List // of keyEntry, back: most recently used
}

type keyEntry struct {
	pub  nodekey.Key
	aead cipher.AEAD
}

func newKeyCache(max int) *keyCache {
	return &keyCache{max: max, m: map[nodekey.Key]*list.Element{}, l: list.New()}
}

func (c *keyCache) get(pub nodekey.Key) cipher.AEAD {
	e, ok := c.m[pub]
	if !ok {
		return nil
	}
	c.l.MoveToBack(e)
	return e.Value.(keyEntry).aead
}

func (c *keyCache) put(pub nodekey.Key, aead cipher.AEAD) {
	if e, ok := c.m[pub]; ok {
		c.l.MoveToBack(e)
		return
	}
	for c.l.Len() >= c.max {
		old := c.l.Remove(c.l.Front()).(keyEntry)
		delete(c.m, old.pub)
	}
	c.m[pub] = c.l.PushBack(keyEntry{pub, aead})
}

// replayCache remembers the nonces of accepted requests for as long as
// their timestamps could still pass the time check (2 × window). Two
// generations rotate every 2 × window, so an entry lives between one and two
// periods. When full it refuses new requests rather than forget: only
// authenticated requests are added, so filling it takes a registered
// node sending fast, and failing closed is the safe side. The server's mu
// guards it.
type replayCache struct {
	max       int
	cur, prev map[[rendezvous.NonceLen]byte]struct{}
	rotated   time.Time
}

// add records nonce and reports whether it was new (and there was room).
func (c *replayCache) add(nonce [rendezvous.NonceLen]byte, now time.Time, period time.Duration) bool {
	c.expire(now, period)
	if _, ok := c.cur[nonce]; ok {
		return false
	}
	if _, ok := c.prev[nonce]; ok {
		return false
	}
	if len(c.cur)+len(c.prev) >= c.max {
		return false
	}
	c.cur[nonce] = struct{}{}
	return true
}

func (c *replayCache) expire(now time.Time, period time.Duration) {
	if c.cur == nil {
		c.cur, c.prev, c.rotated = map[[rendezvous.NonceLen]byte]struct{}{}, map[[rendezvous.NonceLen]byte]struct{}{}, now
	}
	if elapsed := now.Sub(c.rotated); elapsed >= period {
		c.prev, c.cur, c.rotated = c.cur, map[[rendezvous.NonceLen]byte]struct{}{}, now
		if elapsed >= 2*period {
			// Idle for two periods: the old generation is stale too.
			c.prev = map[[rendezvous.NonceLen]byte]struct{}{}
		}
	}
}
