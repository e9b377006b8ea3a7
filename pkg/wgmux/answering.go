package wgmux

import "time"

// An initiation of ours while the device has the peer's to answer.
//
// A device handed the peer's initiation may send one of its own before it
// gets to answering it: a parked tunnel (pkg/wgtunnel) woken at the same
// instant by the peer's initiation and by a packet from its phones, or any
// device whose handshake worker is a few milliseconds behind its sender.
// The crossing guard (crossing.go) judged the peer's initiation when it
// came, with nothing of ours in flight, and let it through; ours then
// crosses it on the wire, the peer (if it loses the crossing) answers ours
// and abandons its own, our device answers the peer's and abandons ours,
// and both answers arrive as "invalid response": nothing moves until
// WireGuard's 5 s retry (TestLazyIdlePeer saw it in one run of two).
//
// Our initiation is useless anyway: answering the peer's replaces the one
// handshake state wireguard-go keeps per peer. So it is not sent while the
// device has a peer's initiation to answer, for at most crossHold (in case
// the device drops the peer's, as under load or for an old timestamp);
// the device's answer makes the session, and what it had to send waits for
// the peer's confirmation as a responder's does.

// answeringPeer reports whether the device was handed the peer's
// initiation less than crossHold ago and has not answered one since.
func (b *Bind) answeringPeer() bool {
	b.crossMu.Lock()
	defer b.crossMu.Unlock()
	if b.answering.IsZero() || time.Since(b.answering) >= crossHold {
		return false
	}
	b.mux.log.Debug("our initiation not sent: the device has the peer's to answer", "peer", b.peer)
	return true
}
