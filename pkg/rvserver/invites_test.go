package rvserver

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"
	"time"

	pinvite "github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

var joiner = netip.MustParseAddrPort("203.0.113.50:6000")

// putInvite sends an InvitePut from n and returns whether it was stored.
func (h *harness) putInvite(n *testNode, id [rendezvous.InviteIDLen]byte, expires time.Time, blob []byte) bool {
	h.t.Helper()
	r, rest := h.request(n, rendezvous.InvitePut{ID: id, Expires: expires, Blob: blob}, 0)
	pr, ok := r.(rendezvous.InvitePutReply)
	if !ok || pr.ID != id || len(rest) != 0 {
		h.t.Fatalf("invite put from %s: reply %#v and %d other datagrams; want one InvitePutReply for %x", n.addr, r, len(rest), id)
	}
	return pr.Stored
}

// getInvite asks for id from src, as a joiner does, and returns the blob
// (nil when the server answered "unknown"). It fails the test unless exactly
// one answer went back to src, no longer than the request.
func (h *harness) getInvite(id [rendezvous.InviteIDLen]byte, src netip.AddrPort) []byte {
	h.t.Helper()
	req := rendezvous.AppendInviteGet(nil, id, nil)
	out := h.deliver(req, src, 0)
	if len(out) != 1 || out[0].to != src || out[0].port != 0 {
		h.t.Fatalf("InviteGet from %s: server sent %+v; want one answer back", src, out)
	}
	if len(out[0].b) > len(req) {
		h.t.Fatalf("InviteGet of %d bytes got %d back", len(req), len(out[0].b))
	}
	gotID, blob, err := rendezvous.ParseInvite(out[0].b)
	if err != nil || gotID != id {
		h.t.Fatalf("answer to InviteGet(%x) = %x, %v", id, gotID, err)
	}
	return blob
}

func TestInvitePutGetDelete(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.node("198.51.100.10:40000")
	id := [rendezvous.InviteIDLen]byte{1, 2, 3}
	exp := h.clock.now().Add(time.Hour)

	if got := h.getInvite(id, joiner); got != nil {
		t.Fatalf("unknown id answered with %q", got)
	}
	// No registration needed.
	if !h.putInvite(a, id, exp, []byte("sealed blob v1")) {
		t.Fatal("first put refused")
	}
	if got := h.getInvite(id, joiner); string(got) != "sealed blob v1" {
		t.Fatalf("get = %q, want v1", got)
	}
	full := bytes.Repeat([]byte{0xee}, rendezvous.MaxInviteBlob)
	if !h.putInvite(a, id, exp, full) {
		t.Fatal("replacing put refused")
	}
	if got := h.getInvite(id, joiner); !bytes.Equal(got, full) {
		t.Fatalf("get after replace = %d bytes, want the %d-byte blob", len(got), len(full))
	}
	// The second port answers too.
	req := rendezvous.AppendInviteGet(nil, id, nil)
	if out := h.deliver(req, joiner, 1); len(out) != 1 || out[0].port != 1 || len(out[0].b) > len(req) {
		t.Errorf("InviteGet on port 1: sent %+v; want one answer from port 1", out)
	}
	if !h.putInvite(a, id, time.Time{}, nil) {
		t.Fatal("delete refused")
	}
	if got := h.getInvite(id, joiner); got != nil {
		t.Fatalf("get after delete = %q, want unknown", got)
	}
	if !h.putInvite(a, id, time.Time{}, nil) {
		t.Error("deleting an unknown id refused; want success (nothing to delete)")
	}
	st := h.s.Stats()
	if st.Invites != 0 || st.InvitesStored != 4 || st.InvitesRefused != 0 || st.InvitesServed != 3 || st.InvitesUnknown != 2 {
		t.Errorf("stats = %+v; want 0 live, 4 stored, 0 refused, 3 served, 2 unknown", st)
	}
}

func TestInviteOtherOwnerRefused(t *testing.T) {
	h := newHarness(t, Config{})
	a, b := h.node("198.51.100.10:40000"), h.node("198.51.100.11:40000")
	id := [rendezvous.InviteIDLen]byte{7}
	exp := h.clock.now().Add(time.Hour)
	if !h.putInvite(a, id, exp, []byte("a's")) {
		t.Fatal("a's put refused")
	}
	if h.putInvite(b, id, exp, []byte("b's")) {
		t.Error("b replaced a's blob")
	}
	if h.putInvite(b, id, time.Time{}, nil) {
		t.Error("b deleted a's blob")
	}
	if got := h.getInvite(id, joiner); string(got) != "a's" {
		t.Errorf("get = %q, want a's blob", got)
	}
	if st := h.s.Stats(); st.InvitesRefused != 2 {
		t.Errorf("refused = %d, want 2", st.InvitesRefused)
	}
	// Once a's blob expired, the id is free.
	h.clock.add(time.Hour)
	if !h.putInvite(b, id, h.clock.now().Add(time.Hour), []byte("b's")) {
		t.Error("b's put after a's blob expired refused")
	}
}

func TestInviteExpiry(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.node("198.51.100.10:40000")
	now := h.clock.now()
	tests := []struct {
		name    string
		expires time.Time
		stored  bool
		lives   time.Duration // how long the blob is served
	}{
		{"in the past", now.Add(-time.Second), false, 0},
		{"now", now, false, 0},
		{"no expiry", time.Time{}, false, 0},
		{"in a minute", now.Add(time.Minute), true, time.Minute},
		{"in a year, capped", now.Add(365 * 24 * time.Hour), true, rendezvous.MaxInviteTTL},
	}
	for i, tt := range tests {
		h.clock.t = now
		id := [rendezvous.InviteIDLen]byte{byte(i), 0xe}
		if got := h.putInvite(a, id, tt.expires, []byte("blob")); got != tt.stored {
			t.Errorf("%s: stored = %v, want %v", tt.name, got, tt.stored)
			continue
		}
		if !tt.stored {
			if got := h.getInvite(id, joiner); got != nil {
				t.Errorf("%s: refused blob served: %q", tt.name, got)
			}
			continue
		}
		h.clock.t = now.Add(tt.lives - time.Second)
		if got := h.getInvite(id, joiner); string(got) != "blob" {
			t.Errorf("%s: get a second before expiry = %q", tt.name, got)
		}
		h.clock.t = now.Add(tt.lives)
		if got := h.getInvite(id, joiner); got != nil {
			t.Errorf("%s: get at expiry = %q, want unknown", tt.name, got)
		}
	}
	// The sweeper drops expired blobs nobody asks for.
	h.clock.t = now
	if !h.putInvite(a, [rendezvous.InviteIDLen]byte{0xf}, now.Add(time.Minute), []byte("x")) {
		t.Fatal("put refused")
	}
	h.clock.add(time.Minute)
	h.s.sweep()
	if n := h.s.Stats().Invites; n != 0 {
		t.Errorf("%d live invites after sweep, want 0", n)
	}
}

func TestInviteLimits(t *testing.T) {
	h := newHarness(t, Config{MaxInvites: 64, MaxInvitesPerOwner: 3})
	a, b := h.node("198.51.100.10:40000"), h.node("203.0.113.11:40000")
	now := h.clock.now()
	put := func(n *testNode, i byte, life time.Duration) bool {
		t.Helper()
		return h.putInvite(n, [rendezvous.InviteIDLen]byte{i}, now.Add(life), []byte{i})
	}
	get := func(i byte) bool {
		return h.s.invites.byID[[rendezvous.InviteIDLen]byte{i}] != nil
	}
	for i := range byte(3) {
		if !put(a, i, time.Duration(i+1)*time.Minute) {
			t.Fatalf("a's put %d refused", i)
		}
	}
	// A fourth blob from a costs a its own oldest, nobody else's.
	if !put(b, 10, time.Hour) {
		t.Fatal("b's put refused")
	}
	if !put(a, 3, time.Hour) {
		t.Error("a's fourth blob refused; it should evict a's oldest")
	}
	if get(0) || !get(1) || !get(2) || !get(3) || !get(10) {
		t.Errorf("after a's fourth blob: have 0:%v 1:%v 2:%v 3:%v b's:%v; want only a's oldest (0) gone", get(0), get(1), get(2), get(3), get(10))
	}
	if !put(a, 1, time.Hour) {
		t.Error("replacing one of a's blobs at the limit refused")
	}
	if got := h.s.Stats().Invites; got != 4 {
		t.Errorf("%d live invites, want 4", got)
	}
}

// TestInviteFloodEvictsTheFlood: many keys from many networks filling the
// store evict each other; the invite a user just stored survives, and a
// user can store one while the table is full.
func TestInviteFloodEvictsTheFlood(t *testing.T) {
	const max = 64
	h := newHarness(t, Config{MaxInvites: max, MaxInvitesPerOwner: 4})
	now := h.clock.now()
	user := h.node("203.0.113.7:40000")
	mine := [rendezvous.InviteIDLen]byte{0xaa}
	if !h.putInvite(user, mine, now.Add(time.Hour), []byte("mine")) {
		t.Fatal("the user's invite refused")
	}
	var id byte
	for net := range 16 {
		for k := range 4 {
			n := h.node(fmt.Sprintf("198.18.%d.%d:40000", net, k+1))
			for range 4 {
				id++
				h.putInvite(n, [rendezvous.InviteIDLen]byte{1, id}, now.Add(time.Hour), []byte("junk"))
			}
		}
	}
	if h.s.invites.byID[mine] == nil {
		t.Error("the user's invite was evicted by a flood of 256 blobs from 64 keys in 16 networks")
	}
	if got := h.s.Stats().Invites; got > max {
		t.Errorf("%d invites stored, want at most %d", got, max)
	}
	later := h.node("192.0.2.9:40000")
	if !h.putInvite(later, [rendezvous.InviteIDLen]byte{0xbb}, now.Add(time.Hour), []byte("x")) {
		t.Error("a user's invite refused while the flood holds the table")
	}
	if h.s.invites.evicted == 0 {
		t.Error("no eviction counted")
	}
}

// TestInvitePutNeedsCookie: a store is a sealed request like Register: no
// cookie gets only a Cookie, and another address's packet stores nothing.
func TestInvitePutNeedsCookie(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.node("198.51.100.10:40000")
	id := [rendezvous.InviteIDLen]byte{9}
	req := a.seal(t, rendezvous.InvitePut{ID: id, Expires: h.clock.now().Add(time.Hour), Blob: []byte("x")}, h.clock.now())
	if out := h.deliver(req, a.addr, 0); len(out) != 1 || len(out[0].b) != rendezvous.CookieMsgLen {
		t.Fatalf("put without cookie: sent %+v; want a Cookie", out)
	}
	h.register(a, 0) // fetches the cookie
	req = a.seal(t, rendezvous.InvitePut{ID: id, Expires: h.clock.now().Add(time.Hour), Blob: []byte("x")}, h.clock.now())
	if out := h.deliver(req, joiner, 0); len(out) != 1 || len(out[0].b) != rendezvous.CookieMsgLen || out[0].to != joiner {
		t.Fatalf("put from another address: sent %+v; want a Cookie back", out)
	}
	if got := h.getInvite(id, joiner); got != nil {
		t.Errorf("a put without a valid cookie was stored: %q", got)
	}
}

func TestInviteGetMalformed(t *testing.T) {
	h := newHarness(t, Config{})
	a := h.node("198.51.100.10:40000")
	id := [rendezvous.InviteIDLen]byte{1}
	if !h.putInvite(a, id, h.clock.now().Add(time.Hour), bytes.Repeat([]byte{1}, rendezvous.MaxInviteBlob)) {
		t.Fatal("put refused")
	}
	good := rendezvous.AppendInviteGet(nil, id, nil)
	padded := bytes.Clone(good)
	padded[len(padded)-1] = 1
	tests := []struct {
		name string
		b    []byte
	}{
		{"short", good[:len(good)-1]},
		{"id only", good[:rendezvous.HeaderLen+rendezvous.InviteIDLen]},
		{"long", append(bytes.Clone(good), 0)},
		{"non-zero padding", padded},
		{"an Invite sent to the server", rendezvous.AppendInvite(nil, id, nil)},
		{"an Invite of full size", append(rendezvous.AppendInvite(nil, id, nil), make([]byte, rendezvous.MaxInviteBlob)...)},
	}
	for _, tt := range tests {
		before := h.s.Stats().Junk
		if out := h.deliver(tt.b, joiner, 0); len(out) != 0 {
			t.Errorf("%s: server answered %d datagrams", tt.name, len(out))
		}
		if h.s.Stats().Junk != before+1 {
			t.Errorf("%s: not counted as junk", tt.name)
		}
	}
}

// TestInviteJoinPush: a join box in an InviteGet goes, sealed, to the
// registered address of the invite's owner, never to the request's source,
// and only a few per invite however many gets come.
func TestInviteJoinPush(t *testing.T) {
	h := newHarness(t, Config{})
	owner := h.node("198.51.100.10:40000")
	h.register(owner, 0)
	id := [rendezvous.InviteIDLen]byte{9}
	if !h.putInvite(owner, id, h.clock.now().Add(time.Hour), []byte("blob")) {
		t.Fatal("put refused")
	}
	get := func(id [rendezvous.InviteIDLen]byte) (answers, pushes int) {
		for _, s := range h.deliver(rendezvous.AppendInviteGet(nil, id, []byte("join box")), joiner, 0) {
			switch s.to {
			case joiner:
				answers++
			case owner.addr:
				m := owner.open(t, s.b)
				if j, ok := m.(rendezvous.InviteJoin); !ok || j.ID != id || string(j.Box) != "join box" {
					t.Fatalf("push to the owner: %#v", m)
				}
				pushes++
			default:
				t.Fatalf("the server sent to %s", s.to)
			}
		}
		return answers, pushes
	}
	if a, p := get([rendezvous.InviteIDLen]byte{8}); a != 1 || p != 0 {
		t.Fatalf("unknown id: %d answers, %d pushes; want 1, 0", a, p)
	}
	total := 0
	for range 10 {
		a, p := get(id)
		if a != 1 {
			t.Fatalf("%d answers to one get", a)
		}
		total += p
	}
	if total != joinBurst {
		t.Errorf("10 gets at once pushed %d join boxes, want the burst of %d", total, joinBurst)
	}
	h.clock.add(3 * time.Second)
	if _, p := get(id); p != 1 {
		t.Errorf("after 3 s, %d pushes, want 1 (one every 2 s)", p)
	}
}

// TestInviteGetRetryAfterDelete: the owner deletes a blob (its invite was
// used) while the joiner's answer is lost; the joiner's retry, which
// repeats its join box, gets the same answer for a while. A fetch with
// another box, or none, hears "unknown" at once, and nothing is pushed to
// the owner any more.
func TestInviteGetRetryAfterDelete(t *testing.T) {
	h := newHarness(t, Config{})
	owner := h.node("198.51.100.10:40000")
	h.register(owner, 0)
	id := [rendezvous.InviteIDLen]byte{7}
	if !h.putInvite(owner, id, h.clock.now().Add(time.Hour), []byte("blob")) {
		t.Fatal("put refused")
	}
	box := func(nonce byte) []byte { return append([]byte{1, nonce}, bytes.Repeat([]byte{nonce}, 40)...) }
	get := func(join []byte) (blob []byte, pushes int) {
		t.Helper()
		for _, s := range h.deliver(rendezvous.AppendInviteGet(nil, id, join), joiner, 0) {
			switch s.to {
			case joiner:
				_, blob, _ = rendezvous.ParseInvite(s.b)
			case owner.addr:
				pushes++
			}
		}
		return blob, pushes
	}
	if b, p := get(box(1)); string(b) != "blob" || p != 1 {
		t.Fatalf("first fetch: %q, %d pushes", b, p)
	}
	if !h.putInvite(owner, id, time.Time{}, nil) {
		t.Fatal("delete refused")
	}
	h.clock.add(2 * time.Second)
	if b, p := get(box(1)); string(b) != "blob" || p != 0 {
		t.Errorf("the same fetch again after the delete: %q, %d pushes; want the blob, no push", b, p)
	}
	if b, _ := get(box(2)); b != nil {
		t.Errorf("another fetch after the delete: %q, want unknown", b)
	}
	if b := h.getInvite(id, joiner); b != nil {
		t.Errorf("a fetch without a join box after the delete: %q, want unknown", b)
	}
	h.clock.add(retryGrace)
	if b, _ := get(box(1)); b != nil {
		t.Errorf("the same fetch %v after the delete: %q, want unknown", retryGrace, b)
	}
	// A blob nobody fetched goes at once.
	if !h.putInvite(owner, id, h.clock.now().Add(time.Hour), []byte("blob2")) || !h.putInvite(owner, id, time.Time{}, nil) {
		t.Fatal("put or delete refused")
	}
	if b, _ := get(box(3)); b != nil {
		t.Errorf("an unfetched blob after its delete: %q", b)
	}
	if len(h.s.invites.byID) != 0 {
		t.Errorf("%d blobs kept after an unfetched blob's delete, want none", len(h.s.invites.byID))
	}
}

// TestInviteGetSameJoinerAgain: a joiner's join box is the same for every
// fetch it makes of one invite (pkg/invite derives its nonce), so a
// joiner whose `peerline join` ended without the answer and that runs the
// join again gets the same answer as its first fetch, even after the
// inviter deleted the blob; another joiner does not.
func TestInviteGetSameJoinerAgain(t *testing.T) {
	h := newHarness(t, Config{})
	owner := h.node("198.51.100.10:40000")
	h.register(owner, 0)
	secret := [16]byte{4, 2}
	id := pinvite.BlobID(secret)
	if !h.putInvite(owner, id, h.clock.now().Add(time.Hour), []byte("blob")) {
		t.Fatal("put refused")
	}
	box := func(joiner byte) []byte {
		b, err := pinvite.SealJoin(secret, nodekey.Key{joiner}, []byte("hello"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	get := func(join []byte, from netip.AddrPort) []byte {
		t.Helper()
		for _, s := range h.deliver(rendezvous.AppendInviteGet(nil, id, join), from, 0) {
			if s.to == from {
				_, blob, _ := rendezvous.ParseInvite(s.b)
				return blob
			}
		}
		t.Fatalf("no answer to %s", from)
		return nil
	}
	if b := get(box(1), joiner); string(b) != "blob" {
		t.Fatalf("first fetch: %q", b)
	}
	if !h.putInvite(owner, id, time.Time{}, nil) {
		t.Fatal("delete refused")
	}
	h.clock.add(10 * time.Second)
	// The join run again, from a new socket.
	again := netip.AddrPortFrom(joiner.Addr(), joiner.Port()+1)
	if b := get(box(1), again); string(b) != "blob" {
		t.Errorf("the same joiner's new fetch after the delete: %q, want the blob", b)
	}
	if b := get(box(2), joiner); b != nil {
		t.Errorf("another joiner's fetch after the delete: %q, want unknown", b)
	}
}
