package wgmux

import (
	"encoding/binary"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// Repairing a lost handshake message in a round trip.
//
// WireGuard resends an unanswered initiation only after 5 s. The first
// handshake after a join, or after a path is found, is what a call placed
// at that moment waits on. Relayed, each of its two messages crosses two
// hops: on links that lose 3 % of packets, about one first handshake in
// nine loses a message. The node that does not start holds its own initiation back for
// a second (HoldInitiations), so a lost message cost that second or, with
// the initiation answered and the response lost, WireGuard's 5 s.
//
// The Bind sees both halves, so it repairs both:
//   - an initiation of ours still unanswered resendAfter after it left is
//     sent again, the same bytes to the same places. If the first copy did
//     arrive, the peer refuses the second as a replay (its timestamp is not
//     newer) and nothing changes;
//   - a peer's initiation identical to one our device answered (the peer
//     resent it: our response was lost) gets that response again, the same
//     bytes. A peer whose handshake already completed refuses the copy
//     (its index no longer names a handshake in progress);
//   - the first data message after our initiation is answered goes twice.
//     It confirms the new key to the peer, which may not send with it
//     until then: when it is lost and we have nothing more to send (the
//     call's media flows the other way, or only keepalives would follow),
//     the peer waits for WireGuard's 5 s retry. The peer's replay window
//     drops whichever copy comes second.
//
// None creates a handshake state, a key or an index: each only repeats,
// once, a message WireGuard already made.

// resendAfter is when an unanswered initiation of ours is sent again: more
// than a relayed round trip on the paths peerline expects, much less than
// the peer's 1 s hold and WireGuard's 5 s retry.
const resendAfter = 400 * time.Millisecond

// answeredFor is how long our last response is kept for a resent
// initiation: longer than the initiator's resendAfter, shorter than
// WireGuard's retry, which makes a new initiation.
const answeredFor = 3 * time.Second

// sentResponse is the last handshake response our device sent.
type sentResponse struct {
	msg [responseLen]byte
	to  uint32 // the initiation's sender index it answers
	at  time.Time
}

// responseOut keeps a response our device sends, for a resent initiation.
func (b *Bind) responseOut(p []byte) {
	b.crossMu.Lock()
	copy(b.lastResp.msg[:], p)
	b.lastResp.to = binary.LittleEndian.Uint32(p[8:])
	b.lastResp.at = time.Now()
	b.answering = time.Time{}
	b.dropOwnHeldLocked()
	b.crossMu.Unlock()
}

// answerAgain resends our response to initiation p if our device answered
// it already: the peer resent it because our response was lost.
func (b *Bind) answerAgain(p []byte, ep conn.Endpoint) {
	e, ok := ep.(*Endpoint)
	if !ok {
		return
	}
	b.crossMu.Lock()
	r := b.lastResp
	again := !r.at.IsZero() && time.Since(r.at) <= answeredFor && binary.LittleEndian.Uint32(p[4:]) == r.to
	if again {
		b.lastResp.at = time.Time{} // once
	}
	b.crossMu.Unlock()
	if !again {
		return
	}
	if b.write(r.msg[:], pathKey{addr: e.addr, session: e.session}) == nil {
		b.mux.stats.ResponseResent.Add(1)
		b.mux.log.Debug("handshake initiation came again; our response sent again", "peer", b.peer)
	}
}

// armResend schedules the resend of initiation idx (called with crossMu
// held, when a new initiation of ours leaves).
func (b *Bind) armResendLocked(idx uint32) {
	if b.resendTimer != nil {
		b.resendTimer.Stop()
	}
	b.resendTimer = time.AfterFunc(resendAfter, func() { b.resend(idx) })
}

// resend sends initiation idx again if it is still unanswered.
func (b *Bind) resend(idx uint32) {
	b.crossMu.Lock()
	g := b.cross
	to := append([]pathKey(nil), g.ownTo...)
	b.crossMu.Unlock()
	if g.own != idx || g.ownAt.IsZero() || g.ownDone {
		return // answered, abandoned or replaced
	}
	b.sentMu.Lock()
	msg := b.sent.msg
	b.sentMu.Unlock()
	if binary.LittleEndian.Uint32(msg[4:]) != idx {
		return
	}
	n := 0
	for _, p := range to {
		if b.write(msg[:], p) == nil {
			n++
		}
	}
	if n > 0 {
		b.mux.stats.InitiationResent.Add(1)
		b.mux.log.Debug("handshake initiation unanswered; sent again", "peer", b.peer, "after", resendAfter)
	}
}

// write sends one message to a direct address or through a relay.
func (b *Bind) write(p []byte, to pathKey) error {
	if to.session == 0 {
		_, err := b.mux.conn.WriteToUDPAddrPort(p, to.addr)
		return err
	}
	return b.mux.WriteRelay(p, to.session, to.addr)
}
