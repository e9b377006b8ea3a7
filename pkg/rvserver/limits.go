package rvserver

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/peerline/peerline/pkg/tokenbucket"
)

// Limits bound every table the server keeps and what one node key or one
// source prefix (an IPv4 /24, an IPv6 /56) may take of each, so that the
// server's memory is set by configuration and a flood from one key or one
// network is cut off long before it can crowd out anyone else. Zero fields
// take defaults derived from Config.MaxNodes (see withDefaults); the
// per-source shares default to an eighth of their table.
//
// Keys cost an attacker nothing, so per-key limits alone would not hold:
// every table is also shared out by source prefix, whose addresses the
// cookie check has proved the sender owns. When a table is full anyway
// (many prefixes), the entry that goes is the least recently used one of
// the key or prefix holding the most (see ledger), never simply the oldest.
type Limits struct {
	// MaxNodesPerPrefix bounds the registrations from one source prefix;
	// beyond it, the prefix's least recently refreshed node is dropped.
	MaxNodesPerPrefix int
	// RequestPerSec and RequestBurst bound a registered node's sealed
	// requests (register, connect, invite store...). A node refreshes
	// about every 20 s on each port; more is dropped unanswered.
	RequestPerSec float64
	RequestBurst  int
	// PrefixPerSec and PrefixBurst bound the sealed requests from one
	// source prefix, checked before any cryptography: the server's work
	// for a network is bounded, however many keys it uses.
	PrefixPerSec float64
	PrefixBurst  int
	// MaxPrefixes bounds the source prefixes whose budgets are kept; the
	// least recently active is forgotten first.
	MaxPrefixes int
	// MaxPending bounds the one-sided introductions waiting for the other
	// side (each up to 15 s), MaxPendingPerKey and MaxPendingPerPrefix
	// what one requesting key or prefix may hold.
	MaxPending, MaxPendingPerKey, MaxPendingPerPrefix int
	// MaxSessions bounds the relay sessions, MaxSessionsPerKey and
	// MaxSessionsPerPrefix those one node or prefix may be part of. A node
	// needs one per peer (at most 253).
	MaxSessions, MaxSessionsPerKey, MaxSessionsPerPrefix int
	// MaxReplay bounds the nonces kept against replays, MaxReplayPerKey
	// those of one key (see replayCache: a full cache forgets the busiest
	// key's oldest, it never refuses fresh requests).
	MaxReplay, MaxReplayPerKey int
}

func (l Limits) withDefaults(maxNodes int) Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = max(d, 1)
		}
	}
	deff := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxNodesPerPrefix, maxNodes/8)
	deff(&l.RequestPerSec, 10)
	def(&l.RequestBurst, 40)
	deff(&l.PrefixPerSec, 500)
	def(&l.PrefixBurst, 1000)
	def(&l.MaxPrefixes, 4*maxNodes)
	def(&l.MaxPending, 4*maxNodes)
	def(&l.MaxPendingPerKey, 64)
	def(&l.MaxPendingPerPrefix, l.MaxPending/8)
	def(&l.MaxSessions, 2*maxNodes)
	def(&l.MaxSessionsPerKey, 256)
	def(&l.MaxSessionsPerPrefix, l.MaxSessions/8)
	// A node refreshes on two ports every 20 s: 10,000 nodes keep about
	// 60,000 nonces in a 60 s window. Beyond, the busiest keys' oldest
	// are forgotten, which costs them nothing (see replayCache).
	def(&l.MaxReplay, 8*maxNodes)
	def(&l.MaxReplayPerKey, 256)
	return l
}

// validate names a limit that cannot work.
func (l Limits) validate() error {
	switch {
	case l.MaxNodesPerPrefix < 1, l.MaxPending < 1, l.MaxPendingPerKey < 1, l.MaxPendingPerPrefix < 1,
		l.MaxSessions < 1, l.MaxSessionsPerKey < 1, l.MaxSessionsPerPrefix < 1,
		l.MaxReplay < 1, l.MaxReplayPerKey < 1, l.MaxPrefixes < 1, l.RequestBurst < 1, l.PrefixBurst < 1:
		return fmt.Errorf("limits %+v: every table size and burst must be at least 1", l)
	case l.RequestPerSec < 0.05:
		return fmt.Errorf("request rate %g/s per node: a node refreshes every 20 s on two ports; give at least 0.1", l.RequestPerSec)
	}
	return nil
}

// prefixLimiter keeps a token bucket per source prefix, for the sealed
// requests that passed the cookie check (so the prefix is the sender's
// own: a spoofed source never gets this far and cannot spend a victim
// network's budget). Bounded by a ledger without owners: when full, the
// least recently active prefix is forgotten. The server's mu guards it.
type prefixLimiter struct {
	l       *ledger[netip.Prefix]
	buckets map[netip.Prefix]*tokenbucket.Bucket
}

func newPrefixLimiter(max int) *prefixLimiter {
	p := &prefixLimiter{buckets: map[netip.Prefix]*tokenbucket.Bucket{}}
	p.l = newLedger(max, 0, 0, func(k netip.Prefix, _ owner, _ evictReason) { delete(p.buckets, k) })
	return p
}

// allow takes one request from pfx's budget.
func (p *prefixLimiter) allow(pfx netip.Prefix, now time.Time, rate float64, burst int) bool {
	b := p.buckets[pfx]
	if b == nil {
		p.l.add(pfx)
		nb := tokenbucket.Full(float64(burst), now)
		b = &nb
		p.buckets[pfx] = b
	} else {
		p.l.touch(pfx)
	}
	return b.Take(now, rate, float64(burst), 1)
}

// sweep forgets prefixes idle long enough for their bucket to be full
// again: keeping them would change nothing.
func (p *prefixLimiter) sweep(now time.Time, rate float64, burst int) {
	for k, ok := p.l.oldest(); ok; k, ok = p.l.oldest() {
		b := p.buckets[k]
		if b.Tokens+now.Sub(b.Last).Seconds()*rate < float64(burst) {
			return
		}
		p.l.remove(k)
		delete(p.buckets, k)
	}
}
