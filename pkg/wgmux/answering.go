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
// Our initiation is useless if the device answers: answering the peer's
// replaces the one handshake state wireguard-go keeps per peer. So it is
// held while the device has a peer's initiation to answer, and discarded
// when the answer goes out; the session the answer makes carries what the
// device had to send, once the peer confirms it, as a responder's does.
//
// It is held, not dropped, because wireguard-go believes it sent it and
// waits RekeyTimeout (5 s) before it tries again: if the device never
// answers (it made our initiation between taking the peer's and answering
// it, which resets the handshake so the answer fails; the cookie path
// under load; the device closed first), ours goes when the device has had
// the peer's for crossHold, and the handshake takes no more than that.
// Until it goes it is not in b.sent: CopyInitiation and the loss repair's
// resend send only what was sent.

// ownHeldInit is an initiation of ours held while the device answers.
type ownHeldInit struct {
	msg   [initiationLen]byte
	to    pathKey
	timer *time.Timer
}

// holdWhileAnswering holds initiation p, going to to, if the device was
// handed the peer's initiation less than crossHold ago and has not
// answered one since, and reports whether it did. A later initiation
// replaces the held one; it goes crossHold after the peer's was handed
// over (releaseOwnHeld).
func (b *Bind) holdWhileAnswering(p []byte, to pathKey) bool {
	b.crossMu.Lock()
	defer b.crossMu.Unlock()
	now := time.Now()
	if b.answering.IsZero() || now.Sub(b.answering) >= crossHold {
		return false
	}
	h := b.ownHeld
	if h == nil {
		h = &ownHeldInit{}
		b.ownHeld = h
		h.timer = time.AfterFunc(b.answering.Add(crossHold).Sub(now), func() { b.releaseOwnHeld(h) })
	}
	copy(h.msg[:], p)
	h.to = to
	b.mux.log.Debug("our initiation held: the device has the peer's to answer", "peer", b.peer)
	return true
}

// releaseOwnHeld sends held initiation h: the device did not answer the
// peer's within crossHold.
func (b *Bind) releaseOwnHeld(h *ownHeldInit) {
	b.crossMu.Lock()
	if b.ownHeld != h {
		b.crossMu.Unlock()
		return // answered, replaced, or closed
	}
	b.ownHeld = nil
	msg, to := h.msg, h.to
	b.crossMu.Unlock()
	b.mux.log.Debug("the device did not answer the peer's initiation; ours sent", "peer", b.peer, "after", crossHold)
	b.initiationOut(msg[:], to)
	// Recorded before it goes: whoever sees it arrive may look for it
	// (CopyInitiation, TestHeldInitiation).
	b.recordSent(msg[:], to)
	if err := b.write(msg[:], to); err != nil {
		b.mux.log.Debug("sending our held initiation", "peer", b.peer, "err", err)
	}
}

// dropOwnHeld discards the held initiation, if any.
func (b *Bind) dropOwnHeld() {
	b.crossMu.Lock()
	b.dropOwnHeldLocked()
	b.crossMu.Unlock()
}

// dropOwnHeldLocked is dropOwnHeld with crossMu held.
func (b *Bind) dropOwnHeldLocked() {
	if b.ownHeld != nil {
		b.ownHeld.timer.Stop()
		b.ownHeld = nil
	}
}
