package invite

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

var (
	t0      = time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	inviter = key(0x10)
	joiner  = key(0x20)
	servers = []Server{srvA, srvB}
)

func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "invites.json")
	s, err := OpenStore(path)
	if err != nil {
		t.Fatalf("OpenStore = %v", err)
	}
	return s, path
}

func create(t *testing.T, s *Store, now time.Time, ttl time.Duration) Invite {
	t.Helper()
	iv, err := s.Create(now, ttl, inviter, "alice", servers)
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	return iv
}

// join is what the joiner does with a code: parse it and prove the secret.
func join(t *testing.T, code string, joiner nodekey.Key) [32]byte {
	t.Helper()
	iv, err := Parse(code)
	if err != nil {
		t.Fatalf("Parse(own code) = %v", err)
	}
	return Proof(iv.Secret, iv.Inviter, joiner)
}

// pair is the inviter's two phases for one joiner's proof at now, as
// pkg/pairing runs them when the confirmation follows at once: Reserve,
// then Commit of the invite reserved.
func pair(s *Store, now time.Time, proof [32]byte, inviter, joiner nodekey.Key) error {
	_, id, err := s.Reserve(now, proof, inviter, joiner, now.Add(time.Minute), false)
	if err != nil {
		return err
	}
	return s.Commit(now, joiner, id)
}

func TestCreate(t *testing.T) {
	s, path := openTemp(t)
	iv := create(t, s, t0, time.Hour)
	if iv.Inviter != inviter || iv.Name != "alice" || len(iv.Servers) != 2 || iv.Secret == ([16]byte{}) {
		t.Fatalf("Create = %+v", iv)
	}
	if !iv.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("Expires = %v, want %v", iv.Expires, t0.Add(time.Hour))
	}
	if other := create(t, s, t0, time.Hour); other.Secret == iv.Secret || other.ID() == iv.ID() {
		t.Errorf("two invites share a secret or an ID")
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("store file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	b, _ := os.ReadFile(path)
	for _, leak := range []string{"alice", "rv.peerline.example.org", srvA.Key.String()} {
		if strings.Contains(string(b), leak) {
			t.Errorf("store file holds %q; it keeps only what checking a proof needs", leak)
		}
	}
	for _, tc := range []struct {
		name    string
		ttl     time.Duration
		servers []Server
	}{
		{"ttl too short", time.Second, servers},
		{"ttl too long", 31 * 24 * time.Hour, servers},
		{"no servers", time.Hour, nil},
		{"bad server", time.Hour, []Server{{Host: "x y", Port: 1, Port2: 2, Key: key(1)}}},
	} {
		if _, err := s.Create(t0, tc.ttl, inviter, "alice", tc.servers); err == nil {
			t.Errorf("%s: Create = nil error", tc.name)
		}
	}
	if n := len(s.List(t0)); n != 2 {
		t.Errorf("after refused Creates, List has %d invites, want 2", n)
	}
}

func TestPair(t *testing.T) {
	s, _ := openTemp(t)
	iv := create(t, s, t0, time.Hour)
	revoked := create(t, s, t0, time.Hour)
	if err := s.Revoke(t0, revoked.ID()); err != nil {
		t.Fatal(err)
	}
	good := join(t, iv.Code(), joiner)
	steps := []struct {
		name           string
		now            time.Time
		proof          [32]byte
		inviter, joner nodekey.Key
		want           error
	}{
		{"proof for another joiner", t0, join(t, iv.Code(), key(0x30)), inviter, joiner, ErrUnknown},
		{"proof for another inviter", t0, Proof(iv.Secret, key(0x40), joiner), inviter, joiner, ErrUnknown},
		{"asked as another inviter", t0, good, key(0x40), joiner, ErrUnknown},
		{"unknown secret", t0, Proof([16]byte{9}, inviter, joiner), inviter, joiner, ErrUnknown},
		{"revoked", t0, join(t, revoked.Code(), joiner), inviter, joiner, ErrRevoked},
		{"first use", t0.Add(time.Minute), good, inviter, joiner, nil},
		{"same joiner again", t0.Add(2 * time.Minute), good, inviter, joiner, ErrRetry},
		{"another joiner", t0.Add(2 * time.Minute), join(t, iv.Code(), key(0x30)), inviter, key(0x30), ErrUsed},
		{"same joiner after expiry", t0.Add(2 * time.Hour), good, inviter, joiner, ErrRetry},
	}
	for _, st := range steps {
		err := pair(s, st.now, st.proof, st.inviter, st.joner)
		if st.want == nil && err != nil || st.want != nil && !errors.Is(err, st.want) {
			t.Errorf("%s: pair = %v, want %v", st.name, err, st.want)
		}
	}
	if err := pair(s, t0, good, inviter, joiner); !errors.Is(err, ErrUsed) {
		t.Errorf("ErrRetry must match ErrUsed for callers that do not care; got %v", err)
	}
	var used Entry
	for _, e := range s.List(t0.Add(3 * time.Minute)) {
		if e.ID == iv.ID() {
			used = e
		}
	}
	if used.State(t0.Add(3*time.Minute)) != Used || used.Joiner != joiner || !used.Used.Equal(t0.Add(time.Minute)) {
		t.Errorf("List shows %+v, want used by the joiner at t0+1m", used)
	}
}

func TestPairExpired(t *testing.T) {
	s, _ := openTemp(t)
	iv := create(t, s, t0, time.Hour)
	p := join(t, iv.Code(), joiner)
	if err := pair(s, t0.Add(time.Hour), p, inviter, joiner); !errors.Is(err, ErrExpired) {
		t.Fatalf("pair at expiry = %v, want ErrExpired", err)
	}
	// Nothing changed: before expiry (a clock that was ahead and got
	// corrected) it still works once.
	if err := pair(s, t0.Add(59*time.Minute), p, inviter, joiner); err != nil {
		t.Fatalf("pair before expiry = %v", err)
	}
}

// Exactly one of many concurrent pairings with one invite wins; the
// others are told it is busy or used.
func TestPairConcurrent(t *testing.T) {
	s, _ := openTemp(t)
	iv := create(t, s, t0, time.Hour)
	const n = 8
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			j := key(byte(0x50 + i))
			errs <- pair(s, t0, Proof(iv.Secret, inviter, j), inviter, j)
		})
	}
	wg.Wait()
	close(errs)
	wins := 0
	for err := range errs {
		switch {
		case err == nil:
			wins++
		case !errors.Is(err, ErrUsed) && !errors.Is(err, ErrBusy):
			t.Errorf("pair = %v, want nil, ErrBusy or ErrUsed", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d pairings succeeded, want exactly 1", wins)
	}
}

func TestPersistence(t *testing.T) {
	s, path := openTemp(t)
	used := create(t, s, t0, time.Hour)
	pending := create(t, s, t0, 2*time.Hour)
	revoked := create(t, s, t0, time.Hour)
	if err := pair(s, t0, join(t, used.Code(), joiner), inviter, joiner); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(t0, revoked.ID()); err != nil {
		t.Fatal(err)
	}
	// Reopen without closing, as after a power cut: every call above
	// returned only after its change was on disk.
	s2, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]State{used.ID(): Used, pending.ID(): Pending, revoked.ID(): Revoked}
	got := map[string]State{}
	for _, e := range s2.List(t0) {
		got[e.ID] = e.State(t0)
	}
	if len(got) != len(want) {
		t.Fatalf("after reopen List = %v, want %v", got, want)
	}
	for id, st := range want {
		if got[id] != st {
			t.Errorf("after reopen %s is %v, want %v", id, got[id], st)
		}
	}
	if err := pair(s2, t0, join(t, used.Code(), joiner), inviter, joiner); !errors.Is(err, ErrRetry) {
		t.Errorf("after reopen, used invite: pair = %v, want ErrRetry", err)
	}
	if err := pair(s2, t0, join(t, pending.Code(), joiner), inviter, joiner); err != nil {
		t.Errorf("after reopen, pending invite: pair = %v", err)
	}
}

// A reservation whose save fails must not succeed, and must leave the
// invite usable: nil is only ever returned with the mark on disk.
func TestReserveSaveFails(t *testing.T) {
	s, path := openTemp(t)
	iv := create(t, s, t0, time.Hour)
	p := join(t, iv.Code(), joiner)
	real := s.write
	disk := errors.New("disk full")
	s.write = func(string, []byte, os.FileMode) error { return disk }
	if _, _, err := s.Reserve(t0, p, inviter, joiner, t0.Add(time.Minute), false); !errors.Is(err, disk) {
		t.Fatalf("Reserve with a failing disk = %v, want the disk error", err)
	}
	if st := s.List(t0)[0].State(t0); st != Pending {
		t.Fatalf("after a failed Reserve the invite is %v, want pending", st)
	}
	s.write = real
	if err := pair(s, t0, p, inviter, joiner); err != nil {
		t.Fatalf("pair after the disk recovered = %v", err)
	}
	s2, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := pair(s2, t0, p, inviter, joiner); !errors.Is(err, ErrUsed) {
		t.Fatalf("reopened store: pair = %v, want ErrUsed", err)
	}
}

func TestTooMany(t *testing.T) {
	s, _ := openTemp(t)
	var first Invite
	for i := range MaxPending {
		iv := create(t, s, t0, time.Hour)
		if i == 0 {
			first = iv
		}
	}
	if _, err := s.Create(t0, time.Hour, inviter, "alice", servers); !errors.Is(err, ErrTooMany) {
		t.Fatalf("Create number %d = %v, want ErrTooMany", MaxPending+1, err)
	}
	if !strings.Contains(ErrTooMany.Error(), "revoke") {
		t.Errorf("ErrTooMany does not say what to do: %v", ErrTooMany)
	}
	// Using, revoking or waiting each frees a place.
	if err := pair(s, t0, join(t, first.Code(), joiner), inviter, joiner); err != nil {
		t.Fatal(err)
	}
	create(t, s, t0, time.Hour)
	if _, err := s.Create(t0.Add(time.Hour), time.Hour, inviter, "alice", servers); err != nil {
		t.Fatalf("Create after all expired = %v", err)
	}
}

func TestPrune(t *testing.T) {
	s, path := openTemp(t)
	old := create(t, s, t0, time.Hour)
	p := join(t, old.Code(), joiner)
	late := t0.Add(time.Hour + keepFor + time.Second)
	if err := pair(s, t0.Add(time.Hour+keepFor), p, inviter, joiner); !errors.Is(err, ErrExpired) {
		t.Fatalf("pair within keepFor after expiry = %v, want ErrExpired", err)
	}
	if got := s.List(late); len(got) != 0 {
		t.Fatalf("List long after expiry = %+v, want nothing", got)
	}
	create(t, s, late, time.Hour)
	s2, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(s2.records); n != 1 {
		t.Errorf("file holds %d invites after pruning, want 1", n)
	}
	if err := pair(s2, late, p, inviter, joiner); !errors.Is(err, ErrUnknown) {
		t.Errorf("pair of a pruned invite = %v, want ErrUnknown", err)
	}
}

// The file stays bounded even when invites are made and revoked in a loop.
func TestMaxEntries(t *testing.T) {
	s, _ := openTemp(t)
	// Hundreds of fsyncs would make this slow; the bound is in memory.
	s.write = func(string, []byte, os.FileMode) error { return nil }
	now := t0
	for range maxEntries + 20 {
		iv := create(t, s, now, time.Hour)
		if err := s.Revoke(now, iv.ID()); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
	}
	keep := create(t, s, now, time.Hour)
	entries := s.List(now)
	if len(entries) > maxEntries {
		t.Errorf("%d entries kept, want at most %d", len(entries), maxEntries)
	}
	if entries[len(entries)-1].ID != keep.ID() {
		t.Errorf("the pending invite was dropped")
	}
}

func TestRevoke(t *testing.T) {
	s, _ := openTemp(t)
	iv := create(t, s, t0, time.Hour)
	used := create(t, s, t0, time.Hour)
	if err := pair(s, t0, join(t, used.Code(), joiner), inviter, joiner); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		id      string
		wantErr bool
	}{
		{"pending", iv.ID(), false},
		{"again", iv.ID(), false},
		{"used", used.ID(), true},
		{"unknown", "00000000", true},
	} {
		if err := s.Revoke(t0, tc.id); (err != nil) != tc.wantErr {
			t.Errorf("%s: Revoke = %v, want error %v", tc.name, err, tc.wantErr)
		}
	}
	if err := pair(s, t0, join(t, iv.Code(), joiner), inviter, joiner); !errors.Is(err, ErrRevoked) {
		t.Errorf("pair of revoked = %v, want ErrRevoked", err)
	}
}

func TestOpenStoreErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want string
	}{
		{"not JSON", "{", "damaged"},
		{"newer", `{"version": 2, "invites": []}`, "newer peerline"},
		{"short secret", `{"version": 1, "invites": [{"secret": "AAAA", "inviter": "` + inviter.String() + `", "expires": "2027-01-01T00:00:00Z"}]}`, "damaged"},
		{"unknown field", `{"version": 1, "invites": [], "x": 1}`, "damaged"},
	} {
		p := filepath.Join(dir, tc.name)
		os.WriteFile(p, []byte(tc.content), 0o600)
		if _, err := OpenStore(p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: OpenStore = %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestReserveCommitRelease: the inviter's two phases. A reservation is
// for one joiner, answers its repeats without change, is undone by Release
// (the code works again, for anyone) and made for good by Commit; each
// step is saved before it returns, and a failed save changes nothing.
func TestReserveCommitRelease(t *testing.T) {
	s, path := openTemp(t)
	iv := create(t, s, t0, time.Hour)
	other := key(0x30)
	good, theirs := join(t, iv.Code(), joiner), join(t, iv.Code(), other)
	until := t0.Add(time.Minute)
	reserve := func(name string, now time.Time, p [32]byte, j nodekey.Key, wantFresh bool, want error) {
		t.Helper()
		fresh, id, err := s.Reserve(now, p, inviter, j, until, false)
		if fresh != wantFresh || want == nil && err != nil || want != nil && !errors.Is(err, want) {
			t.Errorf("%s: Reserve = %v, %v; want %v, %v", name, fresh, err, wantFresh, want)
		}
		if err == nil && id != iv.ID() {
			t.Errorf("%s: Reserve names invite %s, want %s", name, id, iv.ID())
		}
	}
	state := func(now time.Time) State {
		t.Helper()
		for _, e := range s.List(now) {
			if e.ID == iv.ID() {
				return e.State(now)
			}
		}
		return -1
	}
	reserve("first", t0, good, joiner, true, nil)
	reserve("repeat by the same joiner", t0, good, joiner, false, nil)
	reserve("another joiner meanwhile", t0, theirs, other, false, ErrBusy)
	if got := state(t0.Add(2 * time.Hour)); got != Reserved {
		t.Errorf("reserved invite after its expiry: %v, want %v (the pairing began in time)", got, Reserved)
	}
	if r := s.Reservations(t0); len(r) != 1 || r[0].Joiner != joiner || !r[0].Until.Equal(until) {
		t.Errorf("Reservations = %+v", r)
	}
	if _, ok := s.ByBlobID(t0, BlobID(iv.Secret)); !ok {
		t.Error("ByBlobID does not find a reserved invite: a join box repeated by its joiner would be refused")
	}
	// Released: the code is usable again, by anyone.
	if err := s.Release(t0, joiner); err != nil {
		t.Fatal(err)
	}
	if got := state(t0); got != Pending {
		t.Errorf("after Release: %v, want pending", got)
	}
	reserve("another joiner after the release", t0, theirs, other, true, nil)
	if err := s.Commit(t0, joiner, iv.ID()); !errors.Is(err, ErrUnknown) {
		t.Errorf("Commit of a released reservation = %v, want ErrUnknown", err)
	}
	// A failed save changes nothing, in memory or on disk.
	real := s.write
	disk := errors.New("disk full")
	s.write = func(string, []byte, os.FileMode) error { return disk }
	if err := s.Commit(t0, other, iv.ID()); !errors.Is(err, disk) {
		t.Errorf("Commit with a full disk = %v", err)
	}
	if got := state(t0); got != Reserved {
		t.Errorf("after a failed Commit: %v, want still reserved", got)
	}
	s.write = real
	if err := s.Commit(t0.Add(time.Second), other, iv.ID()); err != nil {
		t.Fatalf("Commit = %v", err)
	}
	if err := s.Commit(t0.Add(2*time.Second), other, iv.ID()); err != nil {
		t.Errorf("second Commit = %v; want no error", err)
	}
	if err := s.Release(t0, other); err != nil || state(t0) != Used {
		t.Errorf("Release after Commit = %v, state %v; want it to change nothing", err, state(t0))
	}
	if !s.UsedBy(t0, other) || s.UsedBy(t0, joiner) {
		t.Error("UsedBy does not name the joiner that committed")
	}
	if !s.CommittedFor(t0, other, theirs) || s.CommittedFor(t0, joiner, good) || s.CommittedFor(t0, other, good) {
		t.Error("CommittedFor does not name exactly the committed pairing")
	}
	// The same joiner pairing again with another code: not committed
	// until that pairing is.
	again := create(t, s, t0, time.Hour)
	againProof := join(t, again.Code(), other)
	if s.CommittedFor(t0, other, againProof) {
		t.Error("CommittedFor names a pairing that has not begun")
	}
	if _, _, err := s.Reserve(t0, againProof, inviter, other, until, true); err != nil {
		t.Fatal(err)
	}
	if s.UsedBy(t0, other) || s.CommittedFor(t0, other, theirs) {
		t.Error("UsedBy or CommittedFor names a joiner whose second pairing is still in progress")
	}
	if err := s.Commit(t0, other, again.ID()); err != nil || !s.UsedBy(t0, other) {
		t.Errorf("Commit of the second pairing = %v, UsedBy %v", err, s.UsedBy(t0, other))
	}
	// Both pairings are committed: each proof names its own; a proof of
	// the right invite for another joiner names none.
	if !s.CommittedFor(t0, other, theirs) || !s.CommittedFor(t0, other, againProof) || s.CommittedFor(t0, other, good) || s.CommittedFor(t0, joiner, good) {
		t.Error("CommittedFor does not name exactly the committed pairings")
	}
	s2, err := OpenStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s2.Reserve(t0, theirs, inviter, other, until, false); !errors.Is(err, ErrRetry) {
		t.Errorf("reopened: Reserve by the committed joiner = %v, want ErrRetry", err)
	}
	if _, _, err := s2.Reserve(t0, good, inviter, joiner, until, false); !errors.Is(err, ErrUsed) {
		t.Errorf("reopened: Reserve by another = %v, want ErrUsed", err)
	}
}

// TestReserveMoves: a joiner whose pairing failed and who pairs with a new
// code before the first reservation's deadline holds one reservation, on
// the new invite: the first invite is pending again, and the peer the
// inviter keeps counts as new (the first pairing added it), so the
// rollback of either pairing removes it and never one that was there
// before.
func TestReserveMoves(t *testing.T) {
	for _, had := range []bool{false, true} {
		s, _ := openTemp(t)
		first, second := create(t, s, t0, time.Hour), create(t, s, t0, time.Hour)
		until := t0.Add(time.Minute)
		if _, _, err := s.Reserve(t0, join(t, first.Code(), joiner), inviter, joiner, until, had); err != nil {
			t.Fatal(err)
		}
		// The inviter keeps the joiner (provisionally) when the second
		// request comes: to it the joiner looks like a peer it had.
		fresh, id, err := s.Reserve(t0.Add(time.Second), join(t, second.Code(), joiner), inviter, joiner, until.Add(time.Second), true)
		if err != nil || !fresh || id != second.ID() {
			t.Fatalf("Reserve of a second code = %v, %s, %v; want a fresh reservation of %s", fresh, id, err, second.ID())
		}
		r := s.Reservations(t0.Add(time.Second))
		if len(r) != 1 || r[0].ID != second.ID() || r[0].HadPeer != had {
			t.Errorf("had %v: Reservations = %+v, want only %s with HadPeer %v", had, r, second.ID(), had)
		}
		for _, e := range s.List(t0.Add(time.Second)) {
			if e.ID == first.ID() && e.State(t0.Add(time.Second)) != Pending {
				t.Errorf("the first invite is %v, want pending", e.State(t0.Add(time.Second)))
			}
		}
		if err := s.Commit(t0.Add(2*time.Second), joiner, first.ID()); !errors.Is(err, ErrUnknown) {
			t.Errorf("Commit of the invite the reservation moved from = %v, want ErrUnknown", err)
		}
		if err := s.Commit(t0.Add(2*time.Second), joiner, second.ID()); err != nil {
			t.Errorf("Commit of the second invite = %v", err)
		}
	}
}
