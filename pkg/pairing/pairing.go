// Package pairing pairs two Pis by invite, all or nothing.
//
// Pairing is a two-phase commit between the joiner (who typed the code)
// and the inviter (who made it), over the rendezvous servers and then the
// path between the two:
//
//	joiner                                     inviter
//	  saves the inviter as a provisional peer
//	  (journal, then config) and asks:
//	  Hello{Proof}  ─────────────────────────▶  checks the proof, reserves the
//	  (Connect box; with a short code           invite for the joiner until a
//	  also a join box sent with the fetch)      deadline and keeps the joiner as
//	                                            a provisional peer (invite store,
//	                                            then config)
//	                ◀─────────────────────────  Hello{Ack} (its Connect box:
//	  commits (only if Ack names this           accepted; also repeated on
//	  invite): the journal says so;             the path)
//	  `peerline join` reports success
//	  Hello{Proof, Confirm}  ─────────────────▶ commits: the invite is used, its
//	  (directly on the path, repeated           short form leaves the servers
//	  with backoff; also in Connect boxes)
//	                ◀─────────────────────────  Hello{Committed, Ack}, for
//	  done: the journal entry goes              every confirmation it gets
//	  (only if Ack names this pairing)
//
// Each step is saved before the next message leaves, so a crash at any
// step converges:
//   - a joiner that has not committed rolls back when its join ends
//     (timeout, error, peerlined killed: at the next start), and never
//     confirms afterwards;
//   - an inviter whose reservation is not confirmed by its deadline rolls
//     back (removes the provisional peer, the invite is pending again and
//     its code works for another try); a confirmation that arrives later
//     still pairs, because it carries the proof: the joiner that committed
//     keeps confirming until it hears Committed;
//   - every message is idempotent and retransmitted by its sender until
//     the answer comes: a repeated request is answered again, a repeated
//     confirmation acknowledged again;
//   - the answer names the invite it accepts, and Committed the pairing
//     it commits (Ack, from the request's or confirmation's proof), so
//     one from an earlier pairing of the same two Pis, or the hello an
//     inviter sends every peer, never commits a new join or ends its
//     confirmations.
//
// The two ends thus both keep the peer or neither does, except when the
// joiner committed and then stayed away longer than the invite's life, or
// the inviter revoked the invite meanwhile: the joiner then keeps
// confirming to a Pi that does not know it, says so in its log, and the
// user removes the peer (`peerline remove`).
package pairing

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/control"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/numplan"
	"github.com/peerline/peerline/pkg/peerpath"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
)

// Timing.
const (
	// JoinTimeout bounds `peerline join` from the code to the answer,
	// fetching a short code's invite included: the inviter answers within
	// a few round trips when it is online. It stays below the control
	// socket's limit, so the CLI always gets the answer.
	JoinTimeout = 20 * time.Second
	// AcceptFor is how long the inviter keeps a joiner as a provisional
	// peer waiting for its confirmation: the joiner's whole join, and
	// its confirmations' retransmissions, with room to spare.
	AcceptFor = 45 * time.Second
	// confirmFirst and confirmMax space the joiner's confirmations, and
	// answerFirst and answerMax the inviter's repeated answers.
	confirmFirst = 300 * time.Millisecond
	confirmMax   = 10 * time.Second
	answerFirst  = 500 * time.Millisecond
	answerMax    = 5 * time.Second
	// tick is how often deadlines and retransmissions are looked at.
	tick = 100 * time.Millisecond
	// firstRoleFor bounds how long after pairing the joiner keeps the
	// role of initiator: long enough for the first handshake, after
	// which the order of the keys decides, as for every other peer.
	firstRoleFor = 30 * time.Second
	// rollbackWait bounds how long a failed join waits for its undo
	// before it answers: JoinTimeout and this stay below the control
	// socket's 25 s.
	rollbackWait = 3 * time.Second
	// fetchWait bounds fetching a short code's invite.
	fetchWait = 5 * time.Second
	// confirmingFor is how long after a joiner's last confirmation the
	// inviter's Hellos to it say Committed: longer than the joiner's
	// longest wait between confirmations.
	confirmingFor = 10 * time.Minute
)

// Options configure a Pairing.
type Options struct {
	// ConfigPath is the config file, the one place peers live.
	ConfigPath string
	// Reload takes each changed config, as a reload would.
	Reload chan<- *config.Config
	// Config returns the config in use.
	Config func() *config.Config
	// Lines returns this node's phone lines, as peers are told.
	Lines func() []int
	// Key is this node's private key.
	Key nodekey.Key
	// StateDir holds the invite store and the joiner's journal; the caller
	// made it (pkg/node makes it before any part that keeps files there).
	StateDir string
	Log      *slog.Logger
	// PutInvite stores an invite's short form on the rendezvous servers
	// (peerpath.Manager.PutInvite: the key of the first server that
	// stored it, within the wait given) or, with a nil blob, deletes it
	// (once the invite is used or revoked). Nil stores nothing: invites
	// are given in their long form.
	PutInvite func(ctx context.Context, id [rendezvous.InviteIDLen]byte, expires time.Time, blob []byte, within time.Duration) (nodekey.Key, error)
	// Send sends pairing data to a peer on its path
	// (peerpath.Manager.SendPair); nil sends nothing, and the data then
	// goes only in the Connect boxes.
	Send func(ctx context.Context, peer nodekey.Key, data []byte) error
	// Fetch fetches a short code's blob (rvclient.GetInvite by default).
	Fetch func(ctx context.Context, server string, id [rendezvous.InviteIDLen]byte, join []byte) ([]byte, error)
	// JoinTimeout and AcceptFor default to the constants; tests shorten
	// them.
	JoinTimeout, AcceptFor time.Duration
	// WriteFile writes the config, the journal and the invite store
	// (atomicfile.WriteFile by default; tests make it fail as a full disk
	// or a killed daemon does).
	WriteFile func(path string, data []byte, perm os.FileMode) error
}

// Pairing is invites, joining and unpairing. It edits the config file and
// hands the new config to the daemon as a reload would.
type Pairing struct {
	opt   Options
	log   *slog.Logger
	key   nodekey.Key
	store *invite.Store

	// editMu serializes edits of the config file: a channel, not a
	// mutex, so that waiting for it while an edit waits for a busy
	// daemon is a wait testing/synctest sees as such.
	editMu lock
	// owed says the config file holds a change the daemon has not taken
	// (it did not take it in time). editMu guards it.
	owed bool
	// inviteMu serializes the inviter's steps (reserve, add, commit,
	// roll back), so that a commit never slips between a rollback's two
	// steps.
	inviteMu sync.Mutex
	// journalMu serializes writes of the joiner's journal (saveJournal).
	journalMu sync.Mutex

	mu sync.Mutex
	// joins are this node's joins in progress, as the journal has them.
	joins map[nodekey.Key]*join // mu
	// firstHandshake says, for a peer paired a moment ago, whether this
	// node starts the first handshake with it (initiates).
	firstHandshake map[nodekey.Key]firstRole // mu
	// answers space the inviter's repeated answers to joiners it has
	// reserved an invite for.
	answers map[nodekey.Key]*repeat // mu
	// confirming is each joiner's latest confirmation.
	confirming map[nodekey.Key]confirmation // mu
	// announces are the announcements to each peer (announce.go).
	announces map[nodekey.Key]*announce // mu
	// announceIdle says no announcement can be due before until, as long
	// as the config (cfg) and the announcement (msg) stay what they were;
	// a rearm or a finished send clears it (announce.go).
	announceIdle struct {
		until time.Time
		cfg   *config.Config
		msg   []byte
	} // mu
	// announceBuf is reused for each step's announcement (Run's only).
	announceBuf []byte
	// updating holds, for each peer whose hello is being applied to the
	// config, the newest hello that came meanwhile (nil: none): one
	// update per peer at a time, however many hellos a busy daemon
	// leaves waiting.
	updating map[nodekey.Key]*invite.Hello // mu

	// journalPath is the joiner's journal (joins.json in StateDir).
	journalPath string
}

// New opens the invite store and the journal in opt.StateDir. Joins the
// journal holds are picked up by Run.
func New(opt Options) (*Pairing, error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	if opt.WriteFile == nil {
		opt.WriteFile = atomicfile.WriteFile
	}
	if opt.JoinTimeout <= 0 {
		opt.JoinTimeout = JoinTimeout
	}
	if opt.AcceptFor <= 0 {
		opt.AcceptFor = AcceptFor
	}
	if opt.Fetch == nil {
		opt.Fetch = fetchBlob
	}
	store, err := invite.OpenStore(filepath.Join(opt.StateDir, "invites.json"))
	if err != nil {
		return nil, err
	}
	store.SetWriteFile(opt.WriteFile)
	pr := &Pairing{opt: opt, log: opt.Log, key: opt.Key, store: store, editMu: make(lock, 1), updating: map[nodekey.Key]*invite.Hello{},
		joins: map[nodekey.Key]*join{}, firstHandshake: map[nodekey.Key]firstRole{}, answers: map[nodekey.Key]*repeat{},
		confirming: map[nodekey.Key]confirmation{}, announces: map[nodekey.Key]*announce{},
		journalPath: filepath.Join(opt.StateDir, "joins.json")}
	entries, err := pr.loadJournal()
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		j := &join{entry: e}
		if e.Committed {
			j.phase = phaseCommitted
		} else {
			// The `peerline join` that waited for it died with the
			// daemon and told its user the join failed: undo it.
			j.phase = phaseRollback
		}
		pr.joins[e.Inviter] = j
	}
	return pr, nil
}

// Store is the invite store (for listing and revoking invites).
func (pr *Pairing) Store() *invite.Store { return pr.store }

// Run rolls back pairings whose time is up and retransmits the joiner's
// confirmations, until ctx ends.
func (pr *Pairing) Run(ctx context.Context) error {
	pr.log.Debug("pairing started")
	defer pr.log.Debug("pairing stopped")
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		pr.step(ctx, time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// step does what is due at now.
func (pr *Pairing) step(ctx context.Context, now time.Time) {
	pr.joinerStep(ctx, now)
	pr.inviterStep(now)
	pr.announceStep(now)
}

// confirmation is a joiner's latest confirmation: when it came, and the
// proof it carried, which names the pairing our Committed acknowledges.
type confirmation struct {
	at    time.Time
	proof [32]byte
}

type firstRole struct {
	initiate bool
	until    time.Time
}

// Initiates implements peerpath.Options.Initiates: the joiner starts the
// first handshake. Its tunnel is up before the inviter has even seen the
// request, and a phone on it may already be sending (someone who just
// typed a code tends to call at once): that data waits on the handshake.
// When the end without data initiates, the end with data cannot send
// until the initiator's first packet confirms the keys; on the relay that
// is two more trips through the server. The inviter's phone cannot be
// sending yet: it learns the joiner's index only now.
func (pr *Pairing) Initiates(peer nodekey.Key) (initiate, decided bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	r, ok := pr.firstHandshake[peer]
	if !ok {
		return false, false
	}
	if time.Now().After(r.until) {
		delete(pr.firstHandshake, peer)
		return false, false
	}
	return r.initiate, true
}

func (pr *Pairing) setFirstRole(peer nodekey.Key, initiate bool) {
	pr.mu.Lock()
	defer pr.mu.Unlock()
	pr.firstHandshake[peer] = firstRole{initiate: initiate, until: time.Now().Add(firstRoleFor)}
}

// PathHooks plug pairing into the path manager.
func (pr *Pairing) PathHooks(o *peerpath.Options) {
	o.Pair = pr.hello
	o.Incoming = pr.incoming
	o.OnPair = pr.onHello
	o.Initiates = pr.Initiates
	o.OnInviteJoin = pr.onInviteJoin
}

// hello is what this node tells peer in every box and pairing message:
// its name and lines; while joining peer the proof (and, once committed,
// the confirmation); to a joiner that paired by our invite, Committed
// with the acknowledgement of the pairing it confirmed.
func (pr *Pairing) hello(peer nodekey.Key) []byte {
	b, err := invite.AppendHello(nil, pr.helloFor(peer))
	if err != nil {
		pr.log.Warn("cannot tell peers this node's name and lines", "err", err)
		return nil
	}
	return b
}

func (pr *Pairing) helloFor(peer nodekey.Key) invite.Hello {
	h := pr.ownHello()
	now := time.Now()
	pr.mu.Lock()
	if j := pr.joins[peer]; j != nil && j.phase != phaseRollback {
		proof := [32]byte(j.entry.Proof)
		h.Proof = &proof
		h.Confirm = j.entry.Committed
	}
	c, confirmed := pr.confirming[peer]
	if confirmed && now.Sub(c.at) >= confirmingFor {
		delete(pr.confirming, peer)
		confirmed = false
	}
	pr.mu.Unlock()
	// Committed goes only to a joiner that confirmed lately: a peer that
	// does not confirm needs no answer (and one running an older peerline
	// would not understand it). It names the pairing the joiner
	// confirmed, so that the joiner never takes it for another one.
	if h.Proof == nil && confirmed && pr.store.CommittedFor(now, peer, c.proof) {
		ack := invite.CommitAck(c.proof)
		h.Committed, h.Ack = true, &ack
	}
	// While an invite is reserved for peer, our hello is the answer to
	// its join request, and names that invite: the joiner takes nothing
	// else as acceptance, neither an answer of an earlier pairing of
	// the same two Pis nor the hello we send any peer.
	if h.Proof == nil && !h.Committed {
		if proof, ok := pr.store.ReservedProof(now, peer); ok {
			ack := invite.AcceptAck(proof)
			h.Ack = &ack
		}
	}
	return h
}

// ownHello is this node's name and lines, without a proof.
func (pr *Pairing) ownHello() invite.Hello {
	h := invite.Hello{Name: helloName(pr.opt.Config().Name), Lines: pr.opt.Lines()}
	if len(h.Lines) > invite.MaxHelloLines {
		h.Lines = h.Lines[:invite.MaxHelloLines]
	}
	return h
}

func helloName(name string) string {
	if len(name) > invite.MaxNameLen {
		return name[:invite.MaxNameLen]
	}
	return name
}

// send sends our hello to peer directly, in the background, and then
// calls sent, if not nil, with the result: an error means the data never
// left this node (no path yet, or the daemon did not get to it before the
// deadline), so the sender tries again soon instead of backing off.
func (pr *Pairing) send(peer nodekey.Key, sent func(error)) {
	if pr.opt.Send == nil {
		return
	}
	h := pr.helloFor(peer)
	b, err := invite.AppendHello(nil, h)
	if err != nil {
		pr.log.Warn("cannot tell peers this node's name and lines", "err", err)
		return
	}
	var legacy []byte
	if h.Ack != nil {
		// A joiner running an older peerline does not read version-2
		// answers (or, the previous one, only Committed ones): it gets
		// the version-1 form too, which names no invite (and takes it,
		// as it always did). This version's joiners ignore it.
		h.Ack = nil
		legacy, _ = invite.AppendHello(nil, h)
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		err := pr.opt.Send(ctx, peer, b)
		if err == nil && legacy != nil {
			err = pr.opt.Send(ctx, peer, legacy)
		}
		if err != nil {
			pr.log.Debug("sending pairing data", "peer", peer, "err", err)
		}
		if sent != nil {
			sent(err)
		}
	}()
}

// repeat spaces the repeats of a message: the next is due at next, and
// every is the wait after it. Only a copy that left this node doubles
// the wait (up to max): one that did not is tried again after
// unsentRetry, so that a path that comes up late, or a daemon busy for a
// while (it builds the new peer's tunnel right then), costs no more than
// that once the message can go.
type repeat struct {
	next  time.Time
	every time.Duration
	// sending says a copy is on its way to the path manager; no other
	// goes until it is known whether it left.
	sending bool
}

// unsentRetry is how soon a message that could not leave is tried again.
const unsentRetry = 250 * time.Millisecond

// due reports whether a copy should go now, and marks it on its way.
func (r *repeat) due(now time.Time) bool {
	if r.sending || now.Before(r.next) {
		return false
	}
	r.sending = true
	return true
}

// sent schedules the next copy after one went (err nil) or did not.
func (r *repeat) sent(now time.Time, err error, max time.Duration) {
	r.sending = false
	if err != nil {
		r.next = now.Add(unsentRetry)
		return
	}
	r.next = now.Add(r.every)
	r.every = min(2*r.every, max)
}

// onHello takes a peer's Hello, from its box or sent directly: a join
// request or confirmation (with a proof) if we invited it, an answer if
// we are joining it, and always its name and lines for the phonebook. It
// may run on the socket's reader: whatever writes to disk runs in the
// background.
func (pr *Pairing) onHello(peer nodekey.Key, pair []byte) {
	h, err := invite.ParseHello(pair)
	if err != nil {
		return
	}
	if h.Labels != nil {
		// An announcement is never pairing data: it only updates the
		// peer (a provisional one too, which a rollback removes whole).
		go pr.updatePeer(peer, h)
		return
	}
	// Its box, or pairing data: it has just found us, and may have
	// missed an announcement.
	pr.rearmAnnounce(peer, time.Now())
	if h.Proof != nil {
		go pr.request(peer, h, *h.Proof)
		return
	}
	if pr.joinAnswer(peer, h) {
		return
	}
	go pr.updatePeer(peer, h)
}

// incoming handles an introduction request from a key that is not a peer:
// a join request or a late confirmation. It runs on the socket's reader,
// so the work happens in the background.
//
// It never lets the request itself through (it returns false): once the
// joiner is a peer, this node's path manager connects to it, and the
// server then tells both sides to punch at the same moment. Answering at
// once would start the joiner punching while this node is still setting
// up the tunnel, and on routers that answer unsolicited packets
// themselves (input policy accept) those early probes leave conntrack
// entries that move the mapping and spoil the direct path.
func (pr *Pairing) incoming(from nodekey.Key, pair []byte) bool {
	h, err := invite.ParseHello(pair)
	if err != nil || h.Proof == nil {
		return false
	}
	go pr.request(from, h, *h.Proof)
	return false
}

// onInviteJoin takes a join box a joiner sent with its fetch of one of our
// invites' short form: it is a join request that needs no round trip
// through the server after the fetch, so the pairing starts while the
// joiner is still opening the blob.
func (pr *Pairing) onInviteJoin(id [16]byte, box []byte) {
	go func() {
		secret, ok := pr.store.ByBlobID(time.Now(), id)
		if !ok {
			return
		}
		joiner, helloBytes, err := invite.OpenJoin(secret, box)
		if err != nil {
			pr.log.Warn("refused a join box that does not open with its invite's secret", "err", err)
			return
		}
		h, err := invite.ParseHello(helloBytes)
		if err != nil {
			pr.log.Warn("refused a join box with a bad hello", "from", joiner, "err", err)
			return
		}
		// The box opened with the secret: that is what the proof proves.
		pr.request(joiner, h, invite.Proof(secret, pr.key.Public(), joiner))
	}()
}

// updatePeer takes a peer's name, lines and labels from its hello into
// the config, if they changed: at once if no update of that peer is
// running, else after it (only the newest hello that came meanwhile).
func (pr *Pairing) updatePeer(peer nodekey.Key, h invite.Hello) {
	if !applyHello(pr.opt.Config(), peer, h, false) {
		return // the usual case: the same hello again
	}
	pr.mu.Lock()
	if _, busy := pr.updating[peer]; busy {
		pr.updating[peer] = &h
		pr.mu.Unlock()
		return
	}
	pr.updating[peer] = nil
	pr.mu.Unlock()
	for {
		err := pr.edit(func(c *config.Config) error {
			if !applyHello(c, peer, h, true) {
				return ErrNoChange
			}
			return nil
		})
		if err != nil && !errors.Is(err, ErrNoChange) {
			pr.log.Warn("updating a peer's name, lines and labels", "peer", peer, "err", err)
		}
		pr.mu.Lock()
		next := pr.updating[peer]
		if next == nil {
			delete(pr.updating, peer)
			pr.mu.Unlock()
			return
		}
		pr.updating[peer] = nil
		pr.mu.Unlock()
		h = *next
	}
}

// applyHello reports whether h changes peer's entry in c, and if apply
// changes it. A config without the peer does not change.
func applyHello(c *config.Config, peer nodekey.Key, h invite.Hello, apply bool) bool {
	for n := range c.Peers {
		p := &c.Peers[n]
		if p.PublicKey != peer {
			continue
		}
		// A name the owner gave the peer here wins over the one it
		// announces.
		labels := peerLabels(p.LineLabels, h)
		if (h.Name == "" || p.Renamed || p.Name == h.Name) && slices.Equal(p.Lines, h.Lines) && maps.Equal(p.LineLabels, labels) {
			return false
		}
		if !apply {
			return true
		}
		if h.Name != "" && !p.Renamed {
			p.Name = h.Name
		}
		p.Lines = slices.Clone(h.Lines)
		p.LineLabels = labels
		return true
	}
	return false
}

// lock is a mutex made of a channel of one.
type lock chan struct{}

func (l lock) Lock()   { l <- struct{}{} }
func (l lock) Unlock() { <-l }

// ErrNoChange, returned by an Edit function, writes nothing.
var ErrNoChange = errors.New("no change")

// Edit changes the config file through fn, validates the result, writes
// it safely and hands it to the daemon, serialized with pairing's own
// edits (the daemon's other config changes go through it too). fn
// returning ErrNoChange writes nothing, and Edit returns ErrNoChange.
func (pr *Pairing) Edit(fn func(*config.Config) error) error { return pr.edit(fn) }

// ErrNotTaken means a config was saved but the daemon did not take it.
var ErrNotTaken = errors.New("the config was saved but the daemon did not take it; restart peerlined")

// EditFile runs fn, which rewrites the config file at path by other means
// (the console's settings go through peerline.txt) and returns the checked
// result, serialized with pairing's own edits, and hands the result to the
// daemon.
func (pr *Pairing) EditFile(fn func(path string) (*config.Config, error)) error {
	pr.editMu.Lock()
	checked, err := fn(pr.opt.ConfigPath)
	if err == nil {
		pr.owed = true
	}
	pr.editMu.Unlock()
	if err != nil {
		return err
	}
	select {
	case pr.opt.Reload <- checked:
	case <-time.After(10 * time.Second):
		return ErrNotTaken
	}
	pr.editMu.Lock()
	pr.owed = false
	pr.editMu.Unlock()
	return nil
}

func (pr *Pairing) edit(fn func(*config.Config) error) error {
	pr.editMu.Lock()
	defer pr.editMu.Unlock()
	c, err := config.Load(pr.opt.ConfigPath)
	if err != nil {
		return fmt.Errorf("reading the config to change it: %w", err)
	}
	err = fn(c)
	if errors.Is(err, ErrNoChange) && pr.owed {
		// The file is as wanted, but the daemon never took it: hand it
		// over now, or it keeps running on a config that is gone.
		if err := pr.handOverLocked(c); err != nil {
			return err
		}
		return ErrNoChange
	}
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	checked, err := config.Parse(b)
	if err != nil {
		return fmt.Errorf("the changed config would not be valid, so nothing was changed: %w", err)
	}
	if err := pr.opt.WriteFile(pr.opt.ConfigPath, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("saving the config: %w", err)
	}
	pr.owed = true
	return pr.handOverLocked(checked)
}

// handOverLocked gives the daemon c, which the file holds; the caller holds
// editMu and has set owed. A daemon that does not take it within 10 s (it
// is stuck) leaves owed set: the next edit hands the file over, changed or
// not.
func (pr *Pairing) handOverLocked(c *config.Config) error {
	if b, err := json.Marshal(c); err == nil {
		if checked, err := config.Parse(b); err == nil {
			c = checked
		}
	}
	select {
	case pr.opt.Reload <- c:
		pr.owed = false
		return nil
	case <-time.After(10 * time.Second):
		return errors.New("the config was saved but the daemon did not take it; restart peerlined")
	}
}

// hasPeer reports whether the config file has key as a peer.
func (pr *Pairing) hasPeer(key nodekey.Key) (control.PeerRef, bool) {
	for _, p := range pr.opt.Config().Peers {
		if p.PublicKey == key {
			return control.PeerRef{Index: p.Index, Name: p.Name}, true
		}
	}
	return control.PeerRef{}, false
}

// addPeer pins key as a peer under the next free index, or returns the
// index it already has.
func (pr *Pairing) addPeer(key nodekey.Key, name string, lines []int) (control.PeerRef, error) {
	var ref control.PeerRef
	err := pr.edit(func(c *config.Config) error {
		for _, p := range c.Peers {
			if p.PublicKey == key {
				ref = control.PeerRef{Index: p.Index, Name: p.Name}
				return ErrNoChange
			}
		}
		i := nextFreeIndex(c)
		if i == 0 {
			return fmt.Errorf("this Pi has %d peers, the most it can have: remove one first (`peerline remove`)", numplan.MaxNode-numplan.MinNode+1)
		}
		c.Peers = append(c.Peers, config.Peer{Index: i, Name: name, PublicKey: key, Keepalive: 25, Lines: slices.Clone(lines)})
		ref = control.PeerRef{Index: i, Name: name}
		return nil
	})
	if errors.Is(err, ErrNoChange) {
		err = nil
	}
	return ref, err
}

// dropPeer removes key (and the servers given) from the config, if there.
func (pr *Pairing) dropPeer(key nodekey.Key, servers []config.Rendezvous) error {
	err := pr.edit(func(c *config.Config) error {
		n := len(c.Peers) + len(c.Rendezvous)
		c.Peers = slices.DeleteFunc(c.Peers, func(p config.Peer) bool { return p.PublicKey == key })
		c.Rendezvous = slices.DeleteFunc(c.Rendezvous, func(r config.Rendezvous) bool {
			return slices.ContainsFunc(servers, func(x config.Rendezvous) bool { return x.Key == r.Key && x.Address == r.Address })
		})
		if len(c.Peers)+len(c.Rendezvous) == n {
			return ErrNoChange
		}
		return nil
	})
	if errors.Is(err, ErrNoChange) {
		err = nil
	}
	return err
}

func nextFreeIndex(c *config.Config) int {
	used := map[int]bool{}
	for _, p := range c.Peers {
		used[p.Index] = true
	}
	for i := numplan.MinNode; i <= numplan.MaxNode; i++ {
		if !used[i] {
			return i
		}
	}
	return 0
}

// Create makes a new invite with this node's servers.
func (pr *Pairing) Create(ttl time.Duration) (invite.Invite, error) {
	cfg := pr.opt.Config()
	if len(cfg.Rendezvous) == 0 {
		return invite.Invite{}, errors.New("this Pi has no rendezvous server, so no other Pi could find it: add one (rendezvous = host:port KEY in peerline.txt, or \"rendezvous\" in the config) first")
	}
	var servers []invite.Server
	for _, r := range cfg.Rendezvous {
		s, err := inviteServer(r)
		if err != nil {
			return invite.Invite{}, err
		}
		servers = append(servers, s)
		if len(servers) == invite.MaxServers {
			break
		}
	}
	if ttl <= 0 {
		ttl = invite.DefaultTTL
	}
	return pr.store.Create(time.Now(), ttl, pr.key.Public(), inviteName(cfg.Name), servers)
}

// inviteName fits the node name into an invite's alphabet (it is only
// shown to the joiner).
func inviteName(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		case r == ' ' || r == '_':
			b.WriteByte('-')
		}
		if b.Len() == invite.MaxNameLen {
			break
		}
	}
	return b.String()
}

func inviteServer(r config.Rendezvous) (invite.Server, error) {
	host, port, err := splitHostPort(r.Address)
	if err != nil {
		return invite.Server{}, fmt.Errorf("rendezvous %s: %w", r.Address, err)
	}
	s := invite.Server{Host: host, Port: port, Port2: port + 1, Key: r.Key}
	if r.Address2 != "" {
		host2, port2, err := splitHostPort(r.Address2)
		if err != nil {
			return invite.Server{}, fmt.Errorf("rendezvous %s: %w", r.Address2, err)
		}
		if host2 != host {
			return invite.Server{}, fmt.Errorf("rendezvous %s: its second address is on another host (%s), which an invite cannot carry; use a server whose two ports share one address", r.Address, host2)
		}
		s.Port2 = port2
	}
	return s, nil
}

func splitHostPort(hp string) (string, uint16, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return "", 0, fmt.Errorf("port %q: %w", p, err)
	}
	return host, uint16(n), nil
}

// DisplayName is name, or "the inviter" if it is empty.
func DisplayName(name string) string {
	if name == "" {
		return "the inviter"
	}
	return name
}

// FindPeer resolves a peer by index or name.
func FindPeer(c *config.Config, which string) (config.Peer, error) {
	if i, err := strconv.Atoi(which); err == nil {
		for _, p := range c.Peers {
			if p.Index == i {
				return p, nil
			}
		}
		return config.Peer{}, fmt.Errorf("no peer with index %d; `peerline peers` lists them", i)
	}
	var found []config.Peer
	for _, p := range c.Peers {
		if strings.EqualFold(p.Name, which) {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return config.Peer{}, fmt.Errorf("no peer named %q; `peerline peers` lists them", which)
	case 1:
		return found[0], nil
	}
	return config.Peer{}, fmt.Errorf("%d peers are named %q; use the index instead (`peerline peers`)", len(found), which)
}

// Remove unpairs a peer: its tunnel and namespace go with the reload. A
// join of it still in progress ends with it, and so does its pairing with
// us (the invite it was using is revoked).
func (pr *Pairing) Remove(which string) (control.PeerRef, error) {
	var ref control.PeerRef
	var key nodekey.Key
	err := pr.edit(func(c *config.Config) error {
		p, err := FindPeer(c, which)
		if err != nil {
			return err
		}
		ref, key = control.PeerRef{Index: p.Index, Name: p.Name}, p.PublicKey
		c.Peers = slices.DeleteFunc(c.Peers, func(x config.Peer) bool { return x.Index == p.Index })
		return nil
	})
	if err != nil {
		return ref, err
	}
	// A joiner removed while its pairing is in progress: its invite is
	// revoked, or its next confirmation would pair it again.
	pr.inviteMu.Lock()
	for _, r := range pr.store.Reservations(time.Now()) {
		if r.Joiner != key {
			continue
		}
		err := pr.store.Release(time.Now(), key)
		if err == nil {
			err = pr.store.Revoke(time.Now(), r.ID)
		}
		if err != nil {
			pr.log.Warn("revoking the invite of a removed joiner", "peer", key, "err", err)
		}
	}
	pr.inviteMu.Unlock()
	pr.mu.Lock()
	j := pr.joins[key]
	if j != nil && j.phase == phaseCommitted {
		// Removed while still confirming: stop, and forget the join.
		j.phase = phaseRollback
	}
	pr.mu.Unlock()
	return ref, nil
}

// fetchBlob is rvclient.GetInvite from a server named by host:port.
func fetchBlob(ctx context.Context, server string, id [rendezvous.InviteIDLen]byte, join []byte) ([]byte, error) {
	addr, err := peerpath.Resolve(ctx, server)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errResolve, err)
	}
	return rvclient.GetInvite(ctx, addr, id, join)
}

var errResolve = errors.New("cannot find the server")
