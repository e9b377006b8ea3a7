package peerpath

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/wgmux"
	"github.com/peerline/peerline/pkg/wgtunnel"
)

// env is what a peer's decisions do to the world besides driving the
// peer's own tunnel and bind: Manager implements it with the socket and
// the rendezvous clients, the decision tests with a recorder. Decisions
// never read the clock; every event and tick carries its time.
type env interface {
	logger() *slog.Logger
	// sendProbe sends p to peer at to, or through relay session at
	// server to when session is not 0.
	sendProbe(peer nodekey.Key, to netip.AddrPort, session uint64, p rendezvous.Probe)
	// addRelay lets the peer's tunnel use relay session at server.
	addRelay(peer nodekey.Key, session uint64, server netip.AddrPort)
	// initiates reports whether this node starts the handshake with peer.
	initiates(peer nodekey.Key) bool
	// ownNAT is this node's own NAT mapping ("" while unknown).
	ownNAT() string
	// haveServers reports whether any rendezvous server resolved.
	haveServers() bool
	// connect asks every server not asked yet to introduce p; answers
	// come back as events.
	connect(p *peer)
	// reregister refreshes every registration now.
	reregister()
}

// peer is one peer's path state, owned by Manager.Run.
type peer struct {
	key    nodekey.Key
	tunnel Tunnel
	bind   Initiations

	path     Path
	direct   netip.AddrPort // when path is direct
	endpoint string
	reason   string
	relay    string // relay endpoint from the latest introduction
	// relaySession and relayServer are that relay, for probes through it.
	relaySession uint64
	relayServer  netip.AddrPort
	nat          string

	// introAt is when the last introduction came.
	introAt time.Time
	// candidates are addresses the peer may be reachable at directly.
	candidates []netip.AddrPort
	// punchUntil: probe all candidates often until then.
	punchUntil time.Time
	nextProbe  time.Time
	pending    map[[12]byte]sentProbe
	rtt        time.Duration
	// lastAlive is the last sign of life: a probe answer, a probe, or
	// bytes received by the tunnel.
	lastAlive time.Time

	connectAt      time.Time
	connectBackoff time.Duration
	connecting     []bool

	// Tunnel counters at the last check, for noticing a dead path.
	lastCheck   time.Time
	rx, tx      uint64
	rxAt        time.Time // when rx last grew
	txSinceRx   bool      // tx grew since rx last grew
	rxSteady    int       // checks in a row in which rx grew (media flowing in)
	stallProbed time.Time // when the stall probes went out; zero if none
	// stallAgain: the stall probe went out a second time (a lost probe
	// or answer alone must not take the peer for gone).
	stallAgain bool
	// unanswered is when a stall probe went unanswered; until the peer is
	// heard from again it counts as offline, so that a call to a Pi that
	// lost power fails at once instead of ringing (zero: answering).
	unanswered time.Time
	handshake  time.Time

	// A stalled session: the tunnel sends data and decrypts nothing back
	// while the path answers probes (one end lost the session's keys, as
	// after handshake initiations that crossed). dataSent is when the
	// tunnel first sent data since it last decrypted anything (zero:
	// nothing unanswered); rehandshakeAt when a new handshake was last
	// started for it; stalledAt when the first was (zero: no stall).
	dataSent, rehandshakeAt, stalledAt time.Time
	stallLogged                        bool
	// saidBye: this node told the peer it is going offline; a handshake
	// now would show it online again.
	saidBye bool
	// relayChecked is when a quiet relayed path was last probed,
	// quietProbed a quiet direct one (idle.go).
	relayChecked, quietProbed time.Time

	keepaliveOn bool
	keepaliveAt time.Time // when to turn it on if the peer did not start

	pingWaiters []chan time.Duration
	// rp is the state of punching again after a failed punch (repunch.go).
	rp repunch
	// byeAt is when the peer said it was going offline; signs of life
	// from before then do not count.
	byeAt time.Time
}

// byeGrace is how long after a bye the tunnel's traffic is not taken as a
// sign of life.
const byeGrace = 5 * time.Second

type sentProbe struct {
	to netip.AddrPort
	at time.Time
}

func (p *peer) addCandidate(a netip.AddrPort) {
	p.candidates = appendCandidate(p.candidates, a)
}

// appendCandidate adds a to list unless it is no address or there
// already, dropping the oldest beyond maxCandidates.
func appendCandidate(list []netip.AddrPort, a netip.AddrPort) []netip.AddrPort {
	if !a.IsValid() || a.Port() == 0 {
		return list
	}
	a = netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
	if slices.Contains(list, a) {
		return list
	}
	if len(list) >= maxCandidates {
		list = list[1:]
	}
	return append(list, a)
}

// introduced: the servers told us where the peer is and gave us a relay.
func (p *peer) introduced(e env, in *intro, now time.Time) {
	p.learn(e, in, now)
	start := now.Add(in.Delay)
	p.punchUntil = start.Add(p.punchWindowFor())
	p.punchStarted()
	e.logger().Debug("introduced; punching", "peer", p.key, "candidates", len(p.candidates), "sent_on_arrival", len(in.atOnce), "window", p.punchUntil.Sub(start))
	p.nextProbe = start
	if in.Delay <= 0 {
		// The peer starts now too: every tick of waiting is a tick
		// longer on the relay. The socket's reader may have sent the
		// first round already, as the introduction arrived.
		if len(in.atOnce) > 0 {
			p.recordAtOnce(e, in)
		} else {
			p.probeAll(e, p.candidates, now)
		}
		p.nextProbe = now.Add(punchEvery)
	}
}

// learn takes the relay and the candidates of an introduction, without
// punching: for one that came before the peer was known (a joiner's, to an
// inviter still saving it), whose punch time has passed. The two ends must
// punch together, which only an introduction both act on arranges: probes
// that reach a router before its own side sent any can take the port of the
// mapping its side would use (a router that accepts input to itself), and
// punching then fails (the lab's TestNATMatrix pr-pr-accept, 6 runs in 7).
func (p *peer) learn(e env, in *intro, now time.Time) {
	e.addRelay(p.key, in.Session, in.server)
	p.byeAt = time.Time{} // it is back
	p.introAt = now
	p.relay = wgmux.RelayEndpoint(in.Session, in.server)
	p.relaySession, p.relayServer = in.Session, in.server
	for _, e := range in.Endpoints {
		p.addCandidate(e)
	}
	if !in.offLAN {
		for _, l := range in.Local {
			p.addCandidate(l)
		}
	}
	p.nat = natClass(in)
	p.connectBackoff = 0
	p.connectAt = now.Add(connectMax)
	switch {
	case p.path == PathNone || !p.alive(now):
		p.setPath(e, PathRelay, p.relay, ReasonPunching, now)
	case p.path == PathRelay:
		// Each introduction comes with a new session; the server
		// forgets the old one.
		p.setPath(e, PathRelay, p.relay, p.reason, now)
	}
	p.punchUntil = time.Time{}
	p.nextProbe = now.Add(upgradeEvery)
}

func natClass(in *intro) string {
	e := in.Endpoints
	switch {
	case !e[0].IsValid() || !e[1].IsValid():
		return ""
	case e[0] != e[1]:
		return "symmetric"
	}
	for _, l := range in.Local {
		if l == e[0] {
			return "none"
		}
	}
	return "cone"
}

// probed: a probe or a probe answer arrived from the peer.
func (p *peer) probed(e env, in *probeIn) {
	if in.p.Bye {
		e.logger().Info("peer is going offline", "peer", p.key)
		p.byeAt, p.lastAlive, p.rtt = in.at, time.Time{}, 0
		p.path, p.endpoint, p.reason = PathNone, "", "offline: the peer shut down"
		p.connectAt, p.connectBackoff = in.at.Add(connectMin), connectMin
		return
	}
	if sent, ok := p.pending[in.p.TxID]; ok && in.p.Reply && sent.at.Before(p.byeAt) {
		// The answer to a probe sent before the peer said bye, which it
		// gave while shutting down: no sign that it is back.
		delete(p.pending, in.p.TxID)
		return
	}
	p.lastAlive, p.unanswered = in.at, time.Time{}
	if !in.p.Reply && in.session != 0 {
		return // answered already; the server's address is no candidate
	}
	if !in.p.Reply {
		// The peer reached us from in.from: it may be a mapping the
		// servers never saw (symmetric NAT). Probe it back: our probe
		// opens our NAT towards it, and its answer proves both ways.
		if !slices.Contains(p.candidates, in.from) {
			p.addCandidate(in.from)
			p.probeAll(e, []netip.AddrPort{in.from}, in.at)
		}
		return
	}
	sent, ok := p.pending[in.p.TxID]
	if !ok {
		return
	}
	delete(p.pending, in.p.TxID)
	rtt := in.at.Sub(sent.at)
	if (in.session != 0) == (p.path == PathRelay) {
		p.rtt = rtt // a round trip on the path in use
	}
	for _, ch := range p.pingWaiters {
		ch <- rtt
	}
	p.pingWaiters = nil
	onPath := (in.session != 0 && p.path == PathRelay) || (in.session == 0 && p.path == PathDirect && in.from == p.direct)
	if onPath {
		// The path in use answers: whatever the tunnel's counters
		// suggested, it is not dead.
		p.stallProbed = time.Time{}
		p.rxAt = in.at
		p.txSinceRx = false
	}
	if in.session != 0 {
		return // the relay works; that says nothing of a direct path
	}
	if p.path != PathDirect || p.direct != in.from {
		reason := "probe answered"
		if p.path == PathRelay {
			reason = "probe answered; moved from the relay"
		}
		p.setPath(e, PathDirect, in.from.String(), reason, in.at)
		if p.path == PathDirect && p.direct == in.from {
			// This answer is the first on the path now in use; on a
			// busy tunnel no probe may follow it for a long while.
			p.rtt = rtt
		}
	}
}

// setPath points the tunnel at endpoint and, if this side starts the
// handshake, starts it now.
func (p *peer) setPath(e env, path Path, endpoint, reason string, now time.Time) {
	if p.tunnel != nil {
		if err := p.tunnel.SetEndpoint(endpoint); err != nil {
			e.logger().Warn("setting the tunnel endpoint", "peer", p.key, "endpoint", endpoint, "err", err)
			return
		}
	}
	if p.path != path || p.endpoint != endpoint {
		if p.tunnel == nil {
			e.logger().Debug("path found before the tunnel", "peer", p.key, "path", path, "endpoint", endpoint, "reason", reason)
		} else {
			e.logger().Info("path", "peer", p.key, "path", path, "endpoint", endpoint, "reason", reason)
		}
	}
	p.path, p.endpoint, p.reason = path, endpoint, reason
	if path == PathDirect {
		p.direct, _ = netip.ParseAddrPort(endpoint)
	}
	if p.tunnel == nil {
		// Expected (Manager.Expect): the path is found while the tunnel
		// is made, and Add points the tunnel at it.
		return
	}
	if p.rxAt.IsZero() || now.Sub(p.rxAt) > stallAfter {
		// A fresh path: count the stall from now, not from when the
		// old one died.
		p.rxAt = now
		p.txSinceRx = false
	}
	if p.keepaliveOn {
		return
	}
	// Only one side starts the handshake when both find the path at once:
	// simultaneous initiations can cost a 5 s retry (wgtunnel).
	if e.initiates(p.key) {
		p.startHandshake(e, endpoint, now)
	} else if p.keepaliveAt.IsZero() {
		p.keepaliveAt = now.Add(initiatorHold)
		if p.bind != nil {
			p.bind.HoldInitiations(initiatorHold)
		}
	}
}

func (p *peer) startHandshake(e env, endpoint string, now time.Time) {
	// The peer's handshake came while we held ours back: nothing to resend.
	if p.bind != nil && now.Sub(p.handshake) > 10*time.Second {
		if _, err := p.bind.ResendHeld(endpoint, heldMaxAge); err != nil {
			e.logger().Debug("resending the held handshake", "peer", p.key, "err", err)
		}
	}
	if err := p.tunnel.StartKeepalive(); err != nil {
		e.logger().Warn("starting the keepalive", "peer", p.key, "err", err)
		return
	}
	p.keepaliveOn = true
}

// initiates reports whether this node starts the handshake with peer.
func (m *Manager) initiates(peer nodekey.Key) bool {
	if m.opt.Initiates != nil {
		if v, ok := m.opt.Initiates(peer); ok {
			return v
		}
	}
	return wgtunnel.InitiatesFirst(m.pub, peer)
}

// probeAll sends one probe to each address.
func (p *peer) probeAll(e env, to []netip.AddrPort, now time.Time) {
	for _, a := range to {
		id, err := rendezvous.NewTxID()
		if err != nil {
			return
		}
		p.track(id, a, now)
		e.sendProbe(p.key, a, 0, rendezvous.Probe{TxID: id, Time: now.UnixMilli()})
	}
	// While punching, the first handshake runs on the relay; a copy of it
	// sent along with the probes saves the relay's extra hops whenever
	// the direct path opens.
	if now.Before(p.punchUntil) && p.bind != nil && e.initiates(p.key) {
		p.bind.CopyInitiation(to, heldMaxAge)
	}
}

// track records a probe sent to to at at, so that its answer counts.
// Probes unanswered after 5 s are forgotten, and at most maxPendingProbe
// are kept.
func (p *peer) track(id [12]byte, to netip.AddrPort, at time.Time) {
	if p.pending == nil {
		p.pending = map[[12]byte]sentProbe{}
	}
	for old, s := range p.pending {
		if at.Sub(s.at) > 5*time.Second || len(p.pending) >= maxPendingProbe {
			delete(p.pending, old)
		}
	}
	p.pending[id] = sentProbe{to: to, at: at}
}

// sayBye tells the peer, on the path in use, that this node is going
// offline. Twice, in case one is lost.
func (p *peer) sayBye(e env) {
	p.saidBye = true
	for range 2 {
		switch p.path {
		case PathDirect:
			e.sendProbe(p.key, p.direct, 0, rendezvous.Probe{Bye: true})
		case PathRelay:
			e.sendProbe(p.key, p.relayServer, p.relaySession, rendezvous.Probe{Bye: true})
		}
	}
}

// probeRelay sends one probe through the relay, to measure it.
func (p *peer) probeRelay(e env, now time.Time) {
	if p.relaySession == 0 {
		return
	}
	id, err := rendezvous.NewTxID()
	if err != nil {
		return
	}
	p.track(id, p.relayServer, now)
	e.sendProbe(p.key, p.relayServer, p.relaySession, rendezvous.Probe{TxID: id, Time: now.UnixMilli()})
}

func (p *peer) alive(now time.Time) bool {
	return !p.lastAlive.IsZero() && p.lastAlive.After(p.byeAt) && now.Sub(p.lastAlive) < onlineFor
}

// keepaliveLen is a WireGuard keepalive on the wire: a transport header
// and the tag of an empty payload. A data packet is at least 48 bytes.
const keepaliveLen = 32

// initiationLen is a WireGuard handshake initiation.
const initiationLen = 148

// tick runs every 100 ms: probes, connects, and checks the path.
func (p *peer) tick(e env, now time.Time) {
	if p.saidBye {
		return // a node that said bye is shutting down: no probes
	}
	p.watchPunch(e, now)
	if p.tunnel == nil {
		// Expected: punch on an introduction as the peer does (its
		// tunnel may be built), nothing else until Add.
		if now.Before(p.punchUntil) && !now.Before(p.nextProbe) && len(p.candidates) > 0 {
			p.probeAll(e, p.candidates, now)
			p.nextProbe = now.Add(punchEvery)
		}
		return
	}
	if !p.keepaliveOn && !p.keepaliveAt.IsZero() && now.After(p.keepaliveAt) {
		p.startHandshake(e, p.endpoint, now)
	}
	p.checkTunnel(e, now)
	// Find the peer through the servers while it has no live path. Not
	// while a Connect still waits: the backoff counts asks, not ticks
	// (it used to double while one waited, so that a lost introduction
	// was asked for again seconds after the Connect gave up).
	if e.haveServers() && !now.Before(p.connectAt) && (p.path == PathNone || !p.alive(now)) && !p.asking() {
		e.connect(p)
		p.connectBackoff = min(max(2*p.connectBackoff, connectMin), connectMax)
		p.connectAt = now.Add(p.connectBackoff)
	}
	p.probeIfQuiet(e, now)
	if now.Before(p.nextProbe) || len(p.candidates) == 0 {
		return
	}
	switch {
	case now.Before(p.punchUntil):
		p.probeAll(e, p.candidates, now)
		p.nextProbe = now.Add(punchEvery)
	case p.path == PathDirect:
		p.probeAll(e, []netip.AddrPort{p.direct}, now)
		p.nextProbe = now.Add(directProbeEvery)
	default:
		if p.quiet() {
			// Until both punch again (repunch.go): a lone probe would
			// keep a router's hold on the failed attempt.
			p.nextProbe = now.Add(upgradeEvery)
			return
		}
		if p.path == PathRelay && p.reason == ReasonPunching {
			p.reason = p.relayReason(e)
			e.logger().Info("no direct path", "peer", p.key, "reason", p.reason)
		}
		p.probeAll(e, p.candidates, now)
		p.nextProbe = now.Add(upgradeEvery)
		// Behind a NAT that maps per destination, punching failed for
		// good reason and probing often will not change it.
		if now.Sub(p.introAt) > upgradeFor || (p.path == PathRelay && (e.ownNAT() == "symmetric" || p.nat == "symmetric")) {
			p.nextProbe = now.Add(upgradeSlowly)
		}
	}
}

// asking reports whether a Connect for p still waits for its introduction.
func (p *peer) asking() bool { return slices.Contains(p.connecting, true) }

// relayReason explains, as far as the NAT classes tell, why no direct
// path answered.
func (p *peer) relayReason(e env) string {
	own := e.ownNAT()
	switch {
	case own == "symmetric" && p.nat == "symmetric":
		return "both NATs map per destination (symmetric)"
	case own == "symmetric":
		return "this node's NAT maps per destination (symmetric) and the peer's filters"
	case p.nat == "symmetric":
		return "the peer's NAT maps per destination (symmetric) and ours filters"
	}
	return "no probe was answered: UDP between the two may be blocked"
}

// checkTunnel reads the tunnel's counters every checkEvery and notices a
// path that stopped carrying: we send and nothing comes back, or media that
// was coming in stopped.
func (p *peer) checkTunnel(e env, now time.Time) {
	// A stall probe's deadline is checked on the tick it falls due, not
	// up to checkEvery later: a call to a Pi that lost power must fail
	// before the phone's third INVITE (1.5 s).
	if now.Sub(p.lastCheck) < checkEvery && (p.stallProbed.IsZero() || now.Sub(p.stallProbed) < stallProbe) {
		return
	}
	p.lastCheck = now
	st, err := p.tunnel.Status()
	if err != nil {
		return
	}
	p.handshake = st.LastHandshake
	if p.path == PathDirect && st.Endpoint != p.endpoint && wgmux.IsRelayEndpoint(st.Endpoint) {
		// WireGuard sends to where an authenticated packet last came
		// from: a handshake answered through the relay after the
		// direct path was chosen moves the tunnel back onto the relay,
		// where it stays unseen (the probes go direct) until the relay's
		// server goes down with the media.
		e.logger().Debug("tunnel roamed to the relay; back to the direct path", "peer", p.key, "endpoint", st.Endpoint)
		if err := p.tunnel.SetEndpoint(p.endpoint); err != nil {
			e.logger().Warn("setting the tunnel endpoint", "peer", p.key, "endpoint", p.endpoint, "err", err)
		}
	}
	rxGrew := st.RxBytes != p.rx
	if rxGrew {
		p.rx = st.RxBytes
		p.rxAt = now
		// Packets still in flight when the peer said bye prove nothing.
		if p.byeAt.IsZero() || now.Sub(p.byeAt) > byeGrace {
			p.lastAlive, p.unanswered = now, time.Time{}
		}
		p.txSinceRx = false
		p.stallProbed = time.Time{}
		p.rxSteady++
		if p.stallLogged {
			e.logger().Info("tunnel session works again", "peer", p.key, "stalled_for", now.Sub(p.stalledAt))
		}
		p.dataSent, p.stalledAt, p.stallLogged = time.Time{}, time.Time{}, false
	} else if now.Sub(p.rxAt) >= stallAfter && p.rxSteady >= 4 {
		e.logger().Debug("media stopped coming in", "peer", p.key, "steady_checks", p.rxSteady)
		// Media that was flowing in stopped: if our NAT rebound, the
		// peer's packets go to a mapping that is gone, and we may be
		// sending nothing that would show it. Check the path.
		p.txSinceRx = true
		p.rxSteady = 0
	} else if now.Sub(p.rxAt) >= stallAfter {
		p.rxSteady = 0
	}
	if st.TxBytes != p.tx {
		// WireGuard's keepalives are never answered, so one says nothing
		// about the path; probing after each would double an idle
		// tunnel's cost (measured: 1.5 packets per 10 s instead of 0.8).
		// Anything else sent in the same interval as something came in
		// counts as unanswered, since which came first is unknown: if the
		// peer is there, more comes in (or the probe is answered).
		sent := st.TxBytes - p.tx
		p.tx = st.TxBytes
		if sent != keepaliveLen {
			p.txSinceRx = true
		}
		// A handshake is not data; nor is what went out in the
		// interval something came in, taken as answered: a rekey must
		// not look like a stall on an idle tunnel.
		if sent != keepaliveLen && sent != initiationLen && sent != initiationLen+keepaliveLen && !rxGrew && p.dataSent.IsZero() {
			p.dataSent = now
		}
	}
	p.checkSession(e, now)
	if p.path == PathNone || !p.txSinceRx || now.Sub(p.rxAt) < stallAfter {
		return
	}
	switch {
	case p.stallProbed.IsZero():
		e.logger().Debug("path may have stopped; probing it", "peer", p.key, "path", p.path, "silent_for", now.Sub(p.rxAt))
		// Ask the path itself before giving up on it: WireGuard's
		// keepalives are not answered, and a one-way stream (a call on
		// hold) also sends without receiving.
		p.stallProbed, p.stallAgain = now, false
		p.probePath(e, now)
	case now.Sub(p.stallProbed) >= stallProbe/2 && now.Sub(p.stallProbed) < stallProbe && !p.stallAgain:
		// Once more, half-way: at 10 % loss each way one probe in five
		// or its answer is lost, and one lost was enough to show the peer
		// offline and leave a direct path; two both lost, one in 27.
		// The decision stays at stallProbe.
		p.stallAgain = true
		p.probePath(e, now)
	case now.Sub(p.stallProbed) >= stallProbe:
		p.stallProbed = now
		if p.unanswered.IsZero() {
			p.unanswered = now
		}
		e.logger().Info("path stopped answering; looking for a new one", "peer", p.key, "path", p.path, "endpoint", p.endpoint)
		// Our mapping may have changed: tell the servers now, so the
		// relay and introductions use the new one.
		e.reregister()
		switch {
		case p.relay != "" && p.path == PathDirect:
			p.setPath(e, PathRelay, p.relay, "the direct path stopped answering", now)
			// One lost answer is enough to get here: try the direct
			// path again soon rather than at the next upgrade round.
			p.nextProbe = now.Add(time.Second)
		case p.path == PathRelay:
			// The relay may be what died (its server went down) while
			// a direct path works: an answer moves the tunnel there.
			p.probeAll(e, p.candidates, now)
		}
		p.rxAt = now
		p.txSinceRx = false
		p.connectAt, p.connectBackoff = now, 0
		e.connect(p)
	}
}

// probePath sends one probe on the path in use.
func (p *peer) probePath(e env, now time.Time) {
	if p.path == PathDirect {
		p.probeAll(e, []netip.AddrPort{p.direct}, now)
	} else {
		p.probeRelay(e, now)
	}
}

// checkSession notices a stalled session, which probes cannot: data went
// out and nothing was decrypted back for sessionStall, yet the path
// answered a probe since. It starts a new handshake, as WireGuard itself
// would only after 15 s; on the end that does not initiate only after
// twice as long, so that the two ends do not cross again.
func (p *peer) checkSession(e env, now time.Time) {
	if p.dataSent.IsZero() || p.path == PathNone || p.saidBye || !p.lastAlive.After(p.dataSent) {
		return // nothing unanswered, or the path itself is in doubt
	}
	wait := sessionStall
	if !e.initiates(p.key) {
		wait *= 2
	}
	if !p.stalledAt.IsZero() && !p.stallLogged && now.Sub(p.stalledAt) >= stallProbe {
		// The new handshake brought nothing back either.
		p.stallLogged = true
		e.logger().Info("tunnel session stalled: data sent, nothing decrypted back, though the path answers", "peer", p.key, "path", p.path, "since", p.dataSent.Format("15:04:05.000"))
	}
	if now.Sub(p.dataSent) < wait || now.Sub(p.rehandshakeAt) < rehandshakeEvery {
		return
	}
	r, ok := p.tunnel.(Rehandshaker)
	if !ok {
		return
	}
	e.logger().Debug("nothing decrypted back while the path answers; new handshake", "peer", p.key, "unanswered_for", now.Sub(p.dataSent))
	if p.stalledAt.IsZero() {
		p.stalledAt = now
	}
	p.rehandshakeAt = now
	if err := r.Rehandshake(); err != nil {
		e.logger().Warn("starting a new handshake", "peer", p.key, "err", err)
	}
}

func (p *peer) status(now time.Time) Status {
	s := Status{Peer: p.key, Path: p.path, Reason: p.reason, Endpoint: p.endpoint, RTT: p.rtt, NAT: p.nat, Bye: !p.byeAt.IsZero(), Silent: !p.unanswered.IsZero(),
		Stalled: p.stallLogged}
	if s.Stalled {
		s.Reason = ReasonStalled
	}
	s.Online = (p.alive(now) || (!p.handshake.IsZero() && p.handshake.After(p.byeAt) && now.Sub(p.handshake) < onlineFor)) &&
		p.unanswered.IsZero()
	if !s.Online {
		s.Path = PathNone
		s.Reason = "offline: no answer from the peer"
		switch {
		case !p.byeAt.IsZero():
			s.Reason = "offline: the peer shut down"
		case !p.unanswered.IsZero():
			s.Reason = "offline: not answering since " + p.unanswered.Format("15:04:05") + " (power or Internet lost?)"
		case p.path == PathNone:
			s.Reason = "offline: not introduced by any rendezvous server yet"
		}
	}
	return s
}

// String is for logs.
func (s Status) String() string {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s online=%v path=%s", s.Peer, s.Online, s.Path)
	if s.RTT > 0 {
		fmt.Fprintf(&b, " rtt=%v", s.RTT)
	}
	return b.String()
}
