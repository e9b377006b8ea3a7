package pairing

import (
	"errors"
	"time"

	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
)

// request handles a Hello with a proof from joiner: a join request (phase
// one: reserve the invite, keep the joiner as a provisional peer; the path
// manager then connects to it, which is our answer) or a confirmation
// (phase two: commit, and answer Committed). Repeats get the same
// handling, so a lost message or answer costs only its retransmission.
func (pr *Pairing) request(joiner nodekey.Key, h invite.Hello, proof [32]byte) {
	pr.inviteMu.Lock()
	defer pr.inviteMu.Unlock()
	now := time.Now()
	_, had := pr.hasPeer(joiner)
	fresh, id, err := pr.store.Reserve(now, proof, pr.key.Public(), joiner, now.Add(pr.opt.AcceptFor), had)
	if errors.Is(err, invite.ErrRetry) && !had {
		// The invite was used by this joiner, and the peer saved before
		// that (addPeer comes before the commit), so a used invite with
		// no peer means our user removed it since. This is a late copy
		// (a Connect box the server delivered after the removal); taken,
		// it paired the two again unasked.
		pr.log.Info("ignoring a late message from a pairing whose peer was removed since", "peer", joiner)
		return
	}
	if h.Confirm && (err == nil || errors.Is(err, invite.ErrRetry)) {
		pr.mu.Lock()
		pr.confirming[joiner] = confirmation{at: now, proof: proof}
		pr.mu.Unlock()
	}
	switch {
	case err == nil:
		if fresh {
			pr.log.Info("invite accepted; pairing provisionally until the joiner confirms", "peer", joiner, "name", h.Name, "invite", id)
			pr.setFirstRole(joiner, false)
		}
		if _, err := pr.addPeer(joiner, h.Name, h.Lines); err != nil {
			pr.log.Error("saving the new peer; the joiner will ask again", "peer", joiner, "err", err)
			if fresh {
				if err := pr.store.Release(now, joiner); err != nil {
					pr.log.Error("releasing the invite", "peer", joiner, "err", err)
				}
			}
			return
		}
		if h.Confirm {
			pr.commitLocked(joiner, id)
		}
	case errors.Is(err, invite.ErrRetry):
		// Committed already: the joiner did not hear Committed. Make
		// sure of the peer's entry (its name and lines), and answer again.
		if _, err := pr.addPeer(joiner, h.Name, h.Lines); err != nil {
			pr.log.Error("saving the new peer", "peer", joiner, "err", err)
			return
		}
		if h.Confirm {
			pr.send(joiner, nil) // the joiner confirms again if this is lost
		}
	default:
		pr.log.Warn("refused a join request", "from", joiner, "name", h.Name, "reason", err)
	}
}

// commitLocked is the inviter's commit: the invite becomes used (saved),
// its short form leaves the servers, and the joiner hears Committed.
func (pr *Pairing) commitLocked(joiner nodekey.Key, id string) {
	if err := pr.store.Commit(time.Now(), joiner, id); err != nil {
		pr.log.Error("saving the pairing as done; the joiner will confirm again", "peer", joiner, "err", err)
		return
	}
	pr.log.Info("paired: the joiner confirmed", "peer", joiner, "invite", id)
	if blob, ok := pr.store.BlobID(id); ok {
		pr.forgetInvite(blob)
	}
	pr.send(joiner, nil) // the joiner confirms again if this is lost
}

// inviterStep rolls back the reservations whose joiner did not confirm in
// time: the provisional peer goes (unless it was a peer before), then the
// invite is pending again. A crash between the two repeats the first.
//
// It also repeats our answer to each joiner still reserved, directly on
// the path: the answer's first copy rides in our Connect box, and the
// path may come up by probing alone when that box is lost.
func (pr *Pairing) inviterStep(now time.Time) {
	pr.inviteMu.Lock()
	defer pr.inviteMu.Unlock()
	pending := map[nodekey.Key]bool{}
	for _, r := range pr.store.Reservations(now) {
		if now.Before(r.Until) {
			pending[r.Joiner] = true
			continue
		}
		pr.rollbackInviteLocked(r)
	}
	pr.mu.Lock()
	var answer []nodekey.Key
	for k := range pr.answers {
		if !pending[k] {
			delete(pr.answers, k)
		}
	}
	for k := range pending {
		a, ok := pr.answers[k]
		if !ok {
			a = &repeat{next: now.Add(answerFirst), every: answerFirst}
			pr.answers[k] = a
		}
		if a.due(now) {
			answer = append(answer, k)
		}
	}
	pr.mu.Unlock()
	for _, k := range answer {
		pr.send(k, func(err error) {
			pr.mu.Lock()
			defer pr.mu.Unlock()
			if a := pr.answers[k]; a != nil {
				a.sent(time.Now(), err, answerMax)
			}
		})
	}
}

func (pr *Pairing) rollbackInviteLocked(r invite.Reservation) {
	if !r.HadPeer {
		if err := pr.dropPeer(r.Joiner, nil); err != nil {
			pr.log.Error("removing a joiner that did not confirm; retrying", "peer", r.Joiner, "err", err)
			return
		}
	}
	if err := pr.store.Release(time.Now(), r.Joiner); err != nil {
		pr.log.Error("making an unconfirmed invite usable again; retrying", "peer", r.Joiner, "err", err)
		return
	}
	pr.log.Warn("the joiner did not confirm the pairing in time: rolled back, and the invite's code works again", "peer", r.Joiner, "invite", r.ID)
}
