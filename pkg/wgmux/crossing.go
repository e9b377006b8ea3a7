package wgmux

import (
	"bytes"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

// Crossed handshakes.
//
// When both ends of a tunnel start a handshake in the same instant (two
// idle Pis whose keys expire together, their keepalive timers locked in
// phase by each other's packets), each device consumes the peer's
// initiation while its own is in flight. In wireguard-go that abandons its
// own: answering an initiation replaces the one handshake state a peer has
// and frees the index the answer to our own initiation would be routed by.
// Both answers then arrive as "invalid response", each side holds only an
// unconfirmed responder key that it may not send with, and nothing moves
// until a retransmission timer fires 5 s or more later.
//
// The Bind sees both messages: its device's initiation going out (Send)
// and the peer's coming in (the mux's dispatch). When they cross, the end
// with the smaller public key (by default also the one that starts the
// first handshake, wgtunnel.InitiatesFirst; both ends need only agree on
// the winner) "wins": it keeps the peer's
// initiation back until its own is answered, and then drops it. The other
// end delivers the winner's initiation to its device as usual; answering
// it abandons its own, which the winner never answered. One handshake
// completes, in one round trip. See docs/handshake-crossing.md.
//
// If the winner's own initiation goes unanswered for crossHold (lost, or
// the peer had already given it up), it delivers the held one after all:
// the peer is still waiting for the answer to it, since WireGuard retries
// only after 5 s.

// crossHold is how long the winner of a crossing keeps the peer's
// initiation back waiting for the answer to its own. It must exceed the
// path's round trip (relays included) or the crossing ends as it would
// without the guard; it must stay below WireGuard's 5 s retry so that a
// held initiation is still one the peer waits an answer for.
const crossHold = time.Second

// crossGuardOff, when set, keeps the guard from acting on the crossings
// it still counts and logs: for the tests that show what it prevents
// (crossing_off.go, TestCrossedHandshake).
var crossGuardOff atomic.Bool

// crossVerdict is what to do with a peer's initiation.
type crossVerdict int

const (
	// deliver: no crossing; the device answers it.
	deliver crossVerdict = iota
	// yieldTo: crossed, and the peer wins; the device answers it, which
	// abandons our own initiation.
	yieldTo
	// holdBack: crossed, and we win; keep it until releaseAt, drop it if
	// our own is answered first.
	holdBack
)

func (v crossVerdict) String() string {
	switch v {
	case deliver:
		return "deliver"
	case yieldTo:
		return "yield"
	case holdBack:
		return "hold"
	}
	return "?"
}

// crossGuard is the decision, apart from the I/O: which initiation of ours
// is in flight, and what to do with the peer's. Its caller serialises the
// calls (Bind.crossMu).
type crossGuard struct {
	// wins: this node's key is the smaller, so its initiation is the one
	// both ends complete.
	wins bool
	// own is the sender index of our initiation in flight, sent at ownAt
	// to ownTo (the relay or address, and any direct copies); ownAt is
	// zero when none is.
	own   uint32
	ownAt time.Time
	ownTo []pathKey
	// ownDone: own was answered or abandoned; a copy of it sent later
	// (CopyInitiation) is a replay the peer ignores, not in flight.
	ownDone bool
}

// pathKey is where a message went or came from: a direct address, or a
// relay session at its server.
type pathKey struct {
	addr    netip.AddrPort
	session uint64
}

// maxOwnTo bounds the places one initiation went: the path in use and the
// copies sent with the probes to a peer's candidates.
const maxOwnTo = 8

// winsCrossing reports whether local's initiation wins when it crosses
// peer's: the smaller key wins, as wgtunnel.InitiatesFirst picks the end
// that starts first.
func winsCrossing(local, peer nodekey.Key) bool {
	return bytes.Compare(local[:], peer[:]) < 0
}

// initiationOut records our initiation with sender index idx leaving now
// to to. A new initiation replaces the one before (WireGuard forgot it); a
// copy of the same one adds where it went.
func (g *crossGuard) initiationOut(idx uint32, to pathKey, now time.Time) {
	if idx != g.own || g.ownAt.IsZero() && !g.ownDone {
		g.own, g.ownTo, g.ownDone = idx, g.ownTo[:0], false
	}
	if g.ownDone {
		return
	}
	g.ownAt = now
	if len(g.ownTo) < maxOwnTo && !slices.Contains(g.ownTo, to) {
		g.ownTo = append(g.ownTo, to)
	}
}

// responseIn reports whether a response to index idx answers our
// initiation in flight; if so, it is no longer in flight.
func (g *crossGuard) responseIn(idx uint32) bool {
	if g.ownAt.IsZero() || idx != g.own {
		return false
	}
	g.ownAt, g.ownDone = time.Time{}, true
	return true
}

// initiationIn decides about a peer's initiation arriving now from from.
// For holdBack, releaseAt is when to deliver it if ours is still
// unanswered.
//
// Only an initiation from where ours went counts as crossing it: two
// initiations that cross on a path come from and go to the same place,
// while one from elsewhere means the peer is not where we sent ours (its
// address changed, or ours went out on a path that just died), and ours
// will not be answered: the peer's is answered at once, as WireGuard
// would. (Initiations that cross on two different paths, in the moment a
// tunnel moves between relay and direct, are left to WireGuard too.)
func (g *crossGuard) initiationIn(from pathKey, now time.Time) (v crossVerdict, releaseAt time.Time) {
	if g.ownAt.IsZero() || now.Sub(g.ownAt) >= crossHold || !slices.Contains(g.ownTo, from) {
		// Our device abandons its own initiation, if any, in answering.
		g.abandon()
		return deliver, time.Time{}
	}
	if g.wins {
		return holdBack, g.ownAt.Add(crossHold)
	}
	// Our device abandons its own initiation in answering this one.
	g.abandon()
	return yieldTo, time.Time{}
}

// released: the held initiation is being delivered, because ours went
// unanswered; the device abandons ours in answering it.
func (g *crossGuard) released() { g.abandon() }

func (g *crossGuard) abandon() {
	if !g.ownAt.IsZero() {
		g.ownAt, g.ownDone = time.Time{}, true
	}
}
