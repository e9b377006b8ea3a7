package peerpath

import (
	"net/netip"
	"time"

	"github.com/peerline/peerline/pkg/rendezvous"
)

// The first probes of a punch leave from the socket's reader, the moment
// the introduction arrives, rather than from Run once it gets to the
// introduction's event. Behind routers that accept input, a punch works
// only if each end's first probe leaves before the other end's first probe
// arrives (docs/punch-again.md), and on a busy Pi the event waited 19-47 ms
// in the lab: longer than the one-way delay between the two.

// sentAtOnce is a probe the reader sent on an introduction's arrival.
type sentAtOnce struct {
	id [12]byte
	to netip.AddrPort
}

// probeAtOnce sends one probe to each endpoint of in, from the socket's
// reader, when Run will punch on it: the peer is known (with its tunnel or
// expected), the introduction asks for no delay, and this node is not
// shutting down. Run records them as sent (peer.recordAtOnce).
func (m *Manager) probeAtOnce(in *intro) {
	if in.Delay > 0 || m.saidBye.Load() || !m.accept(in.Peer) {
		return
	}
	var to []netip.AddrPort
	for _, a := range in.Endpoints {
		to = appendCandidate(to, a)
	}
	if !in.offLAN {
		for _, a := range in.Local {
			to = appendCandidate(to, a)
		}
	}
	now := time.Now()
	for _, a := range to {
		id, err := rendezvous.NewTxID()
		if err != nil {
			return
		}
		m.sendProbe(in.Peer, a, 0, rendezvous.Probe{TxID: id, Time: now.UnixMilli()})
		in.atOnce = append(in.atOnce, sentAtOnce{id: id, to: a})
	}
	in.atOnceAt = now
}

// recordAtOnce takes the probes the reader sent on in's arrival as this
// punch's first round: their answers count as any probe's, and, as with
// any round of the punch, the first handshake's copy goes along with them
// (probeAll).
func (p *peer) recordAtOnce(e env, in *intro) {
	to := make([]netip.AddrPort, 0, len(in.atOnce))
	for _, s := range in.atOnce {
		p.track(s.id, s.to, in.atOnceAt)
		to = append(to, s.to)
	}
	if p.bind != nil && e.initiates(p.key) {
		p.bind.CopyInitiation(to, heldMaxAge)
	}
}

// onOurLAN reports whether the peer of in may be on this node's LAN, so
// that its LAN addresses are worth probing: unless both public addresses
// are known and differ. Probing a LAN address at another site is useless,
// and it may harm: behind a Linux router, the flow it leaves (never
// answered) takes the socket's latest mapping, which after a failed punch
// is the odd port, and as we read Linux's NAT it picks the mapping of any
// flow from the same socket it still holds, expired or not yet reaped (up
// to a minute after expiry), for the next new flow: the punch again would
// then leave from the odd port and fail as the first did
// (docs/punch-again.md).
func onOurLAN(in *intro, own netip.Addr) bool {
	if !own.IsValid() {
		return true
	}
	own = own.Unmap()
	for _, e := range in.Endpoints {
		if e.IsValid() && e.Addr().Unmap() == own {
			return true
		}
	}
	return !in.Endpoints[0].IsValid() && !in.Endpoints[1].IsValid()
}
