package peerpath

import (
	"net/netip"
	"time"
)

// An idle peer's liveness. A tunnel to an online peer that carries no
// calls sends nothing of WireGuard's (pkg/wgtunnel turns the persistent
// keepalive off after a while without data, and parks the device once the
// session has expired), so what says the peer is online and keeps the NAT
// mappings is the manager's own probes on the node's socket, which use the
// same mapping as the tunnel's datagrams (the same socket to the same
// address: the peer's, or the relay server's):
//
//   - a direct path is probed every directProbeEvery from both ends, and
//     each end answers the other's: the peer is heard from about every
//     30 s when the two ends' rounds are apart. When they fall together,
//     or a probe or its answer is lost, the peer would be heard from only
//     every minute, which is onlineFor; so a direct path quiet for
//     quietProbe is probed every quietProbeEvery until it answers, twice
//     before onlineFor;
//   - a relayed path is probed the same way when quiet for relayQuiet,
//     which also keeps the relay session at the server;
//   - a call wakes the parked devices with its first packet, and the
//     tunnel's counters move again (checkTunnel).
const (
	quietProbe      = 40 * time.Second
	quietProbeEvery = 10 * time.Second
)

// probeIfQuiet probes the path of a peer that is online but was not heard
// from for a while: see above.
func (p *peer) probeIfQuiet(e env, now time.Time) {
	if !p.alive(now) {
		return
	}
	switch p.path {
	case PathRelay:
		// A relayed tunnel's WireGuard keepalives may all go one way
		// (each end's timer restarts on the other's packets), and no
		// direct probe gets through: the end that only sends would hear
		// nothing, take the peer for gone after onlineFor and look for
		// it again, with a burst of punching, every few minutes. Ask the
		// relay first.
		if now.Sub(p.lastAlive) >= relayQuiet && now.Sub(p.relayChecked) >= relayCheckEvery {
			p.relayChecked = now
			p.probeRelay(e, now)
		}
	case PathDirect:
		if now.Sub(p.lastAlive) >= quietProbe && now.Sub(p.quietProbed) >= quietProbeEvery && !now.Before(p.punchUntil) {
			p.quietProbed = now
			p.probeAll(e, []netip.AddrPort{p.direct}, now)
		}
	}
}
