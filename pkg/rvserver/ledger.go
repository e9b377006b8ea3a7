package rvserver

import (
	"container/heap"
	"container/list"
	"fmt"
	"net/netip"

	"github.com/peerline/peerline/pkg/nodekey"
)

// ledger keeps the accounts of one of the server's bounded tables (nodes,
// pending introductions, relay sessions, replay nonces, source prefixes):
// which entries exist, in what order they were last used, and whom each one
// is charged to. It holds no values; the table's own map does, and the
// ledger tells the table what to drop through its evict callback.
//
// Its job is to make a full table hurt whoever filled it. Every entry is
// charged to up to a few owners (the node key that made it, the source
// prefix it came from). Two rules decide what goes when something new
// arrives:
//
//   - an owner that already holds its share (perOwner for its kind) loses
//     its own least recently used entry;
//   - a table that holds max entries loses the least recently used entry of
//     the owner holding the most, so a flood from one key or one /24 evicts
//     the flood, never a node that holds a handful.
//
// A table whose entries have no owners (the prefix limiter) falls back to
// least recently used overall. The ledger is pure bookkeeping, with no
// clock and no I/O, so that table tests can check each rule; the server's
// mu guards every ledger.
type ledger[K comparable] struct {
	max      int
	perOwner [numOwnerKinds]int // 0: no per-owner share
	entries  map[K]*ledgerEntry[K]
	lru      list.List // of *ledgerEntry[K]; front: least recently used
	owners   map[owner]*ownerEntries[K]
	largest  ownerHeap[K]
	clock    uint64 // counts uses, for ledgerEntry.used
	// evict is told of every entry the ledger drops to make room, with
	// the owner it was taken from (zero when the table had no owner to
	// blame) and why, before the entry leaves the ledger. It must not
	// call back into the ledger.
	evict func(k K, from owner, why evictReason)
}

type ledgerEntry[K comparable] struct {
	key  K
	used uint64        // ledger.clock when last added or touched
	el   *list.Element // in ledger.lru
	// charges has room for the most owners any table charges (a relay
	// session: two keys, two prefixes), so an entry is one allocation.
	charges [maxOwners]charge[K]
	n       uint8 // charges in use
}

const maxOwners = 4

// charge is an entry's place in one owner's list.
type charge[K comparable] struct {
	o  *ownerEntries[K]
	el *list.Element // Value: the *ledgerEntry
}

// ownerEntries is what one owner holds in one ledger.
type ownerEntries[K comparable] struct {
	owner owner
	l     list.List // front: least recently used
	index int       // in ledger.largest
}

// ownerKind says what an owner is; each kind has its own share.
type ownerKind uint8

const (
	byKey ownerKind = iota
	byPrefix
	numOwnerKinds
)

// owner is whom an entry is charged to: a node key, or a source prefix
// (an IPv4 /24 or an IPv6 /56: what one household, host or small network
// can hold, as opposed to a single address, of which an IPv6 attacker has
// billions).
type owner struct {
	kind ownerKind
	id   [nodekey.Len]byte // the key; for a prefix, the 16-byte address then the bit length
}

func keyOwner(k nodekey.Key) owner { return owner{kind: byKey, id: k} }

func prefixOwner(p netip.Prefix) owner {
	o := owner{kind: byPrefix}
	a := p.Addr().As16()
	copy(o.id[:], a[:])
	o.id[16] = byte(p.Bits())
	o.id[17] = 4
	if p.Addr().Is6() {
		o.id[17] = 6
	}
	return o
}

// String names the owner for logs: a key or a prefix.
func (o owner) String() string {
	switch o.kind {
	case byKey:
		return "key " + nodekey.Key(o.id).String()
	case byPrefix:
		a := netip.AddrFrom16([16]byte(o.id[:16]))
		if o.id[17] == 4 {
			a = a.Unmap()
		}
		return "prefix " + netip.PrefixFrom(a, int(o.id[16])).String()
	}
	return fmt.Sprintf("owner kind %d", o.kind)
}

// Source prefixes: the unit a per-source budget is kept for.
const (
	prefixBits4 = 24
	prefixBits6 = 56
)

// sourcePrefix is the /24 (IPv4) or /56 (IPv6) holding a's address.
func sourcePrefix(a netip.AddrPort) netip.Prefix {
	addr := a.Addr().Unmap()
	bits := prefixBits6
	if addr.Is4() {
		bits = prefixBits4
	}
	p, _ := addr.Prefix(bits)
	return p
}

// evictReason is why the ledger dropped an entry.
type evictReason uint8

const (
	// evictOwnerFull: its owner held its whole share and made another.
	evictOwnerFull evictReason = iota
	// evictTableFull: the table was full and its owner held the most.
	evictTableFull
)

func (r evictReason) String() string {
	if r == evictOwnerFull {
		return "owner's share full"
	}
	return "table full"
}

func newLedger[K comparable](max int, perKey, perPrefix int, evict func(K, owner, evictReason)) *ledger[K] {
	l := &ledger[K]{max: max, entries: map[K]*ledgerEntry[K]{}, owners: map[owner]*ownerEntries[K]{}, evict: evict}
	l.perOwner[byKey], l.perOwner[byPrefix] = perKey, perPrefix
	return l
}

func (l *ledger[K]) len() int { return len(l.entries) }

func (l *ledger[K]) has(k K) bool { _, ok := l.entries[k]; return ok }

// add makes room for k, charged to owners (duplicates are charged once),
// and records it as the most recently used. k must not be in the ledger.
func (l *ledger[K]) add(k K, owners ...owner) {
	if _, ok := l.entries[k]; ok {
		panic("rvserver: ledger.add of a key already present")
	}
	if len(owners) > maxOwners {
		panic("rvserver: ledger.add with more owners than maxOwners")
	}
	for i, o := range owners {
		if dup(owners[:i], o) {
			continue
		}
		share := l.perOwner[o.kind]
		for st := l.owners[o]; share > 0 && st != nil && st.l.Len() >= share; st = l.owners[o] {
			l.evictFront(st, evictOwnerFull)
		}
	}
	for l.max > 0 && len(l.entries) >= l.max {
		if len(l.largest) > 0 {
			l.evictFront(l.largest[0], evictTableFull)
			continue
		}
		e := l.lru.Front().Value.(*ledgerEntry[K])
		l.evict(e.key, owner{}, evictTableFull)
		l.remove(e.key)
	}
	l.clock++
	e := &ledgerEntry[K]{key: k, used: l.clock}
	e.el = l.lru.PushBack(e)
	for i, o := range owners {
		if dup(owners[:i], o) {
			continue
		}
		st := l.owners[o]
		if st == nil {
			st = &ownerEntries[K]{owner: o}
			l.owners[o] = st
			heap.Push(&l.largest, st)
		}
		e.charges[e.n] = charge[K]{o: st, el: st.l.PushBack(e)}
		e.n++
		heap.Fix(&l.largest, st.index)
	}
	l.entries[k] = e
}

func dup(os []owner, o owner) bool {
	for _, x := range os {
		if x == o {
			return true
		}
	}
	return false
}

func (l *ledger[K]) evictFront(st *ownerEntries[K], why evictReason) {
	e := st.l.Front().Value.(*ledgerEntry[K])
	l.evict(e.key, st.owner, why)
	l.remove(e.key)
}

// touch marks k as just used.
func (l *ledger[K]) touch(k K) {
	e := l.entries[k]
	if e == nil {
		return
	}
	l.clock++
	e.used = l.clock
	l.lru.MoveToBack(e.el)
	for _, c := range e.charges[:e.n] {
		// The heap orders owners by size, then by their oldest entry's
		// use: only moving that entry can reorder it. Relayed packets
		// touch their session each, so the common case skips the Fix.
		wasOldest := c.o.l.Front() == c.el
		c.o.l.MoveToBack(c.el)
		if wasOldest {
			heap.Fix(&l.largest, c.o.index)
		}
	}
}

// remove forgets k (no callback).
func (l *ledger[K]) remove(k K) {
	e := l.entries[k]
	if e == nil {
		return
	}
	delete(l.entries, k)
	l.lru.Remove(e.el)
	for _, c := range e.charges[:e.n] {
		c.o.l.Remove(c.el)
		if c.o.l.Len() == 0 {
			heap.Remove(&l.largest, c.o.index)
			delete(l.owners, c.o.owner)
		} else {
			heap.Fix(&l.largest, c.o.index)
		}
	}
}

// oldest is the least recently used key.
func (l *ledger[K]) oldest() (K, bool) {
	if f := l.lru.Front(); f != nil {
		return f.Value.(*ledgerEntry[K]).key, true
	}
	var zero K
	return zero, false
}

// top is the owner holding the most entries, and how many.
func (l *ledger[K]) top() (owner, int) {
	if len(l.largest) == 0 {
		return owner{}, 0
	}
	return l.largest[0].owner, l.largest[0].l.Len()
}

// ownerHeap is a container/heap of owners, the one holding most first;
// between owners holding as many, the one whose oldest entry was used least
// recently, so that a table whose owners all hold one entry each is plain
// least recently used.
type ownerHeap[K comparable] []*ownerEntries[K]

func (h ownerHeap[K]) Len() int { return len(h) }
func (h ownerHeap[K]) Less(i, j int) bool {
	if a, b := h[i].l.Len(), h[j].l.Len(); a != b {
		return a > b
	}
	return h[i].oldestUse() < h[j].oldestUse()
}
func (h ownerHeap[K]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *ownerHeap[K]) Push(x any) {
	st := x.(*ownerEntries[K])
	st.index = len(*h)
	*h = append(*h, st)
}
func (h *ownerHeap[K]) Pop() any {
	old := *h
	st := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return st
}

func (st *ownerEntries[K]) oldestUse() uint64 {
	if f := st.l.Front(); f != nil {
		return f.Value.(*ledgerEntry[K]).used
	}
	return 0
}
