package invite

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/nodekey"
)

// Limits of the store.
const (
	// MaxPending bounds invites waiting to be used: each is a live secret,
	// and more than a handful at once is a mistake or a script gone wrong.
	MaxPending = 32
	// MinTTL and MaxTTL bound an invite's lifetime; DefaultTTL suits
	// reading a code to someone today.
	MinTTL     = time.Minute
	MaxTTL     = 30 * 24 * time.Hour
	DefaultTTL = 24 * time.Hour
	// keepFor is how long a used, expired or revoked invite is remembered,
	// so that trying it again says why it fails instead of "unknown".
	keepFor = 7 * 24 * time.Hour
	// maxEntries bounds the file however invites are made and dropped.
	maxEntries   = 256
	storeVersion = 1
)

// Errors from Reserve, Commit, Create and Revoke. Reserve's are meant for
// the joiner.
var (
	ErrExpired = errors.New("this invite has expired: make a new one with `peerline invite`")
	ErrUsed    = errors.New("this invite was already used (a code pairs one Pi only): make a new one with `peerline invite`")
	// ErrRetry is returned (and matches ErrUsed) when the node that
	// already paired by an invite presents a valid proof again: its join
	// request or the answer was lost, pairing already happened, and the
	// caller should answer it again instead of refusing.
	ErrRetry   = fmt.Errorf("%w (by this same node: a repeated join request)", ErrUsed)
	ErrRevoked = errors.New("this invite was revoked by the inviter: ask for a new one (`peerline invite`)")
	ErrUnknown = errors.New("the inviter does not know this invite (made for another Pi, or forgotten long after it expired): make a new one with `peerline invite`")
	ErrTooMany = fmt.Errorf("%d invites are waiting to be used: revoke one (`peerline invite --revoke ID`, see `peerline invite --list`) or wait until one expires", MaxPending)
	// ErrBusy is returned by Reserve while another joiner's pairing with
	// the invite is in progress: it either completes (the code is then
	// used) or is rolled back within a minute (the code works again).
	ErrBusy = errors.New("this invite is being used by another Pi right now: if that pairing does not complete, the code works again within a minute; otherwise ask for a new one (`peerline invite`)")
)

// State is where an invite is in its life.
type State int

const (
	Pending State = iota
	Used
	Expired
	Revoked
	// Reserved is an invite whose joiner is pairing right now: the
	// inviter holds it as a provisional peer until the joiner confirms
	// (Commit) or the pairing times out (Release).
	Reserved
)

func (s State) String() string {
	switch s {
	case Pending:
		return "pending"
	case Used:
		return "used"
	case Expired:
		return "expired"
	case Revoked:
		return "revoked"
	case Reserved:
		return "pairing"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Entry is one invite as the store remembers it: no servers, no name, and
// no code (the code cannot be shown again; make a new invite instead).
type Entry struct {
	ID      string
	Created time.Time
	Expires time.Time
	// Used is when it was redeemed, and Joiner by whom (zero if not).
	Used   time.Time
	Joiner nodekey.Key
	// Revoked is when it was revoked (zero if not).
	Revoked time.Time
	// Reserved is, while Joiner is pairing, when the inviter gives up on
	// it unless it confirmed (zero if not reserved).
	Reserved time.Time
}

// State returns the entry's state at now. A reservation outlives the
// invite's expiry: the pairing began while the invite was valid.
func (e Entry) State(now time.Time) State {
	switch {
	case !e.Revoked.IsZero():
		return Revoked
	case !e.Used.IsZero():
		return Used
	case !e.Reserved.IsZero():
		return Reserved
	case !now.Before(e.Expires):
		return Expired
	}
	return Pending
}

// done is when the entry stopped mattering.
func (e Entry) done() time.Time {
	t := e.Expires
	for _, u := range []time.Time{e.Used, e.Revoked, e.Reserved} {
		if u.After(t) {
			t = u
		}
	}
	return t
}

// record is an entry as it is kept in memory and on disk. The secret itself
// is kept, not a hash: checking a proof needs the HMAC key, and any value
// that lets the store check a proof would let a thief forge one, so a hash
// would protect nothing. The file is 0600 in the state directory, next to
// the node's private key, which is worth more.
type record struct {
	Secret  []byte      `json:"secret"`
	Inviter nodekey.Key `json:"inviter"`
	Created time.Time   `json:"created"`
	Expires time.Time   `json:"expires"`
	Used    time.Time   `json:"used,omitzero"`
	Joiner  nodekey.Key `json:"joiner,omitzero"`
	Revoked time.Time   `json:"revoked,omitzero"`
	// Reserved is the deadline of a pairing in progress with Joiner
	// (Entry.Reserved), and HadPeer whether Joiner was a peer already
	// before it began (a rollback then keeps the peer).
	Reserved time.Time `json:"reserved,omitzero"`
	HadPeer  bool      `json:"had_peer,omitzero"`
}

func (r *record) secret() [16]byte { return [16]byte(r.Secret) }

func (r *record) entry() Entry {
	return Entry{ID: secretID(r.secret()), Created: r.Created, Expires: r.Expires, Used: r.Used, Joiner: r.Joiner, Revoked: r.Revoked, Reserved: r.Reserved}
}

type storeFile struct {
	Version int      `json:"version"`
	Invites []record `json:"invites"`
}

// Store is the inviter's set of invites, kept in one JSON file that every
// change rewrites atomically (pkg/atomicfile) before it is reported done.
//
// The daemon calls it from one goroutine; mu makes it safe from several
// anyway, so a status page or a second caller cannot corrupt it. Two
// processes must not open the same file: the daemon owns it.
type Store struct {
	path string
	// write is atomicfile.WriteFile; tests replace it to fail.
	write func(path string, data []byte, perm os.FileMode) error

	mu      sync.Mutex
	records []record // mu
}

// OpenStore loads the store at path; a missing file is an empty store (the
// file appears with the first invite). The directory must exist.
func OpenStore(path string) (*Store, error) {
	s := &Store{path: path, write: atomicfile.WriteFile}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading invite store: %w", err)
	}
	damaged := func(err error) error {
		return fmt.Errorf("invite store %s is damaged (%w); delete it to start afresh (pending invites are lost: make new ones with `peerline invite`)", path, err)
	}
	var f storeFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		if f.Version > storeVersion {
			return nil, fmt.Errorf("invite store %s was written by a newer peerline: update this Pi", path)
		}
		return nil, damaged(err)
	}
	if f.Version != storeVersion {
		if f.Version > storeVersion {
			return nil, fmt.Errorf("invite store %s was written by a newer peerline: update this Pi", path)
		}
		return nil, damaged(fmt.Errorf("version %d", f.Version))
	}
	for n, r := range f.Invites {
		if len(r.Secret) != 16 || r.Inviter.IsZero() || r.Expires.IsZero() {
			return nil, damaged(fmt.Errorf("invite %d is incomplete", n+1))
		}
	}
	s.records = f.Invites
	return s, nil
}

// SetWriteFile makes the store write its file with write instead of
// atomicfile.WriteFile (which write must do as safely): the daemon routes
// all of pairing's writes through one function, which its tests make fail
// as a full disk or a killed process does.
func (s *Store) SetWriteFile(write func(path string, data []byte, perm os.FileMode) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.write = write
}

// Create makes an invite for inviter, valid from now for ttl, and saves it
// before returning it, so a code that was shown survives a reboot.
func (s *Store) Create(now time.Time, ttl time.Duration, inviter nodekey.Key, name string, servers []Server) (Invite, error) {
	if ttl < MinTTL || ttl > MaxTTL {
		return Invite{}, fmt.Errorf("invite lifetime %v: use %v to %v", ttl, MinTTL, MaxTTL)
	}
	iv := Invite{
		Inviter: inviter,
		Name:    name,
		Servers: slices.Clone(servers),
		// Whole seconds, as the code carries it, so the store and the
		// code agree on the instant.
		Expires: time.Unix(now.Add(ttl).Unix(), 0),
	}
	if err := iv.Validate(); err != nil {
		return Invite{}, fmt.Errorf("making invite: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.prunedLocked(now)
	ids := map[string]bool{}
	pending := 0
	for _, r := range next {
		ids[secretID(r.secret())] = true
		if st := r.entry().State(now); st == Pending || st == Reserved {
			pending++
		}
	}
	if pending >= MaxPending {
		return Invite{}, ErrTooMany
	}
	// A new ID, so that Revoke names one invite; with 32-bit IDs and a
	// few hundred entries a clash is rare, and three tries are plenty.
	for try := 0; ; try++ {
		if _, err := rand.Read(iv.Secret[:]); err != nil {
			return Invite{}, fmt.Errorf("making invite secret: %w", err)
		}
		if !ids[iv.ID()] {
			break
		}
		if try == 2 {
			return Invite{}, errors.New("making invite: no unused id; retry")
		}
	}
	next = append(next, record{
		Secret:  iv.Secret[:],
		Inviter: inviter,
		Created: now.UTC().Round(0),
		Expires: iv.Expires.UTC(),
	})
	if len(next) > maxEntries {
		next = dropOldestDone(next, now, len(next)-maxEntries)
	}
	if err := s.saveLocked(next); err != nil {
		return Invite{}, fmt.Errorf("saving invite: %w", err)
	}
	return iv, nil
}

// Reserve is the inviter's first phase of pairing: it checks a joiner's
// proof against the invites for inviter and, when one matches while it is
// pending, reserves it for joiner until the deadline until, saved before
// it returns: the inviter then keeps joiner as a provisional peer, which
// Commit makes for good and Release undoes. hadPeer says joiner was a peer
// already (Release must then keep it).
//
// fresh reports a new reservation. A repeated request from the same
// joiner (its request or our answer was lost) returns fresh false and no
// error, and changes nothing; one after its Commit returns ErrRetry, which
// matches ErrUsed. Otherwise the error is ErrUnknown, ErrRevoked,
// ErrExpired, ErrUsed or ErrBusy (another joiner's pairing is in progress).
//
// A joiner holds one reservation at most: one whose join failed and who
// pairs with another code at once (before the first reservation's
// deadline) moves its reservation to the new invite, in the same save.
// The old invite is pending again, and the new reservation's hadPeer is
// the old one's (the peer the inviter keeps came with the old one), so
// that the old pairing's rollback can never take the peer the new one
// keeps.
func (s *Store) Reserve(now time.Time, proof [32]byte, inviter, joiner nodekey.Key, until time.Time, hadPeer bool) (fresh bool, id string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.prunedLocked(now)
	i := slices.IndexFunc(next, func(r record) bool {
		return r.Inviter == inviter && VerifyProof(r.secret(), inviter, joiner, proof)
	})
	if i < 0 {
		return false, "", ErrUnknown
	}
	r := next[i]
	id = secretID(r.secret())
	switch r.entry().State(now) {
	case Revoked:
		return false, id, ErrRevoked
	case Used:
		if r.Joiner == joiner {
			return false, id, ErrRetry
		}
		return false, id, ErrUsed
	case Reserved:
		if r.Joiner == joiner {
			return false, id, nil
		}
		return false, id, ErrBusy
	case Expired:
		return false, id, ErrExpired
	}
	for k := range next {
		if k != i && reservedFor(next[k], joiner) {
			hadPeer = next[k].HadPeer
			next[k].Joiner, next[k].Reserved, next[k].HadPeer = nodekey.Key{}, time.Time{}, false
		}
	}
	next[i].Joiner = joiner
	next[i].Reserved = until.UTC().Round(0)
	next[i].HadPeer = hadPeer
	if err := s.saveLocked(next); err != nil {
		return false, id, fmt.Errorf("saving the invite as reserved: %w", err)
	}
	return true, id, nil
}

// reservedFor reports whether r is reserved for joiner and not used, also
// past the reservation's deadline (until the inviter rolls it back).
func reservedFor(r record, joiner nodekey.Key) bool {
	return r.Joiner == joiner && r.Used.IsZero() && !r.Reserved.IsZero()
}

// Commit is the inviter's second phase: invite id, reserved for joiner,
// becomes used, saved before it returns, so the code can never pair
// again. Committing twice is not an error; with no such reservation it
// returns ErrUnknown.
func (s *Store) Commit(now time.Time, joiner nodekey.Key, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.prunedLocked(now)
	for i, r := range next {
		if r.Joiner != joiner || secretID(r.secret()) != id {
			continue
		}
		switch r.entry().State(now) {
		case Used:
			return nil
		case Reserved:
			next[i].Used = now.UTC().Round(0)
			next[i].Reserved, next[i].HadPeer = time.Time{}, false
			if err := s.saveLocked(next); err != nil {
				return fmt.Errorf("saving the invite as used: %w", err)
			}
			return nil
		}
	}
	return ErrUnknown
}

// Release undoes the reservation for joiner (the pairing timed out): the
// invite is pending again, and its code works for another try. Nothing
// reserved for joiner is not an error.
func (s *Store) Release(now time.Time, joiner nodekey.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.prunedLocked(now)
	changed := false
	for i, r := range next {
		if reservedFor(r, joiner) {
			next[i].Joiner, next[i].Reserved, next[i].HadPeer = nodekey.Key{}, time.Time{}, false
			changed = true
		}
	}
	if !changed {
		return nil
	}
	if err := s.saveLocked(next); err != nil {
		return fmt.Errorf("saving the invite as pending again: %w", err)
	}
	return nil
}

// Reservation is a pairing in progress, as Reservations lists it.
type Reservation struct {
	ID      string
	Joiner  nodekey.Key
	Until   time.Time
	HadPeer bool
}

// Reservations lists the invites reserved for a joiner.
func (s *Store) Reservations(now time.Time) []Reservation {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Reservation
	for _, r := range s.prunedLocked(now) {
		if r.entry().State(now) == Reserved {
			out = append(out, Reservation{ID: secretID(r.secret()), Joiner: r.Joiner, Until: r.Reserved, HadPeer: r.HadPeer})
		}
	}
	return out
}

// ReservedProof returns the proof (for joiner) of the invite reserved for
// joiner, if one is: the inviter's answer names it (AcceptAck), so that
// the joiner takes the answer for the invite it is joining with only.
func (s *Store) ReservedProof(now time.Time, joiner nodekey.Key) ([32]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.records {
		if r.Joiner == joiner && r.entry().State(now) == Reserved {
			return Proof(r.secret(), r.Inviter, joiner), true
		}
	}
	return [32]byte{}, false
}

// UsedBy reports whether joiner paired through one of the invites and is
// not pairing through another right now: the inviter then tells it
// Committed. (A joiner that pairs again, with a new code, hears Committed
// only once that pairing is committed as well.)
func (s *Store) UsedBy(now time.Time, joiner nodekey.Key) bool {
	return s.usedBy(now, joiner, nil)
}

// CommittedFor is UsedBy for the invite of one proof: joiner paired
// through the invite whose proof (for joiner) it is, and is not pairing
// through another right now. The inviter's Committed names that pairing
// (CommitAck of the proof).
func (s *Store) CommittedFor(now time.Time, joiner nodekey.Key, proof [32]byte) bool {
	return s.usedBy(now, joiner, &proof)
}

func (s *Store) usedBy(now time.Time, joiner nodekey.Key, proof *[32]byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	used := false
	for _, r := range s.records {
		if r.Joiner != joiner {
			continue
		}
		switch r.entry().State(now) {
		case Used:
			if proof == nil || VerifyProof(r.secret(), r.Inviter, joiner, *proof) {
				used = true
			}
		case Reserved:
			return false
		}
	}
	return used
}

// BlobID returns the ID under which the short form of the invite with this
// ID (Invite.ID) is stored on rendezvous servers, so that the blob can be
// deleted once the invite is used or revoked.
func (s *Store) BlobID(id string) ([16]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.records {
		if secretID(r.secret()) == id {
			return BlobID(r.secret()), true
		}
	}
	return [16]byte{}, false
}

// ByBlobID returns the secret of the pending or reserved invite whose
// short form is stored under id (BlobID), to open a join box sent for it
// (a reserved one: the same joiner retrying, whose first answer was lost).
func (s *Store) ByBlobID(now time.Time, id [16]byte) ([16]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.records {
		if st := r.entry().State(now); (st == Pending || st == Reserved) && BlobID(r.secret()) == id {
			return r.secret(), true
		}
	}
	return [16]byte{}, false
}

// List returns the invites remembered at now, oldest first.
func (s *Store) List(now time.Time) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Entry
	for _, r := range s.prunedLocked(now) {
		out = append(out, r.entry())
	}
	return out
}

// Revoke withdraws the pending invite with the given ID (Invite.ID, or as
// List shows it) and saves that. Revoking twice is not an error; revoking a
// used invite is (unpair with `peerline remove` instead).
func (s *Store) Revoke(now time.Time, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.prunedLocked(now)
	i := slices.IndexFunc(next, func(r record) bool { return secretID(r.secret()) == id })
	if i < 0 {
		return fmt.Errorf("no invite %q: see `peerline invite --list`", id)
	}
	switch next[i].entry().State(now) {
	case Revoked:
		return nil
	case Used:
		return fmt.Errorf("invite %s was already used; to undo the pairing, use `peerline remove`", id)
	case Reserved:
		return fmt.Errorf("invite %s is being used to pair right now; wait a minute and see `peerline invite --list`", id)
	}
	next[i].Revoked = now.UTC().Round(0)
	if err := s.saveLocked(next); err != nil {
		return fmt.Errorf("saving revoked invite: %w", err)
	}
	return nil
}

// prunedLocked returns a copy of the records without those done for longer
// than keepFor; the next save drops them from the file too.
func (s *Store) prunedLocked(now time.Time) []record {
	var out []record
	for _, r := range s.records {
		if now.Sub(r.entry().done()) <= keepFor {
			out = append(out, r)
		}
	}
	return out
}

// dropOldestDone removes the n records that stopped mattering first; only
// pending and reserved invites are never dropped (at most MaxPending).
func dropOldestDone(rs []record, now time.Time, n int) []record {
	order := make([]int, 0, len(rs))
	for i, r := range rs {
		if st := r.entry().State(now); st != Pending && st != Reserved {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int { return rs[a].entry().done().Compare(rs[b].entry().done()) })
	drop := map[int]bool{}
	for _, i := range order[:min(n, len(order))] {
		drop[i] = true
	}
	var out []record
	for i, r := range rs {
		if !drop[i] {
			out = append(out, r)
		}
	}
	return out
}

// saveLocked writes next and, only once that succeeded, makes it the
// store's state; on failure memory keeps matching the old file.
func (s *Store) saveLocked(next []record) error {
	b, err := json.MarshalIndent(storeFile{Version: storeVersion, Invites: next}, "", "  ")
	if err != nil {
		return err
	}
	if err := s.write(s.path, append(b, '\n'), 0o600); err != nil {
		return err
	}
	s.records = next
	return nil
}
