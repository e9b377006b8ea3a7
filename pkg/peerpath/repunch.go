package peerpath

import (
	"time"
)

// Punching again after a punch that failed (docs/punch-again.md).
//
// Behind a router that accepts unsolicited input to itself, a probe that
// reaches it before its own side has sent anything to the prober is taken
// by the router, and connection tracking holds it as an unreplied entry;
// the side behind it then gets another external port towards the peer,
// which the peer does not know, and the peer's router holds those probes
// in turn. More probes only refresh both entries. So when the punch window
// of an introduction ends without a direct path, neither end sends
// anything to the other's direct candidates (no upgrade probes) until the
// routers have forgotten the attempt, and then both punch again together,
// on a fresh introduction: one Connect brings the server's introduction to
// both ends at once (the peer's client answers the server's Incoming by
// itself). The end that starts handshakes asks; the other asks
// repunchGrace later, should that ask or its introduction be lost, or the
// peer be an older version that never asks.

// repunchQuiet is how long both ends stay quiet towards each other's
// direct candidates after the n-th failed punch in a row (the last entry
// repeats). The first outlasts Linux's nf_conntrack_udp_timeout default
// (30 s), the second the 60 s that OpenWrt and other router firmware set,
// the next ones longer timeouts; each has 5 s to spare for the two ends'
// windows ending apart.
var repunchQuiet = []time.Duration{35 * time.Second, 65 * time.Second, 125 * time.Second, 245 * time.Second, 10 * time.Minute}

const (
	// repunchGrace is how much later than the asking end the other end
	// asks, if no introduction came.
	repunchGrace = 10 * time.Second
	// repunchWindow is the punch window of a punch again: shorter than the
	// first, since it costs probes on every relayed pair every few
	// minutes, and long enough for a lost probe or two.
	repunchWindow = time.Second
)

// repunch is a peer's state of punching again, owned by Manager.Run.
type repunch struct {
	// failed counts punch windows in a row that ended without a direct
	// path while the relay worked; not zero means quiet.
	failed int
	// askAt is when to ask the servers for a fresh introduction (zero:
	// not waiting).
	askAt time.Time
}

func quietAfter(failed int) time.Duration {
	return repunchQuiet[min(failed, len(repunchQuiet))-1]
}

// punchStarted: an introduction started a punch window (peer.punchUntil).
// Any earlier quiet ends: both ends punch on it.
func (p *peer) punchStarted() {
	p.rp.askAt = time.Time{}
}

// punchWindowFor is the length of the punch window an introduction
// starts: shorter when punching again.
func (p *peer) punchWindowFor() time.Duration {
	if p.rp.failed > 0 {
		return repunchWindow
	}
	return punchWindow
}

// watchPunch runs every tick: it notices a punch window (peer.punchUntil)
// that ended without a direct path and, after the quiet period, asks for
// a fresh introduction.
func (p *peer) watchPunch(e env, now time.Time) {
	if p.path == PathDirect {
		// Found, now or since (an answer after the window).
		p.rp.failed, p.rp.askAt = 0, time.Time{}
	}
	if !p.punchUntil.IsZero() && !now.Before(p.punchUntil) {
		// The window ended; punchUntil is read only as now.Before, which
		// the zero time keeps false.
		p.punchUntil = time.Time{}
		if p.path != PathRelay || (e.ownNAT() == "symmetric" && p.nat == "symmetric") {
			// Direct; or no relay to wait on; or two NATs that map per
			// destination, where no punch can work: the slow upgrade
			// rounds, as before. An earlier failed window (a NAT class
			// was unknown then) must not keep the pair quiet for good:
			// no ask is made from here.
			p.rp.failed = 0
			return
		}
		p.rp.failed++
		wait := quietAfter(p.rp.failed)
		if !e.initiates(p.key) {
			wait += repunchGrace
		}
		p.rp.askAt = now.Add(wait)
		p.reason = p.relayReason(e) + "; punching again at " + p.rp.askAt.Format("15:04:05") + ", once the routers have forgotten this attempt"
		e.logger().Info("no direct path; quiet towards the peer, then punching again", "peer", p.key, "failed", p.rp.failed, "again_in", wait)
		return
	}
	if p.rp.askAt.IsZero() || now.Before(p.rp.askAt) || p.path != PathRelay || p.tunnel == nil {
		return
	}
	// Should no introduction come (the peer went offline, or the
	// servers lost it), ask again after the next quiet period.
	p.rp.askAt = now.Add(quietAfter(p.rp.failed + 1))
	if e.haveServers() && !p.asking() {
		e.logger().Debug("asking for a fresh introduction to punch again", "peer", p.key)
		e.connect(p)
	}
}

// quiet reports whether nothing may go to the peer's direct candidates but
// the probes of a punch both ends start on an introduction.
func (p *peer) quiet() bool { return p.path == PathRelay && p.rp.failed > 0 }
