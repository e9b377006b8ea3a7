package pairing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"log/slog"

	"github.com/peerline/peerline/pkg/atomicfile"
	"github.com/peerline/peerline/pkg/config"
	"github.com/peerline/peerline/pkg/invite"
	"github.com/peerline/peerline/pkg/nodekey"
	"github.com/peerline/peerline/pkg/rendezvous"
	"github.com/peerline/peerline/pkg/rvclient"
)

// The tests run two Pairings, an inviter A and a joiner B, each with its
// own config file, invite store and journal on disk, joined by a fake
// network that does what the path manager and the rendezvous server do
// for pairing: every second, each node asks to be introduced to each of
// its config's peers it has no path to; if the other has it as a peer
// too, both get the other's box (the server's Punch) and a path, and
// otherwise the other is asked (Incoming). Pairing data sent directly
// goes on a path. Messages are named by kind, and a test may drop or
// duplicate any kind:
//
//	request      B's box to A while A does not know B (Incoming)
//	answer       A's box to B in the Punch (A's acceptance)
//	answer-hello the same, lost while the path comes up by probing
//	answer-direct A's answer repeated directly on the path
//	punch-to-A   B's box to A in the Punch
//	confirm      B's Hello{Confirm} sent directly
//	committed    A's Hello{Committed} sent directly
//	join-box     the join box the server passes A with a short code's fetch
//	fetch-reply  the server's answer to B's fetch
//	announce     a node's announcement (name, lines, labels) sent directly
//
// Everything runs in a synctest bubble: the timeouts take no real time.

// fakeNet is the fake network and rendezvous server.
type fakeNet struct {
	t  *testing.T
	mu sync.Mutex
	// nodes by public key; a killed node is not here until restarted.
	nodes map[nodekey.Key]*node
	// drop and dup say how many more messages of a kind to drop or to
	// deliver twice; seen counts those delivered.
	drop, dup, seen map[string]int
	// blobs are the short forms stored on the server.
	blobs map[[rendezvous.InviteIDLen]byte][]byte
	// onDeliver, if set, runs before a message of a kind is delivered.
	onDeliver func(kind string)
	// putFails makes the server refuse to store invites' short forms.
	putFails bool
}

func newNet(t *testing.T) *fakeNet {
	return &fakeNet{t: t, nodes: map[nodekey.Key]*node{}, drop: map[string]int{}, dup: map[string]int{}, seen: map[string]int{},
		blobs: map[[rendezvous.InviteIDLen]byte][]byte{}}
}

// pass decides the fate of one message of kind: how many copies go.
func (n *fakeNet) pass(kind string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.drop[kind] > 0 {
		n.drop[kind]--
		return 0
	}
	n.seen[kind]++
	if n.dup[kind] > 0 {
		n.dup[kind]--
		return 2
	}
	return 1
}

// deliver runs fn for each copy of a message of kind, after a one-way
// delay of 20 ms.
func (n *fakeNet) deliver(kind string, fn func()) {
	copies := n.pass(kind)
	for range copies {
		go func() {
			time.Sleep(20 * time.Millisecond)
			n.mu.Lock()
			f := n.onDeliver
			n.mu.Unlock()
			if f != nil {
				f(kind)
			}
			fn()
		}()
	}
}

func (n *fakeNet) setOnDeliver(f func(kind string)) {
	n.mu.Lock()
	n.onDeliver = f
	n.mu.Unlock()
}

func (n *fakeNet) node(k nodekey.Key) *node {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nodes[k]
}

// node is one Pi: its files, and its running life (a Pairing that a
// kill ends and a start replaces).
type node struct {
	n       *fakeNet
	name    string
	key     nodekey.Key
	dir     string
	cfgPath string
	cfg     atomic.Pointer[config.Config]
	cur     atomic.Pointer[life]
	// diskFull makes every write fail.
	diskFull atomic.Bool
	// busy makes every direct send fail after a second, as when the
	// daemon's loop that hands the data to the path manager is busy
	// (building a tunnel) past the send's deadline.
	busy atomic.Bool
	// daemonBusy keeps the daemon from taking a new config (it is
	// building a tunnel) until it is cleared.
	daemonBusy atomic.Bool
	// crash, if set, kills the node at one of its writes.
	crash atomic.Pointer[crashPoint]
	// oldWire makes the node send what an older peerline sends: no
	// version-2 hellos (answers and Committed without Ack instead).
	oldWire atomic.Bool
	// announceTries counts the announcements the node tried to send.
	announceTries atomic.Int32
}

// wire is what the node sends for the hello b.
func (nd *node) wire(b []byte) []byte {
	if !nd.oldWire.Load() || len(b) == 0 || b[0] != 2 {
		return b
	}
	h, err := invite.ParseHello(b)
	if err != nil {
		nd.n.t.Fatal(err)
	}
	h.Ack = nil
	old, err := invite.AppendHello(nil, h)
	if err != nil {
		nd.n.t.Fatal(err)
	}
	return old
}

// crashPoint kills a node at its nth write from now on: instead of it
// (the file keeps what it had) or right after it. The node's daemon is
// dead from then on (nothing it does is written or sent) until the test
// restarts it; hit is closed when that happens.
type crashPoint struct {
	n      int32
	after  bool
	writes atomic.Int32
	hit    chan struct{}
	// path is the file of the write the crash came at.
	path string
}

// life is one run of a node's daemon.
type life struct {
	pr *Pairing
	// killed makes every write fail and every message vanish: nothing a
	// killed daemon was doing gets done.
	killed  atomic.Bool
	cancel  context.CancelFunc
	stopped chan struct{}
	mu      sync.Mutex
	up      map[nodekey.Key]bool // peers with a path
}

func newNode(t *testing.T, n *fakeNet, name string) *node {
	t.Helper()
	key, err := nodekey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, _ := nodekey.Generate()
	c := fmt.Sprintf(`{"name": %q, "prefix": "p%s", "phone_port": "eth0", "state_dir": %q, "rendezvous": [{"address": "192.0.2.1:3478", "key": %q}]}`,
		"pi"+name, strings.ToLower(name), dir, srv.Public().String())
	nd := &node{n: n, name: name, key: key, dir: dir, cfgPath: filepath.Join(dir, "peerlined.json")}
	if err := os.WriteFile(nd.cfgPath, []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	nd.start(t)
	return nd
}

func (nd *node) life() *life      { return nd.cur.Load() }
func (nd *node) pr() *Pairing     { return nd.life().pr }
func (nd *node) pub() nodekey.Key { return nd.key.Public() }

// start runs a Pairing on the node's files, as peerlined does at boot.
func (nd *node) start(t *testing.T) {
	t.Helper()
	cfg, err := config.Load(nd.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	nd.cfg.Store(cfg)
	l := &life{up: map[nodekey.Key]bool{}, stopped: make(chan struct{})}
	reload := make(chan *config.Config)
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.pr, err = New(Options{
		ConfigPath: nd.cfgPath, Reload: reload, Config: nd.cfg.Load, Lines: nd.lines,
		Key: nd.key, StateDir: nd.dir, Log: testLog(t, nd.name),
		PutInvite: func(ctx context.Context, id [rendezvous.InviteIDLen]byte, expires time.Time, blob []byte, within time.Duration) (nodekey.Key, error) {
			nd.n.mu.Lock()
			defer nd.n.mu.Unlock()
			if nd.n.putFails {
				return nodekey.Key{}, errors.New("no server answered")
			}
			if blob == nil {
				delete(nd.n.blobs, id)
			} else {
				nd.n.blobs[id] = blob
			}
			return nd.cfg.Load().Rendezvous[0].Key, nil
		},
		Send:  func(ctx context.Context, peer nodekey.Key, data []byte) error { return nd.send(l, peer, data) },
		Fetch: nd.fetch,
		WriteFile: func(path string, data []byte, perm os.FileMode) error {
			if l.killed.Load() {
				return errors.New("killed")
			}
			if nd.diskFull.Load() {
				return errors.New("no space left on device")
			}
			cp := nd.crash.Load()
			if cp == nil {
				return atomicfile.WriteFile(path, data, perm)
			}
			at := cp.writes.Add(1) == cp.n
			if at && !cp.after {
				l.killed.Store(true)
				cp.path = path
				close(cp.hit)
				return errors.New("killed")
			}
			err := atomicfile.WriteFile(path, data, perm)
			if at {
				l.killed.Store(true)
				cp.path = path
				close(cp.hit)
			}
			return err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			if nd.daemonBusy.Load() {
				select {
				case <-time.After(100 * time.Millisecond):
					continue
				case <-ctx.Done():
					return
				}
			}
			select {
			case c := <-reload:
				if l.killed.Load() {
					continue
				}
				nd.cfg.Store(c)
				// A removed peer loses its path at once, as
				// peerpath.Manager.Remove does.
				l.mu.Lock()
				for k := range l.up {
					if !nd.hasPeer(k) {
						delete(l.up, k)
					}
				}
				l.mu.Unlock()
			case <-time.After(100 * time.Millisecond):
				// Look at daemonBusy again.
			case <-ctx.Done():
				return
			}
		}
	})
	wg.Go(func() { l.pr.Run(ctx) })
	wg.Go(func() { nd.pathManager(ctx, l) })
	go func() { wg.Wait(); close(l.stopped) }()
	nd.cur.Store(l)
	nd.n.mu.Lock()
	nd.n.nodes[nd.pub()] = nd
	nd.n.mu.Unlock()
}

// kill stops the node as SIGKILL would.
func (nd *node) kill() {
	l := nd.life()
	l.killed.Store(true)
	nd.n.mu.Lock()
	delete(nd.n.nodes, nd.pub())
	nd.n.mu.Unlock()
	l.cancel()
	<-l.stopped
}

// lines are the node's phone lines: its config's, or line 1.
func (nd *node) lines() []int {
	if l := nd.cfg.Load().Lines; len(l) > 0 {
		return l
	}
	return []int{1}
}

func (nd *node) hasPeer(k nodekey.Key) bool {
	return slices.ContainsFunc(nd.cfg.Load().Peers, func(p config.Peer) bool { return p.PublicKey == k })
}

// pathManager asks every second to be introduced to the peers it has no
// path to, as peerpath does.
func (nd *node) pathManager(ctx context.Context, l *life) {
	for {
		cfg := nd.cfg.Load()
		l.mu.Lock()
		for k := range l.up {
			if !nd.hasPeer(k) {
				delete(l.up, k)
			}
		}
		var want []nodekey.Key
		for _, p := range cfg.Peers {
			if !l.up[p.PublicKey] {
				want = append(want, p.PublicKey)
			}
		}
		l.mu.Unlock()
		for _, k := range want {
			nd.connect(l, k)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// kindTo names a message to the inviter or the joiner for the tests.
func kindTo(to *node, toInviter, toJoiner string) string {
	if to.name == "A" {
		return toInviter
	}
	return toJoiner
}

// connect is a Connect through the server: a Punch if the other asks for
// us too (it has us as a peer), an Incoming otherwise.
func (nd *node) connect(l *life, peer nodekey.Key) {
	other := nd.n.node(peer)
	if other == nil || l.killed.Load() {
		return
	}
	ol := other.life()
	box := nd.wire(l.pr.hello(peer))
	if !other.hasPeer(nd.pub()) {
		nd.n.deliver(kindTo(other, "request", "request-to-B"), func() {
			if !ol.killed.Load() {
				ol.pr.incoming(nd.pub(), box)
			}
		})
		return
	}
	theirs := other.wire(ol.pr.hello(nd.pub()))
	nd.n.deliver(kindTo(other, "punch-to-A", "answer"), func() {
		if other.setUp(ol, nd.pub()) && (other.name == "A" || nd.n.pass("answer-hello") > 0) {
			ol.pr.onHello(nd.pub(), box)
		}
	})
	nd.n.deliver(kindTo(nd, "punch-to-A", "answer"), func() {
		// answer-hello: the path comes up (by probing) but the
		// Punch that carried A's answer is lost.
		if nd.setUp(l, peer) && (nd.name == "A" || nd.n.pass("answer-hello") > 0) {
			l.pr.onHello(peer, theirs)
		}
	})
}

func (nd *node) setUp(l *life, peer nodekey.Key) bool {
	if l.killed.Load() || !nd.hasPeer(peer) {
		return false
	}
	l.mu.Lock()
	l.up[peer] = true
	l.mu.Unlock()
	return true
}

// send is peerpath.Manager.SendPair: on a path, to a node that has us as
// a peer (peerpath drops the rest).
func (nd *node) send(l *life, peer nodekey.Key, data []byte) error {
	if len(data) > 0 && data[0] == 3 {
		nd.announceTries.Add(1)
	}
	if nd.busy.Load() {
		time.Sleep(time.Second)
		return context.DeadlineExceeded
	}
	if nd.oldWire.Load() && len(data) > 0 && data[0] == 2 {
		return nil // the previous peerline sends only the copy that follows
	}
	l.mu.Lock()
	up := l.up[peer]
	l.mu.Unlock()
	if !up || l.killed.Load() {
		return errors.New("no path to the peer yet")
	}
	other := nd.n.node(peer)
	if other == nil {
		return nil // sent into the void
	}
	ol := other.life()
	if !other.hasPeer(nd.pub()) {
		// It forgot us (it rolled back while we were away): it answers
		// no probe, so the path dies and we ask the servers again.
		l.mu.Lock()
		delete(l.up, peer)
		l.mu.Unlock()
		return nil
	}
	h, _ := invite.ParseHello(data)
	kind := "answer-direct"
	switch {
	case h.Labels != nil:
		kind = "announce"
	case h.Confirm:
		kind = "confirm"
	case h.Committed:
		kind = "committed"
	}
	nd.n.deliver(kind, func() {
		if other.hasPeer(nd.pub()) && !ol.killed.Load() {
			ol.pr.onHello(nd.pub(), data)
		}
	})
	return nil
}

// fetch is rvclient.GetInvite against the fake server, with its retries:
// the join box goes to the invite's owner with every try.
func (nd *node) fetch(ctx context.Context, _ string, id [rendezvous.InviteIDLen]byte, box []byte) ([]byte, error) {
	wait := 250 * time.Millisecond
	for range 4 {
		nd.n.mu.Lock()
		blob := nd.n.blobs[id]
		var owner *node
		for _, o := range nd.n.nodes {
			if o.name == "A" {
				owner = o
			}
		}
		nd.n.mu.Unlock()
		if blob != nil && owner != nil && box != nil {
			ol := owner.life()
			nd.n.deliver("join-box", func() {
				if !ol.killed.Load() {
					ol.pr.onInviteJoin(id, box)
				}
			})
		}
		got := make(chan []byte, 2)
		nd.n.deliver("fetch-reply", func() { got <- blob })
		select {
		case b := <-got:
			if b == nil {
				return nil, rvclient.ErrInviteUnknown
			}
			return b, nil
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		wait *= 2
	}
	return nil, rvclient.ErrNoReply
}

func testLog(t *testing.T, name string) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}
