package rvserver

import (
	"container/list"
	"crypto/cipher"

	"github.com/peerline/peerline/pkg/nodekey"
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
