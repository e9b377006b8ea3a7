package rvserver

import (
	"net/netip"
	"runtime"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// LimitStats counts what the limits (Limits) refused or dropped, each under
// its real reason, so that an operator looking at a flood sees a
// rate-limited key or a full table rather than "replays".
type LimitStats struct {
	// KeyLimited: sealed requests dropped unanswered because their node
	// key had spent its RequestPerSec budget. PrefixLimited: because their
	// source prefix had spent its PrefixPerSec budget (checked before any
	// cryptography). ConnectLimited: Connects answered RateLimited because
	// the node had spent its ConnectPerSec budget.
	KeyLimited, PrefixLimited, ConnectLimited uint64
	// ReplayStale: requests refused because they were not newer than a
	// nonce forgotten from the replay cache to make room (see replayCache).
	ReplayStale uint64
	// Evicted*: entries dropped to make room in a full table or for an
	// owner over its share. (Stats.Evicted counts registrations.)
	EvictedPending, EvictedSessions, EvictedReplay, EvictedInvites uint64
	// Sizes of the replay cache and the per-prefix budget table.
	ReplayNonces, Prefixes int
}

// blame remembers whom each limit hit last, for the log.
type blame struct {
	key, prefix                       owner
	nodes, pending, sessions          owner
	nodesWhy, pendingWhy, sessionsWhy evictReason
}

// initLimits makes the bounded tables' ledgers.
func (s *Server) initLimits() {
	c := s.cfg
	s.replay = newReplayCache(c.MaxReplay, c.MaxReplayPerKey, c.Window)
	s.prefixes = newPrefixLimiter(c.MaxPrefixes)
	s.nodesL = newLedger(c.MaxNodes, 0, c.MaxNodesPerPrefix, func(k nodekey.Key, from owner, why evictReason) {
		delete(s.nodes, k)
		s.evicted.Add(1)
		s.blamed.nodes, s.blamed.nodesWhy = from, why
	})
	s.pendingL = newLedger(c.MaxPending, c.MaxPendingPerKey, c.MaxPendingPerPrefix, func(k [2]nodekey.Key, from owner, why evictReason) {
		delete(s.pending, k)
		s.lim.EvictedPending++
		s.blamed.pending, s.blamed.pendingWhy = from, why
	})
	s.sessionsL = newLedger(c.MaxSessions, c.MaxSessionsPerKey, c.MaxSessionsPerPrefix, func(id uint64, from owner, why evictReason) {
		if ss := s.sessions[id]; ss != nil {
			delete(s.sessions, id)
			delete(s.pairs, pairOf(ss.a, ss.b))
		}
		s.lim.EvictedSessions++
		s.blamed.sessions, s.blamed.sessionsWhy = from, why
	})
}

// prefixAllow takes one sealed request from src's prefix budget. It runs
// after the cookie check (src is the sender's own address) and before any
// cryptography.
func (s *Server) prefixAllow(src netip.AddrPort, now time.Time) bool {
	pfx := sourcePrefix(src)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prefixes.allow(pfx, now, s.cfg.PrefixPerSec, s.cfg.PrefixBurst) {
		return true
	}
	s.lim.PrefixLimited++
	s.blamed.prefix = prefixOwner(pfx)
	return false
}

// admitLocked decides whether an authenticated request is served: not a
// replay, and within its key's budget. Only then does its nonce take room
// in the replay cache, so that refused requests cost no memory (and a
// replayed copy of a node's request does not spend the node's budget).
func (s *Server) admitLocked(env *rendezvous.Envelope, now time.Time) bool {
	t := time.UnixMilli(env.Time)
	switch s.replay.check(env.Sender, env.Nonce, t, now) {
	case replaySeen:
		s.replays.Add(1)
		return false
	case replayStale:
		s.lim.ReplayStale++
		return false
	}
	if n := s.nodes[env.Sender]; n != nil && !n.requests.Take(now, s.cfg.RequestPerSec, float64(s.cfg.RequestBurst), 1) {
		s.lim.KeyLimited++
		s.blamed.key = keyOwner(env.Sender)
		return false
	}
	s.replay.add(env.Sender, env.Nonce, t)
	return true
}

// chargeNodeLocked charges n's registration to src's prefix (again, if it
// moved to another network) and marks it as just refreshed.
func (s *Server) chargeNodeLocked(n *node, src netip.AddrPort) {
	pfx := sourcePrefix(src)
	if s.nodesL.has(n.pub) {
		if n.prefix == pfx {
			s.nodesL.touch(n.pub)
			return
		}
		s.nodesL.remove(n.pub)
	}
	n.prefix = pfx
	s.nodesL.add(n.pub, prefixOwner(pfx))
}

// putPendingLocked records a one-sided introduction, charged to the
// requesting key and its source prefix.
func (s *Server) putPendingLocked(k [2]nodekey.Key, p pending, src netip.AddrPort) {
	if s.pendingL.has(k) {
		s.pendingL.touch(k)
	} else {
		s.pendingL.add(k, keyOwner(k[0]), prefixOwner(sourcePrefix(src)))
	}
	s.pending[k] = p
}

// chargeSessionLocked charges a new relay session to both nodes and both
// their prefixes: either side holding its share, or the biggest holder
// when the table is full, loses its least recently used session.
func (s *Server) chargeSessionLocked(id uint64, a, b *node) {
	s.sessionsL.add(id, keyOwner(a.pub), keyOwner(b.pub), prefixOwner(a.prefix), prefixOwner(b.prefix))
}

func (s *Server) limitStatsLocked() LimitStats {
	st := s.lim
	st.EvictedReplay = s.replay.evicted
	st.EvictedInvites = s.invites.evicted
	st.ReplayNonces = s.replay.len()
	st.Prefixes = s.prefixes.l.len()
	return st
}

// logLimitsLocked logs, at most once a sweep, what the limits did since
// the last time, naming whom they hit last and who holds the most, so an
// operator can tell a flood (and from where) from a bug.
func (s *Server) logLimitsLocked() {
	st := s.limitStatsLocked()
	old := s.logged
	evicted := s.evicted.Load()
	if st.KeyLimited == old.KeyLimited && st.PrefixLimited == old.PrefixLimited && st.ConnectLimited == old.ConnectLimited &&
		st.ReplayStale == old.ReplayStale && st.EvictedPending == old.EvictedPending && st.EvictedSessions == old.EvictedSessions &&
		st.EvictedReplay == old.EvictedReplay && st.EvictedInvites == old.EvictedInvites && evicted == s.loggedEvicted {
		return
	}
	attrs := []any{
		"key_rate_limited", st.KeyLimited - old.KeyLimited,
		"prefix_rate_limited", st.PrefixLimited - old.PrefixLimited,
		"connect_rate_limited", st.ConnectLimited - old.ConnectLimited,
		"registrations_evicted", evicted - s.loggedEvicted,
		"pending_evicted", st.EvictedPending - old.EvictedPending,
		"sessions_evicted", st.EvictedSessions - old.EvictedSessions,
		"replay_nonces_forgotten", st.EvictedReplay - old.EvictedReplay,
		"invites_evicted", st.EvictedInvites - old.EvictedInvites,
		"refused_older_than_forgotten", st.ReplayStale - old.ReplayStale,
	}
	name := func(o owner) string {
		if o == (owner{}) {
			return "-"
		}
		return o.String()
	}
	if st.KeyLimited != old.KeyLimited {
		attrs = append(attrs, "last_rate_limited_key", name(s.blamed.key))
	}
	if st.PrefixLimited != old.PrefixLimited {
		attrs = append(attrs, "last_rate_limited_prefix", name(s.blamed.prefix))
	}
	if evicted != s.loggedEvicted {
		attrs = append(attrs, "last_registration_evicted_from", name(s.blamed.nodes)+" ("+s.blamed.nodesWhy.String()+")")
	}
	if st.EvictedPending != old.EvictedPending {
		attrs = append(attrs, "last_pending_evicted_from", name(s.blamed.pending)+" ("+s.blamed.pendingWhy.String()+")")
	}
	if st.EvictedSessions != old.EvictedSessions {
		attrs = append(attrs, "last_session_evicted_from", name(s.blamed.sessions)+" ("+s.blamed.sessionsWhy.String()+")")
	}
	if st.EvictedReplay != old.EvictedReplay {
		attrs = append(attrs, "last_replay_nonce_forgotten_from", name(s.replay.lastFrom))
	}
	for _, t := range []struct {
		name string
		top  func() (owner, int)
		size int
	}{
		{"registrations", s.nodesL.top, s.nodesL.len()},
		{"pending", s.pendingL.top, s.pendingL.len()},
		{"sessions", s.sessionsL.top, s.sessionsL.len()},
		{"invites", s.invites.led.top, s.invites.led.len()},
	} {
		o, n := t.top()
		attrs = append(attrs, t.name, t.size)
		if n > 0 {
			attrs = append(attrs, t.name+"_top_holder", name(o), t.name+"_top_holds", n)
		}
	}
	s.log.Warn("limits applied: a key or network is sending more than its share (counts since the last such line)", attrs...)
	s.logged, s.loggedEvicted = st, evicted
}

// readBuffer is the socket receive buffer asked for: a flood arrives in
// bursts, and a datagram the kernel drops because the buffer is full is
// lost for everyone, legitimate relay traffic too. The kernel caps it at
// net.core.rmem_max (raise that on the VPS to get all of it).
const readBuffer = 4 << 20

// tuneSockets enlarges the sockets' receive buffers and returns how many
// readers each port gets: one per CPU, so that the cheap refusals of a
// flood are spread over every core. handle is safe for concurrent use.
func (s *Server) tuneSockets() int {
	for _, c := range s.conns {
		if err := c.SetReadBuffer(readBuffer); err != nil {
			s.log.Debug("cannot enlarge the socket receive buffer", "err", err)
		}
	}
	return max(1, runtime.GOMAXPROCS(0))
}
