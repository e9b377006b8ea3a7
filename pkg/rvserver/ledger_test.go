package rvserver

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
)

// ledgerOp is one step of a ledger table test: add (owners given as
// "k1", "p1"...), touch or remove an entry.
type ledgerOp struct {
	op     string // add, touch, remove
	key    string
	owners []string
}

func testOwner(s string) owner {
	var o owner
	if strings.HasPrefix(s, "p") {
		o.kind = byPrefix
	}
	copy(o.id[:], s)
	return o
}

func TestLedger(t *testing.T) {
	add := func(k string, owners ...string) ledgerOp { return ledgerOp{"add", k, owners} }
	touch := func(k string) ledgerOp { return ledgerOp{op: "touch", key: k} }
	remove := func(k string) ledgerOp { return ledgerOp{op: "remove", key: k} }
	tests := []struct {
		name              string
		max, perKey, perP int
		ops               []ledgerOp
		wantEvicted       []string // "key from owner (why)"
		wantLeft          []string
	}{
		{
			name: "no owners: least recently used goes", max: 2,
			ops:         []ledgerOp{add("a"), add("b"), touch("a"), add("c")},
			wantEvicted: []string{"b (table full)"},
			wantLeft:    []string{"a", "c"},
		},
		{
			name: "full table: the owner holding most loses its oldest", max: 4, perKey: 10, perP: 10,
			ops: []ledgerOp{
				add("victim", "kv", "pv"),
				add("x1", "kx", "px"), add("x2", "kx", "px"), add("x3", "kx", "px"),
				add("new", "kn", "pn"),
			},
			wantEvicted: []string{"x1 from kx (table full)"},
			wantLeft:    []string{"new", "victim", "x2", "x3"},
		},
		{
			name: "many keys from one prefix: the prefix holds most", max: 4, perKey: 10, perP: 10,
			ops: []ledgerOp{
				add("victim", "kv", "pv"),
				add("x1", "k1", "px"), add("x2", "k2", "px"), add("x3", "k3", "px"),
				add("new", "kn", "pn"),
			},
			wantEvicted: []string{"x1 from px (table full)"},
			wantLeft:    []string{"new", "victim", "x2", "x3"},
		},
		{
			name: "owner over its share loses its own oldest, though the table has room", max: 100, perKey: 2, perP: 100,
			ops: []ledgerOp{
				add("v", "kv", "pv"),
				add("x1", "kx", "px"), add("x2", "kx", "px"), touch("x1"), add("x3", "kx", "px"),
			},
			wantEvicted: []string{"x2 from kx (owner's share full)"},
			wantLeft:    []string{"v", "x1", "x3"},
		},
		{
			name: "prefix share applies across keys", max: 100, perKey: 100, perP: 2,
			ops: []ledgerOp{
				add("x1", "k1", "px"), add("x2", "k2", "px"), add("x3", "k3", "px"), add("v", "kv", "pv"),
			},
			wantEvicted: []string{"x1 from px (owner's share full)"},
			wantLeft:    []string{"v", "x2", "x3"},
		},
		{
			name: "ties: the owner whose oldest entry is least recently used", max: 3, perKey: 10, perP: 10,
			ops: []ledgerOp{
				add("a", "ka"), add("b", "kb"), add("c", "kc"), touch("a"), add("d", "kd"),
			},
			wantEvicted: []string{"b from kb (table full)"},
			wantLeft:    []string{"a", "c", "d"},
		},
		{
			name: "an entry charged twice to one owner counts once", max: 10, perKey: 1, perP: 10,
			ops:      []ledgerOp{add("s", "ka", "ka", "pa", "pa")},
			wantLeft: []string{"s"},
		},
		{
			name: "removed entries free their owner's share", max: 10, perKey: 1, perP: 10,
			ops:      []ledgerOp{add("a", "ka"), remove("a"), add("b", "ka")},
			wantLeft: []string{"b"},
		},
		{
			name: "a session charged to two keys: either over its share drops its own oldest", max: 10, perKey: 2, perP: 10,
			ops: []ledgerOp{
				add("s1", "ka", "kx"), add("s2", "kb", "kx"), add("s3", "kc", "kx"),
			},
			wantEvicted: []string{"s1 from kx (owner's share full)"},
			wantLeft:    []string{"s2", "s3"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var evicted []string
			l := newLedger(tt.max, tt.perKey, tt.perP, func(k string, from owner, why evictReason) {
				if from == (owner{}) {
					evicted = append(evicted, fmt.Sprintf("%s (%s)", k, why))
					return
				}
				evicted = append(evicted, fmt.Sprintf("%s from %s (%s)", k, strings.TrimRight(string(from.id[:]), "\x00"), why))
			})
			for _, op := range tt.ops {
				switch op.op {
				case "add":
					var os []owner
					for _, o := range op.owners {
						os = append(os, testOwner(o))
					}
					l.add(op.key, os...)
				case "touch":
					l.touch(op.key)
				case "remove":
					l.remove(op.key)
				}
				checkLedger(t, l)
			}
			var left []string
			for k := range l.entries {
				left = append(left, k)
			}
			slices.Sort(left)
			if !slices.Equal(evicted, tt.wantEvicted) || !slices.Equal(left, tt.wantLeft) {
				t.Errorf("evicted %q, left %q; want evicted %q, left %q", evicted, left, tt.wantEvicted, tt.wantLeft)
			}
		})
	}
}

// checkLedger checks the ledger's invariants: the sizes agree, every
// owner holds at least one entry and no more than its share, and the heap
// is a heap.
func checkLedger[K comparable](t *testing.T, l *ledger[K]) {
	t.Helper()
	if l.lru.Len() != len(l.entries) || (l.max > 0 && len(l.entries) > l.max) {
		t.Fatalf("ledger: %d entries, %d in lru, max %d", len(l.entries), l.lru.Len(), l.max)
	}
	if len(l.largest) != len(l.owners) {
		t.Fatalf("ledger: %d owners, %d in heap", len(l.owners), len(l.largest))
	}
	for i, st := range l.largest {
		if st.index != i || st.l.Len() == 0 || (l.perOwner[st.owner.kind] > 0 && st.l.Len() > l.perOwner[st.owner.kind]) {
			t.Fatalf("ledger: owner %d holds %d (index %d)", i, st.l.Len(), st.index)
		}
		if i > 0 && l.largest.Less(i, (i-1)/2) {
			t.Fatalf("ledger: heap order broken at %d", i)
		}
	}
}

func TestSourcePrefix(t *testing.T) {
	for _, tt := range []struct{ in, want, owner string }{
		{"198.51.100.7:1", "198.51.100.0/24", "prefix 198.51.100.0/24"},
		{"[::ffff:198.51.100.7]:1", "198.51.100.0/24", "prefix 198.51.100.0/24"},
		{"[2001:db8:1:2ff::1]:1", "2001:db8:1:200::/56", "prefix 2001:db8:1:200::/56"},
	} {
		p := sourcePrefix(netip.MustParseAddrPort(tt.in))
		if p.String() != tt.want || prefixOwner(p).String() != tt.owner {
			t.Errorf("sourcePrefix(%s) = %s (%s); want %s (%s)", tt.in, p, prefixOwner(p), tt.want, tt.owner)
		}
	}
	if prefixOwner(netip.MustParsePrefix("198.51.100.0/24")) == prefixOwner(netip.MustParsePrefix("::ffff:198.51.100.0/120")) {
		t.Error("an IPv4 prefix and its mapped IPv6 form are one owner")
	}
	k, _ := nodekey.Generate()
	if got := keyOwner(k.Public()).String(); got != "key "+k.Public().String() {
		t.Errorf("keyOwner = %q", got)
	}
}

func TestReplayCache(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	ka, kb := nodekey.Key{1}, nodekey.Key{2}
	n := func(i int) nonce { var x nonce; x[0], x[1] = byte(i), byte(i>>8); return x }
	const window = time.Minute

	c := newReplayCache(4, 3, window)
	if v := c.check(ka, n(1), t0, t0); v != replayFresh {
		t.Fatalf("first nonce: %v", v)
	}
	c.add(ka, n(1), t0)
	if v := c.check(ka, n(1), t0, t0); v != replaySeen {
		t.Errorf("same nonce again: %v, want seen", v)
	}
	// ka takes its share (3): its oldest nonce is forgotten and its floor
	// rises to that nonce's time, so a replay of it is still refused.
	for i := 2; i <= 4; i++ {
		c.add(ka, n(i), t0.Add(time.Duration(i)*time.Second))
	}
	if c.len() != 3 || c.evicted != 1 {
		t.Fatalf("after 4 nonces of one key with share 3: %d kept, %d forgotten", c.len(), c.evicted)
	}
	if v := c.check(ka, n(1), t0, t0.Add(5*time.Second)); v != replayStale {
		t.Errorf("replay of a forgotten nonce: %v, want stale", v)
	}
	if v := c.check(ka, n(9), t0.Add(5*time.Second), t0.Add(5*time.Second)); v != replayFresh {
		t.Errorf("new request of the busy key: %v, want fresh", v)
	}
	// Another key is not hurt by ka's floor, and a full cache makes room
	// by forgetting ka's oldest, not kb's.
	if v := c.check(kb, n(100), t0, t0.Add(5*time.Second)); v != replayFresh {
		t.Errorf("other key at the busy key's floor: %v, want fresh", v)
	}
	c.add(kb, n(100), t0.Add(5*time.Second))
	c.add(kb, n(101), t0.Add(6*time.Second))
	if v := c.check(kb, n(100), t0, t0.Add(6*time.Second)); v != replaySeen {
		t.Errorf("kb's nonce after the cache filled: %v, want still remembered", v)
	}
	if c.len() != 4 || c.lastFrom != keyOwner(ka) {
		t.Errorf("full cache: %d kept, last forgotten from %v; want 4, ka", c.len(), c.lastFrom)
	}
	// After the window everything expires, floors too.
	later := t0.Add(window + 10*time.Second)
	c.sweep(later)
	if c.len() != 0 || len(c.floors) != 0 {
		t.Errorf("after the window: %d nonces, %d floors left", c.len(), len(c.floors))
	}
	if v := c.check(ka, n(1), later, later); v != replayFresh {
		t.Errorf("after the window: %v", v)
	}

	// More keys with forgotten nonces than floors: the shared floor takes
	// the rest, and still refuses replays.
	c = newReplayCache(4, 1, window) // one floor
	for i := range 3 {
		k := nodekey.Key{byte(10 + i)}
		c.add(k, n(2*i), t0.Add(time.Duration(i)*time.Second))
		c.add(k, n(2*i+1), t0.Add(time.Duration(i)*time.Second+time.Millisecond))
	}
	for i := range 3 {
		k := nodekey.Key{byte(10 + i)}
		if v := c.check(k, n(2*i), t0.Add(time.Duration(i)*time.Second), t0.Add(3*time.Second)); v == replayFresh {
			t.Errorf("key %d: replay of a forgotten nonce accepted", i)
		}
	}
}
