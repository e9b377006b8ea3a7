package rvserver

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// The tests below reproduce the floods of issue 13 (items 1-3) against
// Server.handle, scaled down by a small MaxNodes (every limit derives from
// it), on synctest's fake clock. Each checks that a legitimate node keeps
// registering, being introduced and relaying throughout, that the tables
// stay within their limits, and that the counters name the real reason.

// tryRequest sends m from n (whose cookie is current) and returns the
// server's sealed reply to n, or nil.
func (h *harness) tryRequest(n *testNode, m rendezvous.Message) rendezvous.Message {
	h.t.Helper()
	for _, o := range h.deliver(n.seal(h.t, m, h.clock.now()), n.addr, 0) {
		if o.to == n.addr && len(o.b) != rendezvous.CookieMsgLen {
			return n.open(h.t, o.b)
		}
	}
	return nil
}

// flood sends m from n without waiting for or reading an answer.
func (h *harness) flood(n *testNode, m rendezvous.Message) {
	h.deliver(n.seal(h.t, m, h.clock.now()), n.addr, 0)
}

func TestFloodReplayCache(t *testing.T) {
	tests := []struct {
		name     string
		keys     int // flooding keys, spread over networks
		networks int
		packets  int // in total, over 30 s
	}{
		// Issue 13 item 1: one key with a valid cookie, one address.
		{"one key", 1, 1, 6000},
		// Many keys from many /24s, each within its own budgets: the cache
		// fills, and makes room instead of refusing everyone.
		{"many keys from many networks", 64, 16, 6000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// MaxNodes 16: the replay cache holds 256 nonces (it held
				// 1024 before it could make room, and refused everyone
				// once full).
				h := newHarness(t, Config{MaxNodes: 16, Now: time.Now})
				legit := h.node("192.0.2.10:4000")
				h.register(legit, 0)
				var flooders []*testNode
				for i := range tt.keys {
					n := h.node(fmt.Sprintf("198.18.%d.%d:%d", i%tt.networks, 1+i/tt.networks, 5000+i))
					h.register(n, 0)
					flooders = append(flooders, n)
				}
				every := 30 * time.Second / time.Duration(tt.packets)
				tries, ok := 0, 0
				for i := range tt.packets {
					n := flooders[i%len(flooders)]
					h.flood(n, rendezvous.Register{})
					if i%200 == 199 {
						tries++
						if _, got := h.tryRequest(legit, rendezvous.Register{}).(rendezvous.RegisterReply); got {
							ok++
						}
					}
					time.Sleep(every)
				}
				st := h.s.Stats()
				if ok != tries {
					t.Errorf("legitimate node registered %d times out of %d during the flood; want every time (stats %+v)", ok, tries, st)
				}
				if st.ReplayNonces > h.s.cfg.MaxReplay {
					t.Errorf("replay cache holds %d nonces; limit %d", st.ReplayNonces, h.s.cfg.MaxReplay)
				}
				if st.Replays != 0 {
					t.Errorf("%d requests counted as replays; none was one", st.Replays)
				}
				if tt.keys == 1 && st.KeyLimited < uint64(tt.packets)/2 {
					t.Errorf("one key sent %d registrations in 30 s and %d were refused as over its budget; want most", tt.packets, st.KeyLimited)
				}
			})
		})
	}
}

// TestFloodPendingIntroductions is issue 13 item 2: stranger keys from
// several networks fill the one-sided introduction table with Connects to
// random keys. A Connect that was waiting before the flood still meets its
// answer, and new ones are still accepted and answered.
func TestFloodPendingIntroductions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// MaxNodes 1000: room for 4000 pending introductions, 500 per
		// network and 64 per key.
		h := newHarness(t, Config{MaxNodes: 1000, Now: time.Now})
		a, b, c := h.node("192.0.2.10:4000"), h.node("198.51.100.20:5000"), h.node("203.0.113.30:6000")
		for _, n := range []*testNode{a, b, c} {
			h.register(n, 0)
		}
		if r, _ := h.request(a, rendezvous.Connect{Target: b.pub, Box: []byte("a→b")}, 0); r.(rendezvous.ConnectReply).Status != rendezvous.StatusOK {
			t.Fatalf("a's connect before the flood: %+v", r)
		}
		// 10 networks × 50 keys × 20 Connects (each key's whole burst):
		// 10,000 one-sided introductions, 2.5 times the table.
		const networks, perNet, connects = 10, 50, 20
		for i := range networks * perNet {
			n := h.node(fmt.Sprintf("198.18.%d.%d:%d", i%networks, 1+i/networks, 7000+i))
			h.register(n, 0)
			for range connects {
				k, _ := nodekey.Generate()
				h.flood(n, rendezvous.Connect{Target: k.Public(), Box: make([]byte, 64)})
			}
			time.Sleep(5 * time.Millisecond)
			if i%50 == 49 {
				// A new introduction during the flood: accepted.
				if r, ok := h.tryRequest(c, rendezvous.Connect{Target: b.pub}).(rendezvous.ConnectReply); !ok || r.Status != rendezvous.StatusOK {
					t.Fatalf("after %d stranger keys: c's connect got %+v; want OK", i+1, r)
				}
			}
		}
		st := h.s.Stats()
		if st.Pending > h.s.cfg.MaxPending {
			t.Errorf("%d pending introductions; limit %d", st.Pending, h.s.cfg.MaxPending)
		}
		if st.EvictedPending == 0 {
			t.Errorf("the flood evicted nothing (stats %+v); the test no longer fills the table", st)
		}
		// b answers both: both introductions complete.
		for _, peer := range []*testNode{a, c} {
			_, pushes := h.request(b, rendezvous.Connect{Target: peer.pub, Box: []byte("b")}, 0)
			punched := false
			for _, p := range append(pushes, h.out...) {
				if p.to == peer.addr {
					_, punched = peer.open(t, p.b).(rendezvous.Punch)
				}
			}
			if !punched {
				t.Errorf("b's answer to %s after the flood: no punch (stats %+v)", peer.addr, st)
			}
		}
	})
}

// TestFloodRelaySessions is issue 13 item 3: keys that introduce
// themselves to each other make relay sessions, which had no limit. The
// table stays within MaxSessions, and a legitimate pair's session keeps
// relaying.
func TestFloodRelaySessions(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// MaxNodes 200: 400 sessions, 50 per network.
		h := newHarness(t, Config{MaxNodes: 200, Now: time.Now})
		a, b := h.node("192.0.2.10:4000"), h.node("198.51.100.20:5000")
		h.register(a, 0)
		h.register(b, 0)
		pa, _ := introduce(t, h, a, b)
		relay := func(when string) {
			t.Helper()
			pkt := rendezvous.AppendRelay(nil, pa.Session, []byte("voice"))
			if out := h.deliver(pkt, a.addr, 0); len(out) != 1 || out[0].to != b.addr {
				t.Errorf("relay a→b %s: sent %+v; want it forwarded to b", when, out)
			}
		}
		// 40 keys from 20 networks, every pair introduced: 780 sessions.
		const keys, networks = 40, 20
		var m []*testNode
		for i := range keys {
			n := h.node(fmt.Sprintf("198.18.%d.%d:%d", i%networks, 1+i/networks, 7000+i))
			h.register(n, 0)
			m = append(m, n)
		}
		pairs := 0
		for i := range m {
			for j := i + 1; j < len(m); j++ {
				h.flood(m[i], rendezvous.Connect{Target: m[j].pub})
				h.flood(m[j], rendezvous.Connect{Target: m[i].pub})
				pairs++
				if pairs%100 == 0 {
					relay(fmt.Sprintf("after %d flooding pairs", pairs))
					// Registrations expire in 2 minutes: all refresh.
					for _, n := range append(m, a, b) {
						h.tryRequest(n, rendezvous.Register{})
					}
				}
				time.Sleep(100 * time.Millisecond) // within each key's Connect budget
			}
		}
		relay("after the flood")
		st := h.s.Stats()
		if st.Sessions > h.s.cfg.MaxSessions {
			t.Errorf("%d relay sessions; limit %d", st.Sessions, h.s.cfg.MaxSessions)
		}
		if st.EvictedSessions == 0 || st.ConnectLimited != 0 || st.KeyLimited != 0 {
			t.Errorf("stats %+v; want sessions evicted, and no Connect refused (the test paces them within budget)", st)
		}
	})
}

// TestFloodNodeTable: one network registering key after key takes the
// place of its own registrations, never another network's.
func TestFloodNodeTable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, Config{MaxNodes: 64, Now: time.Now}) // 8 per network
		legit := h.node("192.0.2.10:4000")
		h.register(legit, 0)
		for i := range 1000 {
			h.register(h.node(fmt.Sprintf("198.18.0.%d:%d", 1+i%250, 7000+i)), 0)
			time.Sleep(10 * time.Millisecond)
		}
		st := h.s.Stats()
		r, ok := h.tryRequest(legit, rendezvous.Connect{Target: legit.pub}).(rendezvous.ConnectReply)
		if !ok || r.Status != rendezvous.StatusOK || st.Nodes != 9 || st.Evicted != 1000-8 {
			t.Errorf("after one /24 registered 1000 keys: legitimate node's connect got %+v, %d nodes, %d evicted; want OK (still registered), 8 + 1 nodes, 992 evicted", r, st.Nodes, st.Evicted)
		}
	})
}
