package pairing

import (
	"context"
	"slices"
	"time"

	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
)

// Announcements tell peers this node's name, lines and line labels
// (invite.Hello version 3) directly on the path. The name and lines also
// ride in every Connect box, but a box goes only while a peer has no
// live path (at start, after a path died), so a change made while the
// path is up reached the peer only at its next restart or path loss; and
// the labels do not fit a box at all (rendezvous.MaxPair, which older
// peerlines enforce on the whole box). So each peer gets an announcement:
//   - when what this node announces changes (a rename, a line or label
//     changed in the console or peerline.txt, a phone line that comes or
//     goes), seen within a tick;
//   - when the peer is new, and again after it sent us a hello that is
//     not an announcement (its Connect box: it has just come up, or its
//     path was lost, and may have missed a change), at most every
//     announceRearm;
//   - a second copy announceAgain after the first, in case the first was
//     lost, then every announceEvery.
//
// A send that cannot leave (no path yet) is tried again after a wait
// that doubles from announceRetry to announceRetryMax, so a peer that is
// offline costs one attempt every half minute.
const (
	announceAgain    = 3 * time.Second
	announceEvery    = 10 * time.Minute
	announceRearm    = 5 * time.Second
	announceRetry    = time.Second
	announceRetryMax = 30 * time.Second
)

// announce is where the announcements to one peer stand.
type announce struct {
	// sent is the announcement that last left for the peer, and at when.
	sent   string
	at     time.Time
	copies int
	// next is when a send that failed may be tried again, and wait the
	// wait after the next failure.
	next time.Time
	wait time.Duration
	// sending says a copy is on its way to the path manager.
	sending bool
}

// announcement is this node's hello to peers with the line labels: for
// its lines only, the ones a peer may not take left out (config allows
// an empty label, and checks no UTF-8).
func (pr *Pairing) announcement() invite.Hello {
	h := pr.ownHello()
	h.Labels = labelsFor(pr.opt.Config().LineLabels, h.Lines)
	return h
}

// labelsFor is the labels of src for lines, those a config takes; never
// nil (an announcement carries its labels even when there are none).
func labelsFor(src map[int]string, lines []int) map[int]string {
	out := map[int]string{}
	for l, label := range src {
		if slices.Contains(lines, l) && invite.ValidLabel(label) == nil {
			out[l] = label
		}
	}
	return out
}

// announceStep sends the announcements that are due. Called every tick
// with hundreds of peers, it looks at them only when something can be
// due: a change of config or announcement, the earliest time a peer's
// next copy or retry falls due, a rearm, or a send that finished.
func (pr *Pairing) announceStep(now time.Time) {
	if pr.opt.Send == nil {
		return
	}
	b, err := invite.AppendHello(pr.announceBuf[:0], pr.announcement())
	if err != nil {
		pr.log.Warn("cannot tell peers this node's name, lines and labels", "err", err)
		return
	}
	pr.announceBuf = b
	cfg := pr.opt.Config()
	pr.mu.Lock()
	if idle := &pr.announceIdle; idle.cfg == cfg && now.Before(idle.until) && string(idle.msg) == string(b) {
		pr.mu.Unlock()
		return
	}
	msg := string(b)
	b = []byte(msg) // the sends keep theirs; announceBuf is reused
	peers := make(map[nodekey.Key]bool, len(cfg.Peers))
	for _, p := range cfg.Peers {
		peers[p.PublicKey] = true
	}
	var due []nodekey.Key
	for k := range pr.announces {
		if !peers[k] {
			delete(pr.announces, k)
		}
	}
	// until is the earliest a peer not due now can be.
	until := now.Add(announceEvery)
	for k := range peers {
		a := pr.announces[k]
		if a == nil {
			a = &announce{wait: announceRetry}
			pr.announces[k] = a
		}
		if a.sending {
			// Its end clears announceIdle.
			continue
		}
		if now.Before(a.next) {
			until = minTime(until, a.next)
			continue
		}
		if a.sent == msg && !(a.copies < 2 && now.Sub(a.at) >= announceAgain) && now.Sub(a.at) < announceEvery {
			if a.copies < 2 {
				until = minTime(until, a.at.Add(announceAgain))
			}
			until = minTime(until, a.at.Add(announceEvery))
			continue
		}
		a.sending = true
		due = append(due, k)
	}
	pr.announceIdle.until, pr.announceIdle.cfg, pr.announceIdle.msg = until, cfg, b
	pr.mu.Unlock()
	for _, k := range due {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			err := pr.opt.Send(ctx, k, b)
			pr.mu.Lock()
			defer pr.mu.Unlock()
			pr.announceIdle.until = time.Time{}
			a := pr.announces[k]
			if a == nil {
				return
			}
			a.sending = false
			t := time.Now()
			if err != nil {
				a.next = t.Add(a.wait)
				a.wait = min(2*a.wait, announceRetryMax)
				return
			}
			if a.sent == msg {
				a.copies++
			} else {
				a.sent, a.copies = msg, 1
			}
			a.at, a.wait = t, announceRetry
		}()
	}
}

// rearmAnnounce makes the next step announce to peer again, unless it
// did a moment ago: peer sent a hello that is not an announcement, so it
// has just come up or found us again, and may have missed a change.
func (pr *Pairing) rearmAnnounce(peer nodekey.Key, now time.Time) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	a := pr.announces[peer]
	if a == nil || a.sending || now.Sub(a.at) < announceRearm {
		return
	}
	a.sent, a.next, a.wait = "", now, announceRetry
	pr.announceIdle.until = time.Time{}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// peerLabels is what a peer's labels become on its hello h: all of them
// from an announcement, or, from a hello that does not carry them, those
// we had for lines it still has. Only labels a config takes are kept.
func peerLabels(old map[int]string, h invite.Hello) map[int]string {
	src := old
	if h.Labels != nil {
		src = h.Labels
	}
	out := labelsFor(src, h.Lines)
	if len(out) == 0 {
		return nil
	}
	return out
}
