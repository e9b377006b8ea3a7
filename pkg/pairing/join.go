package pairing

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rvclient"
)

// A join goes through these phases, each changed under Pairing.mu:
//
//	waiting ──answer──▶ committing ──saved──▶ committed ──Committed──▶ finishing ──saved──▶ (gone)
//	   │                     │ save failed
//	   └─timeout, error──────┴──────────────▶ rollback ──undone──▶ (gone)
//
// Only waiting may become committing, and only the goroutine that made it
// committing leaves it, so an answer and a timeout never both win.
type phase int

const (
	phaseWaiting phase = iota
	phaseCommitting
	phaseCommitted
	phaseFinishing
	phaseRollback
)

// join is one join in progress: its journal entry and where it stands.
type join struct {
	entry journalEntry
	phase phase
	// done tells the waiting Join the outcome (nil: committed).
	done chan error
	// confirms spaces the confirmations.
	confirms repeat
	// undoing says a rollbackJoin of it is running.
	undoing bool
	warned  bool
	// unboundAnswer says this join ignored a hello without an
	// acknowledgement while it waited: the answers of an inviter running
	// an older peerline look like that, which a failed join says.
	unboundAnswer bool
}

// journalEntry is a join as the journal file keeps it.
type journalEntry struct {
	Inviter nodekey.Key `json:"inviter"`
	Name    string      `json:"name,omitempty"`
	Index   int         `json:"index"`
	Proof   []byte      `json:"proof"`
	// Expires is the invite's expiry: confirming a pairing the inviter
	// forgot is hopeless after it.
	Expires time.Time `json:"expires"`
	// Committed says this node keeps the peer for good and confirms it
	// until the inviter answers Committed.
	Committed bool `json:"committed,omitzero"`
	// Servers are the rendezvous servers the join added to the config,
	// removed again by a rollback.
	Servers []config.Rendezvous `json:"servers,omitempty"`
}

type journalFile struct {
	Version int            `json:"version"`
	Joins   []journalEntry `json:"joins"`
}

const journalVersion = 1

func (pr *Pairing) loadJournal() ([]journalEntry, error) {
	b, err := os.ReadFile(pr.journalPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the pairing journal: %w", err)
	}
	var f journalFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || f.Version != journalVersion {
		if err == nil {
			err = fmt.Errorf("version %d", f.Version)
		}
		return nil, fmt.Errorf("pairing journal %s is damaged (%w); delete it, then check `peerline peers` and remove any peer whose pairing did not finish", pr.journalPath, err)
	}
	for _, e := range f.Joins {
		if e.Inviter.IsZero() || len(e.Proof) != 32 {
			return nil, fmt.Errorf("pairing journal %s is damaged (an incomplete entry); delete it, then check `peerline peers`", pr.journalPath)
		}
	}
	return f.Joins, nil
}

// saveJournal writes the journal as the joins are, with e in place of the
// entry for its inviter (or without it, if drop). The caller holds
// journalMu, not mu (the write may take a while on an SD card, and mu is
// taken on the socket's reader), and changes memory to match once the
// write succeeded, before it releases journalMu.
func (pr *Pairing) saveJournal(e journalEntry, drop bool) error {
	f := journalFile{Version: journalVersion, Joins: []journalEntry{}}
	pr.mu.Lock()
	for k, j := range pr.joins {
		if k != e.Inviter {
			f.Joins = append(f.Joins, j.entry)
		}
	}
	pr.mu.Unlock()
	if !drop {
		f.Joins = append(f.Joins, e)
	}
	slices.SortFunc(f.Joins, func(a, b journalEntry) int { return bytes.Compare(a.Inviter[:], b.Inviter[:]) })
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := pr.opt.WriteFile(pr.journalPath, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving the pairing journal: %w", err)
	}
	return nil
}

// Join pairs with the inviter of code and waits for its answer. It
// returns once this node has committed (it keeps the peer; the inviter
// commits on our confirmation), or once it has rolled back, which leaves
// the config as it was.
func (pr *Pairing) Join(ctx context.Context, code string) (control.PeerRef, error) {
	ctx, cancel := context.WithTimeout(ctx, pr.opt.JoinTimeout)
	defer cancel()
	iv, err := invite.Parse(code)
	if err != nil {
		return control.PeerRef{}, err
	}
	if iv.Expired(time.Now()) {
		return control.PeerRef{}, fmt.Errorf("this invite expired at %s: ask %s for a new one (`peerline invite`)", iv.Expires.Local().Format("2006-01-02 15:04"), DisplayName(iv.Name))
	}
	if iv.Inviter == pr.key.Public() {
		return control.PeerRef{}, errors.New("this is this Pi's own invite: type the code on the other Pi")
	}
	reportStage(ctx, StageChecked, "")
	if iv.Short() {
		if err := pr.fetchInvite(ctx, &iv); err != nil {
			return control.PeerRef{}, err
		}
		reportStage(ctx, StageServer, "")
	} else {
		reportStage(ctx, StageServer, "not needed: the long code holds everything")
	}
	if iv.Inviter == pr.key.Public() {
		return control.PeerRef{}, errors.New("this is this Pi's own invite: type the code on the other Pi")
	}
	pr.mu.Lock()
	if j := pr.joins[iv.Inviter]; j != nil {
		committed := j.phase == phaseCommitted
		ref := control.PeerRef{Index: j.entry.Index, Name: j.entry.Name}
		pr.mu.Unlock()
		if committed {
			return ref, nil
		}
		return control.PeerRef{}, errors.New("already joining this inviter; wait for that to finish")
	}
	pr.mu.Unlock()
	if ref, ok := pr.hasPeer(iv.Inviter); ok {
		return control.PeerRef{}, fmt.Errorf("already paired with %s as peer %d; `peerline remove %d` first to pair again", DisplayName(ref.Name), ref.Index, ref.Index)
	}

	// Phase one: the journal says what to undo, then the config pins
	// the inviter and its servers. A crash in between is undone at the
	// next start from the journal.
	cfg := pr.opt.Config()
	e := journalEntry{Inviter: iv.Inviter, Name: iv.Name, Expires: iv.Expires}
	proof := invite.Proof(iv.Secret, iv.Inviter, pr.key.Public())
	e.Proof = proof[:]
	for _, s := range iv.Servers {
		r := config.Rendezvous{Address: net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port))), Key: s.Key}
		if s.Port2 != s.Port+1 {
			r.Address2 = net.JoinHostPort(s.Host, strconv.Itoa(int(s.Port2)))
		}
		if !slices.ContainsFunc(cfg.Rendezvous, func(x config.Rendezvous) bool { return x.Key == r.Key && x.Address == r.Address }) {
			e.Servers = append(e.Servers, r)
		}
	}
	j := &join{entry: e, phase: phaseWaiting, done: make(chan error, 1)}
	pr.journalMu.Lock()
	pr.mu.Lock()
	busy := pr.joins[iv.Inviter] != nil
	pr.mu.Unlock()
	if busy {
		pr.journalMu.Unlock()
		return control.PeerRef{}, errors.New("already joining this inviter; wait for that to finish")
	}
	if err := pr.saveJournal(e, false); err != nil {
		pr.journalMu.Unlock()
		return control.PeerRef{}, fmt.Errorf("%w; nothing was changed here: free some space on the SD card and run the join again (the code still works)", err)
	}
	pr.mu.Lock()
	pr.joins[iv.Inviter] = j
	pr.mu.Unlock()
	pr.journalMu.Unlock()

	pr.setFirstRole(iv.Inviter, true)
	var ref control.PeerRef
	err = pr.edit(func(c *config.Config) error {
		for _, r := range e.Servers {
			if !slices.ContainsFunc(c.Rendezvous, func(x config.Rendezvous) bool { return x.Key == r.Key && x.Address == r.Address }) {
				c.Rendezvous = append(c.Rendezvous, r)
			}
		}
		i := nextFreeIndex(c)
		if i == 0 {
			return errors.New("this Pi has as many peers as it can have: remove one first (`peerline remove`)")
		}
		c.Peers = append(c.Peers, config.Peer{Index: i, Name: iv.Name, PublicKey: iv.Inviter, Keepalive: 25})
		ref = control.PeerRef{Index: i, Name: iv.Name}
		return nil
	})
	decided := false
	if err == nil {
		pr.mu.Lock()
		j.entry.Index = ref.Index
		pr.mu.Unlock()
		reportStage(ctx, StageWaiting, "")
		select {
		case err = <-j.done:
			decided = true
		case <-ctx.Done():
		}
	}
	if !decided {
		// An answer that is being saved wins over the timeout.
		pr.mu.Lock()
		switch {
		case j.phase == phaseWaiting:
			j.phase = phaseRollback
		case j.phase == phaseCommitting && !j.entry.Committed:
			pr.mu.Unlock()
			err = <-j.done
			pr.mu.Lock()
		}
		pr.mu.Unlock()
		select {
		case err = <-j.done: // a failed commit that raced the timeout
		default:
		}
	}
	pr.mu.Lock()
	committed := j.entry.Committed
	name := j.entry.Name
	pr.mu.Unlock()
	if committed {
		pr.log.Info("paired by invite", "peer", iv.Inviter, "index", ref.Index, "name", name)
		ref.Name = name
		return ref, nil
	}
	// The answer must reach `peerline join` before the control socket
	// gives up on it (25 s), or its user hears that the outcome is
	// unknown: an undo that waits on a busy daemon (it takes configs
	// only between tunnel builds) goes on in the background, where
	// joinerStep retries it until done.
	undone := make(chan struct{})
	go func() {
		defer close(undone)
		pr.rollbackJoin(iv.Inviter)
	}()
	select {
	case <-undone:
	case <-time.After(rollbackWait):
	}
	if err != nil {
		return control.PeerRef{}, fmt.Errorf("joining %s: %w; nothing was kept here, and the code still works: run the join again", DisplayName(iv.Name), err)
	}
	pr.mu.Lock()
	unbound := j.unboundAnswer
	pr.mu.Unlock()
	if unbound {
		return control.PeerRef{}, fmt.Errorf("%s's Pi answered within %v, but not about this code: either it runs an older peerline, whose answer does not name the invite (update peerline on it, then run the join again), or it did not take the code (already used, revoked or made for another Pi; its log says which). Nothing was kept here, and the code still works if it was not used", DisplayName(iv.Name), pr.opt.JoinTimeout)
	}
	return control.PeerRef{}, fmt.Errorf("%s's Pi did not answer within %v. It may be offline or unable to reach its rendezvous server, or the code was already used, revoked or made for another Pi (its log says which). Nothing was kept here; try again (the code still works if it was not used), or ask for a new code (`peerline invite`)", DisplayName(iv.Name), pr.opt.JoinTimeout)
}

// joinAnswer takes the inviter's Hello while we join it, and reports
// whether there was such a join: the first answer commits, and Committed
// ends the confirmations.
func (pr *Pairing) joinAnswer(inviter nodekey.Key, h invite.Hello) bool {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	j := pr.joins[inviter]
	if j == nil {
		return false
	}
	if h.Name != "" {
		j.entry.Name = h.Name
	}
	switch j.phase {
	case phaseWaiting:
		if h.Committed {
			// An inviter commits only after our confirmation, which
			// we send only once committed ourselves: while we wait, a
			// Committed hello is a late copy from an earlier pairing
			// between the same two Pis (its confirmations are still
			// being answered). Taken as the answer, it ended this join
			// at once while the inviter waited for a confirmation that
			// never came.
			pr.log.Debug("ignoring a Committed hello from an earlier pairing", "peer", inviter)
			return true
		}
		// The answer must name our invite: a hello without it is the
		// answer of an earlier pairing of the same two Pis (a late
		// copy), the hello an inviter that still has us as a peer sends
		// anyway, or one from an older peerline. Taken as acceptance,
		// it told the user the pairing worked while the inviter had
		// never taken the code.
		if h.Ack == nil || *h.Ack != invite.AcceptAck([32]byte(j.entry.Proof)) {
			if h.Ack == nil {
				j.unboundAnswer = true
			}
			pr.log.Debug("ignoring an answer that does not name this join's invite", "peer", inviter, "ack", h.Ack != nil)
			return true
		}
		j.phase = phaseCommitting
		go pr.commitJoin(j, h)
	case phaseCommitted:
		if !h.Committed {
			break
		}
		// Committed counts only for this pairing: until the inviter
		// has our confirmation, a Committed can still come from an
		// earlier pairing of the same two Pis (a late copy, or the
		// inviter answering that pairing's confirmations), and taken
		// as ours it would end our confirmations while the inviter
		// waits for them and then rolls back.
		// (An inviter too old to name the pairing never gets here: its
		// answer, which names no invite either, commits no join.)
		if h.Ack == nil || *h.Ack != invite.CommitAck([32]byte(j.entry.Proof)) {
			pr.log.Debug("ignoring a Committed hello for another pairing", "peer", inviter)
			return true
		}
		j.phase = phaseFinishing // once: the Hellos may come twice
		go pr.finishJoin(j, h)
	}
	return true
}

// commitJoin is the joiner's commit: the journal says the peer is kept.
// If the inviter said Committed already, the join is done at once.
func (pr *Pairing) commitJoin(j *join, h invite.Hello) {
	pr.journalMu.Lock()
	pr.mu.Lock()
	e := j.entry
	pr.mu.Unlock()
	e.Committed = true
	err := pr.saveJournal(e, h.Committed)
	pr.mu.Lock()
	if err != nil {
		j.phase = phaseRollback
		pr.mu.Unlock()
		pr.journalMu.Unlock()
		pr.log.Error("cannot save the pairing; rolling it back", "peer", e.Inviter, "err", err)
		j.done <- err
		return
	}
	j.entry.Committed = true
	j.phase = phaseCommitted
	j.confirms = repeat{next: time.Now(), every: confirmFirst}
	if h.Committed {
		delete(pr.joins, e.Inviter)
	}
	pr.mu.Unlock()
	pr.journalMu.Unlock()
	j.done <- nil
	pr.log.Info("pairing committed; confirming to the inviter", "peer", e.Inviter)
	if !h.Committed {
		pr.confirm(e.Inviter)
	}
	pr.updatePeer(e.Inviter, h)
}

// finishJoin ends a join the inviter committed: the journal forgets it.
func (pr *Pairing) finishJoin(j *join, h invite.Hello) {
	pr.journalMu.Lock()
	defer pr.journalMu.Unlock()
	pr.mu.Lock()
	e := j.entry
	pr.mu.Unlock()
	err := pr.saveJournal(e, true)
	pr.mu.Lock()
	if err != nil {
		j.phase = phaseCommitted // confirm again; the next Committed retries
		pr.mu.Unlock()
		pr.log.Warn("saving the finished pairing", "peer", e.Inviter, "err", err)
		return
	}
	delete(pr.joins, e.Inviter)
	pr.mu.Unlock()
	pr.log.Info("inviter confirmed the pairing", "peer", j.entry.Inviter)
	pr.updatePeer(j.entry.Inviter, h)
}

// confirm sends the confirmation (our hello says Confirm while the join
// is committed) if one is due; joinerStep repeats it.
func (pr *Pairing) confirm(inviter nodekey.Key) {
	pr.mu.Lock()
	j := pr.joins[inviter]
	due := j != nil && j.phase == phaseCommitted && j.confirms.due(time.Now())
	pr.mu.Unlock()
	if !due {
		return
	}
	pr.send(inviter, func(err error) {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		j.confirms.sent(time.Now(), err, confirmMax)
	})
}

// rollbackJoin undoes a join that did not commit: the config loses the
// inviter and the servers the join added, then the journal the entry. A
// failure leaves the join in phaseRollback for the next step to retry.
func (pr *Pairing) rollbackJoin(inviter nodekey.Key) {
	pr.mu.Lock()
	j := pr.joins[inviter]
	if j == nil || j.phase != phaseRollback || j.undoing {
		pr.mu.Unlock()
		return
	}
	// One undo at a time: the failed Join's and joinerStep's retries
	// would otherwise queue up behind a daemon that is slow to take
	// configs.
	j.undoing = true
	e := j.entry
	pr.mu.Unlock()
	defer func() {
		pr.mu.Lock()
		j.undoing = false
		pr.mu.Unlock()
	}()
	if err := pr.dropPeer(inviter, e.Servers); err != nil {
		pr.log.Error("undoing a failed join; retrying", "peer", inviter, "err", err)
		return
	}
	pr.journalMu.Lock()
	defer pr.journalMu.Unlock()
	pr.mu.Lock()
	current := pr.joins[inviter] == j
	pr.mu.Unlock()
	if !current {
		return
	}
	if err := pr.saveJournal(e, true); err != nil {
		pr.log.Error("undoing a failed join; retrying", "peer", inviter, "err", err)
		return
	}
	pr.mu.Lock()
	delete(pr.joins, inviter)
	pr.mu.Unlock()
	pr.log.Info("join rolled back", "peer", inviter)
}

// joinerStep retries rollbacks and sends the confirmations that are due.
func (pr *Pairing) joinerStep(ctx context.Context, now time.Time) {
	var undo, confirm []nodekey.Key
	pr.mu.Lock()
	for k, j := range pr.joins {
		switch j.phase {
		case phaseRollback:
			undo = append(undo, k)
		case phaseCommitted:
			if j.confirms.sending || now.Before(j.confirms.next) {
				continue
			}
			confirm = append(confirm, k)
			if !j.warned && now.After(j.entry.Expires) {
				j.warned = true
				pr.log.Warn("the inviter never confirmed this pairing and its invite has expired: it may have rolled back; if the peer stays offline, remove it (`peerline remove`) and pair again with a new code", "peer", k, "name", j.entry.Name)
			}
		}
	}
	pr.mu.Unlock()
	for _, k := range undo {
		if ctx.Err() != nil {
			return
		}
		pr.rollbackJoin(k)
	}
	for _, k := range confirm {
		pr.confirm(k)
	}
}

// fetchInvite completes a short invite from the blob on the server its
// code names. The fetch carries a join box, which the server passes to the
// inviter: it starts pairing at once instead of a round trip later, when
// this node's join request would reach it.
func (pr *Pairing) fetchInvite(ctx context.Context, iv *invite.Invite) error {
	var box []byte
	if hello, err := invite.AppendHello(nil, pr.ownHello()); err == nil {
		if box, err = invite.SealJoin(iv.Secret, pr.key.Public(), hello); err != nil {
			// Pairing still works, through the join request after the
			// fetch.
			pr.log.Debug("no join box with the fetch", "err", err)
		}
	}
	srv := iv.Servers[0]
	where := net.JoinHostPort(srv.Host, fmt.Sprint(srv.Port))
	ctx, cancel := context.WithTimeout(ctx, fetchWait)
	defer cancel()
	blob, err := pr.opt.Fetch(ctx, where, invite.BlobID(iv.Secret), box)
	switch {
	case errors.Is(err, errResolve):
		return fmt.Errorf("the code names rendezvous server %s, which cannot be found (%w): check this Pi's Internet connection and DNS, or ask for the long form of the code (`peerline invite --long`)", where, err)
	case errors.Is(err, rvclient.ErrInviteUnknown):
		return fmt.Errorf("rendezvous server %s does not know this code: it was already used or revoked, or it expired, or the server restarted since it was made; ask for a new code (`peerline invite`)", where)
	case err != nil:
		return fmt.Errorf("rendezvous server %s named in the code did not answer (%w): check this Pi's Internet connection, or ask for the long form of the code (`peerline invite --long`)", where, err)
	}
	if err := iv.Open(blob); err != nil {
		return fmt.Errorf("what rendezvous server %s holds for this code does not match it (%w): ask for a new code", where, err)
	}
	return nil
}

// Join's stages, reported to the function WithStages puts in its context
// (the console's progress page); a join nobody follows reports nothing.
const (
	StageChecked = iota // the code parsed and has not expired
	StageServer         // the short code's rest came from a rendezvous server
	StageWaiting        // the inviter is pinned here; waiting for its answer
)

type stageKey struct{}

// WithStages returns ctx carrying f, which Join calls as it reaches each
// stage.
func WithStages(ctx context.Context, f func(stage int, detail string)) context.Context {
	return context.WithValue(ctx, stageKey{}, f)
}

func reportStage(ctx context.Context, stage int, detail string) {
	if f, ok := ctx.Value(stageKey{}).(func(int, string)); ok {
		f(stage, detail)
	}
}
