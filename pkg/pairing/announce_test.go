package pairing

import (
	"context"
	"errors"
	"maps"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
)

// peerOf is other's entry in nd's config.
func (nd *node) peerOf(other *node) (config.Peer, bool) {
	for _, p := range nd.cfg.Load().Peers {
		if p.PublicKey == other.pub() {
			return p, true
		}
	}
	return config.Peer{}, false
}

// TestAnnounceLabels: a node's line labels reach its peer, and so do
// their changes, a rename and a label removed, each within a tick and a
// trip, without either side restarting or losing its path; labels for
// lines the node does not have, and ones a config would refuse, are
// never announced nor stored.
func TestAnnounceLabels(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t)
		a, b := newNode(t, n, "A"), newNode(t, n, "B")
		defer func() { a.kill(); b.kill() }()
		if r := <-startJoin(b, invitation(t, a, false)); r.err != nil {
			t.Fatalf("join: %v", r.err)
		}
		if !settled(t, a, b) {
			t.Fatal("not paired")
		}
		// arrives says how long after the change b's entry for a is as
		// check wants it (at most 5 s).
		arrives := func(what string, check func(p config.Peer) bool) time.Duration {
			t.Helper()
			start := time.Now()
			for {
				if p, ok := b.peerOf(a); ok && check(p) {
					return time.Since(start)
				}
				if time.Since(start) > 5*time.Second {
					p, _ := b.peerOf(a)
					t.Fatalf("%s: not within 5 s; B has A as %+v", what, p)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		edit := func(fn func(c *config.Config)) {
			t.Helper()
			if err := a.pr().Edit(func(c *config.Config) error { fn(c); return nil }); err != nil {
				t.Fatal(err)
			}
		}

		edit(func(c *config.Config) {
			c.Lines = []int{1, 2}
			c.LineLabels = map[int]string{1: "kitchen", 2: "hall", 9: "not a line of A's"}
		})
		d := arrives("labels", func(p config.Peer) bool {
			return maps.Equal(p.LineLabels, map[int]string{1: "kitchen", 2: "hall"})
		})
		t.Logf("labels reached B after %v", d)
		if d > time.Second {
			t.Errorf("labels took %v to reach B; want at most a tick and a trip", d)
		}

		edit(func(c *config.Config) { c.LineLabels[1] = "cuisine" })
		d = arrives("a label renamed", func(p config.Peer) bool { return p.LineLabels[1] == "cuisine" && p.LineLabels[2] == "hall" })
		t.Logf("a renamed label reached B after %v", d)

		edit(func(c *config.Config) { c.Name = "Alice's Pi" })
		d = arrives("a rename", func(p config.Peer) bool { return p.Name == "Alice's Pi" })
		t.Logf("a renamed node reached B after %v", d)

		edit(func(c *config.Config) { delete(c.LineLabels, 2) })
		arrives("a label removed", func(p config.Peer) bool { return maps.Equal(p.LineLabels, map[int]string{1: "cuisine"}) })

		// A hello without labels (a Connect box, or an older peerline)
		// keeps them, but for lines that are gone.
		box, err := invite.AppendHello(nil, invite.Hello{Name: "Alice's Pi", Lines: []int{2}})
		if err != nil {
			t.Fatal(err)
		}
		b.pr().onHello(a.pub(), box)
		synctest.Wait()
		if p, _ := b.peerOf(a); p.LineLabels != nil || len(p.Lines) != 1 {
			t.Errorf("after a hello with line 2 only, B has A's lines %v and labels %v; want [2] and none", p.Lines, p.LineLabels)
		}
		// The next announcement puts them back (A re-announces on a
		// hello that is not an announcement, as after a Connect).
		arrives("labels again", func(p config.Peer) bool { return maps.Equal(p.LineLabels, map[int]string{1: "cuisine"}) })
	})
}

// TestAnnounceHostile: an announcement with a label a config would
// refuse (control characters, too long, for a line not announced) is
// refused whole, and B's config keeps what it had; it stays loadable.
func TestAnnounceHostile(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t)
		a, b := newNode(t, n, "A"), newNode(t, n, "B")
		defer func() { a.kill(); b.kill() }()
		if r := <-startJoin(b, invitation(t, a, false)); r.err != nil {
			t.Fatalf("join: %v", r.err)
		}
		if !settled(t, a, b) {
			t.Fatal("not paired")
		}
		good := []byte{3, 0, 1, 'a', 1, 1, 1, 1, 4, 'k', 'i', 't', 'c'}
		if _, err := invite.ParseHello(good); err != nil {
			t.Fatal(err)
		}
		for _, bad := range [][]byte{
			{3, 0, 1, 'a', 1, 1, 1, 1, 4, 'k', '\n', 't', 'c'},
			{3, 0, 1, 'a', 1, 1, 1, 1, 4, 'k', 0xff, 't', 'c'},
			{3, 0, 1, 'a', 1, 1, 1, 2, 4, 'k', 'i', 't', 'c'},
			append([]byte{3, 0, 1, 'a', 1, 1, 1, 1, 64}, make([]byte, 64)...),
		} {
			b.pr().onHello(a.pub(), bad)
			synctest.Wait()
			if p, _ := b.peerOf(a); p.LineLabels != nil {
				t.Fatalf("the announcement %x left labels %v", bad, p.LineLabels)
			}
		}
		if _, err := config.Load(b.cfgPath); err != nil {
			t.Fatalf("B's config no longer loads: %v", err)
		}
		b.pr().onHello(a.pub(), good)
		synctest.Wait()
		if p, _ := b.peerOf(a); p.LineLabels[1] != "kitc" {
			t.Errorf("a good announcement left labels %v", p.LineLabels)
		}
	})
}

// TestAnnounceOffline: a peer that is offline when the labels change
// gets them once it is back (its Connect box rearms the announcement),
// and a node announces to an offline peer at most every
// announceRetryMax once its first tries failed.
func TestAnnounceOffline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t)
		a, b := newNode(t, n, "A"), newNode(t, n, "B")
		defer func() { a.kill(); b.kill() }()
		if r := <-startJoin(b, invitation(t, a, false)); r.err != nil {
			t.Fatalf("join: %v", r.err)
		}
		if !settled(t, a, b) {
			t.Fatal("not paired")
		}
		b.kill()
		// A's path to B dies with it, as peerpath finds out.
		l := a.life()
		l.mu.Lock()
		delete(l.up, b.pub())
		l.mu.Unlock()
		a.announceTries.Store(0)
		if err := a.pr().Edit(func(c *config.Config) error {
			c.LineLabels = map[int]string{1: "kitchen"}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		tries := int(a.announceTries.Load())
		if tries == 0 || tries > 5*60/int(announceRetryMax/time.Second)+6 {
			t.Errorf("%d announcements tried in 5 min to an offline peer", tries)
		}
		b.start(t)
		start := time.Now()
		for {
			if p, _ := b.peerOf(a); p.LineLabels[1] == "kitchen" {
				break
			}
			if time.Since(start) > time.Minute {
				t.Fatal("the labels did not reach B within a minute of its return")
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("labels reached B %v after it came back (%d tries while it was away)", time.Since(start), tries)
	})
}

// TestHelloSizes: every hello fits where it goes. A Connect box carries
// no labels and stays within what older peerlines take (rendezvous.MaxPair
// for the whole box's pairing data); an announcement fits a pair datagram.
func TestHelloSizes(t *testing.T) {
	if invite.MaxHelloLen > rendezvous.MaxPairData {
		t.Errorf("an announcement of %d bytes does not fit a pair datagram's %d", invite.MaxHelloLen, rendezvous.MaxPairData)
	}
	if invite.MaxAnswerLen > rendezvous.MaxPair {
		t.Errorf("a pairing hello of %d bytes does not fit a box's %d", invite.MaxAnswerLen, rendezvous.MaxPair)
	}
	synctest.Test(t, func(t *testing.T) {
		n := newNet(t)
		a := newNode(t, n, "A")
		defer a.kill()
		if err := a.pr().Edit(func(c *config.Config) error {
			c.Lines = []int{1, 2}
			c.LineLabels = map[int]string{1: strings.Repeat("k", 63), 2: "hall"}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		peer, _ := nodekey.Generate()
		box := a.pr().hello(peer.Public())
		if h, err := invite.ParseHello(box); err != nil || box[0] != 1 || h.Labels != nil || len(box) > invite.MaxAnswerLen {
			t.Errorf("the box's hello is %x (%+v, %v); want version 1 without labels", box, h, err)
		}
		ann, err := invite.AppendHello(nil, a.pr().announcement())
		if err != nil {
			t.Fatal(err)
		}
		if h, err := invite.ParseHello(ann); err != nil || len(h.Labels) != 2 {
			t.Errorf("the announcement parses to %+v, %v; want both labels", h, err)
		}
	})
}

// TestAnnounceIdleStep: with 253 peers, half answering and half
// switched off, a step (every tick) with nothing due looks at no peer: it
// allocates next to nothing, and no announcement goes out of turn.
func TestAnnounceIdleStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := &config.Config{Name: "alice"}
		online := map[nodekey.Key]bool{}
		for i := range 253 {
			k, err := nodekey.Generate()
			if err != nil {
				t.Fatal(err)
			}
			cfg.Peers = append(cfg.Peers, config.Peer{Index: i + 1, PublicKey: k.Public()})
			online[k.Public()] = i%2 == 0
		}
		var mu sync.Mutex
		sends := 0
		pr, err := New(Options{
			Config:   func() *config.Config { return cfg },
			Lines:    func() []int { return []int{1} },
			StateDir: t.TempDir(),
			Send: func(_ context.Context, peer nodekey.Key, _ []byte) error {
				mu.Lock()
				defer mu.Unlock()
				sends++
				if !online[peer] {
					return errors.New("no path")
				}
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		count := func() int {
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			n := sends
			sends = 0
			return n
		}
		// Ten minutes of steps: the first copies, the second ones, the
		// retries to the offline peers settle at one per 30 s.
		for range 10 * 60 * 10 {
			pr.announceStep(time.Now())
			time.Sleep(tick)
			synctest.Wait()
		}
		count()
		// The next 20 s: the offline peers' retries only (127 per 30 s
		// at most), never more.
		for range 200 {
			pr.announceStep(time.Now())
			time.Sleep(tick)
		}
		if n := count(); n > 2*127 {
			t.Errorf("%d sends in 20 quiet seconds", n)
		}
		// A step between the retries looks at no peer.
		pr.announceStep(time.Now())
		synctest.Wait()
		// The hello itself is built (a few small allocations) to see
		// whether it changed; the peers cost nothing.
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range 100 {
			pr.announceStep(time.Now())
		}
		runtime.ReadMemStats(&after)
		if b := (after.TotalAlloc - before.TotalAlloc) / 100; b > 1024 {
			t.Errorf("an idle step allocates %d bytes (253 peers)", b)
		}
		// A rename is announced to every answering peer at the next step.
		count()
		cfg2 := *cfg
		cfg2.Name = "alice2"
		cfg = &cfg2
		pr.announceStep(time.Now())
		if n := count(); n < 127 {
			t.Errorf("after a rename: %d sends, want every peer's (253)", n)
		}
	})
}
