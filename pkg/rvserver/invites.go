package rvserver

import (
	"container/heap"
	"net/netip"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/tokenbucket"
)

// Invite limits (Config.MaxInvites and Config.MaxInvitesPerOwner default to
// these). A blob takes about 450 bytes with its bookkeeping, so a full table
// is about 30 MB. Like the server's other tables, the store is shared out
// by a ledger: an owner key holding its share loses its own oldest blob to
// a new one, a source prefix holds at most an eighth of the table, and a
// full table loses the oldest blob of whoever holds the most, so many keys
// storing junk evict each other, never the one invite a user just made.
const (
	DefaultMaxInvites         = 65536
	DefaultMaxInvitesPerOwner = 16
)

// inviteStore holds the invite blobs nodes stored with InvitePut (see
// pkg/rendezvous). The server's mu guards it.
//
// Entries sit in a heap ordered by expiry as well as in the map, so that
// expired blobs are dropped in O(log n) each, whenever the store is touched:
// a full table never needs a scan, and an owner's count is always of live
// blobs.
type inviteStore struct {
	byID    map[[rendezvous.InviteIDLen]byte]*invite
	expiry  inviteHeap
	led     *ledger[[rendezvous.InviteIDLen]byte] // shares per owner key and prefix
	evicted uint64                                // blobs dropped to make room
}

type invite struct {
	id      [rendezvous.InviteIDLen]byte
	owner   nodekey.Key
	blob    []byte
	expires time.Time
	index   int // in expiry
	// joins limits the join boxes pushed to the owner: an InviteGet is
	// unauthenticated, and only a joiner needs a few.
	joins tokenbucket.Bucket
	// served are the join boxes (by fingerprint) the blob was served
	// with, and closed says the owner deleted the blob: it is then kept
	// for retryGrace, for those boxes only, so that a joiner whose
	// answer was lost gets the same answer when it asks again, while
	// anyone else hears "unknown" at once.
	served  [maxServed]joinPrint
	nServed int
	closed  bool
}

// joinPrint is a join box's fingerprint: its nonce, which pkg/invite
// derives from the invite's secret, the joiner's key and its hello, so
// every fetch of one joiner repeats it (retransmissions, and a join run
// again) and another joiner's never does.
type joinPrint [16]byte

func printOf(join []byte) (joinPrint, bool) {
	var p joinPrint
	if len(join) < 1+len(p) {
		return p, false
	}
	copy(p[:], join[1:])
	return p, true
}

// A deleted blob stays for retryGrace for the joiners it answered (up to
// maxServed of them): a fetch's retries span about 4 s, and a join run
// again after its answer was lost comes within seconds.
const (
	retryGrace = 30 * time.Second
	maxServed  = 4
)

func (in *invite) servedTo(join []byte) bool {
	p, ok := printOf(join)
	if !ok {
		return false
	}
	for _, q := range in.served[:in.nServed] {
		if q == p {
			return true
		}
	}
	return false
}

func (in *invite) serve(join []byte) {
	p, ok := printOf(join)
	if !ok || in.servedTo(join) {
		return
	}
	if in.nServed < maxServed {
		in.nServed++
	} else {
		copy(in.served[:], in.served[1:]) // forget the oldest
	}
	in.served[in.nServed-1] = p
}

// Join boxes pushed to an invite's owner: a joiner sends one, and retries
// a few times if the answer is lost.
const (
	joinsPerSec = 0.5
	joinBurst   = 4
)

func newInviteStore(max, perOwner int) *inviteStore {
	s := &inviteStore{
		byID: map[[rendezvous.InviteIDLen]byte]*invite{},
	}
	s.led = newLedger(max, perOwner, max/8, func(id [rendezvous.InviteIDLen]byte, _ owner, _ evictReason) {
		if in := s.byID[id]; in != nil {
			s.drop(in)
			s.evicted++
		}
	})
	return s
}

// expire drops every blob whose time has come.
func (s *inviteStore) expire(now time.Time) {
	for len(s.expiry) > 0 && !now.Before(s.expiry[0].expires) {
		s.remove(s.expiry[0])
	}
}

func (s *inviteStore) remove(in *invite) {
	s.drop(in)
	s.led.remove(in.id)
}

// drop forgets in everywhere but in the ledger.
func (s *inviteStore) drop(in *invite) {
	heap.Remove(&s.expiry, in.index)
	delete(s.byID, in.id)
}

// put stores, replaces or (with an empty blob) deletes owner's blob under
// id, and reports whether it did; src is where the request came from, whose
// prefix the blob is charged to as well.
func (s *inviteStore) put(owner nodekey.Key, src netip.AddrPort, m rendezvous.InvitePut, now time.Time) bool {
	s.expire(now)
	old := s.byID[m.ID]
	if old != nil && old.owner != owner {
		return false
	}
	if len(m.Blob) == 0 {
		switch {
		case old == nil || old.closed:
		case old.nServed > 0:
			// Kept a moment for the fetches it answered.
			old.closed = true
			if limit := now.Add(retryGrace); old.expires.After(limit) {
				old.expires = limit
				heap.Fix(&s.expiry, old.index)
			}
		default:
			s.remove(old)
		}
		return true
	}
	if len(m.Blob) > rendezvous.MaxInviteBlob || !m.Expires.After(now) {
		return false
	}
	expires := m.Expires
	if limit := now.Add(rendezvous.MaxInviteTTL); expires.After(limit) {
		expires = limit
	}
	blob := m.Blob // ParseBody copied it out of the datagram
	if old != nil {
		if old.closed {
			old.closed, old.nServed = false, 0 // a new life
		}
		old.blob, old.expires = blob, expires
		heap.Fix(&s.expiry, old.index)
		return true
	}
	s.led.add(m.ID, keyOwner(owner), prefixOwner(sourcePrefix(src)))
	in := &invite{id: m.ID, owner: owner, blob: blob, expires: expires}
	s.byID[m.ID] = in
	heap.Push(&s.expiry, in)
	return true
}

// get returns the live blob under id, or nil; join is the fetch's join
// box. A deleted blob is still returned, for a while, to a fetch repeating
// a join box it answered: the answer to a retry never depends on whether
// the first answer arrived.
func (s *inviteStore) get(id [rendezvous.InviteIDLen]byte, join []byte, now time.Time) []byte {
	s.expire(now)
	in := s.byID[id]
	switch {
	case in == nil:
		return nil
	case in.closed:
		if in.servedTo(join) {
			return in.blob
		}
		return nil
	}
	in.serve(join)
	return in.blob
}

// joinOwner returns the owner of a live invite to push a join box to, if
// its limit allows one now.
func (s *inviteStore) joinOwner(id [rendezvous.InviteIDLen]byte, now time.Time) (nodekey.Key, bool) {
	in := s.byID[id]
	if in == nil || in.closed || !in.joins.Take(now, joinsPerSec, joinBurst, 1) {
		return nodekey.Key{}, false
	}
	return in.owner, true
}

// inviteHeap is a container/heap of invites, soonest expiry first.
type inviteHeap []*invite

func (h inviteHeap) Len() int           { return len(h) }
func (h inviteHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h inviteHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *inviteHeap) Push(x any) {
	in := x.(*invite)
	in.index = len(*h)
	*h = append(*h, in)
}
func (h *inviteHeap) Pop() any {
	old := *h
	in := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return in
}

// handleInviteGet answers an InviteGet, from anyone, without a cookie: the
// answer is never longer than the request (rendezvous.InviteGetLen), so a
// spoofed source gains no amplification.
func (s *Server) handleInviteGet(b []byte, src netip.AddrPort, port int, w *scratch, send sendFunc) {
	id, join, err := rendezvous.ParseInviteGet(b)
	if err != nil {
		s.junk.Add(1)
		return
	}
	now := s.cfg.Now()
	s.mu.Lock()
	// A stored blob is never changed in place (a replacement is a new
	// slice), so it may be read after unlocking.
	blob := s.invites.get(id, join, now)
	var p *push
	if blob != nil && join != nil {
		if owner, ok := s.invites.joinOwner(id, now); ok {
			if n := s.nodeLocked(owner, now); n != nil {
				port, to := s.primary(n, now)
				p = &push{port: port, to: to, aead: n.aead, msg: rendezvous.InviteJoin{ID: id, Box: join}}
			}
		}
	}
	s.mu.Unlock()
	if p != nil {
		// To the owner's registered address, which passed a cookie
		// check, never to the request's source.
		s.sendPush(*p, now, w, send)
		s.invitesJoins.Add(1)
	}
	w.out = rendezvous.AppendInvite(w.out[:0], id, blob)
	if len(w.out) > len(b) {
		s.tooBig.Add(1) // cannot happen: InviteGetLen fits the longest answer
		return
	}
	if blob == nil {
		s.invitesUnknown.Add(1)
	} else {
		s.invitesServed.Add(1)
	}
	send(port, src, w.out)
}
